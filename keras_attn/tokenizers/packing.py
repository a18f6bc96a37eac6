"""Static-shape packing of ragged token ids for XLA / TPU, and a report of
what truncation cost.

`pack` and `pack_pair` turn ragged ids into dense `(batch, sequence_length)`
tensors whose last dimension is static, inside `tf.function` and `tf.data`
too, and say per row how many tokens truncation dropped, so losing data to a
short `sequence_length` is visible instead of silent. (keras-hub's
`StartEndPacker` packs the same way but reports nothing about truncation.)
"""

import dataclasses

import numpy as np

# Tokenizers are TensorFlow preprocessing by nature (tf.strings / tf_text ops
# inside tf.data and exported graphs), so this package uses `tf` directly.
import tensorflow as tf

from keras_attn.tokenizers.inputs import ragged_id_batch
from keras_attn.tokenizers.special_tokens import BOS_ID, CLS_ID, EOS_ID, PAD_ID, SEP_ID
from keras_attn.utils.arguments import check_positive_int

PAIR_SPECIAL_COUNT = 3  # [CLS] a [SEP] b [SEP]


def pack(
    ids,
    sequence_length,
    add_bos=False,
    add_eos=False,
    bos_id=BOS_ID,
    eos_id=EOS_ID,
    pad_id=PAD_ID,
):
    """Packs token ids into a fixed length: optional `[BOS]` / `[EOS]`,
    truncation at the end, padding at the end.

    A row of `n` tokens keeps its first `sequence_length - add_bos - add_eos`
    tokens. `[BOS]` and `[EOS]` always survive truncation: a truncated row
    still ends with `[EOS]`.

    Args:
        ids: int token ids `(batch, None)`: a `tf.RaggedTensor`, nested lists,
            or a dense tensor (every entry counts as a token); or one
            sequence `(None,)`.
        sequence_length: int, the output length; must exceed the number of
            added special tokens.
        add_bos: bool, start every row with `bos_id`.
        add_eos: bool, end every row's tokens with `eos_id`.
        bos_id, eos_id, pad_id: ints, the ids used.

    Returns:
        `(token_ids, padding_mask, truncated)`: int32 `(batch,
        sequence_length)`, bool `(batch, sequence_length)` with `True` on real
        tokens (specials included), and int32 `(batch,)` = tokens dropped per
        row. Without a batch dimension in `ids`: `(sequence_length,)`,
        `(sequence_length,)` and a scalar.

    Example:
    >>> token_ids, padding_mask, truncated = pack(
    ...     [[10, 11], [10, 11, 12, 13, 14]], 5, add_bos=True, add_eos=True
    ... )
    >>> token_ids.numpy().tolist()  # [BOS] is 2, [EOS] 3, padding 0
    [[2, 10, 11, 3, 0], [2, 10, 11, 12, 3]]
    >>> padding_mask.numpy().tolist()
    [[True, True, True, True, False], [True, True, True, True, True]]
    >>> truncated.numpy().tolist()  # the second row lost 13 and 14
    [0, 2]
    """
    sequence_length = check_positive_int("sequence_length", sequence_length)
    added = int(bool(add_bos)) + int(bool(add_eos))
    if sequence_length <= added:
        raise ValueError(
            f"`sequence_length` must be greater than the {added} added special token(s). "
            f"Received: sequence_length={sequence_length}"
        )
    ids, unbatched = ragged_id_batch("ids", ids)
    capacity = sequence_length - added
    lengths = ids.row_lengths()
    truncated = tf.cast(tf.maximum(lengths - capacity, 0), tf.int32)

    pieces = [ids[:, :capacity]]
    if add_bos:
        pieces.insert(0, _column(bos_id, ids))
    if add_eos:
        pieces.append(_column(eos_id, ids))
    packed = tf.concat(pieces, axis=1) if len(pieces) > 1 else pieces[0]

    token_ids, padding_mask = _to_dense(packed, sequence_length, pad_id)
    if unbatched:
        return token_ids[0], padding_mask[0], truncated[0]
    return token_ids, padding_mask, truncated


