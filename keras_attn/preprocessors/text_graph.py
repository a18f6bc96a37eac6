"""Graph pieces between strings and id buffers that the preprocessors share:
prompt layout, windows of generated tokens, cutting at stop tokens.

Every function here runs inside a `tf.function` on symbolic tensors (no
Python-side checks on values), so it can be saved into a SavedModel.
"""

# These run inside tf.data and exported SavedModels: TensorFlow graphs.
import tensorflow as tf


def prepend(ids, values):
    """`[values] + row` for each row of ragged int32 `ids` `(B, None)`;
    `values` is one int or a sequence of them."""
    values = tf.reshape(tf.constant(values, ids.dtype), [1, -1])
    columns = tf.tile(values, tf.stack([ids.nrows(), 1]))
    columns = tf.RaggedTensor.from_tensor(columns, row_splits_dtype=ids.row_splits.dtype)
    return tf.concat([columns, ids], axis=1)


def keep_last(ids, count):
    """The last `count` (scalar int tensor) tokens of each ragged row."""
    lengths = ids.row_lengths()
    positions = tf.ragged.range(lengths, row_splits_dtype=ids.row_splits.dtype)
    first_kept = lengths - tf.cast(count, lengths.dtype)
    return tf.ragged.boolean_mask(ids, positions >= first_kept[:, None])


def right_padded(ids, length, pad_id):
    """`(token_ids (B, length) int32, mask (B, length) bool, lengths (B,) int32)`
    of ragged rows that fit `length`."""
    token_ids = ids.to_tensor(default_value=tf.constant(pad_id, ids.dtype), shape=[None, length])
    lengths = tf.cast(ids.row_lengths(), tf.int32)
    return token_ids, tf.sequence_mask(lengths, length), lengths


def tokens_between(token_ids, starts, ends, stop_ids):
    """Ragged `(B, None)`: row `b`'s tokens at positions `[starts[b], ends[b])`,
    up to (excluding) the first one in `stop_ids`.

    Args:
        token_ids: int32 `(B, L)` decoded buffer.
        starts, ends: int32 `(B,)` window bounds.
        stop_ids: Python ints that end a row (e.g. `[EOS]` and `[PAD]`).
    """
    positions = tf.range(tf.shape(token_ids)[1], dtype=tf.int32)[None, :]
    in_window = (positions >= starts[:, None]) & (positions < ends[:, None])
    is_stop = tf.reduce_any(
        tf.equal(token_ids[:, :, None], tf.constant(stop_ids, token_ids.dtype)), axis=-1
    )
    stopped = tf.cumsum(tf.cast(in_window & is_stop, tf.int32), axis=1) > 0
    return tf.ragged.boolean_mask(token_ids, in_window & tf.logical_not(stopped))
