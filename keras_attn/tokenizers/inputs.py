"""Turns what users pass (strings, lists, arrays, tensors) into the batched
TensorFlow tensors that tokenizers and packers work on.
"""

import numbers

import numpy as np

# Tokenizers are TensorFlow preprocessing by nature (tf.strings / tf_text ops
# inside tf.data and exported graphs), so this package uses `tf` directly.
import tensorflow as tf

from keras_attn.utils.arguments import check_rank


def string_batch(name, texts):
    """Returns `(texts, unbatched)`: a 1-D `tf.string` tensor and whether the
    input was a single string (rank 0) that callers should unbatch again."""
    if isinstance(texts, (list, tuple)) and len(texts) == 0:
        texts = tf.constant([], dtype=tf.string)
    if not isinstance(texts, tf.Tensor):
        try:
            texts = tf.convert_to_tensor(texts)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"`{name}` must be a string or a 1-D batch of strings. Received: {name}={texts!r}"
            ) from error
    if texts.dtype != tf.string:
        raise ValueError(
            f"`{name}` must be a string or a 1-D batch of strings. "
            f"Received: {name} with dtype {texts.dtype.name}"
        )
    _check_known_rank(name, texts)
    check_rank(name, texts.shape, (0, 1), "() or (batch,) of strings")
    unbatched = texts.shape.rank == 0
    if unbatched:
        texts = texts[tf.newaxis]
    return texts, unbatched


def ragged_id_batch(name, ids):
    """Returns `(ids, unbatched)`: a `(batch, None)` int32 `tf.RaggedTensor`
    and whether the input was a single 1-D sequence.

    Accepts a `tf.RaggedTensor`, a dense tensor or array (every entry is a
    token: padding is not removed), or nested Python lists of ints.
    """
    if isinstance(ids, (list, tuple)):
        nested = any(isinstance(row, (list, tuple, np.ndarray)) for row in ids)
        if nested:
            ids = tf.ragged.constant(ids, dtype=_python_ints_dtype(name, ids))
        else:
            ids = tf.constant(ids, dtype=_python_ints_dtype(name, ids))
    elif not isinstance(ids, (tf.Tensor, tf.RaggedTensor)):
        try:
            ids = tf.convert_to_tensor(ids)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"`{name}` must be integer token ids of shape (batch, None) or (None,). "
                f"Received: {name}={ids!r}"
            ) from error
    if not ids.dtype.is_integer:
        raise ValueError(
            f"`{name}` must be integer token ids. Received: {name} with dtype {ids.dtype.name}"
        )
    _check_known_rank(name, ids)
    check_rank(name, ids.shape, (1, 2), "(batch, None) or (None,) of token ids")
    unbatched = ids.shape.rank == 1
    if not isinstance(ids, tf.RaggedTensor):
        ids = tf.RaggedTensor.from_tensor(ids[tf.newaxis] if unbatched else ids)
    ids = tf.cast(ids, tf.int32).with_row_splits_dtype(tf.int64)
    return ids, unbatched


def _python_ints_dtype(name, rows):
    """int32 for (nested) Python ints; raises for anything else."""
    flat = list(_flatten(rows))
    if not all(
        isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, bool)
        for value in flat
    ):
        raise ValueError(f"`{name}` must be integer token ids. Received: {name}={rows!r}")
    return tf.int32


def _flatten(rows):
    for row in rows:
        if isinstance(row, (list, tuple, np.ndarray)):
            yield from _flatten(row)
        else:
            yield row


def _check_known_rank(name, tensor):
    if tensor.shape.rank is None:
        raise ValueError(
            f"`{name}` must have a known rank. Received: {name} with shape {tensor.shape}"
        )
