"""A recipe's examples: loading each split, hold-outs from the training data,
and classification labels numbered alike in every split."""

import dataclasses

import numpy as np

from keras_attn.data import load_dataset
from keras_attn.models import Task

ROLES = ("train", "validation", "test")
# A held-out split smaller than this is warned about: its scores say little.
MIN_HELD_OUT_EXAMPLES = 10


def _subset(data, indices):
    """The same kind of examples, keeping only `indices`."""
    values = {}
    for field in dataclasses.fields(data):
        value = getattr(data, field.name)
        if field.name in ("sources", "targets", "texts", "labels"):
            value = [value[i] for i in indices]
        values[field.name] = value
    return type(data)(**values)


def _load_spec(spec, role, task, log):
    spec = dict(spec)
    if spec.get("source") == "builtin":
        spec.setdefault("split", role)
    try:
        data = load_dataset(spec, task)
    except ValueError as error:
        raise ValueError(f"data.{role}: {error}") from None
    except OSError as error:
        raise OSError(f"data.{role}: {error}") from None
    if len(data) == 0:
        raise ValueError(f"data.{role}: no examples ({spec})")
    where = spec.get("name") or spec.get("path")
    skipped = f", {data.skipped} malformed rows skipped" if data.skipped else ""
    log(f"data.{role}: {len(data)} examples from {spec['source']} {where}{skipped}")
    return data


def _align_labels(data, names, role):
    """Classification labels re-numbered to the training data's `names`."""
    if data.label_names == names:
        return data
    unknown = sorted(set(data.label_names) - set(names))
    if unknown:
        raise ValueError(f"data.{role}: labels {unknown} do not occur in the training data")
    labels = [names.index(data.label_names[label]) for label in data.labels]
    return dataclasses.replace(data, labels=labels, label_names=list(names))


def load_recipe_data(recipe, log=print, roles=ROLES):
    """The recipe's examples: `{"train": ..., "validation": ..., "test": ...}`.

    Splits written `{from_train: share}` are held out of the training
    examples (a random share, fixed by `training.seed`, at least one
    example); a held-out split of fewer than `MIN_HELD_OUT_EXAMPLES` (10)
    examples is logged as a warning, since its scores mean little. Built-in specs
    without a `split` take their role's split. Classification labels of
    every split are numbered as in the training data.

    Example:
    >>> from keras_attn.recipes import validate_recipe
    >>> recipe = validate_recipe({"task": "classifier", "preset": "tiny", "data": {
    ...     "train": {"source": "builtin", "name": "sentiment_negation", "num_examples": 40},
    ...     "test": {"from_train": 0.25}}})
    >>> data = load_recipe_data(recipe, log=lambda line: None)
    >>> {role: len(examples) for role, examples in data.items()}
    {'train': 30, 'test': 10}
    >>> data["test"].label_names == data["train"].label_names
    True
    """
    task = Task.for_name(recipe["task"]).data_task
    specs = recipe["data"]
    held = [r for r in ("test", "validation") if r in specs and "from_train" in specs[r]]
    wanted = [r for r in ROLES if r in specs and r in roles]
    result = {}
    if "train" in roles or any(r in held for r in wanted):
        train = _load_spec(specs["train"], "train", task, log)
        if held:
            seed = recipe.get("training", {}).get("seed", 0)
            order = np.random.default_rng(seed).permutation(len(train))
            start = 0
            for role in held:
                count = max(1, round(specs[role]["from_train"] * len(train)))
                result[role] = _subset(train, sorted(order[start : start + count].tolist()))
                start += count
                log(f"data.{role}: {count} examples held out of data.train")
                if count < MIN_HELD_OUT_EXAMPLES:
                    log(f"warning: data.{role} holds out only {count} example"
                        f"{'s' if count != 1 else ''} of the {len(train)} of data.train "
                        f"(fewer than {MIN_HELD_OUT_EXAMPLES}): its scores say little; give "
                        "more training examples or a larger from_train share")
            if start >= len(train):
                raise ValueError("data: the from_train hold-outs leave no training examples")
            train = _subset(train, sorted(order[start:].tolist()))
        result["train"] = train
    for role in wanted:
        if role not in result:
            result[role] = _load_spec(specs[role], role, task, log)
    if task == "classification" and "train" in result:
        names = result["train"].label_names
        for role in result:
            result[role] = _align_labels(result[role], names, role)
    return {role: result[role] for role in ROLES if role in result and role in roles}


def load_split(recipe, role, log=print):
    """One split of a recipe's data (loads the training data only for a hold-out)."""
    return load_recipe_data(recipe, log, roles=(role,))[role]
