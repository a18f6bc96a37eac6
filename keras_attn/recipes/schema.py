"""The recipe file: its schema, strict validation, defaults and overrides.

A recipe is a YAML mapping. Every key is checked: an unknown key or a value of
the wrong type raises a `ValueError` that names the file and the key path,
e.g. `zoo/x.yaml: training.epochs: must be a positive integer (got 'ten')`.

```yaml
task: translator                 # translator | classifier | generator
description: one line for humans
preset: tiny                     # a preset name or a preset directory, or
                                 # keras_hub:gpt2_base_en (a keras-hub checkpoint)
model: {source_length: 32}       # overrides of the preset's arguments
tokenizer: {type: byte}          # or {type: word_piece, vocabulary_size: 8000},
                                 # {type: sentencepiece, vocabulary_size: 8000}
data:                            # keras_attn.data.load_dataset specs
  train: {source: builtin, name: number_words, num_examples: 4000}
  validation: {source: builtin, name: number_words, split: validation}
  test: {from_train: 0.1}        # or hold out a share of the training data
training: {epochs: 6, batch_size: 64, learning_rate: 3.0e-3}   # time_budget: 900 (seconds)
evaluation: {beam_width: 4}
requires: []                     # "download", "accelerator": informational
expected: {metric: bleu, value: 27.3, source: "paper, table 2"}
```

`RECIPE_SCHEMA` below documents every key and its default.
"""

import copy
import inspect
import os
import re

import yaml

from keras_attn.data import allowed_keys
from keras_attn.models import Task
from keras_attn.recipes.distribution import STRATEGIES
from keras_attn.training.callbacks import check_time_budget
from keras_attn.training.compilation import check_jit_compile
from keras_attn.training.precision import PRECISIONS
from keras_attn.utils.arguments import (
    ArgumentError,
    check_boolean,
    check_choice,
    check_fraction,
    check_list_of_choices,
    check_non_negative_int,
    check_number,
    check_positive_int,
    check_positive_number,
    check_rate,
    check_string,
    check_string_list,
    check_unit_interval,
)

# Every ready-made model a recipe can train: each task class says its name.
TASKS = tuple(sorted(Task.registered_tasks()))
REQUIREMENTS = ("download", "accelerator")
_REQUIRED = object()


