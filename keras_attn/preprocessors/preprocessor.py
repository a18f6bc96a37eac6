"""What every task's preprocessor shares: tokenizers, graph-compiled eager
calls, truncation counting, and `tf.data` pipelines over raw text.

A preprocessor is the one path from strings to a model's static-shape inputs
(and from its output ids back to strings). The same TensorFlow graph runs
inside `tf.data` (`make_dataset`), eagerly (`generate`, `translate`,
`classify`) and inside exported SavedModels.
"""

import warnings

import keras

# Preprocessing is TensorFlow string and ragged ops by nature (they run inside
# tf.data and exported graphs), so this package uses `tf` directly.
import tensorflow as tf

from keras_attn.tokenizers import TruncationReport, pack
from keras_attn.tokenizers.inputs import string_batch
from keras_attn.utils.arguments import check_positive_int
from keras_attn.utils.untracked import Untracked

# Texts are preprocessed for the truncation report in chunks of this many, so
# memory stays bounded on large corpora.
_COUNT_CHUNK = 4096


class Preprocessor(keras.layers.Layer):
    """Base class of the task preprocessors.

    Subclasses list their tokenizer attributes in `tokenizer_names` and their
    other constructor arguments in `config_keys`, and implement `call`.
    Calls made eagerly run through a cached `tf.function`, so they execute the
    same graph as `tf.data` and the exports.

    Example (every task builds its own; `count_truncated` gives int32 `(N,)`):
    >>> from keras_attn.models import Generator
    >>> preprocessor = Generator.from_preset("tiny", sequence_length=16, num_layers=1).preprocessor
    >>> isinstance(preprocessor, Preprocessor), preprocessor.config_keys
    (True, ('sequence_length',))
    >>> preprocessor.count_truncated(["abc", "x" * 40]).tolist()  # tokens cut per text
    [0, 25]
    """

    tokenizer_names = ("tokenizer",)
    config_keys = ()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # Inputs are strings and ragged ids: Keras must not convert them.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self._untracked = Untracked()
        self.built = True

    def _graph(self, name, function, *args):
        """`function(*args)`, through a cached `tf.function` when eager."""
        if not tf.executing_eagerly():
            return function(*args)
        functions = self._untracked.functions
        if name not in functions:
            functions[name] = tf.function(function, autograph=False, reduce_retracing=True)
        return functions[name](*args)

    def get_config(self):
        # Written out: Keras' automatic config cannot serialize tokenizers.
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        for name in self.tokenizer_names:
            config[name] = keras.saving.serialize_keras_object(getattr(self, name))
        config.update({key: getattr(self, key) for key in self.config_keys})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for name in cls.tokenizer_names:
            if isinstance(config.get(name), dict):
                config[name] = keras.saving.deserialize_keras_object(config[name])
        return cls(**config)

    def get_build_config(self):
        # Nothing to build: preprocessors have no weights.
        return None

    # ----------------------------------------------------------- truncation

    def count_truncated(self, *columns):
        """Tokens truncation drops from each example: int32 numpy `(N,)`, or a
        tuple of them when `_truncated` returns one per column (sources and
        targets).

        Subclasses implement `_truncated(*batch_columns)`; this runs it over
        `columns` (lists of strings) in bounded chunks.
        """
        columns = tuple(text_column("texts", column) for column in columns)
        batches = list(tf.data.Dataset.from_tensor_slices(columns).batch(_COUNT_CHUNK))
        if not batches:
            batches = [tuple(column[:0] for column in columns)]
        counts = [self._graph("truncated", self._truncated, *batch) for batch in batches]
        return tf.nest.map_structure(
            lambda *parts: tf.concat(parts, axis=0).numpy(), *counts
        )

    def _truncated(self, *columns):
        raise NotImplementedError


def pack_sentence(tokenizer, ids, length):
    """`[BOS] ids [EOS]` packed to `length` with `tokenizer`'s ids: `(token_ids,
    padding_mask, truncated)`, cut at the end with `[EOS]` kept."""
    return pack(
        ids,
        length,
        add_bos=True,
        add_eos=True,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
    )


