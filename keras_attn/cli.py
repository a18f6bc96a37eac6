"""The `keras-attn` command line.

    keras-attn quickstart                      the three tiny models on built-in data
    keras-attn train RECIPE [options]          train what a recipe (zoo/*.yaml) describes
    keras-attn evaluate MODEL_DIR [--data ..]  score a trained model
    keras-attn translate MODEL_DIR [TEXT ...]  translate (or read lines from stdin)
    keras-attn classify MODEL_DIR [TEXT ...]   label and probability
    keras-attn generate MODEL_DIR [PROMPT ...] continue prompts
    keras-attn explain MODEL "TEXT" --out F    look inside: HTML viewer or PNG / SVG figure
    keras-attn prune RUN --heads 0.3 --out DIR remove the least important attention heads

Every command is a thin layer over `keras_attn.recipes` and the models'
methods. Bad input ends with one line, `keras-attn <command>: error: ...`,
and exit code 2; `--debug` shows the traceback and TensorFlow's logs instead.

The library is imported inside each command, not at the top: `--help` and
argument errors answer at once, without TensorFlow's start-up.
"""

import argparse
import inspect
import json
import math
import os
import sys

from keras_attn.utils.arguments import (
    ArgumentError,
    check_non_negative_int,
    check_non_negative_number,
    check_number,
    check_number_in_range,
    check_positive_int,
    check_positive_number,
    check_rate,
    check_unit_interval,
)
from keras_attn.utils.atomic_files import write_json_atomically, write_text_atomically

# keras_attn.recipes.distribution.STRATEGIES and keras_attn.training.precision.PRECISIONS,
# without importing TensorFlow for `--help` (tests check they agree).
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")


def _check_writable_file(option, path):
    """Fails before any training when an output file cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{option}: folder {folder!r} does not exist (given {path!r})")


def _check_output_folder(option, path):
    """Fails before any training when `path` cannot become a folder: it, or
    the nearest of its parents that exists, is a file or cannot be written."""
    existing = os.path.abspath(path)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "is" if existing == os.path.abspath(path) else f"is under {existing!r}, which is"
        raise ValueError(f"{option}: {path!r} {where} an existing file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OSError(f"{option}: folder {existing!r} is not writable (given {path!r})")


def _import_library_quietly():
    """Imports TensorFlow and the model libraries with their native start-up
    logs (CUDA probing, CPU features, plugin loading) kept off stderr, where
    they would bury the command's own messages. Python errors still show."""
    import importlib

    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        for name in ("tensorflow", "keras_attn.models", "keras_attn.data"):
            importlib.import_module(name)
        sys.modules["tensorflow"].config.list_physical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


# ------------------------------------------------------------- quickstart


def _quickstart(args):
    if args.metrics_json:
        _check_writable_file("--metrics-json", args.metrics_json)
    if args.output_dir:
        _check_output_folder("--output-dir", args.output_dir)
        for name in ("translator", "classifier", "generator"):
            _check_output_folder("--output-dir", os.path.join(args.output_dir, name))
    from keras_attn.quickstart import run_quickstart

    metrics = run_quickstart(fast=args.fast, seed=args.seed, output_dir=args.output_dir)
    if args.metrics_json:
        write_json_atomically(args.metrics_json, metrics)
    return 0


# ------------------------------------------------------------------ train

# Keys a `--data-path` file keeps from the recipe's training spec.
_FILE_FORMAT_KEYS = (
    "task", "delimiter", "header", "skip_malformed", "source_column", "target_column",
    "num_columns", "quoted", "label_column", "text_column", "label_names", "unit", "skip_empty",
)
# Shares of a `--data-path` file held out when the recipe's splits are not files.
_HOLD_OUT = {"test": 0.1, "validation": 0.05}


def _use_data_path(recipe, path):
    """The recipe trained on the file at `path`; validation / test data that
    came from elsewhere are held out of that file instead."""
    data = dict(recipe["data"])
    train = data["train"]
    kept = {k: v for k, v in train.items() if k in _FILE_FORMAT_KEYS}
    if train.get("source") != "files":
        kept = {k: v for k, v in kept.items() if k == "task"}
    data["train"] = {"source": "files", "path": os.path.abspath(path), **kept}
    notes = []
    for role, share in _HOLD_OUT.items():
        spec = data.get(role)
        if spec is not None and spec.get("source") != "files" and "from_train" not in spec:
            data[role] = {"from_train": share}
            notes.append(f"data.{role}: {share:.0%} held out of {path}")
    return {**recipe, "data": data}, notes