class _Loader(yaml.SafeLoader):
    """YAML as written by people: `1e-4` is a number (YAML 1.1 wants `1.0e-4`)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def read_yaml(text):
    """Parses YAML text (or a file object) with number-friendly rules."""
    return yaml.load(text, Loader=_Loader)


class _Invalid(Exception):
    """A bad value at a key path; `validate_recipe` turns it into ValueError."""

    def __init__(self, path, message):
        super().__init__(message)
        self.path = path
        self.message = message


def _show(value):
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ------------------------------------------------------------------ checks
# Each check takes `(value, path)` and returns the value, normalized, or
# raises `_Invalid`. The leaf checks are `keras_attn.utils.arguments` checks
# with the key path as the argument name, their findings written the recipe
# way: `training.epochs: must be a positive integer (got 'ten')`.


def _recipe_check(check, *args, convert=None, **kwargs):
    """`check(path, value, *args, **kwargs)` as a recipe check; `convert`
    normalizes the accepted value (e.g. `float`)."""

    def recipe_check(value, path):
        try:
            value = check(path, value, *args, **kwargs)
        except ArgumentError as error:
            raise _Invalid(
                error.name, f"must {error.verb} {error.expected} (got {_show(error.value)})"
            ) from None
        return value if convert is None else convert(value)

    return recipe_check


positive_int = _recipe_check(check_positive_int)
non_negative_int = _recipe_check(check_non_negative_int)
positive_number = _recipe_check(check_positive_number, convert=float)
number = _recipe_check(check_number)
rate = _recipe_check(check_rate)
fraction = _recipe_check(check_fraction)
unit_interval = _recipe_check(check_unit_interval)
boolean = _recipe_check(check_boolean)
string = _recipe_check(check_string)
string_list = _recipe_check(check_string_list)
time_budget = _recipe_check(check_time_budget)
jit_compile = _recipe_check(check_jit_compile)


def choice(*options):
    """One of `options`, listed bare in the message as they are typed in YAML."""
    check = _recipe_check(check_choice, options, show=str)
    check.options = options
    return check


def list_of_choices(*options):
    return _recipe_check(check_list_of_choices, options, show=str)


def free_mapping(value, path):
    """A mapping whose keys are checked elsewhere (model overrides)."""
    if not isinstance(value, dict):
        raise _Invalid(path, f"must be a mapping (got {_show(value)})")
    for key in value:
        if not isinstance(key, str):
            raise _Invalid(path, f"keys must be strings (got {_show(key)})")
    return dict(value)


class Field:
    """One key of a section: its check, default (or required) and meaning."""

    def __init__(self, check, default=None, doc=""):
        self.check = check
        self.default = default
        self.doc = doc

    @property
    def required(self):
        return self.default is _REQUIRED


def section(fields):
    """A mapping with exactly the keys of `fields` (each optional unless required)."""

    def check(value, path):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise _Invalid(path, f"must be a mapping (got {_show(value)})")
        result = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in fields:
                known = ", ".join(fields)
                raise _Invalid(where, f"unknown key (known keys here: {known})")
            result[key] = fields[key].check(item, where)
        for key, field in fields.items():
            if field.required and key not in result:
                raise _Invalid(f"{path}.{key}" if path else key, "is required")
        return result

    check.fields = fields
    return check


# ------------------------------------------------------------------ schema

# Types of the common data-spec keys; which keys a spec may hold is
# `keras_attn.data.allowed_keys(source, task)` plus `from_train`, handled by
# `train_recipe` itself. Values are checked again by `load_dataset`.
DATA_SPEC_TYPES = {
    "source": choice("builtin", "tfds", "files"),
    "task": choice("translation", "classification", "generation"),
    "name": string,
    "path": string,
    "split": string,
    "num_examples": positive_int,
    "seed": non_negative_int,
    "delimiter": string,
    "header": boolean,
    "skip_malformed": boolean,
    "download": boolean,
    "data_dir": string,
    "from_train": fraction,
}


def data_spec(value, path):
    """A `keras_attn.data.load_dataset` spec, or `{from_train: share}`.

    A built-in name alone (`number_words`) stands for `{source: builtin,
    name: number_words}`. Key names are checked against the recipe's task by
    `_check_data_specs`.
    """
    if isinstance(value, str):
        value = {"source": "builtin", "name": value}
    if not isinstance(value, dict):
        raise _Invalid(path, f"must be a data spec mapping or a built-in name (got {_show(value)})")
    spec = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise _Invalid(path, f"keys must be strings (got {_show(key)})")
        check = DATA_SPEC_TYPES.get(key)
        spec[key] = check(item, f"{path}.{key}") if check else item
    if "from_train" in spec:
        if path.endswith(".train"):
            raise _Invalid(f"{path}.from_train", "applies to validation and test only")
        if len(spec) > 1:
            others = ", ".join(k for k in spec if k != "from_train")
            raise _Invalid(f"{path}.from_train", f"stands alone: drop {others}")
    elif "source" not in spec:
        raise _Invalid(f"{path}.source", "is required: builtin, tfds or files")
    return spec


def _check_data_specs(recipe):
    task = Task.for_name(recipe["task"]).data_task
    for role, spec in recipe["data"].items():
        if "from_train" in spec:
            continue
        if spec.get("task", task) != task:
            raise _Invalid(f"data.{role}.task", f"must be {task} for a {recipe['task']} recipe")
        allowed = allowed_keys(spec["source"], task)
        for key in spec:
            if key not in allowed:
                raise _Invalid(
                    f"data.{role}.{key}",
                    f"unknown key for source {spec['source']} ({task}); known keys: "
                    f"{', '.join(allowed)}",
                )


SCHEDULE_SCHEMA = {
    "type": Field(choice("constant", "inverse_sqrt", "cosine"), _REQUIRED,
                  "constant: learning_rate throughout; inverse_sqrt: the Transformer paper's "
                  "warm-up then 1/sqrt(step) decay, scale * d_model^-0.5 * min(...); cosine: "
                  "linear warm-up to learning_rate then cosine decay to alpha * learning_rate"),
    "warmup_steps": Field(non_negative_int, None, "updates of linear warm-up (cosine: 0)"),
    "scale": Field(positive_number, None, "inverse_sqrt: multiplies the whole schedule (1.0)"),
    "decay_steps": Field(positive_int, None, "cosine: updates of the decay (default: the rest "
                                             "of training after the warm-up)"),
    "alpha": Field(rate, None, "cosine: final learning rate as a share of learning_rate (0)"),
}

OPTIMIZER_SCHEMA = {
    "type": Field(choice("adam", "adamw"), "adam", "Adam, or AdamW (decoupled weight decay)"),
    "beta_1": Field(rate, 0.9),
    "beta_2": Field(rate, 0.999),
    "epsilon": Field(positive_number, 1e-7),
    "weight_decay": Field(positive_number, None, "adamw only"),
    "clipnorm": Field(positive_number, None, "clip each gradient to this norm"),
}

TOKENIZER_TYPES = ("byte", "word_piece", "sentencepiece")
# Special tokens plus the 256 byte pieces of SentencePiece's byte fallback.
SENTENCEPIECE_RESERVED_IDS = 7 + 256

TOKENIZER_SCHEMA = {
    "type": Field(choice(*TOKENIZER_TYPES), _REQUIRED,
                  "byte: UTF-8 bytes, no vocabulary; word_piece: trained on the training texts, "
                  "lowercased, spaces around punctuation on output; sentencepiece: trained on "
                  "the training texts, lossless (output text keeps its own spacing and "
                  "punctuation, any character round-trips)"),
    "vocabulary_size": Field(positive_int, None,
                             "word_piece, sentencepiece: the largest vocabulary (sentencepiece: "
                             f"more than {SENTENCEPIECE_RESERVED_IDS}, its special tokens and "
                             "byte pieces)"),
    "lowercase": Field(boolean, None, "word_piece: case-fold the text (true)"),
    "strip_accents": Field(boolean, None, "word_piece: drop accents (false)"),
    "model_type": Field(choice("unigram", "bpe"), None,
                        "sentencepiece: unigram language model (unigram, the default) or "
                        "byte-pair merges (bpe)"),
    "character_coverage": Field(unit_interval, None,
                                "sentencepiece: share of the characters that get pieces of "
                                "their own (0.9995); the rarest are spelled in bytes"),
}

# The tokenizer of translator and generator recipes that train on the user's
# own files and name none: real text, for which the byte tokenizer makes long
# sequences and WordPiece loses the text's spacing around punctuation.
FILES_TOKENIZER = {"type": "sentencepiece", "vocabulary_size": 4000}
BUILTIN_TOKENIZER = {"type": "byte"}


def default_tokenizer(recipe):
    """The `tokenizer` section a recipe without one runs with: sentencepiece
    (`FILES_TOKENIZER`) for a translator or generator whose training data is
    `source: files`, byte otherwise."""
    train = recipe.get("data", {}).get("train", {})
    if recipe.get("task") in ("translator", "generator") and train.get("source") == "files":
        return dict(FILES_TOKENIZER)
    return dict(BUILTIN_TOKENIZER)


RECIPE_SCHEMA = {
    "task": Field(choice(*TASKS), _REQUIRED, "which ready-made model"),
    "description": Field(string, None, "one line for people"),
    "preset": Field(string, _REQUIRED, "a preset name (Model.preset_names()), a preset "
                                       "directory to continue training, or keras_hub:NAME to "
                                       "start from a keras-hub checkpoint (Task.from_keras_hub: "
                                       "a preset name, which keras-hub downloads, or a "
                                       "keras-hub preset directory, keras_hub:/path/to/dir)"),
    "model": Field(free_mapping, {}, "overrides of the preset's backbone / task arguments, "
                                     "e.g. sequence_length, num_layers, dropout; with a "
                                     "keras_hub: preset, the conversion's options only "
                                     "(keras_hub_arguments(task), e.g. sequence_length)"),
    "tokenizer": Field(
        section(TOKENIZER_SCHEMA),
        None,
        "how text becomes ids (ignored with a preset directory, which has its own; refused "
        "with a keras_hub: preset, whose checkpoint brings its own). Without "
        "this section: a sentencepiece tokenizer of up to "
        f"{FILES_TOKENIZER['vocabulary_size']} ids for translator and generator recipes whose "
        "training data are your own files (data.train.source: files), byte otherwise",
    ),
    "data": Field(
        section({
            "train": Field(data_spec, _REQUIRED, "the training examples"),
            "validation": Field(data_spec, None, "evaluated after every epoch (val_loss)"),
            "test": Field(data_spec, None, "scored after training (metrics.json)"),
        }),
        _REQUIRED,
        "keras_attn.data.load_dataset specs; validation / test may be {from_train: share}",
    ),
    "training": Field(
        section({
            "epochs": Field(positive_int, 1),
            "time_budget": Field(time_budget, None,
                                 "seconds of wall-clock time for the run, from its start (data "
                                 "loading and tokenizer training count; a resumed run spends "
                                 "what is left): training stops at the first step past it, "
                                 "then the model is evaluated and saved as usual"),
            "batch_size": Field(positive_int, 32),
            "learning_rate": Field(positive_number, None,
                                   "constant rate, or cosine's peak (default 1e-3)"),
            "schedule": Field(section(SCHEDULE_SCHEMA), {"type": "constant"}),
            "optimizer": Field(section(OPTIMIZER_SCHEMA), {"type": "adam"}),
            "label_smoothing": Field(rate, 0.0),
            "precision": Field(choice(*PRECISIONS), "float32",
                               "the Keras dtype policy while the model is built and trained; "
                               "auto: mixed_bfloat16 where it pays (a GPU, a TPU or a CPU "
                               "with AMX, keras_attn.training.precision.bfloat16_pays), "
                               "float32 elsewhere"),
            "seed": Field(non_negative_int, 0, "weights, shuffling and from_train hold-outs"),
            "jit_compile": Field(jit_compile, "auto",
                                 "compile the training step with XLA: true, false, or auto "
                                 "(on with a GPU or TPU, and on a CPU for models up to 128 wide "
                                 "in float32, 64 in bfloat16, where it was measured to pay: "
                                 "keras_attn.training.compilation)"),
            "bucketing": Field(boolean, True,
                               "batches of similar lengths in a few static widths fitted to "
                               "the data, so a step pays for the tokens it has (the task's "
                               "make_dataset); false pads every batch to the model's lengths"),
            "strategy": Field(choice(*STRATEGIES), "default",
                              "the tf.distribute strategy (keras_attn.recipes.distribution): "
                              "default (one device), mirrored (every GPU of this machine, or "
                              "every logical CPU), multi_worker (the machines TF_CONFIG lists; "
                              "only the chief writes the results) or tpu; batch_size is the "
                              "global batch, split across the replicas"),
            "deterministic": Field(boolean, False,
                                   "tf.config.experimental.enable_op_determinism() for the "
                                   "rest of the process: with the seed, a run (resumed or not) "
                                   "repeats exactly; some ops get slower"),
            "tensorboard": Field(boolean, True, "write tensorboard/ logs (needs tensorboard)"),
        }),
        {},
    ),
    "evaluation": Field(
        section({
            "num_examples": Field(positive_int, None, "score at most this many test examples"),
            "batch_size": Field(positive_int, 64, "examples decoded at once"),
            "samples": Field(non_negative_int, 3, "test outputs kept in metrics.json"),
            "beam_width": Field(positive_int, None, "translator: 1 (default) is greedy"),
            "length_penalty": Field(number, None, "translator: GNMT alpha of beam search (0.6)"),
            "no_repeat_ngram_size": Field(non_negative_int, None,
                                          "translator: never repeat an n-gram of this many "
                                          "tokens in an output (0, the default, is off)"),
            "repetition_penalty": Field(positive_number, None,
                                        "translator: divide the scores of tokens already in "
                                        "the output by this (1.0, the default, is off)"),
            "bleu": Field(boolean, None,
                          "translator: report corpus BLEU (true); BLEU is 0 whenever the "
                          "outputs are shorter than 4 tokens"),
            "bleu_tokenize": Field(string, None, "translator: sacreBLEU tokenizer (13a)"),
            "prompt_length": Field(positive_int, None,
                                   "generator: prompt with the first N characters of each "
                                   "test text and score the exact continuation"),
            "prompt_until": Field(string, None,
                                  "generator: prompt with each test text up to and including "
                                  "this separator and score the exact continuation"),
            "continuation_length": Field(positive_int, None,
                                         "generator: characters of the continuation to score "
                                         "(default: the rest of the text)"),
            "max_new_tokens": Field(positive_int, None,
                                    "generator: most tokens generated per prompt"),
        }),
        {},
    ),
    "requires": Field(list_of_choices(*REQUIREMENTS), [],
                      "informational: download (data or a keras-hub checkpoint from the "
                      "internet), accelerator (a GPU/TPU-sized run)"),
    "expected": Field(
        section({
            "metric": Field(string, _REQUIRED),
            "value": Field(number, _REQUIRED),
            "source": Field(string, _REQUIRED, "where the figure comes from, precisely"),
            "note": Field(string, None),
        }),
        None,
        "a published figure to compare with",
    ),
}

def _task_only_options():
    """`{"evaluation.KEY": task_name}` of every option only one task takes."""
    return {
        f"evaluation.{key}": name
        for name, cls in Task.registered_tasks().items()
        for key in cls.evaluation_options
    }


def _cross_checks(recipe):
    """Checks that involve more than one key."""
    task = recipe["task"]
    for dotted, owner in _task_only_options().items():
        section_name, key = dotted.split(".")
        if key in recipe.get(section_name, {}) and task != owner:
            raise _Invalid(dotted, f"applies to {owner} recipes only (this one is a {task})")
    _check_tokenizer(recipe.get("tokenizer", {}))
    training = recipe.get("training", {})
    schedule = training.get("schedule", {})
    kind = schedule.get("type", "constant")
    if kind == "inverse_sqrt" and "learning_rate" in training:
        raise _Invalid(
            "training.learning_rate",
            "is not used with schedule inverse_sqrt (its peak is scale * (d_model * "
            "warmup_steps)^-0.5): drop it or use schedule.scale",
        )
    for key, kinds in (("warmup_steps", ("inverse_sqrt", "cosine")), ("scale", ("inverse_sqrt",)),
                       ("decay_steps", ("cosine",)), ("alpha", ("cosine",))):
        if key in schedule and kind not in kinds:
            raise _Invalid(f"training.schedule.{key}", f"applies to {' / '.join(kinds)} only")
    if kind == "inverse_sqrt" and not schedule.get("warmup_steps"):
        raise _Invalid("training.schedule.warmup_steps", "must be set (> 0) for inverse_sqrt")
    optimizer = training.get("optimizer", {})
    if "weight_decay" in optimizer and optimizer.get("type", "adam") != "adamw":
        raise _Invalid("training.optimizer.weight_decay", "applies to type adamw only")
    evaluation = recipe.get("evaluation", {})
    if "prompt_length" in evaluation and "prompt_until" in evaluation:
        raise _Invalid("evaluation.prompt_until", "give prompt_length or prompt_until, not both")
    if "continuation_length" in evaluation and not (
        "prompt_length" in evaluation or "prompt_until" in evaluation
    ):
        raise _Invalid("evaluation.continuation_length", "needs prompt_length or prompt_until")
    data = recipe.get("data", {})
    if "test" not in data and any(k in evaluation for k in ("prompt_length", "prompt_until")):
        raise _Invalid("data.test", "is required to score continuations")


# Which tokenizer types each tokenizer key applies to.
_TOKENIZER_KEY_TYPES = {
    "vocabulary_size": ("word_piece", "sentencepiece"),
    "lowercase": ("word_piece",),
    "strip_accents": ("word_piece",),
    "model_type": ("sentencepiece",),
    "character_coverage": ("sentencepiece",),
}


def _check_tokenizer(tokenizer):
    kind = tokenizer.get("type")
    for key, kinds in _TOKENIZER_KEY_TYPES.items():
        if key in tokenizer and kind not in kinds:
            raise _Invalid(f"tokenizer.{key}", f"applies to type {' / '.join(kinds)} only")
    if kind in ("word_piece", "sentencepiece") and "vocabulary_size" not in tokenizer:
        raise _Invalid("tokenizer.vocabulary_size", f"is required with type {kind}")
    size = tokenizer.get("vocabulary_size")
    if kind == "sentencepiece" and size <= SENTENCEPIECE_RESERVED_IDS:
        raise _Invalid(
            "tokenizer.vocabulary_size",
            f"must be more than {SENTENCEPIECE_RESERVED_IDS} with type sentencepiece (7 "
            f"special tokens and 256 byte pieces) (got {size})",
        )


def _check_model_section(recipe):
    """`model` keys must be arguments of the preset's backbone or task (of
    the keras-hub conversion with a `keras_hub:` preset)."""
    overrides = recipe.get("model", {})
    if not overrides:
        return
    preset = recipe["preset"]
    if keras_hub_preset(preset) is not None:
        known = keras_hub_arguments(recipe["task"])
        for key in overrides:
            if key not in known:
                raise _Invalid(
                    f"model.{key}",
                    f"is not an option of a keras-hub checkpoint's conversion into a "
                    f"{recipe['task']}, whose architecture the checkpoint fixes (known: "
                    f"{', '.join(sorted(known))})",
                )
        return
    if os.path.isdir(preset):
        key = next(iter(overrides))
        raise _Invalid(
            f"model.{key}",
            f"overrides apply to preset names only; {preset!r} is a preset directory, "
            "which keeps its own architecture",
        )
    known = model_arguments(recipe["task"])
    for key in overrides:
        if key not in known:
            raise _Invalid(
                f"model.{key}",
                f"unknown argument of a {recipe['task']} (known: {', '.join(sorted(known))})",
            )


def _task_arguments(cls):
    names = set(inspect.signature(cls.__init__).parameters)
    return names - {"self", "kwargs", "backbone", *cls.tokenizer_names}


def model_arguments(task):
    """Names a recipe's `model` section may set: backbone and task arguments."""
    cls = Task.for_name(task)
    return cls.backbone_arguments() | _task_arguments(cls)


