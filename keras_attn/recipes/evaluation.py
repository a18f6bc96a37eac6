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

import keras

from keras_attn.models import Task
from keras_attn.models.evaluation import in_batches
from keras_attn.recipes.recipe_data import load_split
from keras_attn.recipes.schema import (
    RECIPE_SCHEMA,
    _cross_checks,
    _Invalid,
    data_spec,
)

PRESET_DIR = "preset"
METRICS_FILE = "metrics.json"


def evaluate_task(model, data, options):
    """Scores `model` on `data` with its own `evaluate_data`; returns the
    metrics dict, with a few `samples`."""
    metrics, samples = model.evaluate_data(data, options)
    metrics["samples"] = samples[: options.get("samples", 3)]
    return metrics


# ---------------------------------------------------------- evaluate_model


def find_preset_dir(path):
    """A preset directory, given it or a `train_recipe` output directory.

    Example:
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    >>> generator.save_to_preset("run/preset")  # where train_recipe writes it
    >>> find_preset_dir("run"), find_preset_dir("run/preset")
    ('run/preset', 'run/preset')
    """
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
    """The `task_name` (`"translator"`, ...) of what a preset directory holds."""
    with open(os.path.join(preset_dir, "config.json"), encoding="utf-8") as handle:
        saved = json.load(handle).get("task", "")
    for name, cls in Task.registered_tasks().items():
        if keras.saving.get_registered_name(cls) == saved:
            return name
    raise ValueError(
        f"{preset_dir!r} holds a {saved!r} model; keras-attn evaluates "
        f"{', '.join(sorted(Task.registered_tasks()))} models"
    )


def load_model(path, task=None):
    """`(model, task)` from a preset directory or a training output directory.

    Example:
    >>> from keras_attn.models import Classifier
    >>> classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> classifier.save_to_preset("my_classifier")
    >>> model, task = load_model("my_classifier")
    >>> type(model).__name__, task, model.num_classes
    ('Classifier', 'classifier', 2)
    """
    preset_dir = find_preset_dir(path)
    saved_task = preset_task(preset_dir)
    if task is not None and task != saved_task:
        raise ValueError(f"{path!r} holds a {saved_task}, not a {task}")
    return Task.for_name(saved_task).from_preset(preset_dir), saved_task


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
        task: a `task_name` (`"translator"`, `"classifier"`,
            `"generator"`, `"masked_lm"`), checked
            against the saved model (default: whatever it is).
        evaluation: options as in a recipe's `evaluation:` section. For a
            training output directory they replace the recipe's own options
            one by one (of which only the data-independent ones are kept when
            `data` is given).
        log: where progress lines go (default: nowhere).

    Returns:
        `{metric: value, ..., "examples": n, "samples": [...]}`; see
        `keras_attn.recipes.evaluation` for the metrics of each task.

    Example:
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    >>> generator.save_to_preset("my_generator")
    >>> metrics = evaluate_model(
    ...     "my_generator", {"source": "builtin", "name": "alphabet_runs", "num_examples": 8},
    ...     evaluation={"prompt_length": 3, "continuation_length": 2, "samples": 1})
    >>> sorted(metrics), metrics["examples"], len(metrics["samples"])
    (['continuation_accuracy', 'continuation_examples', 'examples', 'loss', 'perplexity',
     'samples'], 8, 1)
    """
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
    return evaluate_task(model, examples, options)


def describe(metrics):
    """`"exact_match 0.998, bleu 99.2"`: the headline numbers of a metrics dict."""
    formats = {"bleu": "{:.1f}", "perplexity": "{:.4g}", "loss": "{:.4g}"}
    parts = []
    for key, value in metrics.items():
        if isinstance(value, float) and math.isfinite(value):
            parts.append(f"{key} {formats.get(key, '{:.3f}').format(value)}")
    return ", ".join(parts)


__all__ = ["evaluate_model", "evaluate_task", "find_preset_dir", "in_batches", "load_model"]