def _train(args):
    from keras_attn.recipes import (
        apply_overrides,
        load_recipe,
        parse_override,
        train_recipe,
        validate_recipe,
    )

    recipe = load_recipe(args.recipe)
    source = args.recipe
    notes = []
    if args.data_path:
        if not os.path.isfile(args.data_path):
            raise OSError(f"--data-path: {args.data_path!r} does not exist or is not a file")
        recipe, notes = _use_data_path(recipe, args.data_path)
        recipe = validate_recipe(recipe, source=f"{source} with --data-path")
    overrides = {}
    for item in args.set or []:
        key, value = parse_override(item)
        if key.startswith("data.") and key.endswith((".path", ".data_dir")):
            value = os.path.abspath(value)
        overrides[key] = value
    flags = {
        "training.epochs": args.epochs,
        "training.batch_size": args.batch_size,
        "training.learning_rate": args.learning_rate,
        "training.precision": args.precision,
        "training.seed": args.seed,
        "training.time_budget": args.time_budget,
        "training.strategy": args.strategy,
        "training.deterministic": True if args.deterministic else None,
    }
    overrides.update({k: v for k, v in flags.items() if v is not None})
    if overrides:
        recipe = apply_overrides(recipe, overrides, source=f"{source} with overrides")
    stem = os.path.splitext(os.path.basename(args.recipe))[0]
    output_dir = args.output_dir or os.path.join("runs", stem)
    _check_output_folder("--output-dir", output_dir)
    print(f"recipe: {args.recipe} ({recipe['task']}, preset {recipe['preset']}) -> {output_dir}")
    if recipe.get("description"):
        print(f"  {recipe['description']}")
    for note in notes:
        print(note)
    verbose = "auto" if args.verbose is None else args.verbose
    record = train_recipe(recipe, output_dir, overwrite=args.overwrite, verbose=verbose)
    if record.get("expected"):
        expected = record["expected"]
        print(f"expected ({expected['source']}): {expected['metric']} {expected['value']}")
    return 0


# --------------------------------------------------------------- evaluate


def _data_spec(args):
    """The `--data` / `--data-path` / `--split` / `--num-examples` spec, or None."""
    import yaml

    from keras_attn.recipes.schema import read_yaml

    spec = None
    if args.data:
        text = args.data.strip()
        if os.path.isfile(text):
            with open(text, encoding="utf-8") as handle:
                spec = read_yaml(handle)
        elif text.startswith("{"):
            try:
                spec = read_yaml(text)
            except yaml.YAMLError:
                raise ValueError(f"--data: not a valid YAML mapping: {text!r}") from None
        else:
            spec = {"source": "builtin", "name": text}
        if not isinstance(spec, dict):
            raise ValueError(f"--data must be a built-in name or a mapping (got {args.data!r})")
    if args.data_path:
        if not os.path.isfile(args.data_path):
            raise OSError(f"--data-path: {args.data_path!r} does not exist or is not a file")
        spec = {**(spec or {}), "source": "files", "path": os.path.abspath(args.data_path)}
        spec.pop("name", None)
    if spec is None:
        if args.split or args.num_examples:
            raise ValueError("--split and --num-examples need --data or --data-path")
        return None
    if args.split:
        spec["split"] = args.split
    if args.num_examples:
        spec["num_examples"] = args.num_examples
    return spec


def _evaluate(args):
    from keras_attn.recipes import evaluate_model, parse_override
    from keras_attn.recipes.evaluation import describe
    from keras_attn.recipes.schema import parse_value

    if args.json:
        _check_writable_file("--json", args.json)
    changes = {}
    for item in args.set or []:
        key, value = parse_override(item)
        changes[key.removeprefix("evaluation.")] = parse_value(value)
    if args.beam_width is not None:
        changes["beam_width"] = args.beam_width
    options = changes or None
    metrics = evaluate_model(args.model_dir, _data_spec(args), evaluation=options,
                             log=lambda line: print(line, file=sys.stderr))
    print(f"{describe(metrics)} ({metrics['examples']} examples)", file=sys.stderr)
    for sample in metrics.get("samples", []):
        print(f"  {sample}", file=sys.stderr)
    text = json.dumps(metrics, indent=2)
    if args.json:
        write_text_atomically(args.json, text + "\n")
    print(text)
    return 0


# ------------------------------------------------------ text in, text out


def _decoded_lines(raw, where):
    """The lines of UTF-8 bytes `raw`; a `ValueError` naming `where`, the
    1-based line and the byte of the first invalid sequence otherwise."""
    try:
        return raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        column = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise ValueError(
            f"{where}, line {line}: not valid UTF-8 (byte {column} of the line is "
            f"0x{raw[error.start]:02x}); save the file as UTF-8"
        ) from None


def _input_texts(args, what="TEXT"):
    """Texts from the command line, `--input FILE`, or standard input lines."""
    if args.texts and args.input:
        raise ValueError(f"give {what} arguments or --input, not both")
    if args.texts:
        return list(args.texts)
    if args.input and args.input != "-":
        if not os.path.isfile(args.input):
            raise OSError(f"--input: {args.input!r} does not exist or is not a file")
        with open(args.input, "rb") as handle:
            lines = _decoded_lines(handle.read(), f"--input {args.input}")
    else:
        stdin = getattr(sys.stdin, "buffer", None)
        if stdin is None:  # a text stream put in place of stdin (tests)
            lines = sys.stdin.read().splitlines()
        else:
            lines = _decoded_lines(stdin.read(), "standard input")
    texts = [line for line in lines if line.strip()]
    if not texts:
        raise ValueError(f"no input: pass {what} arguments, --input FILE, or lines on stdin")
    return texts


