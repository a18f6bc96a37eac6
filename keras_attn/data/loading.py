"""`load_dataset(spec)`: one entry point for every data source, driven by a
plain dict (a recipe's `data:` section)."""

import collections.abc
import os

from keras_attn.data import files, tfds_loaders
from keras_attn.data.builtin import BUILTIN_DATASETS, TASKS, load_builtin
from keras_attn.utils.arguments import check_choice, check_positive_int

SOURCES = ("builtin", "tfds", "files")

# Spec keys accepted per (source, task), beyond "source", "task" and
# "num_examples"; each maps to the loader's argument of the same name.
_BUILTIN_KEYS = ("name", "split", "seed")
_TFDS_KEYS = ("name", "split", "data_dir", "download")
_TFDS_TASK_KEYS = {
    "translation": ("source_key", "target_key"),
    "classification": ("text_key", "label_key"),
    "generation": ("text_key", "chunk_characters"),
}
_FILES_TASK_KEYS = {
    "translation": (
        "path", "delimiter", "header", "skip_malformed", "source_column", "target_column",
        "num_columns", "quoted",
    ),
    "classification": (
        "path", "delimiter", "header", "skip_malformed", "label_column", "text_column",
        "label_names", "num_columns", "quoted",
    ),
    "generation": ("path", "unit", "skip_empty", "skip_malformed"),
}
_TFDS_LOADERS = {
    "translation": tfds_loaders.load_tfds_translation,
    "classification": tfds_loaders.load_tfds_classification,
    "generation": tfds_loaders.load_tfds_text,
}
_FILE_READERS = {
    "translation": files.read_translation_pairs,
    "classification": files.read_classification,
    "generation": files.read_text,
}


def allowed_keys(source, task):
    """The spec keys `load_dataset` accepts for a source and task.

    Example:
    >>> allowed_keys("builtin", "translation")
    ('source', 'task', 'num_examples', 'name', 'split', 'seed')
    """
    check_choice("source", source, SOURCES)
    check_choice("task", task, TASKS)
    if source == "builtin":
        specific = _BUILTIN_KEYS
    elif source == "tfds":
        specific = _TFDS_KEYS + _TFDS_TASK_KEYS[task]
    else:
        specific = _FILES_TASK_KEYS[task]
    return ("source", "task", "num_examples") + specific


def load_dataset(spec, task=None, base_dir=None):
    """Loads the data a spec dict describes.

    Keys of `spec` (any other key is a `ValueError` listing the allowed ones):

    - `source` (required): "builtin", "tfds" or "files".
    - `task`: "translation", "classification" or "generation". Required for
      "tfds" and "files" (here or as the `task` argument); for "builtin" it
      is the dataset's own task, and a different one is an error.
    - `num_examples`: a positive int. builtin: examples generated (default:
      the split's size); tfds: the first `num_examples` (`max_examples`);
      files: the first `num_examples` good rows.

    source "builtin" (see `load_builtin`): `name` (required, a key of
    `BUILTIN_DATASETS`), `split` ("train" / "validation" / "test"), `seed`.

    source "tfds" (see `load_tfds_translation`, `load_tfds_classification`,
    `load_tfds_text`): `name` (default per task: "ted_hrlr_translate/pt_to_en",
    "imdb_reviews", "tiny_shakespeare"), `split`, `data_dir`, `download`,
    and per task: translation `source_key`, `target_key`; classification
    `text_key`, `label_key`; generation `text_key`, `chunk_characters`.

    source "files" (see `read_translation_pairs`, `read_classification`,
    `read_text`): `path` (required; a relative path is taken relative to
    `base_dir` when given), and per task: translation `delimiter`, `header`,
    `skip_malformed`, `source_column`, `target_column`, `num_columns`,
    `quoted`; classification `delimiter`, `header`, `skip_malformed`,
    `label_column`, `text_column`, `label_names`, `num_columns`, `quoted`;
    generation `unit`, `skip_empty`, `skip_malformed`.

    Args:
        spec: the dict.
        task: the task the caller needs; must agree with `spec["task"]`.
        base_dir: directory that relative `path`s are relative to (e.g. the
            recipe file's directory).

    Returns:
        `TranslationData`, `ClassificationData` or `TextData`.

    Example:
    >>> data = load_dataset({"source": "builtin", "name": "dates", "split": "test",
    ...                      "num_examples": 100})
    >>> len(data), data.sources[0], data.targets[0]
    (100, 'december one, two thousand eighty', '2080-12-01')
    >>> os.makedirs("recipes", exist_ok=True)
    >>> with open("recipes/reviews.csv", "w", encoding="utf-8") as f:
    ...     _ = f.write('label,text\\npositive,a fine film\\nnegative,"dull, too long"\\n')
    >>> data = load_dataset({"source": "files", "task": "classification",
    ...                      "path": "reviews.csv", "header": True}, base_dir="recipes/")
    >>> data.texts, data.labels, data.label_names
    (['a fine film', 'dull, too long'], [1, 0], ['negative', 'positive'])
    """
    if not isinstance(spec, collections.abc.Mapping):
        raise ValueError(f"`spec` must be a dict. Received: spec={spec!r}")
    spec = dict(spec)
    if "source" not in spec:
        raise ValueError(
            f"`spec` must have a 'source' key, one of {list(SOURCES)}. Received: spec={spec!r}"
        )
    source = check_choice("source", spec.pop("source"), SOURCES)
    task = _resolve_task(source, spec, task)
    allowed = allowed_keys(source, task)
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise ValueError(
            f"Unknown keys {unknown} in the dataset spec for source={source!r}, "
            f"task={task!r}. Allowed keys: {sorted(allowed)}"
        )
    spec.pop("task", None)
    num_examples = check_positive_int(
        "num_examples", spec.pop("num_examples", None), allow_none=True
    )
    if source == "builtin":
        return load_builtin(num_examples=num_examples, **spec)
    if source == "tfds":
        return _TFDS_LOADERS[task](max_examples=num_examples, **spec)
    if "path" not in spec:
        raise ValueError(f"`spec` must have a 'path' key for source='files'. Received: {spec}")
    if base_dir is not None:
        spec["path"] = os.path.join(base_dir, os.fspath(spec["path"]))
    data = _FILE_READERS[task](**spec)
    return data if num_examples is None else data.take(num_examples)


def _resolve_task(source, spec, task):
    given = [t for t in (spec.get("task"), task) if t is not None]
    for value in given:
        check_choice("task", value, TASKS)
    if len(set(given)) > 1:
        raise ValueError(
            f"`task` and the spec's 'task' must agree. Received: task={task!r}, "
            f"spec task={spec['task']!r}"
        )
    if source == "builtin":
        if "name" not in spec:
            raise ValueError(
                "`spec` must have a 'name' key for source='builtin', one of "
                f"{list(BUILTIN_DATASETS)}. Received: {spec}"
            )
        name = check_choice("name", spec["name"], tuple(BUILTIN_DATASETS))
        own = BUILTIN_DATASETS[name].task
        if given and given[0] != own:
            raise ValueError(
                f"Built-in dataset {name!r} is a {own} dataset. Received: task={given[0]!r}"
            )
        return own
    if not given:
        raise ValueError(
            f"`task` must be given for source={source!r} (in the spec or as an argument), "
            f"one of {list(TASKS)}. Received: spec={spec}"
        )
    return given[0]