def text_column(name, texts):
    """A list/array of strings as a 1-D `tf.string` tensor (`ValueError`
    naming `name` for a single string or anything else).

    Example:
    >>> column = text_column("texts", ["a", "bc"])
    >>> tuple(column.shape), column.dtype.name
    ((2,), 'string')
    >>> text_column("texts", "a")
    Traceback (most recent call last):
    ...
    ValueError: `texts` must be a list of strings, not a single string. Received: texts='a'
    """
    if isinstance(texts, str):
        raise ValueError(
            f"`{name}` must be a list of strings, not a single string. "
            f"Received: {name}={texts[:40]!r}"
        )
    column, _ = string_batch(name, list(texts) if not isinstance(texts, tf.Tensor) else texts)
    return column


def report_truncation(truncated, what):
    """A `TruncationReport` of per-row cut counts; warns when anything was cut.

    Example:
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     report = report_truncation(np.array([0, 3, 0]), "texts")
    >>> report.rows_truncated, report.tokens_dropped
    (1, 3)
    >>> print(caught[0].message)  # doctest: +ELLIPSIS
    texts: 1 of 3 rows (33.3%) truncated, 3 tokens dropped ... Raise the model's sequence length...
    """
    report = TruncationReport.from_counts(truncated)
    if report.rows_truncated:
        warnings.warn(
            f"{what}: {report}. Raise the model's sequence length to keep them.", stacklevel=3
        )
    return report


def text_dataset(
    columns, preprocess, batch_size, shuffle=True, seed=0, repeat=1, random_seeds=False
):
    """`tf.data` batches of `preprocess(*batch_columns)` over raw columns.

    Examples are shuffled as raw rows, batched with a static batch size
    (XLA / TPU friendly: the last partial batch is dropped when there is at
    least one whole batch), then preprocessed in the graph.

    Args:
        columns: a tuple of equally long columns (strings, label ids).
        preprocess: a graph function of one batch of each column.
        batch_size: examples per batch.
        shuffle, seed: reshuffled every epoch, reproducibly for a seed.
        repeat: each example appears this many times per epoch.
        random_seeds: also pass `preprocess` a fresh int64 `(2,)` seed per
            batch (new every epoch, reproducible for `seed`), for random
            preprocessing such as masking.

    Returns:
        A `tf.data.Dataset` of `preprocess` outputs, with a static batch
        dimension when there is at least one whole batch.

    Example (three rows in batches of two: the partial batch is dropped):
    >>> dataset = text_dataset(
    ...     (["a", "bb", "ccc"], [0, 1, 0]),
    ...     lambda texts, labels: (tf.strings.length(texts), labels),
    ...     batch_size=2, shuffle=False)
    >>> [(lengths.numpy().tolist(), labels.numpy().tolist()) for lengths, labels in dataset]
    [([1, 2], [0, 1])]
    """
    batch_size = check_positive_int("batch_size", batch_size)
    dataset = tf.data.Dataset.from_tensor_slices(tuple(columns))
    num_examples = int(dataset.cardinality()) * repeat
    if repeat > 1:
        dataset = dataset.repeat(repeat)
    if shuffle:
        dataset = dataset.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    whole_batches = num_examples >= batch_size
    dataset = dataset.batch(batch_size, drop_remainder=whole_batches)
    if random_seeds:
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip(dataset, seeds).map(lambda batch, s: (*batch, s))
    dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if whole_batches:
        # Ragged packing loses the static batch size; XLA and TPUs want it.
        dataset = dataset.map(lambda *element: _with_batch_size(element, batch_size))
    return dataset.prefetch(tf.data.AUTOTUNE)


def _with_batch_size(element, batch_size):
    element = element[0] if len(element) == 1 else element
    return tf.nest.map_structure(
        lambda t: tf.ensure_shape(t, [batch_size, *t.shape[1:]]), element
    )