KERAS_HUB_PREFIX = "keras_hub:"


def keras_hub_preset(preset):
    """The keras-hub preset (name or directory) of `keras_hub:NAME`; None for
    any other preset."""
    if isinstance(preset, str) and preset.startswith(KERAS_HUB_PREFIX):
        return preset[len(KERAS_HUB_PREFIX):]
    return None


def keras_hub_tasks():
    """Names of the tasks a `keras_hub:` preset can build (`from_keras_hub`)."""
    return sorted(name for name, cls in Task.registered_tasks().items()
                  if hasattr(cls, "from_keras_hub"))


def keras_hub_arguments(task):
    """Names a recipe's `model` section may set with a `keras_hub:` preset:
    the options of `<Task>.from_keras_hub` (e.g. `sequence_length`), the
    task's own arguments it passes on (e.g. a classifier's `dropout`) and,
    for a generator, the options of its families' backbone converters (e.g.
    GPT-2's `dropout`; a family refuses another's at build time)."""
    cls = Task.for_name(task)
    names = set(inspect.signature(cls.from_keras_hub).parameters)
    names -= {"cls", "preset_or_model", "tokenizer", "kwargs"}
    names |= _task_arguments(cls)
    if task == "generator":
        from keras_attn.models.generator import KERAS_HUB_CONVERTERS

        for convert_backbone, _ in KERAS_HUB_CONVERTERS.values():
            names |= set(list(inspect.signature(convert_backbone).parameters)[1:])
    return names


