"""Length bucketing: batches of similar length in a few static shapes.

Padding every batch to the longest example wastes compute on pad tokens;
padding each batch to its own longest example gives a new shape per batch and
a new XLA compilation per shape. Buckets sit in between: each example goes to
the smallest boundary that holds it, and every batch of a bucket is sliced
(or padded) to that boundary, so the model sees `len(boundaries)` shapes in
all and compiles at most that many times.

Remainder rule: every batch has exactly `batch_size` rows (a static batch
dimension). A bucket's examples that do not fill a last batch are dropped
for that epoch; with `shuffle=True` the buckets are reshuffled every epoch,
so a different few are left out each time. At most
`batch_size - 1` examples per bucket are dropped per epoch.

Example:

>>> lengths = np.array([3, 5, 12, 14, 9, 30, 31, 2])
>>> mask = np.arange(32) < lengths[:, None]  # 8 examples padded to 32
>>> token_ids = np.where(mask, 7, 0).astype("int32")
>>> dataset = bucketed_batches(
...     {"token_ids": token_ids, "padding_mask": mask}, lengths=mask.sum(1),
...     boundaries=[8, 16, 32], batch_size=2,
... )
>>> sorted(tuple(batch["token_ids"].shape) for batch in dataset)  # one left out of 2 buckets
[(2, 8), (2, 16), (2, 32)]
"""

import numbers

import numpy as np

# tf.data is TensorFlow's input pipeline; the models train from it.
import tensorflow as tf

from keras_attn.utils.arguments import check_positive_int


def _check_boundaries(boundaries):
    values = list(boundaries) if np.ndim(boundaries) else [boundaries]
    if (
        not values
        or any(isinstance(b, bool) or not isinstance(b, numbers.Integral) or b <= 0 for b in values)
        or any(a >= b for a, b in zip(values, values[1:]))
    ):
        raise ValueError(
            "`boundaries` must be a non-empty, strictly increasing list of positive "
            f"integers. Received: boundaries={boundaries!r}"
        )
    return [int(b) for b in values]


def length_buckets(lengths, boundaries):
    """The bucket of each example: the index of the smallest boundary >= its
    length.

    Args:
        lengths: non-negative ints `(num_examples,)` (e.g. `mask.sum(1)`).
        boundaries: strictly increasing positive ints, the bucket lengths.

    Returns:
        int64 `(num_examples,)` bucket indices in `[0, len(boundaries))`.

    Example:
    >>> length_buckets([3, 8, 9, 16], [8, 16]).tolist()
    [0, 0, 1, 1]

    Example:
    >>> length_buckets([3, 9, 17], boundaries=[8, 16, 32]).tolist()
    [0, 1, 2]
    """
    boundaries = _check_boundaries(boundaries)
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or (lengths.size and not np.issubdtype(lengths.dtype, np.integer)):
        raise ValueError(
            "`lengths` must be a 1-D sequence of integers. Received: lengths with "
            f"shape {lengths.shape} and dtype {lengths.dtype}"
        )
    if lengths.size and lengths.min() < 0:
        raise ValueError(f"`lengths` must be >= 0. Received: a length of {lengths.min()}")
    too_long = int(np.count_nonzero(lengths > boundaries[-1]))
    if too_long:
        raise ValueError(
            f"`boundaries` must end at the longest length or beyond. Received: "
            f"boundaries={boundaries}, and {too_long} lengths exceed {boundaries[-1]} "
            f"(the longest is {lengths.max()})"
        )
    return np.searchsorted(boundaries, lengths, side="left").astype("int64")


def _sequence_width(leaves):
    widths = {leaf.shape[1] for leaf in leaves if leaf.ndim >= 2}
    if len(widths) > 1:
        raise ValueError(
            "`arrays` must all have the same length on axis 1 (the padded sequence "
            f"length); 1-D arrays are per-example values. Received widths {sorted(widths)}"
        )
    return widths.pop() if widths else None


def _fit_width(leaf, width, pad_value):
    """Slices or pads axis 1 of a sequence array to `width`."""
    if leaf.ndim < 2:
        return leaf
    if leaf.shape[1] >= width:
        return leaf[:, :width]
    padding = [(0, 0), (0, width - leaf.shape[1])] + [(0, 0)] * (leaf.ndim - 2)
    return np.pad(leaf, padding, constant_values=np.asarray(pad_value).astype(leaf.dtype))