def _load(model_dir, task):
    from keras_attn.recipes import load_model

    model, _ = load_model(model_dir, task)
    return model


def _translate(args):
    texts = _input_texts(args)
    model = _load(args.model_dir, "translator")
    from keras_attn.recipes.evaluation import in_batches

    outputs = in_batches(
        lambda chunk: model.translate(chunk, beam_width=args.beam_width,
                                      length_penalty=args.length_penalty,
                                      no_repeat_ngram_size=args.no_repeat_ngram_size,
                                      repetition_penalty=args.repetition_penalty),
        texts,
        args.batch_size,
    )
    for output in outputs:
        print(output)
    return 0


def _classify(args):
    texts = _input_texts(args)
    model = _load(args.model_dir, "classifier")
    labels, probabilities = model.classify(texts, batch_size=args.batch_size)
    for text, label, row in zip(texts, labels, probabilities):
        print(f"{label}\t{row.max():.3f}\t{text}")
    return 0


def _generate(args):
    prompts = _input_texts(args, "PROMPT")
    model = _load(args.model_dir, "generator")
    outputs = model.generate(
        prompts,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        stop_token_ids=None if args.no_stop else "eos",
        no_repeat_ngram_size=args.no_repeat_ngram_size,
        repetition_penalty=args.repetition_penalty,
    )
    for output in outputs:
        print(output)
    return 0


# ---------------------------------------------------------------- explain


def _load_run_or_preset(model):
    """A model from a training output or preset directory, or an untrained
    built-in preset given as TASK:PRESET (e.g. `generator:tiny`)."""
    if os.path.isdir(model):
        return _load_any(model)[0]
    task, separator, preset = model.partition(":")
    if not separator:
        raise OSError(
            f"MODEL: {model!r} is not a directory; give a training output or preset "
            "directory, or TASK:PRESET for an untrained built-in preset (e.g. generator:tiny)"
        )
    from keras_attn.models import Task

    return Task.for_name(task).from_preset(preset)


def _explain(args):
    from keras_attn.interpret import explain, write_explanation

    _check_writable_file("--out", args.out)
    suffix = os.path.splitext(args.out)[1].lower()
    if suffix not in (".html", ".htm", ".png", ".svg"):
        raise ValueError(f"--out must end in .html, .png or .svg (given {args.out!r})")
    model = _load_run_or_preset(args.model)
    options = {}
    if args.targets is not None:
        options["targets"] = [args.targets]
    if args.max_new_tokens:
        options["max_new_tokens"] = args.max_new_tokens
    # A number names a class or a position; anything else is passed as text.
    target = args.target
    if target is not None and target.lstrip("-").isdigit():
        target = int(target)
    explanation = explain(model, args.text, args.method, target=target, **options)
    head = None if args.head in (None, "all") else args.head
    write_explanation(explanation, args.out, kind=args.kind, layer=args.layer, head=head,
                      title=f"{args.method}: {args.text}")
    tokens = {name: len(values) for name, values in explanation.maps.tokens.items()}
    print(f"wrote {args.out} ({args.method}; tokens: "
          + ", ".join(f"{count} {name}" for name, count in tokens.items()) + ")")
    return 0


# ----------------------------------------------------------------- export


def _export(args):
    from keras_attn.export import export

    if os.path.lexists(args.output) and not args.overwrite:
        raise ValueError(
            f"OUTPUT_DIR {args.output!r} already exists; pass --overwrite to replace it (only "
            "once the new export is written)"
        )
    model, task = _load_any(args.model_dir)
    # The options a task's export takes are those of its serving_endpoints.
    accepted = inspect.signature(model.serving_endpoints).parameters
    options = {}
    for flag, key in (("--beam-width", "beam_width"), ("--max-new-tokens", "max_new_tokens")):
        value = getattr(args, key)
        if value is None:
            continue
        if key not in accepted:
            raise ValueError(f"{flag} does not apply to a {task}; {args.model_dir!r} holds one")
        options[key] = value
    export(model, args.output, overwrite=args.overwrite, jit_compile=not args.no_xla, **options)
    print(f"exported the {task} to {args.output}")
    return 0


_CONVERT_TASKS = {
    "generator": "Generator",
    "classifier": "Classifier",
    "masked_lm": "MaskedLanguageModel",
}