# -------------------------------------------------------------- public API


def _error(source, error):
    where = f"{source}: " if source else ""
    return ValueError(f"{where}{error.path}: {error.message}")


def _resolve_paths(recipe, base_dir):
    """Relative data paths and preset directories, made absolute from `base_dir`."""
    for spec in recipe.get("data", {}).values():
        for key in ("path", "data_dir"):
            if isinstance(spec.get(key), str) and not os.path.isabs(spec[key]):
                spec[key] = os.path.normpath(os.path.join(base_dir, spec[key]))
    preset = recipe.get("preset")
    hub_preset = keras_hub_preset(preset)
    prefix = KERAS_HUB_PREFIX if hub_preset is not None else ""
    preset = hub_preset if hub_preset is not None else preset
    if isinstance(preset, str) and preset and not os.path.isabs(preset):
        candidate = os.path.join(base_dir, preset)
        if os.path.isdir(candidate):
            recipe["preset"] = prefix + os.path.normpath(candidate)


def _check_preset(recipe):
    preset = recipe["preset"]
    hub_preset = keras_hub_preset(preset)
    if hub_preset is not None:
        tasks = keras_hub_tasks()
        if recipe["task"] not in tasks:
            raise _Invalid(
                "preset",
                f"keras_hub: presets build {', '.join(tasks)} recipes (a {recipe['task']} "
                "cannot be converted from keras-hub)",
            )
        if not hub_preset.strip():
            raise _Invalid("preset", "keras_hub: must be followed by a keras-hub preset name "
                                     "or directory, e.g. keras_hub:gpt2_base_en")
        if "tokenizer" in recipe:
            raise _Invalid(
                "tokenizer",
                f"does not apply to a keras_hub: preset ({hub_preset!r} brings its "
                "checkpoint's tokenizer): drop this section",
            )
        return
    names = Task.for_name(recipe["task"]).preset_names()
    if preset not in names and not os.path.isdir(preset):
        raise _Invalid(
            "preset",
            f"must be a {recipe['task']} preset name ({', '.join(names)}) or a preset "
            f"directory (got {_show(preset)})",
        )


