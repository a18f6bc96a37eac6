"""Scoring a trained model on held-out data, the same way for `train_recipe`
and `keras-attn evaluate`.

- translator: `exact_match` (output == reference) and `bleu` (sacreBLEU
  corpus BLEU, unless `bleu: false`);
- classifier: `accuracy`;
- generator: `perplexity` and `loss` per real token; with `prompt_length` or
  `prompt_until`, also `continuation_accuracy` (exact continuations).

Every result also holds `examples` (how many were scored) and `samples`
(a few outputs, as strings).
"""

import json
import math
import os

import numpy as np

from keras_attn.recipes.schema import (
    RECIPE_SCHEMA,
    TASKS,
    _cross_checks,
    _Invalid,
    data_spec,
    model_class,
)

PRESET_DIR = "preset"
METRICS_FILE = "metrics.json"


def in_batches(function, items, batch_size):
    """`function` over `items` in chunks of exactly `batch_size` (the last one
    padded with repeats), so a compiled decoding loop is traced once."""
    outputs = []
    for start in range(0, len(items), batch_size):
        chunk = list(items[start : start + batch_size])
        real = len(chunk)
        if len(items) > batch_size:
            chunk += [chunk[0]] * (batch_size - real)
        outputs.extend(function(chunk)[:real])
    return outputs


def _limit(options, count):
    limit = options.get("num_examples")
    return count if limit is None else min(count, limit)


def evaluate_translator(model, data, options):
    count = _limit(options, len(data.sources))
    sources, references = data.sources[:count], data.targets[:count]
    beam_width = options.get("beam_width") or 1
    length_penalty = options.get("length_penalty")
    length_penalty = 0.6 if length_penalty is None else length_penalty
    outputs = in_batches(
        lambda chunk: model.translate(chunk, beam_width=beam_width, length_penalty=length_penalty),
        sources,
        options.get("batch_size") or 64,
    )
    from keras_attn.training import corpus_bleu

    metrics = {"exact_match": float(np.mean([o == r for o, r in zip(outputs, references)]))}
    if options.get("bleu", True):
        tokenize = options.get("bleu_tokenize") or "13a"
        metrics["bleu"] = corpus_bleu(outputs, references, tokenize=tokenize)
    metrics.update(beam_width=beam_width, examples=count)
    samples = [
        f"{s!r} -> {o!r} (reference {r!r})"
        for s, o, r in zip(sources, outputs, references)
    ]
    return metrics, samples


def evaluate_classifier(model, data, options):
    count = _limit(options, len(data.texts))
    texts, labels = data.texts[:count], list(data.labels[:count])
    predicted, probabilities = model.classify(texts, batch_size=options.get("batch_size") or 64)
    if model.label_names:
        unknown = sorted(set(data.label_names) - set(model.label_names))
        if unknown:
            raise ValueError(
                f"the data has labels {unknown} that the model does not know "
                f"(its labels: {model.label_names})"
            )
        truth = [data.label_names[label] for label in labels]
    else:
        truth = labels
    metrics = {
        "accuracy": float(np.mean([p == t for p, t in zip(predicted, truth)])),
        "examples": count,
    }
    samples = [
        f"{text!r} -> {p} ({probabilities[i].max():.2f}; true {t})"
        for i, (text, p, t) in enumerate(zip(texts, predicted, truth))
    ]
    return metrics, samples


def _token_scores(model, texts, batch_size):
    """Loss and perplexity per real token of `texts` (every text counted)."""
    import keras

    from keras_attn.training import MaskedSparseCategoricalCrossentropy, Perplexity

    batch_size = min(batch_size, len(texts))
    whole = len(texts) - len(texts) % batch_size
    dataset = model.make_dataset(texts[:whole], batch_size=batch_size, shuffle=False)
    if whole < len(texts):
        rest = model.make_dataset(texts[whole:], batch_size=batch_size, shuffle=False)
        dataset = dataset.concatenate(rest)
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=MaskedSparseCategoricalCrossentropy(),
        metrics=[Perplexity()],
    )
    scores = model.evaluate(dataset, verbose=0, return_dict=True)
    return float(scores["loss"]), float(scores["perplexity"])