def _convert(args):
    from keras_attn import models

    if os.path.lexists(args.output) and not args.overwrite:
        raise ValueError(
            f"OUT_DIR {args.output!r} already exists; pass --overwrite to replace it"
        )
    cls = getattr(models, _CONVERT_TASKS[args.task])
    options = {}
    if args.sequence_length is not None:
        options["sequence_length"] = args.sequence_length
    if args.task == "classifier":
        if args.num_classes is None:
            raise ValueError("--task classifier needs --num-classes")
        options["num_classes"] = args.num_classes
    elif args.num_classes is not None:
        raise ValueError(f"--num-classes applies to --task classifier, not {args.task}")
    preset = args.preset
    if os.path.isdir(preset):
        # A local keras-hub preset directory (keras-hub's `save_to_preset`).
        preset = os.path.abspath(preset)
    model = cls.from_keras_hub(preset, **options)
    model.save_to_preset(args.output, overwrite=args.overwrite)
    print(f"converted {args.preset} into a keras-attn {args.task} preset at {args.output}")
    return 0


def _load_any(model_dir):
    from keras_attn.recipes import load_model

    return load_model(model_dir)


def _serve_check(args):
    from keras_attn.export import run_in_fresh_process

    texts = _input_texts(args)
    answer = run_in_fresh_process(
        args.export_dir, [(args.signature, {"inputs": texts})], repeats=args.repeats
    )
    if answer["leaked"]:
        raise OSError(f"the serving process imported {', '.join(answer['leaked'])}")
    result = answer["results"][0]
    outputs = result["outputs"]
    for i, text in enumerate(texts):
        fields = [
            f"{key}={value[i] if not isinstance(value[i], list) else max(value[i]):.3f}"
            if isinstance(value[i], (float, list)) else f"{key}={value[i]}"
            for key, value in sorted(outputs.items())
        ]
        print(f"{text}\t" + "\t".join(fields))
    print(
        f"loaded in {answer['load_seconds']:.2f}s with TensorFlow only (no keras, no keras_attn); "
        f"{len(texts)} input(s): first call {result['first_call_seconds'] * 1000:.1f} ms, "
        f"median of {args.repeats} more {result['median_seconds'] * 1000:.1f} ms",
        file=sys.stderr,
    )
    return 0


# ------------------------------------------------------------------ prune


def _prune_data(args, task, recipe, log):
    """`(examples, role, evaluation options)` to score heads and metrics on:
    `--data` / `--data-path`, else the run's validation (or test) data."""
    from keras_attn.recipes.evaluation import check_evaluation_options
    from keras_attn.recipes.recipe_data import load_split

    spec = _data_spec(args)
    options = dict((recipe or {}).get("evaluation", {})) if recipe else {}
    if spec is not None:
        for key in ("prompt_length", "prompt_until", "continuation_length", "num_examples"):
            options.pop(key, None)  # they describe the recipe's own texts
        data = load_split({"task": task, "data": {"validation": spec}}, "validation", log)
        return data, "the --data examples", check_evaluation_options(options, task)
    specs = (recipe or {}).get("data", {})
    role = next((r for r in ("validation", "test") if r in specs), None)
    if role is None:
        raise ValueError(
            f"{args.model_dir!r} records no recipe with validation or test data: pass --data "
            "or --data-path"
        )
    return load_split(recipe, role, log), f"the run's {role} data", check_evaluation_options(
        options, task)


def _prune(args):
    from keras_attn.interpret import head_importance, prune_least_important
    from keras_attn.recipes import load_model
    from keras_attn.recipes.evaluation import recorded_run

    out = os.path.abspath(args.out)
    if os.path.lexists(out) and not args.overwrite:
        raise ValueError(f"--out: {args.out!r} already exists; pass --overwrite to replace it")
    model, task = load_model(args.model_dir)
    recipe = (recorded_run(args.model_dir) or {}).get("recipe")
    if recipe and recipe.get("task") != task:
        recipe = None
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    data, described, options = _prune_data(args, task, recipe, log)
    importance = head_importance(model, data, batch_size=args.batch_size)
    print(f"head importance: {importance.num_batches} batch(es) of {described} "
          f"({len(data)} examples)")
    before, _ = model.evaluate_data(data, options)
    pruned, removed = prune_least_important(model, importance, args.heads)
    after, _ = pruned.evaluate_data(data, options)
    total = sum(sum(counts) for counts in importance.head_counts.values())
    gone = sum(len(heads) for layers in removed.values() for heads in layers.values())
    print(f"kept heads ({total - gone} of {total}; {gone} pruned):")
    for kind, counts in importance.head_counts.items():
        for layer, count in enumerate(counts):
            dropped = removed.get(kind, {}).get(layer, [])
            kept = [head for head in range(count) if head not in dropped]
            print(f"  {kind} layer {layer}: {len(kept)}/{count} {kept}")
    for name, value in before.items():
        if isinstance(value, float) and name in after:
            print(f"{name}: {value:.4g} before, {after[name]:.4g} after")
    pruned.save_to_preset(out, overwrite=args.overwrite)
    print(f"saved the pruned {task} to {args.out}")
    return 0


