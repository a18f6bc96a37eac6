"""Length bucketing: batches of similar length in a few static shapes.

Padding every batch to the longest example wastes compute on pad tokens;
padding each batch to its own longest example gives a new shape per batch and
a new XLA compilation per shape. Buckets sit in between: each example goes to
the smallest boundary that holds it, and every batch of a bucket is sliced
(or padded) to that boundary, so the model sees `len(boundaries)` shapes in
all and compiles at most that many times.

Remainder rules (`remainder=`): every batch has exactly `batch_size` rows
(a static batch dimension), except under `"keep"`.

- `"drop"`: a bucket's examples that do not fill a last batch are dropped
  for that epoch; with `shuffle=True` the buckets are reshuffled every
  epoch, so a different few are left out each time. At most
  `batch_size - 1` examples per bucket are dropped per epoch.
- `"promote"`: a bucket's leftovers join the next wider bucket (they fit
  there, with more padding), so only the widest bucket drops fewer than
  `batch_size` examples per epoch, as an unbucketed dataset drops its last
  partial batch. The training default of the tasks' `make_dataset`.
- `"keep"`: as `"promote"`, and the widest bucket's leftovers make one
  smaller last batch, so every example is seen exactly once (evaluation).

Several sequences of different lengths (a translator's source and target)
bucket together: give `lengths` and `boundaries` as dicts keyed by a group
name, and `groups`, a nest like `arrays` naming each sequence array's group.
Boundary lists have one entry per bucket in every group; an example goes to
the first bucket that holds all of its sequences.

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

from keras_attn.utils.arguments import check_choice, check_positive_int


def _check_boundaries(boundaries, strict=True):
    values = list(boundaries) if np.ndim(boundaries) else [boundaries]
    if (
        not values
        or any(isinstance(b, bool) or not isinstance(b, numbers.Integral) or b <= 0 for b in values)
        or any(a >= b if strict else a > b for a, b in zip(values, values[1:]))
    ):
        order = "strictly increasing" if strict else "non-decreasing"
        raise ValueError(
            f"`boundaries` must be a non-empty, {order} list of positive "
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
    return _bucket_indices(lengths, _check_boundaries(boundaries))


def _bucket_indices(lengths, boundaries):
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


REMAINDERS = ("drop", "promote", "keep")


def choose_boundaries(lengths, max_length, num_buckets=4, multiple=8):
    """A few bucket boundaries that fit the length distribution.

    Boundaries sit at the length quantiles `1/num_buckets, 2/num_buckets,
    ...`, rounded up to a multiple of `multiple` (friendlier matmul shapes)
    and capped at `max_length`; the last is the longest length rounded up
    the same way, so no bucket is wider than the data needs. Duplicates
    collapse, so a narrow distribution gets fewer buckets.

    Args:
        lengths: non-negative ints `(num_examples,)`.
        max_length: the padded width; no boundary exceeds it.
        num_buckets: most boundaries returned (each is one compiled shape).
        multiple: boundaries are multiples of this (or `max_length`).

    Returns:
        A strictly increasing list of ints, the last >= every length.

    Example:
    >>> choose_boundaries([3, 4, 5, 6, 9, 12, 30, 60], max_length=64)
    [8, 16, 32, 64]
    """
    max_length = check_positive_int("max_length", max_length)
    longest = int(np.max(lengths, initial=0))
    if longest > max_length:
        raise ValueError(
            f"`lengths` must be <= `max_length`={max_length}. Received: a length of {longest}"
        )
    chosen = choose_group_boundaries({"lengths": lengths}, {"lengths": max_length},
                                     num_buckets, multiple)
    return chosen["lengths"]


def choose_group_boundaries(lengths, max_lengths, num_buckets=4, multiple=8):
    """`choose_boundaries` for sequences bucketed together (`groups`).

    Every group gets a boundary at the same length quantiles, so bucket `k`
    holds the examples at or under quantile `k` in every group; a bucket
    that widens no group is dropped. A group's list may repeat a value
    (that bucket widens only the others).

    Args:
        lengths: `{group: ints (num_examples,)}`.
        max_lengths: `{group: padded width}`.
        num_buckets, multiple: as in `choose_boundaries`.

    Returns:
        `{group: list of ints}`, all lists of one length.

    Example:
    >>> choose_group_boundaries({"source": [4, 9, 20, 30], "target": [3, 3, 5, 12]},
    ...                         {"source": 32, "target": 16}, num_buckets=2)
    {'source': [24, 32], 'target': [8, 16]}
    """
    num_buckets = check_positive_int("num_buckets", num_buckets)
    multiple = check_positive_int("multiple", multiple)
    per_group = {}
    for name, values in lengths.items():
        values = np.asarray(values)
        width = check_positive_int(f"max_lengths[{name!r}]", max_lengths[name])
        if values.size and values.max() > width:
            raise ValueError(
                f"`lengths[{name!r}]` must be <= {width}. Received: a length of {values.max()}"
            )
        if not values.size:
            per_group[name] = [width] * num_buckets
            continue
        quantiles = np.quantile(values, np.arange(1, num_buckets + 1) / num_buckets,
                                method="higher")
        rounded = np.ceil(np.maximum(quantiles, 1) / multiple).astype("int64") * multiple
        per_group[name] = [int(min(b, width)) for b in rounded]
    kept = [
        k for k in range(num_buckets)
        if k == 0 or any(bounds[k] != bounds[k - 1] for bounds in per_group.values())
    ]
    return {name: [bounds[k] for k in kept] for name, bounds in per_group.items()}


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
    if leaf.ndim < 2 or width is None:
        return leaf
    if leaf.shape[1] >= width:
        return leaf[:, :width]
    padding = [(0, 0), (0, width - leaf.shape[1])] + [(0, 0)] * (leaf.ndim - 2)
    return np.pad(leaf, padding, constant_values=np.asarray(pad_value).astype(leaf.dtype))


def _grouped(arrays, leaves, lengths, boundaries, groups):
    """`(leaf groups, {group: lengths}, {group: boundaries})`; one group
    `None` holds every sequence array unless `groups` is given."""
    if groups is None:
        if isinstance(lengths, dict) or isinstance(boundaries, dict):
            raise ValueError(
                "`lengths` and `boundaries` given as dicts need `groups`, naming the group of "
                "each array in `arrays`"
            )
        _sequence_width(leaves)
        leaf_groups = [None if leaf.ndim < 2 else "" for leaf in leaves]
        return leaf_groups, {"": lengths}, {"": _check_boundaries(boundaries)}
    if not isinstance(lengths, dict) or not isinstance(boundaries, dict):
        raise ValueError(
            "With `groups`, `lengths` and `boundaries` must be dicts keyed by group name. "
            f"Received: {type(lengths).__name__} and {type(boundaries).__name__}"
        )
    try:
        tf.nest.assert_same_structure(arrays, groups)
        leaf_groups = tf.nest.flatten(groups)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`groups` must have the structure of `arrays`: {error}") from error
    # Per group, boundaries may repeat: a bucket may widen only some groups.
    boundaries = {
        name: _check_boundaries(values, strict=False) for name, values in boundaries.items()
    }
    if set(boundaries) != set(lengths) or len({len(b) for b in boundaries.values()}) != 1:
        raise ValueError(
            "`lengths` and `boundaries` must have the same group names, and every group the "
            f"same number of boundaries. Received: lengths for {sorted(lengths)}, boundaries "
            f"{boundaries}"
        )
    for leaf, group in zip(leaves, leaf_groups):
        if group is not None and (group not in boundaries or leaf.ndim < 2):
            raise ValueError(
                f"`groups` names {group!r} for an array of shape {leaf.shape}; expected a "
                f"sequence array (rank >= 2) and one of {sorted(boundaries)}, or None"
            )
    return leaf_groups, lengths, boundaries


def _assign(buckets_per_group, remainder, batch_size, shuffle, seed):
    """Rows of each bucket, leftovers promoted to wider buckets if asked."""
    buckets = np.max(np.stack(buckets_per_group), axis=0)
    num_buckets = int(buckets.max()) + 1 if buckets.size else 0
    rng = np.random.default_rng(seed)
    rows_per_bucket, carried = [], np.zeros(0, "int64")
    for bucket in range(num_buckets):
        rows = np.concatenate([carried, np.flatnonzero(buckets == bucket)])
        carried = np.zeros(0, "int64")
        if remainder != "drop" and bucket < num_buckets - 1:
            extra = len(rows) % batch_size
            if extra:
                order = rng.permutation(len(rows)) if shuffle else np.arange(len(rows))
                rows = rows[order]
                rows, carried = rows[: len(rows) - extra], rows[len(rows) - extra:]
        rows_per_bucket.append(np.sort(rows))
    return rows_per_bucket


def bucket_datasets(
    arrays, lengths, boundaries, batch_size, shuffle=True, seed=0, pad_value=0,
    remainder="drop", groups=None,
):
    """One batched `tf.data.Dataset` per non-empty bucket, each with fully
    static shapes.

    Same arguments as `bucketed_batches`. Returns a list of
    `(boundary, dataset)` (with `groups`, `boundary` is a dict of each
    group's width); the datasets' `element_spec` is `(batch_size, boundary,
    ...)` for sequence arrays and `(batch_size, ...)` for per-example ones
    (the last batch may be smaller under `remainder="keep"`). Buckets left
    without a batch are left out.

    Example:
    >>> token_ids = np.ones((5, 16), "int32")
    >>> labels = np.arange(5)
    >>> buckets = bucket_datasets((token_ids, labels), lengths=[2, 3, 4, 12, 16],
    ...                           boundaries=[4, 8, 16], batch_size=2)
    >>> [(boundary, tuple(dataset.element_spec[0].shape)) for boundary, dataset in buckets]
    [(4, (2, 4)), (16, (2, 16))]
    """
    batch_size = check_positive_int("batch_size", batch_size)
    remainder = check_choice("remainder", remainder, REMAINDERS)
    leaves = [np.asarray(leaf) for leaf in tf.nest.flatten(arrays)]
    sizes = {len(leaf) for leaf in leaves}
    if not leaves or len(sizes) != 1:
        raise ValueError(
            "`arrays` must be numpy arrays (or a nest of them) with the same number of "
            f"examples on axis 0. Received: sizes {sorted(sizes)}"
        )
    if all(leaf.ndim < 2 for leaf in leaves):
        raise ValueError("`arrays` must hold at least one array of rank >= 2 (the sequences)")
    num_examples = sizes.pop()
    leaf_groups, lengths, boundaries = _grouped(arrays, leaves, lengths, boundaries, groups)
    per_group = []
    for name in sorted(boundaries):
        buckets = _bucket_indices(lengths[name], boundaries[name])
        if len(buckets) != num_examples:
            raise ValueError(
                "`lengths` must have one entry per example. Received: "
                f"{len(buckets)} lengths for {num_examples} examples"
            )
        per_group.append(buckets)
    rows_per_bucket = _assign(per_group, remainder, batch_size, shuffle, seed)
    result = []
    for bucket, rows in enumerate(rows_per_bucket):
        # Leftovers end up in the widest bucket any example reaches.
        widest = bucket == len(rows_per_bucket) - 1
        keep_partial = remainder == "keep" and widest and len(rows) % batch_size > 0
        if len(rows) < batch_size and not (keep_partial and len(rows)):
            continue
        widths = {name: values[bucket] for name, values in boundaries.items()}
        bucket_leaves = [
            _fit_width(leaf[rows], widths.get(group), pad_value)
            for leaf, group in zip(leaves, leaf_groups)
        ]
        dataset = tf.data.Dataset.from_tensor_slices(
            tf.nest.pack_sequence_as(arrays, bucket_leaves)
        )
        if shuffle:
            dataset = dataset.shuffle(len(rows), seed=seed + bucket, reshuffle_each_iteration=True)
        dataset = dataset.batch(batch_size, drop_remainder=not keep_partial)
        result.append((widths[""] if groups is None else widths, dataset))
    return result


def bucketed_batches(
    arrays, lengths, boundaries, batch_size, shuffle=True, seed=0, pad_value=0,
    remainder="drop", groups=None,
):
    """A `tf.data.Dataset` of batches grouped by length, one static shape per
    bucket.

    Args:
        arrays: a numpy array or a nest (dicts / tuples) of them, the
            structure `model.fit` expects (e.g. `(inputs_dict, labels,
            weights)`). Arrays of rank >= 2 are sequences, padded to the same
            length on axis 1, and are sliced or padded to their bucket's
            boundary; 1-D arrays (labels, ids) pass through.
        lengths: ints `(num_examples,)`, the real length of each example
            (or, with `groups`, a dict of them per group).
        boundaries: strictly increasing positive ints, the bucket lengths; the
            last must be >= every length (it may exceed the padded width:
            arrays are then padded with `pad_value`). With `groups`, a dict of
            such lists, all of one length.
        batch_size: rows of every batch (static).
        shuffle: shuffle within buckets and the order of batches, anew each
            epoch.
        seed: int seed of the shuffles.
        pad_value: value written where a bucket is wider than the arrays.
        remainder: `"drop"`, `"promote"` or `"keep"`: what becomes of the
            examples that do not fill a bucket's last batch (module
            docstring).
        groups: `None` (every sequence array has one length), or a nest with
            the structure of `arrays` giving each sequence array's group name
            (a key of `lengths` and `boundaries`) and `None` for per-example
            arrays.

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
    per_bucket = bucket_datasets(
        arrays, lengths, boundaries, batch_size, shuffle, seed, pad_value, remainder, groups
    )
    if not per_bucket:
        raise ValueError(
            f"No bucket holds `batch_size`={batch_size} examples, so no batch can be made. "
            f"Lower batch_size or use fewer boundaries. Received: boundaries={boundaries}"
        )
    datasets = [dataset for _, dataset in per_bucket]
    counts = [int(dataset.cardinality()) for dataset in datasets]
    schedule = np.repeat(np.arange(len(datasets), dtype="int64"), counts)
    if len(datasets) == 1:
        return datasets[0].prefetch(tf.data.AUTOTUNE)
    choices = tf.data.Dataset.from_tensor_slices(schedule)
    if shuffle:
        choices = choices.shuffle(len(schedule), seed=seed, reshuffle_each_iteration=True)
    dataset = tf.data.Dataset.choose_from_datasets(datasets, choices)
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(len(schedule)))
    return dataset.prefetch(tf.data.AUTOTUNE)