def _continuation_pairs(texts, options):
    """(prompt, expected continuation) of each text the options can split."""
    until = options.get("prompt_until")
    prompt_length = options.get("prompt_length")
    length = options.get("continuation_length")
    pairs = []
    for text in texts:
        if until is not None:
            cut = text.find(until)
            if cut < 0:
                continue
            cut += len(until)
        else:
            cut = prompt_length
        prompt, rest = text[:cut], text[cut:]
        if not prompt or not rest or (length is not None and len(rest) < length):
            continue
        pairs.append((prompt, rest if length is None else rest[:length]))
    return pairs


def evaluate_generator(model, data, options):
    count = _limit(options, len(data.texts))
    texts = data.texts[:count]
    batch_size = options.get("batch_size") or 64
    loss, perplexity = _token_scores(model, texts, batch_size)
    metrics = {"perplexity": perplexity, "loss": loss, "examples": count}
    sequence_length = model.backbone.sequence_length
    length = options.get("continuation_length")
    pairs = []
    if options.get("prompt_length") or options.get("prompt_until"):
        pairs = _continuation_pairs(texts, options)
        if not pairs:
            raise ValueError(
                "no test text can be split into a prompt and a continuation with "
                "evaluation.prompt_length / prompt_until"
            )
        needed = length or max(len(rest.encode("utf-8")) for _, rest in pairs) + 1
        max_new_tokens = min(options.get("max_new_tokens") or needed, sequence_length - 1)
        outputs = in_batches(
            lambda chunk: model.generate(
                chunk,
                max_new_tokens=max_new_tokens,
                stop_token_ids=None if length else "eos",
            ),
            [prompt for prompt, _ in pairs],
            batch_size,
        )
        if length:
            outputs = [output[:length] for output in outputs]
        metrics["continuation_accuracy"] = float(
            np.mean([o == rest for o, (_, rest) in zip(outputs, pairs)])
        )
        metrics["continuation_examples"] = len(pairs)
        samples = [f"{p!r} -> {o!r} (expected {r!r})" for o, (p, r) in zip(outputs, pairs)]
    else:
        prompts = [text[: max(1, len(text) // 2)] for text in texts[: options.get("samples", 3)]]
        max_new_tokens = min(options.get("max_new_tokens") or 32, sequence_length - 1)
        outputs = model.generate(prompts, max_new_tokens=max_new_tokens) if prompts else []
        samples = [f"{p!r} -> {o!r}" for p, o in zip(prompts, outputs)]
    return metrics, samples


_EVALUATORS = {
    "translator": evaluate_translator,
    "classifier": evaluate_classifier,
    "generator": evaluate_generator,
}


def evaluate_task(model, task, data, options):
    """Scores `model` on `data`; returns the metrics dict (with `samples`)."""
    metrics, samples = _EVALUATORS[task](model, data, options)
    metrics["samples"] = samples[: options.get("samples", 3)]
    return metrics


# ---------------------------------------------------------- evaluate_model


def find_preset_dir(path):
    """A preset directory, given it or a `train_recipe` output directory."""
    path = os.fspath(path)
    inner = os.path.join(path, PRESET_DIR)
    if os.path.isfile(os.path.join(inner, "config.json")):
        return inner
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    if not os.path.isdir(path):
        raise OSError(f"model directory {path!r} does not exist")
    raise ValueError(
        f"{path!r} is neither a preset directory (config.json) nor a training output "
        f"directory (preset/config.json)"
    )


def preset_task(preset_dir):
    """`"translator"`, `"classifier"` or `"generator"`: what a preset directory holds."""
    with open(os.path.join(preset_dir, "config.json"), encoding="utf-8") as handle:
        saved = json.load(handle).get("task", "")
    name = saved.split(">")[-1].lower()
    if name not in TASKS:
        raise ValueError(
            f"{preset_dir!r} holds a {saved!r} model; keras-attn evaluates translator, "
            "classifier and generator models"
        )
    return name


def load_model(path, task=None):
    """`(model, task)` from a preset directory or a training output directory."""
    preset_dir = find_preset_dir(path)
    saved_task = preset_task(preset_dir)
    if task is not None and task != saved_task:
        raise ValueError(f"{path!r} holds a {saved_task}, not a {task}")
    return model_class(saved_task).from_preset(preset_dir), saved_task


def recorded_run(path):
    """The `metrics.json` of a training output directory, or None."""
    metrics_path = os.path.join(os.fspath(path), METRICS_FILE)
    if not os.path.isfile(metrics_path):
        return None
    with open(metrics_path, encoding="utf-8") as handle:
        return json.load(handle)


def check_evaluation_options(options, task):
    """Validates an `evaluation:` mapping for `task` (ValueError with key paths)."""
    try:
        checked = RECIPE_SCHEMA["evaluation"].check(options or {}, "evaluation")
        _cross_checks({"task": task, "evaluation": checked, "data": {"test": {}}})
    except _Invalid as error:
        raise ValueError(f"{error.path}: {error.message}") from None
    return checked


# Evaluation options that describe the recipe's own test texts.
_DATA_SPECIFIC = ("prompt_length", "prompt_until", "continuation_length", "num_examples")


def evaluate_model(model_dir_or_preset, data=None, task=None, evaluation=None, log=None):
    """Scores a saved model on a dataset; returns the metrics dict.

    Args:
        model_dir_or_preset: a preset directory (`save_to_preset`) or a
            `train_recipe` output directory.
        data: a `keras_attn.data.load_dataset` spec dict, or a built-in
            dataset name (its `test` split). Default, for a training output
            directory: the test data of the recipe it ran.
        task: `"translator"`, `"classifier"` or `"generator"`, checked
            against the saved model (default: whatever it is).
        evaluation: options as in a recipe's `evaluation:` section. For a
            training output directory they replace the recipe's own options
            one by one (of which only the data-independent ones are kept when
            `data` is given).
        log: where progress lines go (default: nowhere).

    Returns:
        `{metric: value, ..., "examples": n, "samples": [...]}`; see
        `keras_attn.recipes.evaluation` for the metrics of each task.
    """
    from keras_attn.recipes.train import load_split

    log = log or (lambda *_: None)
    model, task = load_model(model_dir_or_preset, task)
    run = recorded_run(model_dir_or_preset)
    recipe = (run or {}).get("recipe")
    options = {}
    if recipe and recipe.get("task") == task:
        options = dict(recipe.get("evaluation", {}))
        if data is not None:
            # How the recipe's test texts split into prompts says nothing of other data.
            for key in _DATA_SPECIFIC:
                options.pop(key, None)
    evaluation = dict(evaluation or {})
    for key, excluded in (("prompt_until", "prompt_length"), ("prompt_length", "prompt_until")):
        if key in evaluation:
            options.pop(excluded, None)
    options = check_evaluation_options({**options, **evaluation}, task)
    if data is None:
        if not recipe or "test" not in recipe.get("data", {}):
            raise ValueError(
                "no data given, and the model directory records no recipe with test data: "
                "pass data (a load_dataset spec or a built-in name)"
            )
        examples = load_split(recipe, "test", log)
    else:
        try:
            spec = data_spec(data, "data")
        except _Invalid as error:
            raise ValueError(f"{error.path}: {error.message}") from None
        if "from_train" in spec:
            raise ValueError("data.from_train: only a recipe's test data can be held out")
        if spec["source"] == "builtin":
            spec.setdefault("split", "test")
        examples = load_split({"task": task, "data": {"test": spec}}, "test", log)
    return evaluate_task(model, task, examples, options)


def describe(metrics):
    """`"exact_match 0.998, bleu 99.2"`: the headline numbers of a metrics dict."""
    formats = {"bleu": "{:.1f}", "perplexity": "{:.4g}", "loss": "{:.4g}"}
    parts = []
    for key, value in metrics.items():
        if isinstance(value, float) and math.isfinite(value):
            parts.append(f"{key} {formats.get(key, '{:.3f}').format(value)}")
    return ", ".join(parts)


__all__ = ["evaluate_model", "evaluate_task", "find_preset_dir", "in_batches", "load_model"]