def bucket_datasets(arrays, lengths, boundaries, batch_size, shuffle=True, seed=0, pad_value=0):
    """One batched `tf.data.Dataset` per non-empty bucket, each with fully
    static shapes.

    Same arguments as `bucketed_batches`. Returns a list of
    `(boundary, dataset)`; the datasets' `element_spec` is
    `(batch_size, boundary, ...)` for sequence arrays and `(batch_size, ...)`
    for per-example ones. Buckets with fewer than `batch_size` examples give
    no batch and are left out.

    Example:
    >>> token_ids = np.ones((5, 16), "int32")
    >>> labels = np.arange(5)
    >>> buckets = bucket_datasets((token_ids, labels), lengths=[2, 3, 4, 12, 16],
    ...                           boundaries=[4, 8, 16], batch_size=2)
    >>> [(boundary, tuple(dataset.element_spec[0].shape)) for boundary, dataset in buckets]
    [(4, (2, 4)), (16, (2, 16))]
    """
    batch_size = check_positive_int("batch_size", batch_size)
    boundaries = _check_boundaries(boundaries)
    leaves = [np.asarray(leaf) for leaf in tf.nest.flatten(arrays)]
    sizes = {len(leaf) for leaf in leaves}
    if not leaves or len(sizes) != 1:
        raise ValueError(
            "`arrays` must be numpy arrays (or a nest of them) with the same number of "
            f"examples on axis 0. Received: sizes {sorted(sizes)}"
        )
    if _sequence_width(leaves) is None:
        raise ValueError("`arrays` must hold at least one array of rank >= 2 (the sequences)")
    buckets = length_buckets(lengths, boundaries)
    if len(buckets) != sizes.pop():
        raise ValueError(
            "`lengths` must have one entry per example. Received: "
            f"{len(buckets)} lengths for {len(leaves[0])} examples"
        )
    result = []
    for bucket, boundary in enumerate(boundaries):
        rows = np.flatnonzero(buckets == bucket)
        if len(rows) < batch_size:
            continue
        bucket_leaves = [_fit_width(leaf[rows], boundary, pad_value) for leaf in leaves]
        dataset = tf.data.Dataset.from_tensor_slices(
            tf.nest.pack_sequence_as(arrays, bucket_leaves)
        )
        if shuffle:
            dataset = dataset.shuffle(len(rows), seed=seed + bucket, reshuffle_each_iteration=True)
        result.append((boundary, dataset.batch(batch_size, drop_remainder=True)))
    return result


def bucketed_batches(
    arrays, lengths, boundaries, batch_size, shuffle=True, seed=0, pad_value=0
):
    """A `tf.data.Dataset` of batches grouped by length, one static shape per
    bucket.

    Args:
        arrays: a numpy array or a nest (dicts / tuples) of them, the
            structure `model.fit` expects (e.g. `(inputs_dict, labels,
            weights)`). Arrays of rank >= 2 are sequences, padded to the same
            length on axis 1, and are sliced or padded to their bucket's
            boundary; 1-D arrays (labels, ids) pass through.
        lengths: ints `(num_examples,)`, the real length of each example.
        boundaries: strictly increasing positive ints, the bucket lengths; the
            last must be >= every length (it may exceed the padded width:
            arrays are then padded with `pad_value`).
        batch_size: rows of every batch (static). See the remainder rule in
            the module docstring: leftovers of each bucket are dropped.
        shuffle: shuffle within buckets and the order of batches, anew each
            epoch.
        seed: int seed of the shuffles.
        pad_value: value written where a bucket is wider than the arrays.

    Returns:
        A `tf.data.Dataset` whose every batch has shape `(batch_size,
        boundary, ...)` for one of the boundaries; its cardinality is known.

    Example:
    >>> token_ids = np.ones((4, 16), "int32")
    >>> labels = np.arange(4)
    >>> dataset = bucketed_batches((token_ids, labels), lengths=[3, 2, 16, 9],
    ...                            boundaries=[4, 16], batch_size=2, shuffle=False)
    >>> int(dataset.cardinality())
    2
    >>> [(tuple(ids.shape), labels.numpy().tolist()) for ids, labels in dataset]
    [((2, 4), [0, 1]), ((2, 16), [2, 3])]
    """
    per_bucket = bucket_datasets(arrays, lengths, boundaries, batch_size, shuffle, seed, pad_value)
    if not per_bucket:
        raise ValueError(
            f"No bucket holds `batch_size`={batch_size} examples, so no batch can be made. "
            f"Lower batch_size or use fewer boundaries. Received: boundaries={boundaries}"
        )
    datasets = [dataset for _, dataset in per_bucket]
    counts = [int(dataset.cardinality()) for dataset in datasets]
    schedule = np.repeat(np.arange(len(datasets), dtype="int64"), counts)
    choices = tf.data.Dataset.from_tensor_slices(schedule)
    if shuffle:
        choices = choices.shuffle(len(schedule), seed=seed, reshuffle_each_iteration=True)
    dataset = tf.data.Dataset.choose_from_datasets(datasets, choices)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(schedule)))
    return dataset.prefetch(tf.data.AUTOTUNE)