def validate_recipe(recipe, source=None, base_dir=None):
    """Checks a recipe mapping; returns a normalized copy (defaults not filled).

    Args:
        recipe: the mapping read from a recipe file.
        source: named in errors (the file path).
        base_dir: relative data `path`s and preset directories are taken
            from here (the recipe file's folder); default: as given.

    Raises:
        ValueError: `"<source>: <key.path>: <what is wrong>"`.

    Example:
    >>> recipe = {"task": "generator", "preset": "tiny", "data": {"train": "alphabet_runs"}}
    >>> validate_recipe(recipe)["data"]  # a built-in name becomes a data spec
    {'train': {'source': 'builtin', 'name': 'alphabet_runs'}}
    >>> validate_recipe({**recipe, "training": {"epochs": 0}}, source="my.yaml")
    Traceback (most recent call last):
    ...
    ValueError: my.yaml: training.epochs: must be a positive integer (got 0)
    """
    if not isinstance(recipe, dict):
        raise ValueError(
            f"{source or 'recipe'}: must be a YAML mapping of recipe keys (got {_show(recipe)})"
        )
    try:
        checked = section(RECIPE_SCHEMA)(copy.deepcopy(recipe), "")
        if base_dir is not None:
            _resolve_paths(checked, base_dir)
        _check_preset(checked)
        _cross_checks(checked)
        _check_data_specs(checked)
        _check_model_section(checked)
    except _Invalid as error:
        raise _error(source, error) from None
    return checked


