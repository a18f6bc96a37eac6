"""Memory-efficient (chunked, flash-style) scaled dot-product attention.

The queries are cut into blocks of `block_size` rows and the keys into blocks
of `block_size` columns. Each query block walks over the key blocks it can see
with an online softmax (running maximum, running sum, running weighted values;
Milakov & Gimelshein 2018, Dao et al. 2022), so only one
`(block_size, block_size)` tile of scores per head exists at a time: memory is
linear in the sequence length. Key blocks that a causal or sliding-window mask
removes entirely are never visited, which halves the work of causal attention.

The gradient is custom: the forward pass keeps only the output and each row's
log-sum-exp; the backward pass recomputes each tile's scores from them, once
over query blocks (for the query gradient) and once over key blocks (for the
key and value gradients), so it never holds the `T x S` matrix either.
"""

from keras import ops

from keras_attn.utils.arguments import check_positive_int

# A finite "minus infinity" for masked logits (as in the explicit path): a
# tile with no visible key leaves the running maximum finite.
_MASKED_LOGIT = -1e9


def _ceil_div(a, b):
    return -(-a // b)


def _block_range(first_position, last_position, block, count, reach_before, reach_after):
    """Blocks `[lo, hi)` (of `block` positions each, `count` in all) holding
    the positions from `first_position - reach_before + 1` to
    `last_position + reach_after - 1`; `None` reach means unbounded."""
    lo = 0
    hi = count
    if reach_before is not None:
        lo = ops.maximum(ops.floor_divide(first_position - reach_before + 1, block), 0)
    if reach_after is not None:
        hi = ops.minimum(ops.floor_divide(last_position + reach_after - 1, block) + 1, count)
    lo = ops.cast(lo, "int32")
    hi = ops.maximum(ops.cast(hi, "int32"), lo)
    return lo, hi


def chunked_attention(
    query,
    key,
    value,
    scale,
    query_mask=None,
    key_mask=None,
    attention_mask=None,
    causal=False,
    sliding_window=None,
    start_index=0,
    block_size=512,
):
    """Attention in `block_size` tiles, with a recomputing custom gradient.

    Gives the same result as the explicit softmax path of
    `keras_attn.layers.MultiHeadAttention` (float32 softmax; query rows with no
    visible key give zeros) without ever holding the `T x S` scores.

    Args:
        query: `(B, T, N, H)`.
        key: `(B, S, K, H)`, `K` dividing `N` (grouped-query heads: query head
            `n` uses key/value head `n // (N // K)`).
        value: `(B, S, K, Hv)`.
        scale: Python float multiplying the queries before the dot products.
        query_mask: boolean `(B|1, T|1)`; rows that are False give zeros.
        key_mask: boolean `(B|1, S|1)`; keys that are False are never seen.
        attention_mask: boolean, `True` = may attend, of rank 4
            `(B|1, N|1, T|1, S|1)`.
        causal: query `i` sees keys `<= start_index + i`.
        sliding_window: if set, query `i` sees keys `j` with
            `|start_index + i - j| < sliding_window`.
        start_index: int or scalar int tensor, absolute position of query 0.
        block_size: rows and columns of one tile.

    Returns:
        `(B, T, N, Hv)` in the query's dtype.

    `T` and `S` must be known statically (they fix the number of tiles).

    Example:
    >>> q = keras.random.normal((1, 1000, 4, 16))
    >>> kv = keras.random.normal((1, 1000, 2, 16))
    >>> out = chunked_attention(q, kv, kv, scale=0.25, causal=True, block_size=256)
    >>> tuple(out.shape)
    (1, 1000, 4, 16)
    """
    block = check_positive_int("block_size", block_size)
    query_length, key_length = query.shape[1], key.shape[1]
    if not isinstance(query_length, int) or not isinstance(key_length, int):
        raise ValueError(
            "`chunked_attention` needs statically known sequence lengths. Received: "
            f"query with shape {tuple(query.shape)}, key with shape {tuple(key.shape)}"
        )
    num_heads, head_size = query.shape[2], query.shape[3]
    kv_heads, value_size = key.shape[2], value.shape[3]
    if num_heads % kv_heads:
        raise ValueError(
            "`query` heads must be a multiple of `key` heads. Received: query with "
            f"shape {tuple(query.shape)}, key with shape {tuple(key.shape)}"
        )
    if attention_mask is not None and len(attention_mask.shape) != 4:
        raise ValueError(
            "`attention_mask` must have rank 4, (B|1, N|1, T|1, S|1). Received: "
            f"attention_mask with shape {tuple(attention_mask.shape)}"
        )
    sliding_window = check_positive_int("sliding_window", sliding_window, allow_none=True)
    groups = num_heads // kv_heads
    query_block = min(block, query_length)
    key_block = min(block, key_length)
    query_blocks = _ceil_div(query_length, query_block)
    key_blocks = _ceil_div(key_length, key_block)
    padded_queries = query_blocks * query_block
    padded_keys = key_blocks * key_block
    start_index = ops.cast(start_index, "int32")

    # ---------------------------------------------------------------- masks
    # Padding masks and the attention mask are padded to whole tiles (False)
    # and cut into tiles once; the loops pick one tile with `take`.
    key_valid = None
    if key_mask is not None:
        key_valid = ops.logical_and(
            ops.cast(key_mask, "bool"), ops.ones((1, key_length), "bool")
        )
    if padded_keys != key_length:
        if key_valid is None:
            key_valid = ops.ones((1, key_length), "bool")
        key_valid = ops.pad(key_valid, ((0, 0), (0, padded_keys - key_length)))
    if key_valid is not None:
        # (B|1, key_blocks, 1, 1, 1, key_block): tile j -> (B|1, 1, 1, 1, key_block)
        key_valid = ops.reshape(key_valid, (-1, key_blocks, 1, 1, 1, key_block))

    query_valid = None
    if query_mask is not None:
        query_valid = ops.logical_and(
            ops.cast(query_mask, "bool"), ops.ones((1, query_length), "bool")
        )

    tiles_of_mask = None
    if attention_mask is not None:
        mask = ops.cast(attention_mask, "bool")
        mask_batch, mask_heads, mask_queries, mask_keys = mask.shape
        if mask_heads not in (1, num_heads) or mask_queries not in (1, query_length) or (
            mask_keys not in (1, key_length)
        ):
            raise ValueError(
                f"`attention_mask` must broadcast to (B, {num_heads}, {query_length}, "
                f"{key_length}). Received: attention_mask with shape {tuple(mask.shape)}"
            )
        pad_queries = padded_queries - query_length if mask_queries != 1 else 0
        pad_keys = padded_keys - key_length if mask_keys != 1 else 0
        if pad_queries or pad_keys:
            mask = ops.pad(mask, ((0, 0), (0, 0), (0, pad_queries), (0, pad_keys)))
        mask_q_tiles, mask_q_rows = (1, 1) if mask_queries == 1 else (query_blocks, query_block)
        mask_k_tiles, mask_k_cols = (1, 1) if mask_keys == 1 else (key_blocks, key_block)
        mask_kv_heads, mask_groups = (1, 1) if mask_heads == 1 else (kv_heads, groups)
        mask = ops.reshape(
            mask,
            (-1, mask_kv_heads, mask_groups, mask_q_tiles, mask_q_rows, mask_k_tiles, mask_k_cols),
        )
        tiles_of_mask = (mask, mask_q_tiles > 1, mask_k_tiles > 1)

    def visible(i, j):
        """Boolean mask of tile (i, j), broadcastable to (B, K, G, Bq, Bk),
        or None when everything is visible."""
        parts = []
        if key_valid is not None:
            parts.append(ops.take(key_valid, j, axis=1))
        if causal or sliding_window is not None:
            query_positions = start_index + i * query_block + ops.arange(query_block, dtype="int32")
            key_positions = j * key_block + ops.arange(key_block, dtype="int32")
            offset = query_positions[:, None] - key_positions[None, :]
            if causal:
                parts.append(ops.greater_equal(offset, 0))
            if sliding_window is not None:
                parts.append(ops.less(ops.abs(offset), sliding_window))
        if tiles_of_mask is not None:
            mask, by_query, by_key = tiles_of_mask
            tile = ops.take(mask, i if by_query else 0, axis=3)
            tile = ops.take(tile, j if by_key else 0, axis=4)
            parts.append(tile)
        merged = None
        for part in parts:
            merged = part if merged is None else ops.logical_and(merged, part)
        return merged

    def key_range(i):
        """Key tiles `[lo, hi)` that query tile `i` can see."""
        first = start_index + i * query_block
        last = first + query_block - 1
        return _block_range(
            first, last, key_block, key_blocks,
            sliding_window,
            1 if causal else sliding_window,
        )

    def query_range(j):
        """Query tiles `[lo, hi)` that can see key tile `j` (the key range
        seen from the other side)."""
        first = j * key_block - start_index
        last = first + key_block - 1
        return _block_range(
            first, last, query_block, query_blocks,
            1 if causal else sliding_window,
            sliding_window,
        )

    # -------------------------------------------------------------- tiling
    def to_query_tiles(x):
        """(B, T, N, D) -> (B, query_blocks, Bq, K, G, D), padded with zeros."""
        if padded_queries != query_length:
            x = ops.pad(x, ((0, 0), (0, padded_queries - query_length), (0, 0), (0, 0)))
        return ops.reshape(x, (-1, query_blocks, query_block, kv_heads, groups, x.shape[-1]))

    def from_query_tiles(tiles):
        """(query_blocks, B, Bq, K, G, D) -> (B, T, N, D)."""
        tiles = ops.transpose(tiles, (1, 0, 2, 3, 4, 5))
        x = ops.reshape(tiles, (-1, padded_queries, num_heads, tiles.shape[-1]))
        return x[:, :query_length]

    def to_key_tiles(x):
        """(B, S, K, D) -> (B, key_blocks, Bk, K, D), padded with zeros."""
        if padded_keys != key_length:
            x = ops.pad(x, ((0, 0), (0, padded_keys - key_length), (0, 0), (0, 0)))
        return ops.reshape(x, (-1, key_blocks, key_block, kv_heads, x.shape[-1]))

    def from_key_tiles(tiles):
        """(key_blocks, B, Bk, K, D) -> (B, S, K, D)."""
        tiles = ops.transpose(tiles, (1, 0, 2, 3, 4))
        x = ops.reshape(tiles, (-1, padded_keys, kv_heads, tiles.shape[-1]))
        return x[:, :key_length]

    def tile_logits(q_tile, k_tile, mask):
        # (B, Bq, K, G, H) x (B, Bk, K, H) -> (B, K, G, Bq, Bk), float32
        logits = ops.cast(ops.einsum("bqkgh,bskh->bkgqs", q_tile, k_tile), "float32")
        if mask is not None:
            logits = ops.where(mask, logits, _MASKED_LOGIT)
        return logits

    def tile_weights(q_tile, k_tile, lse_tile, mask):
        """The softmax weights of one tile, from the rows' log-sum-exp."""
        weights = ops.exp(tile_logits(q_tile, k_tile, mask) - lse_tile[..., None])
        if mask is not None:
            weights = ops.where(mask, weights, 0.0)
        return weights

    compute_dtype = query.dtype
    value_dtype = value.dtype

    def forward(q, k, v):
        q_tiles, k_tiles, v_tiles = to_query_tiles(q), to_key_tiles(k), to_key_tiles(v)
        batch = ops.shape(q)[0]
        row_shape = (batch, kv_heads, groups, query_block)

        def one_query_tile(i):
            q_tile = ops.take(q_tiles, i, axis=1)

            def step(j, carry):
                accumulated, running_max, running_sum = carry
                k_tile = ops.take(k_tiles, j, axis=1)
                v_tile = ops.take(v_tiles, j, axis=1)
                mask = visible(i, j)
                logits = tile_logits(q_tile, k_tile, mask)
                new_max = ops.maximum(running_max, ops.max(logits, axis=-1))
                weights = ops.exp(logits - new_max[..., None])
                if mask is not None:
                    weights = ops.where(mask, weights, 0.0)
                correction = ops.exp(running_max - new_max)
                running_sum = running_sum * correction + ops.sum(weights, axis=-1)
                values = ops.einsum(
                    "bkgqs,bskd->bqkgd", ops.cast(weights, value_dtype), v_tile
                )
                correction = ops.transpose(correction, (0, 3, 1, 2))[..., None]
                accumulated = accumulated * correction + ops.cast(values, "float32")
                return accumulated, new_max, running_sum

            lo, hi = key_range(i)
            initial = (
                ops.zeros((batch, query_block, kv_heads, groups, value_size), "float32"),
                ops.full(row_shape, _MASKED_LOGIT, "float32"),
                ops.zeros(row_shape, "float32"),
            )
            accumulated, running_max, running_sum = ops.fori_loop(lo, hi, step, initial)
            seen = running_sum > 0
            safe_sum = ops.where(seen, running_sum, 1.0)
            out = accumulated / ops.transpose(safe_sum, (0, 3, 1, 2))[..., None]
            lse = ops.where(seen, running_max + ops.log(safe_sum), 0.0)
            return ops.cast(out, compute_dtype), lse

        outputs, lse = ops.map(one_query_tile, ops.arange(query_blocks, dtype="int32"))
        out = from_query_tiles(outputs)
        if query_valid is not None:
            out = out * ops.cast(query_valid, out.dtype)[:, :, None, None]
        return out, lse  # lse: (query_blocks, B, K, G, Bq)

    def backward(q, k, v, out, lse, grad_out):
        grad_out = ops.cast(grad_out, "float32")
        if query_valid is not None:
            grad_out = grad_out * ops.cast(query_valid, "float32")[:, :, None, None]
        # D_i = sum_d dO_id O_id, per query row: (B, T, N)
        row_dot = ops.sum(grad_out * ops.cast(out, "float32"), axis=-1)
        grad_out_tiles = to_query_tiles(ops.cast(grad_out, value_dtype))
        row_dot_tiles = to_query_tiles(row_dot[..., None])[..., 0]  # (B, nQ, Bq, K, G)
        q_tiles, k_tiles, v_tiles = to_query_tiles(q), to_key_tiles(k), to_key_tiles(v)
        batch = ops.shape(q)[0]

        def tile_terms(i, j):
            q_tile = ops.take(q_tiles, i, axis=1)
            k_tile = ops.take(k_tiles, j, axis=1)
            v_tile = ops.take(v_tiles, j, axis=1)
            grad_out_tile = ops.take(grad_out_tiles, i, axis=1)
            lse_tile = ops.take(lse, i, axis=0)
            row_dot_tile = ops.transpose(ops.take(row_dot_tiles, i, axis=1), (0, 2, 3, 1))
            weights = tile_weights(q_tile, k_tile, lse_tile, visible(i, j))
            grad_weights = ops.cast(
                ops.einsum("bqkgd,bskd->bkgqs", grad_out_tile, v_tile), "float32"
            )
            grad_logits = weights * (grad_weights - row_dot_tile[..., None])
            return q_tile, k_tile, grad_out_tile, weights, grad_logits

        def query_gradient(i):
            def step(j, grad_q):
                _, k_tile, _, _, grad_logits = tile_terms(i, j)
                return grad_q + ops.cast(
                    ops.einsum(
                        "bkgqs,bskh->bqkgh", ops.cast(grad_logits, k_tile.dtype), k_tile
                    ),
                    "float32",
                )

            lo, hi = key_range(i)
            initial = ops.zeros((batch, query_block, kv_heads, groups, head_size), "float32")
            return ops.fori_loop(lo, hi, step, initial)

        def key_value_gradients(j):
            def step(i, carry):
                grad_k, grad_v = carry
                q_tile, _, grad_out_tile, weights, grad_logits = tile_terms(i, j)
                grad_v = grad_v + ops.cast(
                    ops.einsum(
                        "bkgqs,bqkgd->bskd", ops.cast(weights, value_dtype), grad_out_tile
                    ),
                    "float32",
                )
                grad_k = grad_k + ops.cast(
                    ops.einsum(
                        "bkgqs,bqkgh->bskh", ops.cast(grad_logits, q_tile.dtype), q_tile
                    ),
                    "float32",
                )
                return grad_k, grad_v

            lo, hi = query_range(j)
            initial = (
                ops.zeros((batch, key_block, kv_heads, head_size), "float32"),
                ops.zeros((batch, key_block, kv_heads, value_size), "float32"),
            )
            return ops.fori_loop(lo, hi, step, initial)

        grad_q = from_query_tiles(
            ops.map(query_gradient, ops.arange(query_blocks, dtype="int32"))
        )
        grad_k, grad_v = ops.map(key_value_gradients, ops.arange(key_blocks, dtype="int32"))
        return grad_q, from_key_tiles(grad_k), from_key_tiles(grad_v)

    # keras.ops.custom_gradient: the masks and options are closed over (no
    # gradient); the gradient is only defined for the query, key and value.
    @ops.custom_gradient
    def attend(q, k, v):
        scaled = q * ops.cast(scale, q.dtype)
        out, lse = forward(scaled, k, v)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            grad_scaled, grad_k, grad_v = backward(scaled, k, v, out, lse, upstream)
            grad_q = grad_scaled * scale
            return (
                ops.cast(grad_q, q.dtype),
                ops.cast(grad_k, k.dtype),
                ops.cast(grad_v, v.dtype),
            )

        return out, grad

    return attend(query, key, value)
