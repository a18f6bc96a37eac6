"""Boolean attention masks shared by every attention path.

Convention (the same as Keras): a mask is boolean and `True` means
"this query position may attend to this key position". Masks have shape
`(batch, query_length, key_length)` or anything that broadcasts to it.
"""

from keras import ops


def causal_mask(query_length, key_length, start_index=0):
    """Mask letting query `i` see keys `0 .. start_index + i`.

    With `start_index=0` and equal lengths this is the usual lower-triangular
    mask. During cached decoding the queries are the newest tokens, written at
    `start_index` in a cache of `key_length` slots: query `i` sits at absolute
    position `start_index + i`, so it sees every earlier slot and none of the
    not-yet-written ones. (The top-left triangular mask would be wrong here:
    a one-token step would only see slot 0.)

    Args:
        query_length: int or scalar tensor, `T`.
        key_length: int or scalar tensor, `S`.
        start_index: int or scalar int tensor, absolute position of query 0.

    Returns:
        Boolean tensor of shape `(1, T, S)`.

    Example:
    >>> ops.convert_to_numpy(causal_mask(3, 3)).tolist()
    [[[True, False, False], [True, True, False], [True, True, True]]]
    >>> ops.convert_to_numpy(causal_mask(1, 4, start_index=2)).tolist()  # a decoding step
    [[[True, True, True, False]]]
    """
    query_positions = ops.arange(query_length, dtype="int32") + ops.cast(start_index, "int32")
    key_positions = ops.arange(key_length, dtype="int32")
    mask = ops.greater_equal(query_positions[:, None], key_positions[None, :])
    return mask[None, :, :]


def sliding_window_mask(query_length, key_length, window, start_index=0):
    """Mask letting query `i` see keys less than `window` positions away.

    Combined with `causal_mask` this gives causal sliding-window (local)
    attention. Shape `(1, T, S)`.

    Example:
    >>> ops.convert_to_numpy(sliding_window_mask(4, 4, window=2)).astype(int).tolist()
    [[[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]]]
    """
    query_positions = ops.arange(query_length, dtype="int32") + ops.cast(start_index, "int32")
    key_positions = ops.arange(key_length, dtype="int32")
    distance = ops.abs(query_positions[:, None] - key_positions[None, :])
    return ops.less(distance, window)[None, :, :]


def merge_masks(*masks):
    """Logical AND of the given masks, skipping `None`; `None` if all are.

    Example:
    >>> merge_masks(None, None) is None
    True
    >>> keys = np.array([[[True, False], [True, False]]])  # key 1 is padding
    >>> ops.convert_to_numpy(merge_masks(causal_mask(2, 2), None, keys)).tolist()
    [[[True, False], [True, False]]]
    """
    merged = None
    for mask in masks:
        if mask is None:
            continue
        mask = ops.cast(mask, "bool")
        merged = mask if merged is None else ops.logical_and(merged, mask)
    return merged


def padding_attention_mask(query_mask=None, key_mask=None):
    """Turns `(B, T)` query and `(B, S)` key padding masks into `(B, T, S)`.

    Either may be `None`. Returns `None` when both are.

    Example:
    >>> mask = padding_attention_mask(np.array([[True, False]]), np.array([[True, True, False]]))
    >>> ops.convert_to_numpy(mask).tolist()  # (B, T, S): padded query 1 sees nothing
    [[[True, True, False], [False, False, False]]]
    """
    query_part = None if query_mask is None else ops.cast(query_mask, "bool")[:, :, None]
    key_part = None if key_mask is None else ops.cast(key_mask, "bool")[:, None, :]
    return merge_masks(query_part, key_part)
