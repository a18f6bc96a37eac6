"""Data for the ready-made models, as plain Python lists.

Every loader returns `TranslationData(sources, targets)`,
`ClassificationData(texts, labels, label_names)` or `TextData(texts)`, which
the models' `make_dataset` takes as they are:

- built-in tasks generated on the fly: `load_builtin`, `BUILTIN_DATASETS`,
  and their generators as plain functions (`number_words`, `dates`,
  `sentiment_with_negation`, `alphabet_runs`, `sorted_letters`, ...);
- TensorFlow Datasets: `load_tfds_translation`, `load_tfds_classification`,
  `load_tfds_text`;
- your files: `read_translation_pairs`, `read_classification`, `read_text`;
- any of them from a dict (a recipe): `load_dataset`;
- length-bucketed `tf.data` batches: `length_buckets`, `bucketed_batches`,
  `choose_boundaries`.
"""

from keras_attn.data.bucketing import (
    REMAINDERS,
    bucket_datasets,
    bucketed_batches,
    choose_boundaries,
    choose_group_boundaries,
    length_buckets,
)
from keras_attn.data.builtin import (
    BUILTIN_DATASETS,
    SPLITS,
    TASKS,
    BuiltinDataset,
    load_builtin,
    split_seed,
)
from keras_attn.data.examples import ClassificationData, LoadReport, TextData, TranslationData
from keras_attn.data.files import read_classification, read_text, read_translation_pairs
from keras_attn.data.loading import SOURCES, allowed_keys, load_dataset
from keras_attn.data.synthetic import (
    DATE_TEMPLATES,
    alphabet_runs,
    date_to_words,
    dates,
    number_to_words,
    number_words,
    ordinal_words,
    sentiment_with_negation,
    sorted_letters,
    year_to_words,
)
from keras_attn.data.tfds_loaders import (
    chunk_lines,
    load_tfds_classification,
    load_tfds_text,
    load_tfds_translation,
)

__all__ = [
    "BUILTIN_DATASETS",
    "BuiltinDataset",
    "ClassificationData",
    "DATE_TEMPLATES",
    "LoadReport",
    "REMAINDERS",
    "SOURCES",
    "SPLITS",
    "TASKS",
    "TextData",
    "TranslationData",
    "allowed_keys",
    "alphabet_runs",
    "bucket_datasets",
    "bucketed_batches",
    "choose_boundaries",
    "choose_group_boundaries",
    "chunk_lines",
    "date_to_words",
    "dates",
    "length_buckets",
    "load_builtin",
    "load_dataset",
    "load_tfds_classification",
    "load_tfds_text",
    "load_tfds_translation",
    "number_to_words",
    "number_words",
    "ordinal_words",
    "read_classification",
    "read_text",
    "read_translation_pairs",
    "sentiment_with_negation",
    "sorted_letters",
    "split_seed",
    "year_to_words",
]