# ----------------------------------------------------------------- parser


def _option_type(parse, check):
    """An argparse `type`: the text parsed by `parse`, then checked by a
    `keras_attn.utils.arguments` check; argparse names the option in its error,
    e.g. `argument --epochs: must be a positive integer (got '0')`."""

    def convert(text):
        try:
            value = parse(text)
        except ValueError:
            value = text  # the check rejects it and shows the text
        try:
            return check("value", value)
        except ArgumentError as error:
            raise argparse.ArgumentTypeError(
                f"must {error.verb} {error.expected} (got {text!r})"
            ) from None

    return convert


_positive_int = _option_type(int, check_positive_int)
_non_negative_int = _option_type(int, check_non_negative_int)


def _head(text):
    """--head: a head index, or `all` for the mean of a layer's heads."""
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a head index or 'all' (got {text!r})"
        ) from None
_non_negative_float = _option_type(float, check_non_negative_number)
_unit_interval_float = _option_type(float, check_unit_interval)
_rate = _option_type(float, check_rate)
# The recipe's `training.time_budget` check (keras_attn.training.callbacks),
# without importing the training code for `--help`.
_seconds = _option_type(float, lambda name, value: check_number_in_range(
    name, value, 0, math.inf, include_low=False, include_high=False,
    expected="a positive number of seconds"))


def _check_finite_positive(name, value):
    check_number(name, value)  # NaN and infinities out first
    return check_positive_number(name, value)


_finite_positive_float = _option_type(float, _check_finite_positive)


def _add_repetition_options(parser, unit):
    parser.add_argument(
        "--no-repeat-ngram-size", type=_non_negative_int, default=0, metavar="N",
        help=f"never repeat an N-gram of tokens within a {unit}, its start included "
             "(0: off; default)",
    )
    parser.add_argument(
        "--repetition-penalty", type=_finite_positive_float, default=1.0, metavar="X",
        help="divide the logit of every token already in the "
             f"{unit} by X (multiply if negative): above 1 discourages loops "
             "(1.0: off; default)",
    )