def pack_pair(first_ids, second_ids, sequence_length, cls_id=CLS_ID, sep_id=SEP_ID, pad_id=PAD_ID):
    """Packs sentence pairs as `[CLS] a [SEP] b [SEP]`, with segment ids.

    When `len(a) + len(b) + 3 > sequence_length`, the longer segment loses
    tokens from its end first, one at a time, until both fit (on a tie the
    second segment gives first). So a short segment is kept whole and two long
    ones are cut to halves of the room. The `[CLS]` and `[SEP]` tokens always
    survive.

    Args:
        first_ids: int token ids of the first segments, `(batch, None)` (see
            `pack` for accepted types), or `(None,)` for one pair.
        second_ids: the second segments, same batch size.
        sequence_length: int > 3, the output length.
        cls_id, sep_id, pad_id: ints, the ids used.

    Returns:
        `(token_ids, segment_ids, padding_mask, truncated)`: int32 `(batch,
        sequence_length)`; int32 `(batch, sequence_length)`, 0 for `[CLS]`,
        `a` and its `[SEP]`, 1 for `b` and its `[SEP]`, 0 on padding; bool
        `(batch, sequence_length)`; int32 `(batch,)` = tokens dropped per row
        (both segments together).

    Example:
    >>> token_ids, segment_ids, padding_mask, truncated = pack_pair(
    ...     [[10, 11, 12, 13]], [[20]], 7
    ... )
    >>> token_ids.numpy().tolist()  # [CLS] is 5, [SEP] 4; 13 did not fit
    [[5, 10, 11, 12, 4, 20, 4]]
    >>> segment_ids.numpy().tolist(), truncated.numpy().tolist()
    ([[0, 0, 0, 0, 0, 1, 1]], [1])
    """
    sequence_length = check_positive_int("sequence_length", sequence_length)
    if sequence_length <= PAIR_SPECIAL_COUNT:
        raise ValueError(
            f"`sequence_length` must be greater than the {PAIR_SPECIAL_COUNT} special tokens "
            f"of a pair ([CLS] a [SEP] b [SEP]). Received: sequence_length={sequence_length}"
        )
    first, first_unbatched = ragged_id_batch("first_ids", first_ids)
    second, second_unbatched = ragged_id_batch("second_ids", second_ids)
    if first_unbatched != second_unbatched:
        raise ValueError(
            "`first_ids` and `second_ids` must both be batched or both single sequences. "
            f"Received: first_ids of rank {2 - first_unbatched}, "
            f"second_ids of rank {2 - second_unbatched}"
        )
    first_rows, second_rows = first.shape[0], second.shape[0]
    if first_rows is not None and second_rows is not None and first_rows != second_rows:
        raise ValueError(
            "`first_ids` and `second_ids` must have the same batch size. "
            f"Received: {first_rows} and {second_rows} rows"
        )

    capacity = sequence_length - PAIR_SPECIAL_COUNT
    first_length, second_length = first.row_lengths(), second.row_lengths()
    # Closed form of "drop one token from the longer segment until they fit,
    # from the second on ties": the first keeps at least half the room.
    first_keep = tf.minimum(
        first_length, tf.maximum(capacity - second_length, (capacity + 1) // 2)
    )
    second_keep = tf.minimum(second_length, capacity - first_keep)
    truncated = tf.cast(first_length - first_keep + second_length - second_keep, tf.int32)
    first = _keep_first(first, first_keep)
    second = _keep_first(second, second_keep)

    cls_column, sep_column = _column(cls_id, first), _column(sep_id, first)
    packed = tf.concat([cls_column, first, sep_column, second, sep_column], axis=1)
    segments = tf.concat(
        [
            tf.zeros_like(cls_column),
            tf.zeros_like(first),
            tf.zeros_like(sep_column),
            tf.ones_like(second),
            tf.ones_like(sep_column),
        ],
        axis=1,
    )
    token_ids, padding_mask = _to_dense(packed, sequence_length, pad_id)
    segment_ids, _ = _to_dense(segments, sequence_length, 0)
    if first_unbatched:
        return token_ids[0], segment_ids[0], padding_mask[0], truncated[0]
    return token_ids, segment_ids, padding_mask, truncated


@dataclasses.dataclass(frozen=True)
class TruncationReport:
    """How much truncation cost, from the `truncated` counts of `pack` /
    `pack_pair`. Reports add up (`report_a + report_b`), so a dataset can be
    summarized batch by batch.

    Attributes:
        rows: rows seen.
        rows_truncated: rows that lost at least one token.
        tokens_dropped: tokens lost in all rows.
        max_tokens_dropped: most tokens lost by one row.

    Example:
    >>> report = TruncationReport.from_counts([0, 2, 0, 5])
    >>> report.fraction_truncated
    0.5
    >>> print(report)
    2 of 4 rows (50.0%) truncated, 7 tokens dropped (at most 5 in a row)
    >>> (report + TruncationReport.from_counts([1])).rows_truncated
    3
    """

    rows: int = 0
    rows_truncated: int = 0
    tokens_dropped: int = 0
    max_tokens_dropped: int = 0

    @classmethod
    def from_counts(cls, truncated):
        """A report from per-row dropped-token counts (tensor, array or list)."""
        counts = np.asarray(truncated).reshape(-1)
        if counts.size and (not np.issubdtype(counts.dtype, np.integer) or counts.min() < 0):
            raise ValueError(
                "`truncated` must hold non-negative integer counts. "
                f"Received: truncated={counts.tolist()[:12]!r}"
            )
        return cls(
            rows=int(counts.size),
            rows_truncated=int(np.count_nonzero(counts)),
            tokens_dropped=int(counts.sum()) if counts.size else 0,
            max_tokens_dropped=int(counts.max()) if counts.size else 0,
        )

    @property
    def fraction_truncated(self):
        """Fraction of rows truncated, 0.0 for no rows."""
        return self.rows_truncated / self.rows if self.rows else 0.0

    def __add__(self, other):
        if not isinstance(other, TruncationReport):
            return NotImplemented
        return TruncationReport(
            rows=self.rows + other.rows,
            rows_truncated=self.rows_truncated + other.rows_truncated,
            tokens_dropped=self.tokens_dropped + other.tokens_dropped,
            max_tokens_dropped=max(self.max_tokens_dropped, other.max_tokens_dropped),
        )

    def as_dict(self):
        """The numbers, with `fraction_truncated`, e.g. for a metrics JSON."""
        return {**dataclasses.asdict(self), "fraction_truncated": self.fraction_truncated}

    def __str__(self):
        return (
            f"{self.rows_truncated} of {self.rows} rows ({100 * self.fraction_truncated:.1f}%) "
            f"truncated, {self.tokens_dropped} tokens dropped "
            f"(at most {self.max_tokens_dropped} in a row)"
        )


def _column(value, like):
    """A ragged `(batch, 1)` column of `value`, batch size and splits of `like`."""
    column = tf.fill(tf.stack([like.nrows(), 1]), tf.constant(value, tf.int32))
    return tf.RaggedTensor.from_tensor(column, row_splits_dtype=like.row_splits.dtype)


def _keep_first(ids, counts):
    """Each row's first `counts[row]` tokens."""
    positions = tf.ragged.range(ids.row_lengths(), row_splits_dtype=ids.row_splits.dtype)
    return tf.ragged.boolean_mask(ids, positions < counts[:, None])


def _to_dense(ragged, sequence_length, pad_id):
    """`(dense (batch, sequence_length), mask)`: the last dimension is static."""
    dense = ragged.to_tensor(
        default_value=tf.constant(pad_id, ragged.dtype), shape=[None, sequence_length]
    )
    mask = tf.sequence_mask(ragged.row_lengths(), sequence_length)
    return dense, mask
