"""What `sample` and `beam_search` share: the `next_fn` contract, the checks
on the prompt buffer, and one-column reads and writes inside a compiled loop.

The contract between a model and a decoding loop:

    logits, cache = next_fn(token_ids, cache, index)

- `token_ids`: `(B, 1)` int32, the token at position `index`;
- `index`: scalar int32 tensor; the model writes this token into its caches
  at slot `index` (attention sees slots `<= index`);
- `logits`: `(B, vocab)` float, the prediction for position `index + 1`
  (`(B, 1, vocab)` is accepted too);
- `cache`: any nest (tuple / list / dict) of tensors whose axis 0 is the
  batch, returned with the same structure, shapes and dtypes.

Prompts are right-padded into a fixed buffer `token_ids` `(B, L)` with
`prompt_mask` `(B, L)` True on a prefix of every row. The loop feeds
position `i` and fills position `i + 1` for `i = start_index .. L - 2`,
keeping prompt tokens where `prompt_mask` is True. The caches are causal, so
the padding a short row writes past its prompt is overwritten with the
generated token before any later step reads it: a mixed-length batch gives
what each prompt gives alone.
"""


import keras
import numpy as np
from keras import ops

from keras_attn.utils.arguments import (
    check_non_negative_int,
    check_rank,
    concrete_value,
    is_python_number,
)


def check_prompts(token_ids, prompt_mask, start_index):
    """Validates the prompt buffer; returns `(token_ids int32, prompt_mask
    bool, start_index int32 scalar tensor)`.

    Checked statically: ranks and equal shapes. Checked when the values are
    known (eager calls): every row holds at least one prompt token, prompts
    are right-padded (a prefix of each row), and `start_index` is smaller than
    every prompt length (its token must be known to be fed).
    """
    token_ids = ops.convert_to_tensor(token_ids)
    prompt_mask = ops.convert_to_tensor(prompt_mask)
    check_rank("token_ids", token_ids.shape, 2, "(batch, length)")
    check_rank("prompt_mask", prompt_mask.shape, 2, "(batch, length)")
    if any(
        a is not None and b is not None and a != b
        for a, b in zip(token_ids.shape, prompt_mask.shape)
    ):
        raise ValueError(
            "`prompt_mask` must have the shape of `token_ids`. Received: token_ids with "
            f"shape {tuple(token_ids.shape)} and prompt_mask with shape "
            f"{tuple(prompt_mask.shape)}"
        )
    if "int" not in keras.backend.standardize_dtype(token_ids.dtype):
        raise ValueError(
            "`token_ids` must hold integer token ids. Received: token_ids with dtype "
            f"{keras.backend.standardize_dtype(token_ids.dtype)}"
        )
    if is_python_number(start_index):
        start_index = check_non_negative_int("start_index", start_index)
    mask = concrete_value(prompt_mask)
    if mask is not None:
        mask = mask.astype(bool)
        lengths = mask.sum(axis=1)
        empty = np.flatnonzero(lengths == 0).tolist()
        if empty:
            raise ValueError(
                "Every row of `prompt_mask` needs at least one prompt token (decoding "
                f"starts from it). Received: prompt_mask with empty row(s) {empty}"
            )
        not_prefix = np.flatnonzero(
            (mask != (np.arange(mask.shape[1])[None, :] < lengths[:, None])).any(axis=1)
        ).tolist()
        if not_prefix:
            raise ValueError(
                "`prompt_mask` must be True on a prefix of each row (right-padded "
                f"prompts). Received: prompt_mask with row(s) {not_prefix} not a prefix"
            )
        start = concrete_value(start_index)
        if start is not None and not 0 <= int(start) < lengths.min():
            raise ValueError(
                "`start_index` (the number of positions already in the cache) must be "
                "in [0, shortest prompt length). Received: "
                f"start_index={int(start)} with prompt lengths {lengths.tolist()}"
            )
    token_ids = ops.cast(token_ids, "int32")
    prompt_mask = ops.cast(prompt_mask, "bool")
    start_index = ops.cast(start_index, "int32")
    return token_ids, prompt_mask, start_index


def column(x, index):
    """`x[:, index]` for a scalar tensor `index`: `(B, L, ...)` -> `(B, ...)`."""
    return ops.take(x, index, axis=1)


def write_column(x, index, values):
    """`x` with `x[:, index] = values`, `values` `(B,)`, as one in-place update."""
    values = ops.cast(values, x.dtype)[:, None]
    start = [ops.convert_to_tensor(0, "int32"), ops.cast(index, "int32")]
    return ops.slice_update(x, start, values)


def check_prefill_logits(logits):
    """Logits given for a loop's first step: `(B, vocab)` (or `(B, 1,
    vocab)`, the last position taken) as float32."""
    logits = ops.convert_to_tensor(logits)
    if len(logits.shape) == 3:
        logits = logits[:, -1]
    check_rank("prefill_logits", logits.shape, 2, "(batch, vocab)")
    return ops.cast(logits, "float32")


def call_next_fn(next_fn, token_ids, cache, index, has_cache):
    """Feeds the tokens at `index` (`token_ids` `(B, L)`), returns `(float32
    logits (B, vocab), cache)`.

    Inside `ops.while_loop` the cache travels as `()` when there is none
    (a loop cannot carry `None`); `next_fn` then receives `None`.
    """
    tokens = column(token_ids, index)[:, None]
    logits, new_cache = next_fn(tokens, cache if has_cache else None, index)
    if len(logits.shape) == 3:
        logits = logits[:, -1]
    check_rank("logits", logits.shape, 2, "(batch, vocab) returned by `next_fn`")
    if has_cache:
        # A list in, a list out: the loop needs the exact structure back.
        new_cache = keras.tree.pack_sequence_as(cache, keras.tree.flatten(new_cache))
    else:
        new_cache = ()
    return ops.cast(logits, "float32"), new_cache
