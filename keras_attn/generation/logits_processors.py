"""Repetition controls that `sample` and `beam_search` apply to each step's
logits inside their compiled loop: an n-gram ban and a repetition penalty.

Both read the row's own buffer (prompt included, as Hugging Face's
`NoRepeatNGramLogitsProcessor` and `RepetitionPenaltyLogitsProcessor` do):
positions `0 .. index` are filled when position `index + 1` is chosen, the
slots after it (padding, prompts of longer rows not reached yet) never
count. Shapes are static (`(B, L)` buffer, `(B, V)` logits) and the options
may be scalar tensors, so one XLA trace serves every value.
"""

import math

import numpy as np
from keras import ops

from keras_attn.utils.arguments import (
    ArgumentError,
    check_non_negative_int,
    check_number_or_scalar_tensor,
    is_python_number,
)


def _check_penalty(name, value):
    valid = is_python_number(value) and math.isfinite(value) and value > 0
    if not valid:
        raise ArgumentError.of(name, "a finite number > 0 (1.0: off)", value)
    return float(value)


def check_repetition_controls(no_repeat_ngram_size, repetition_penalty):
    """Checks the two options; returns them as Python numbers or scalar
    tensors (int32, float32). Known values must be an integer >= 0 and a
    finite number > 0; traced ones act as their nearest valid value (a size
    <= 0 is off, a penalty <= 0 or NaN is off)."""
    size = check_number_or_scalar_tensor(
        "no_repeat_ngram_size", no_repeat_ngram_size, check_non_negative_int
    )
    penalty = check_number_or_scalar_tensor(
        "repetition_penalty", repetition_penalty, _check_penalty
    )
    if not is_python_number(size):
        size = ops.cast(size, "int32")
    if not is_python_number(penalty):
        penalty = ops.cast(penalty, "float32")
    return size, penalty


def repetition_processor(no_repeat_ngram_size, repetition_penalty):
    """`(logits (B, V), token_ids (B, L), index) -> logits`, or `None` when
    both controls are Python values that turn them off (the loop is then the
    plain one).

    The penalty comes first, then the ban; a row whose every token would be
    banned keeps its penalized logits rather than an all `-inf` row.
    """
    size, penalty = no_repeat_ngram_size, repetition_penalty
    size_off = is_python_number(size) and size == 0
    penalty_off = is_python_number(penalty) and penalty == 1.0
    if size_off and penalty_off:
        return None

    def process(logits, token_ids, index):
        if not penalty_off:
            if is_python_number(penalty):
                logits = penalize_repetitions(logits, token_ids, index, penalty)
            else:
                # NaN compares unequal to 1 but fails `> 0`: off, as documented.
                active = ops.logical_and(penalty > 0, ops.not_equal(penalty, 1.0))
                logits = ops.cond(
                    active,
                    lambda: penalize_repetitions(logits, token_ids, index, penalty),
                    lambda: logits,
                )
        if not size_off:
            if is_python_number(size):
                logits = ban_repeated_ngrams(logits, token_ids, index, size)
            else:
                logits = ops.cond(
                    size > 0,
                    lambda: ban_repeated_ngrams(logits, token_ids, index, size),
                    lambda: logits,
                )
        return logits

    return process


def _filled(token_ids, index):
    """`(B, L)` bool: the positions `<= index` (the row's history)."""
    length = ops.shape(token_ids)[1]
    return ops.broadcast_to(
        ops.arange(length, dtype="int32")[None, :] <= ops.cast(index, "int32"),
        ops.shape(token_ids),
    )


def _token_set(token_ids, selected, vocabulary_size):
    """`(B, V)` bool: True for every token `token_ids[b, j]` with
    `selected[b, j]`, by one scatter (duplicates add up)."""
    batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
    rows = ops.broadcast_to(ops.arange(batch, dtype="int32")[:, None], (batch, length))
    indices = ops.stack([ops.reshape(rows, (-1,)), ops.reshape(token_ids, (-1,))], axis=1)
    counts = ops.scatter(
        indices, ops.reshape(ops.cast(selected, "int32"), (-1,)), (batch, vocabulary_size)
    )
    return counts > 0


def penalize_repetitions(logits, token_ids, index, penalty):
    """CTRL's repetition penalty (Keskar et al. 2019): the logit of every
    token at positions `<= index` is divided by `penalty` when positive and
    multiplied by it otherwise, so `penalty > 1` makes any present token less
    likely.

    Args:
        logits: `(B, V)` float32, the prediction for position `index + 1`.
        token_ids: `(B, L)` int32, the buffer.
        index: scalar int, the last filled position.
        penalty: a number or scalar float tensor, > 0.

    Returns:
        The penalized logits, `(B, V)`.
    """
    vocabulary_size = logits.shape[-1] or ops.shape(logits)[-1]
    present = _token_set(token_ids, _filled(token_ids, index), vocabulary_size)
    penalty = ops.cast(penalty, logits.dtype)
    penalized = ops.where(logits > 0, logits / penalty, logits * penalty)
    return ops.where(present, penalized, logits)


def banned_ngram_tokens(token_ids, index, size, vocabulary_size):
    """`(B, V)` bool: the tokens that would complete, at position
    `p = index + 1`, an n-gram (`n = size`) already in the row.

    Token `token_ids[b, q]` is banned when the `n - 1` tokens before
    position `q` equal the `n - 1` tokens before `p`, for every `q` with
    `n - 1 <= q <= index` (the whole n-gram lies in the filled positions).
    `n = 1` bans every token present. The comparison runs over one shift
    `k = 1 .. n - 1` at a time, each over the whole buffer: `O(n B L)` work
    with static shapes, and `size` may be a scalar tensor.

    Args:
        token_ids: `(B, L)` int32, the buffer.
        index: scalar int, the last filled position.
        size: `n`, a positive int or scalar int tensor.
        vocabulary_size: `V`.
    """
    token_ids = ops.cast(token_ids, "int32")
    index = ops.cast(index, "int32")
    size = ops.cast(size, "int32")
    length = ops.shape(token_ids)[1]
    position = ops.arange(length, dtype="int32")  # q
    following = index + 1  # p

    def compare_shift(k, matches):
        # token_ids[:, q - k] == token_ids[:, p - k], for every q at once.
        before_q = ops.take(token_ids, ops.maximum(position - k, 0), axis=1)
        before_p = ops.take(token_ids, ops.maximum(following - k, 0), axis=1)
        return ops.logical_and(matches, ops.equal(before_q, before_p[:, None]))

    matches = ops.fori_loop(
        1, size, compare_shift, ops.ones(ops.shape(token_ids), dtype="bool")
    )
    in_history = ops.logical_and(position >= size - 1, position <= index)[None, :]
    return _token_set(token_ids, ops.logical_and(matches, in_history), vocabulary_size)


def ban_repeated_ngrams(logits, token_ids, index, size):
    """`logits` with `-inf` on every token `banned_ngram_tokens` names; a row
    where that would be every token is left as it is."""
    vocabulary_size = logits.shape[-1] or ops.shape(logits)[-1]
    banned = banned_ngram_tokens(token_ids, index, size, vocabulary_size)
    banned = ops.logical_and(banned, ops.logical_not(ops.all(banned, axis=-1, keepdims=True)))
    return ops.where(banned, ops.cast(-np.inf, logits.dtype), logits)