def load_recipe(path):
    """Reads and validates a recipe file (YAML); returns the recipe dict.

    Raises:
        ValueError: naming the file and the key path of the first problem.
        OSError: the file cannot be read.

    Example:
    >>> with open("recipe.yaml", "w", encoding="utf-8") as f:
    ...     _ = f.write("task: generator\\npreset: tiny\\ndata:\\n  train: alphabet_runs\\n")
    >>> recipe = load_recipe("recipe.yaml")
    >>> recipe["task"], recipe["data"]
    ('generator', {'train': {'source': 'builtin', 'name': 'alphabet_runs'}})
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise OSError(f"recipe {path!r} does not exist or is not a file")
    with open(path, encoding="utf-8") as handle:
        try:
            recipe = read_yaml(handle)
        except yaml.YAMLError as error:
            first = " ".join(str(error).split())
            raise ValueError(f"{path}: not valid YAML: {first}") from None
    return validate_recipe(recipe, source=path, base_dir=os.path.dirname(os.path.abspath(path)))


def parse_override(text):
    """`"training.epochs=2"` -> `("training.epochs", "2")`: a `--set` argument
    split at its first `=`. The value stays text; `apply_overrides` reads it
    as YAML.

    Example:
    >>> parse_override("training.epochs=2")
    ('training.epochs', '2')
    >>> recipe = {"task": "generator", "preset": "tiny", "data": {"train": "alphabet_runs"}}
    >>> apply_overrides(recipe, dict([parse_override("training.epochs=2")]))["training"]
    {'epochs': 2}
    """
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like KEY=VALUE, e.g. training.epochs=2")
    key, value = text.split("=", 1)
    return key.strip(), value


def parse_value(value):
    """A command-line value read as YAML (`"2"` -> 2); unreadable text stays text."""
    if not isinstance(value, str):
        return value
    try:
        return read_yaml(value) if value.strip() else value
    except yaml.YAMLError:
        return value


def apply_overrides(recipe, overrides, source=None):
    """A copy of `recipe` with dotted keys replaced, validated again.

    Args:
        recipe: a recipe dict (e.g. from `load_recipe`).
        overrides: `{"training.epochs": 2, "data.train.path": "x.tsv"}`;
            string values are read as YAML, so `"2"` is the integer 2,
            `"true"` a bool and `"{type: byte}"` a mapping; `None` (or
            `"null"`) removes the key.
        source: named in errors.

    Returns:
        The new recipe dict.

    Example:
    >>> recipe = {"task": "generator", "preset": "tiny", "data": {"train": "alphabet_runs"}}
    >>> changed = apply_overrides(recipe, {"training.epochs": "3", "model.num_layers": 1})
    >>> changed["training"], changed["model"]
    ({'epochs': 3}, {'num_layers': 1})
    >>> apply_overrides(recipe, {"training.epochs": "none"})
    Traceback (most recent call last):
    ...
    ValueError: overrides: training.epochs: must be a positive integer (got 'none')
    """
    result = copy.deepcopy(recipe)
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if not all(parts):
            raise ValueError(f"override key {dotted!r} must be dotted names, e.g. training.epochs")
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif isinstance(child, str) and parts[: depth + 1][0] == "data":
                # A data spec written as a built-in name.
                child = node[part] = {"source": "builtin", "name": child}
            elif not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ValueError(
                    f"override {dotted!r}: {where} is {_show(child)}, not a mapping"
                )
            node = child
        value = parse_value(value)
        if value is None:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return validate_recipe(result, source=source or "overrides")


def with_defaults(recipe):
    """The recipe with every section's defaults filled in (what is run).

    A recipe without a `tokenizer` section gets `default_tokenizer(recipe)`,
    unless its preset is a keras-hub checkpoint's (which brings its own).

    Example:
    >>> recipe = {"task": "generator", "preset": "tiny", "data": {"train": "alphabet_runs"}}
    >>> full = with_defaults(validate_recipe(recipe))
    >>> full["training"]["epochs"], full["training"]["batch_size"], full["tokenizer"]
    (1, 32, {'type': 'byte'})
    """
    result = _fill(recipe, RECIPE_SCHEMA)
    if "tokenizer" not in result and keras_hub_preset(result.get("preset")) is None:
        result["tokenizer"] = _fill(default_tokenizer(recipe), TOKENIZER_SCHEMA)
    return result


def _fill(value, fields):
    result = {}
    for key, field in fields.items():
        if key in value:
            item = value[key]
        elif field.required or field.default is None:
            continue
        else:
            item = copy.deepcopy(field.default)
        inner = getattr(field.check, "fields", None)
        result[key] = _fill(item, inner) if inner is not None and item is not None else item
    return result
