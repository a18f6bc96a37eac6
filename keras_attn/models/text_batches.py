"""Text -> static-shape id arrays -> `tf.data` batches, shared by the tasks."""

import warnings

import numpy as np

# tf.data and tf.function are TensorFlow's input pipeline and compiler; the
# models train and decode through them on every backend-agnostic layer.
import tensorflow as tf

from keras_attn.tokenizers import TruncationReport, pack


def tokenize_texts(tokenizer, texts):
    """Token ids of each text, as Python lists."""
    if isinstance(texts, str):
        raise ValueError(
            "`texts` must be a list of strings, not a single string. "
            f"Received: texts={texts[:40]!r}"
        )
    ragged = tokenizer.tokenize(list(texts))
    return [row.tolist() for row in ragged.numpy()] if hasattr(ragged, "numpy") else ragged


def ragged(rows):
    """A `tf.RaggedTensor` of int32 ids from lists of ints."""
    return tf.ragged.constant(rows, dtype="int32", ragged_rank=1, inner_shape=())


def pack_ids(rows, length, tokenizer, add_bos=False, add_eos=False):
    """Pads/truncates id rows to `length`; returns numpy `(ids, mask, truncated)`."""
    ids, mask, truncated = pack(
        ragged(rows),
        length,
        add_bos=add_bos,
        add_eos=add_eos,
        bos_id=tokenizer.bos_id,
        eos_id=tokenizer.eos_id,
        pad_id=tokenizer.pad_id,
    )
    return np.array(ids), np.array(mask), np.array(truncated)


def report_truncation(truncated, what):
    """A `TruncationReport` of per-row cut counts; warns when anything was cut."""
    report = TruncationReport.from_counts(truncated)
    if report.rows_truncated:
        warnings.warn(
            f"{what}: {report}. Raise the model's sequence length to keep them.", stacklevel=3
        )
    return report


def make_dataset(arrays, batch_size, shuffle=True, seed=0):
    """Batches of `arrays` with a static batch size (XLA / TPU friendly)."""
    # `arrays` may nest dicts of inputs: count examples on the first leaf.
    num_examples = len(tf.nest.flatten(arrays)[0])
    dataset = tf.data.Dataset.from_tensor_slices(arrays)
    if shuffle:
        dataset = dataset.shuffle(num_examples, seed=seed, reshuffle_each_iteration=True)
    drop = num_examples >= batch_size
    return dataset.batch(batch_size, drop_remainder=drop).prefetch(tf.data.AUTOTUNE)


def compiled(function):
    """`function` compiled with XLA; retraced only for new shapes or static args."""
    # The loops use ops.while_loop / ops.cond explicitly; autograph would
    # rewrite the Python-side argument checks instead.
    return tf.function(function, jit_compile=True, autograph=False)