def _add_input_options(parser, what="TEXT", help_text="texts"):
    parser.add_argument(
        "texts", nargs="*", metavar=what,
        help=f"{help_text}; without any, lines are read from --input or standard input",
    )
    parser.add_argument(
        "--input", metavar="FILE",
        help="read one input per line from FILE ('-' for standard input); blank lines skipped",
    )


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="on errors show the full traceback; show TensorFlow's logs",
    )
    parser = argparse.ArgumentParser(
        prog="keras-attn",
        description="Attention layers and Transformer models for Keras 3.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks and TensorFlow logs"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    quickstart = commands.add_parser(
        "quickstart",
        parents=[common],
        help="train the tiny translator, classifier and generator on built-in data",
        description=(
            "Trains the three tiny ready-made models on data generated on the fly (no "
            "download): a translator (spelled-out numbers to digits), a classifier (sentiment "
            "with negation) and a generator (runs of letters). Prints their metrics and a few "
            "outputs, and optionally saves them as preset directories."
        ),
    )
    quickstart.add_argument(
        "--fast", action="store_true", help="less data and fewer epochs (for tests and CI)"
    )
    quickstart.add_argument(
        "--output-dir",
        metavar="DIR",
        help="save the trained models here (DIR/translator, DIR/classifier, DIR/generator)",
    )
    quickstart.add_argument("--seed", type=int, default=0, help="seed for data and weights")
    quickstart.add_argument(
        "--metrics-json", metavar="PATH", help="also write the metrics to this JSON file"
    )
    quickstart.set_defaults(handler=_quickstart)

    train = commands.add_parser(
        "train",
        parents=[common],
        help="train the model a recipe describes (see zoo/)",
        description=(
            "Trains the model a recipe YAML file describes (task, preset, tokenizer, data, "
            "training, evaluation; see zoo/README.md), scores it on the recipe's test data and "
            "writes OUTPUT_DIR/preset (the model), training_log.csv, tensorboard/ and "
            "metrics.json. An interrupted run resumes when the same command is run again."
        ),
    )
    train.add_argument("recipe", metavar="RECIPE",
                       help="the recipe file, e.g. zoo/translator_tiny_number_words.yaml")
    train.add_argument("--epochs", type=_positive_int, metavar="N",
                       help="override training.epochs")
    train.add_argument("--batch-size", type=_positive_int, metavar="N",
                       help="override training.batch_size")
    train.add_argument("--learning-rate", type=float, metavar="LR",
                       help="override training.learning_rate")
    train.add_argument("--precision", choices=PRECISIONS,
                       help="override training.precision (the Keras dtype policy; auto: "
                            "mixed_bfloat16 where it was measured to pay, float32 elsewhere)")
    train.add_argument("--seed", type=int, metavar="N", help="override training.seed")
    train.add_argument(
        "--time-budget", type=_seconds, metavar="SECONDS",
        help=(
            "override training.time_budget: stop training at the first step past this many "
            "seconds from the start (data loading and tokenizer training count; a resumed run "
            "spends what is left), then evaluate and save as usual"
        ),
    )
    train.add_argument(
        "--strategy", choices=STRATEGIES,
        help=(
            "override training.strategy, the tf.distribute strategy: default (one device), "
            "mirrored (every GPU here, or every logical CPU), multi_worker (the machines the "
            "TF_CONFIG environment variable lists; run the same command on each, only the "
            "chief writes OUTPUT_DIR) or tpu; --batch-size is the global batch, split across "
            "the replicas"
        ),
    )
    train.add_argument(
        "--deterministic", action="store_true",
        help="set training.deterministic: TensorFlow's deterministic ops, so that with the "
             "same seed a run, resumed or not, gives the same weights (slower)",
    )
    train.add_argument(
        "--output-dir", metavar="DIR",
        help="where the results go (default: runs/<recipe file name without .yaml>)",
    )
    train.add_argument(
        "--data-path", metavar="PATH",
        help=(
            "train on your own file instead of the recipe's data (data.train becomes "
            "{source: files, path: PATH}: source<TAB>target lines for a translator, "
            "label<TAB>text (.tsv) or label,text (.csv) for a classifier, one text per line "
            "for a generator); "
            "validation and test data not read from files are held out of it (5%%, 10%%)"
        ),
    )
    train.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help=(
            "override any recipe key by its dotted path, the value read as YAML, e.g. "
            "--set training.epochs=2 --set model.num_layers=4 --set data.train.num_examples=500"
            "; repeat for several"
        ),
    )
    train.add_argument(
        "--overwrite", action="store_true",
        help="replace a finished run in the output directory (kept until the new run finishes)",
    )
    train.add_argument(
        "--verbose", type=int, choices=(0, 1, 2),
        help="Keras progress output: 0 none, 1 progress bar, 2 one line per epoch "
             "(default: 1 on a terminal, 2 otherwise)",
    )
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[common],
        help="score a trained model on test data",
        description=(
            "Scores a trained model (a training output directory or a preset directory): "
            "exact match and BLEU for a translator, accuracy for a classifier, perplexity (and "
            "exact continuations) for a generator, masked-token accuracy and perplexity for a "
            "masked language model. Prints the metrics as JSON on stdout; "
            "progress and samples go to stderr."
        ),
    )
    evaluate.add_argument("model_dir", metavar="MODEL_DIR",
                          help="a `keras-attn train` output directory or a preset directory")
    evaluate.add_argument(
        "--data", metavar="SPEC",
        help=(
            "a built-in dataset name (number_words, dates, sentiment_negation, alphabet_runs, "
            "sorted_letters; its test split), a YAML mapping such as "
            "'{source: tfds, name: imdb_reviews, split: test}', or a YAML file holding one "
            "(default: the test data of the recipe MODEL_DIR was trained with)"
        ),
    )
    evaluate.add_argument("--split", help="the split to score (builtin: train, validation, "
                                          "test; tfds: any split string such as test[:10%%])")
    evaluate.add_argument("--data-path", metavar="PATH",
                          help="score on your own file (same formats as train --data-path)")
    evaluate.add_argument("--num-examples", type=_positive_int, metavar="N",
                          help="load at most N examples")
    evaluate.add_argument("--beam-width", type=_positive_int, metavar="N",
                          help="translator: beam width (1: greedy)")
    evaluate.add_argument(
        "--set", action="append", metavar="KEY=VALUE",
        help="an evaluation option as in a recipe's evaluation section, e.g. "
             "--set prompt_until== --set samples=5; repeat for several",
    )
    evaluate.add_argument("--json", metavar="PATH", help="also write the metrics to this file")
    evaluate.set_defaults(handler=_evaluate)

    translate = commands.add_parser(
        "translate",
        parents=[common],
        help="translate texts with a trained translator",
        description="Translates each text and prints one translation per line.",
    )
    translate.add_argument("model_dir", metavar="MODEL_DIR",
                           help="a translator's training output directory or preset directory")
    _add_input_options(translate, "TEXT", "texts to translate")
    translate.add_argument("--beam-width", type=_positive_int, default=1, metavar="N",
                           help="1: greedy decoding (default); more: beam search")
    translate.add_argument("--length-penalty", type=float, default=0.6, metavar="ALPHA",
                           help="beam search length penalty (GNMT alpha; default 0.6)")
    translate.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                           help="texts translated at once (default 64)")
    _add_repetition_options(translate, "translation")
    translate.set_defaults(handler=_translate)

    classify = commands.add_parser(
        "classify",
        parents=[common],
        help="label texts with a trained classifier",
        description="Prints, for each text, its label, the label's probability and the text, "
                    "tab-separated.",
    )
    classify.add_argument("model_dir", metavar="MODEL_DIR",
                          help="a classifier's training output directory or preset directory")
    _add_input_options(classify, "TEXT", "texts to classify")
    classify.add_argument("--batch-size", type=_positive_int, default=64, metavar="N",
                          help="texts classified at once (default 64)")
    classify.set_defaults(handler=_classify)

    generate = commands.add_parser(
        "generate",
        parents=[common],
        help="continue prompts with a trained generator",
        description="Prints each prompt's continuation (without the prompt), one per line.",
    )
    generate.add_argument("model_dir", metavar="MODEL_DIR",
                          help="a generator's training output directory or preset directory")
    _add_input_options(generate, "PROMPT", "prompts to continue")
    generate.add_argument("--max-new-tokens", type=_positive_int, default=32, metavar="N",
                          help="most tokens to add to each prompt (default 32)")
    generate.add_argument("--temperature", type=_non_negative_float, default=0.0,
                          help="0: greedy (default); above 0: sample, higher is more random")
    generate.add_argument("--top-k", type=_non_negative_int, default=0, metavar="K",
                          help="sample among the K most likely tokens (0: all; default)")
    generate.add_argument("--top-p", type=_unit_interval_float, default=1.0, metavar="P",
                          help="nucleus sampling: the smallest set of tokens with probability "
                               ">= P (1.0: off; default)")
    generate.add_argument("--seed", type=int, metavar="N",
                          help="seed for sampling: the same seed gives the same text")
    generate.add_argument("--no-stop", action="store_true",
                          help="do not stop at the end-of-text token; always add N tokens")
    _add_repetition_options(generate, "prompt and its continuation")
    generate.set_defaults(handler=_generate)

    from keras_attn.interpret.explain import METHODS

    explain = commands.add_parser(
        "explain",
        parents=[common],
        help="look inside a model on one text: HTML viewer or PNG / SVG figure",
        description=(
            "Runs one interpretation method on TEXT and writes an offline HTML viewer "
            "(--out x.html: every layer, head and attention kind, hover a token to see where it "
            "attends) or a figure (--out x.png / x.svg). Methods: "
            + "; ".join(f"{name}: {entry.summary}" for name, entry in METHODS.items())
            + "."
        ),
    )
    explain.add_argument("model", metavar="MODEL",
                         help="a training output or preset directory, or TASK:PRESET for an "
                              "untrained built-in preset (e.g. generator:tiny)")
    explain.add_argument("text", metavar="TEXT",
                         help="the text (a prompt, a source sentence, a sentence to classify)")
    explain.add_argument("--method", choices=list(METHODS), default="attention",
                         help="what to compute (default: attention)")
    explain.add_argument("--target", metavar="TARGET",
                         help="the output to explain, for methods that explain one: a class "
                              "index, a token position or a token")
    explain.add_argument("--targets", metavar="TEXT",
                         help="the second text: a translator's target (default: its own "
                              "translation), a generator's continuation, a classifier's pair")
    explain.add_argument("--max-new-tokens", type=_non_negative_int, default=0, metavar="N",
                         help="generators: first continue TEXT by N greedy tokens")
    explain.add_argument("--kind", choices=("encoder", "decoder", "cross"),
                         help="the attention to show (default: cross where the model has it)")
    explain.add_argument("--layer", type=int, metavar="L",
                         help="the layer to show (negative counts from the last)")
    explain.add_argument("--head", type=_head, metavar="H",
                         help="the head to show, or 'all' for the mean of the layer's heads; "
                              "a figure without --layer and --head shows every layer and head")
    explain.add_argument("--out", required=True, metavar="PATH",
                         help="report.html (viewer), report.png or report.svg (figure)")
    explain.set_defaults(handler=_explain)

    export = commands.add_parser(
        "export",
        parents=[common],
        help="write a trained model as a TensorFlow SavedModel for serving",
        description=(
            "Writes a SavedModel whose signatures take strings and return translations, "
            "continuations, labels with probabilities, or texts with each [MASK] filled in; "
            "tokenization and the whole decoding "
            "loop run inside the graph, so serving needs neither Keras nor keras-attn."
        ),
    )
    export.add_argument("model_dir", metavar="MODEL_DIR",
                        help="a training output directory or preset directory")
    export.add_argument("output", metavar="OUTPUT_DIR", help="where to write the SavedModel")
    export.add_argument("--beam-width", type=_positive_int, metavar="N",
                        help="translators: beams of the `translate` signature (default 4)")
    export.add_argument("--max-new-tokens", type=_positive_int, metavar="N",
                        help="generators: tokens `serving_default` adds to a prompt at most")
    export.add_argument("--no-xla", action="store_true",
                        help="do not XLA-compile the model inside the export (slower; for "
                             "servers without XLA)")
    export.add_argument("--overwrite", action="store_true",
                        help="replace an existing OUTPUT_DIR (only once the new export is written)")
    export.set_defaults(handler=_export)

    convert = commands.add_parser(
        "convert",
        parents=[common],
        help="turn a keras-hub checkpoint into a keras-attn preset directory",
        description=(
            "Loads a keras-hub preset (a name such as gpt2_base_en, which keras-hub downloads, "
            "or a local keras-hub preset directory), converts its weights and tokenizer into a "
            "keras-attn model with the same numbers, and writes a keras-attn preset directory "
            "(load it with from_preset, or train / export it like any other)."
        ),
    )
    convert.add_argument("preset", metavar="PRESET",
                         help="a keras-hub preset name or handle, or a keras-hub preset directory")
    convert.add_argument("output", metavar="OUT_DIR", help="where to write the keras-attn preset")
    convert.add_argument("--task", choices=sorted(_CONVERT_TASKS), default="generator",
                         help="the keras-attn task to build (default generator)")
    convert.add_argument("--num-classes", type=_positive_int, metavar="N",
                         help="classifiers: number of classes of the new head")
    convert.add_argument("--sequence-length", type=_positive_int, metavar="N",
                         help="the converted model's sequence length (default the checkpoint's)")
    convert.add_argument("--overwrite", action="store_true",
                         help="replace an existing OUT_DIR")
    convert.set_defaults(handler=_convert)

    prune = commands.add_parser(
        "prune",
        parents=[common],
        help="remove the least important attention heads (Michel et al. 2019)",
        description=(
            "Scores every attention head by the expected gradient of the task's loss with "
            "respect to a mask on the head (on the run's validation data, or --data), removes "
            "the least important share of them (never a layer's last head), prints the heads "
            "kept per layer and the task's metrics before and after, and writes the smaller "
            "model as a preset directory."
        ),
    )
    prune.add_argument("model_dir", metavar="RUN",
                       help="a training output directory or preset directory")
    prune.add_argument("--heads", type=_rate, required=True, metavar="SHARE",
                       help="share of all attention heads to remove, in [0, 1), e.g. 0.3")
    prune.add_argument("--out", required=True, metavar="DIR",
                       help="where to write the pruned model (a preset directory)")
    prune.add_argument(
        "--data", metavar="SPEC",
        help="score on this data instead of the run's: a built-in dataset name (its "
             "validation split), a YAML mapping or a YAML file holding one",
    )
    prune.add_argument("--data-path", metavar="PATH",
                       help="score on your own file (same formats as train --data-path)")
    prune.add_argument("--split", help="the split of --data to use")
    prune.add_argument("--num-examples", type=_positive_int, metavar="N",
                       help="load at most N examples of --data")
    prune.add_argument("--batch-size", type=_positive_int, default=32, metavar="N",
                       help="batch size of the importance pass (default 32)")
    prune.add_argument("--overwrite", action="store_true",
                       help="replace an existing --out directory")
    prune.set_defaults(handler=_prune)

    serve_check = commands.add_parser(
        "serve-check",
        parents=[common],
        help="load an export in a fresh TensorFlow-only process and run sample inputs",
        description=(
            "Loads EXPORT_DIR in a new Python process in which Keras and keras-attn cannot be "
            "imported, calls a signature on the given texts, prints one line per text with the "
            "outputs, and reports load time and call latency on stderr."
        ),
    )
    serve_check.add_argument("export_dir", metavar="EXPORT_DIR",
                             help="a directory written by `keras-attn export`")
    _add_input_options(serve_check, "TEXT", "sample inputs")
    serve_check.add_argument("--signature", default="serving_default",
                             help="signature to call with the texts (default serving_default)")
    serve_check.add_argument("--repeats", type=_positive_int, default=5, metavar="N",
                             help="timed calls after the first one (default 5)")
    serve_check.set_defaults(handler=_serve_check)
    return parser


def _parse(parser, argv):
    """`parser.parse_args`, with texts allowed after options: in
    `translate RUN --beam-width 2 six`, argparse fills TEXT before it reaches
    `six`, so leftover bare words join the command's texts. Unknown options
    still fail as usual."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        command = parser._subparsers._group_actions[0].choices[args.command]
        stray = [item for item in extras if item.startswith("-") and item != "-"]
        if getattr(args, "texts", None) is None or stray:
            command.error(f"unrecognized arguments: {' '.join(stray or extras)}")
        args.texts = [*args.texts, *extras]
    return args


def main(argv=None):
    parser = build_parser()
    args = _parse(parser, argv)
    if not args.debug:
        # TensorFlow's native INFO / WARNING / ERROR logs; Python errors still show.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        _import_library_quietly()
    try:
        return args.handler(args)
    except (ValueError, OSError) as error:
        if args.debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"keras-attn {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if args.debug:
            raise
        hint = "; run the same command again to resume" if args.command == "train" else ""
        print(f"keras-attn {args.command}: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
