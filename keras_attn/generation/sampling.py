"""Greedy decoding and temperature / top-k / top-p sampling in one compiled
loop whose options are tensors."""

import numbers

import keras
import numpy as np
from keras import ops

from keras_attn.generation.decoding import (
    call_next_fn,
    check_prefill_logits,
    check_prompts,
    column,
    write_column,
)
from keras_attn.generation.logits_processors import (
    check_repetition_controls,
    repetition_processor,
)
from keras_attn.utils.arguments import (
    check_non_negative_int,
    check_non_negative_number,
    check_number_or_scalar_tensor,
    check_unit_interval,
    is_python_number,
)

_SEED_MODULUS = 2**31 - 1


class _TensorSeed(keras.random.SeedGenerator):
    """Hands `keras.random` one given seed tensor, shape `(2,)` int32.

    `keras.random` ops are stateless given a seed, but accept only Python ints
    or a `SeedGenerator` (whose state is a variable). This generator holds no
    variable: it returns the seed it was built with, so the seed can be a
    traced tensor (a serving input) and a compiled loop stays pure.
    """

    def __init__(self, seed):  # no variable: deliberately skips the base init
        self._seed = seed

    def next(self, ordered=True):
        return self._seed


def sample(
    next_fn,
    token_ids,
    prompt_mask,
    cache,
    temperature=0.0,
    top_k=0,
    top_p=1.0,
    seed=None,
    stop_token_ids=(),
    pad_id=0,
    start_index=0,
    no_repeat_ngram_size=0,
    repetition_penalty=1.0,
    max_new_tokens=None,
    prefill_logits=None,
):
    """Extends right-padded prompts by greedy decoding or sampling.

    One `ops.while_loop` (XLA-compilable) over a fixed-size buffer. For
    `i = start_index .. L - 2` it feeds the token at position `i` to
    `next_fn` and fills position `i + 1` where it is not a prompt token (see
    `keras_attn.generation.decoding` for the `next_fn` contract). Rows are
    independent: a mixed-length batch gives what each prompt gives alone.

    `temperature`, `top_k`, `top_p`, `seed`, `no_repeat_ngram_size` and
    `repetition_penalty` may be Python numbers or scalar tensors; tensors are
    handled inside the graph, so a function traced once serves any values
    (e.g. optional serving inputs of an exported model).

    Args:
        next_fn: `(token_ids (B, 1), cache, index) -> (logits (B, vocab), cache)`.
        token_ids: `(B, L)` int, prompts right-padded into the output buffer.
        prompt_mask: `(B, L)` bool, True on each row's prompt (a non-empty
            prefix).
        cache: the model's cache nest (batch on axis 0) or `None`. By default
            it is empty and the loop runs `next_fn` from position 0 (the
            prompt is fed token by token). Pass a cache prefilled with the
            first `start_index` positions (e.g. by one full forward pass)
            and `start_index` to skip them.
        temperature: 0 is greedy (argmax); > 0 samples from
            `softmax(logits / temperature)`.
        top_k: sample among the `top_k` highest logits; 0 = no limit.
        top_p: nucleus sampling: the smallest set of most likely tokens whose
            probability (after temperature and `top_k`) reaches `top_p`; at
            least one token is always kept; 1.0 = no limit. Tokens tied with
            the last kept logit are kept too.
        seed: int or scalar int tensor. The noise of the step filling
            position `p` is drawn from the stateless seed `(seed, p)`, so one
            seed gives one output. `None` draws a seed from Keras' global
            generator (reproducible after `keras.utils.set_random_seed`); in
            compiled or exported functions pass a seed. One seed gives one
            output per execution mode: TensorFlow's XLA random kernels draw
            other numbers than its eager / graph ones.
        stop_token_ids: token ids (a sequence of ints or a 1-D int tensor);
            once a row generated one of them, its later non-prompt positions
            are `pad_id`, and the loop ends when every row has stopped.
        pad_id: int written after a stop token and past the prompts of rows
            that stopped.
        start_index: int or scalar int tensor, the number of leading
            positions already written into `cache`; it must be smaller than
            every prompt length.
        no_repeat_ngram_size: `n`, int >= 0: a token that would complete an
            n-gram already in the row (prompt included) is never chosen;
            0 = off.
        repetition_penalty: CTRL's penalty (Keskar et al. 2019), a number
            > 0: the logit of every token already in the row (prompt
            included) is divided by it when positive, multiplied by it
            otherwise; 1.0 = off, > 1 discourages repeats. Both controls act
            on the logits before temperature, `top_k` and `top_p` (see
            `keras_attn.generation.logits_processors`).
        max_new_tokens: the most tokens generated per row, counted from
            each row's prompt length: an int >= 0, a scalar or `(B,)` int
            tensor; `None` fills the buffer. A row past its budget is done
            (its later positions are `pad_id`) and the loop ends as soon as
            every row is done, so a short budget in a long buffer costs only
            its own steps.
        prefill_logits: `(B, vocab)` float, what `next_fn` would return for
            the token at `start_index`, already computed (e.g. at the last
            prompt position of a parallel prefill); `cache` then already
            holds position `start_index` too. The loop starts by choosing
            position `start_index + 1` from them, saving one model step.

    Returns:
        `(token_ids, generated_mask)`, both `(B, L)`: the prompts with the
        generated tokens, and True where a token was generated (not prompt,
        not padding after a stop token). Symbolic (traced) option values are
        not checked; out-of-range ones act as their nearest valid value
        (temperature <= 0 greedy, top_k <= 0 no limit, top_p keeps >= 1 token,
        no_repeat_ngram_size <= 0 off, repetition_penalty <= 0 or NaN off).

    Example:
    >>> table = 4.0 * np.eye(8, k=1, dtype="float32")  # a bigram "model": t -> t + 1
    >>> next_fn = lambda ids, cache, index: (ops.take(table, ids[:, 0], axis=0), cache)
    >>> ids = np.array([[1, 2, 0, 0, 0], [3, 0, 0, 0, 0]])  # prompts [1, 2] and [3]
    >>> out, generated = sample(next_fn, ids, ids > 0, None, temperature=0)  # greedy
    >>> ops.convert_to_numpy(out).tolist()
    [[1, 2, 3, 4, 5], [3, 4, 5, 6, 7]]
    >>> out, generated = sample(next_fn, ids, ids > 0, None, temperature=0, stop_token_ids=[4])
    >>> ops.convert_to_numpy(out).tolist()  # padded with 0 after the stop token
    [[1, 2, 3, 4, 0], [3, 4, 0, 0, 0]]
    >>> out, generated = sample(next_fn, ids, ids > 0, None, temperature=0.8, top_k=3, seed=7)
    >>> ops.convert_to_numpy(generated).tolist()
    [[False, False, True, True, True], [False, True, True, True, True]]
    >>> loop = table.copy()
    >>> loop[2, 1], loop[1, 3] = 5.0, 3.0  # 1 -> 2 -> 1 -> 2 ...; 3 is second after 1
    >>> loop_fn = lambda ids, cache, index: (ops.take(loop, ids[:, 0], axis=0), cache)
    >>> ids = np.array([[1, 0, 0, 0, 0, 0]])
    >>> out, _ = sample(loop_fn, ids, ids > 0, None)
    >>> ops.convert_to_numpy(out).tolist()
    [[1, 2, 1, 2, 1, 2]]
    >>> out, _ = sample(loop_fn, ids, ids > 0, None, no_repeat_ngram_size=2)
    >>> ops.convert_to_numpy(out).tolist()  # "1 2" once only: 3 follows the second 1
    [[1, 2, 1, 3, 4, 5]]
    """
    temperature, top_k, top_p = check_sampling_options(temperature, top_k, top_p)
    pad_id = check_non_negative_int("pad_id", pad_id)
    stop_token_ids = _check_stop_token_ids(stop_token_ids)
    process_logits = repetition_processor(
        *check_repetition_controls(no_repeat_ngram_size, repetition_penalty)
    )
    token_ids, prompt_mask, start_index = check_prompts(token_ids, prompt_mask, start_index)
    greedy_only = is_python_number(temperature) and temperature == 0
    seed = _seed_tensor(seed, greedy_only)
    choose = _token_chooser(temperature, top_k, top_p)
    length = ops.shape(token_ids)[1]
    has_cache = cache is not None

    token_ids = ops.where(prompt_mask, token_ids, pad_id)
    generated = ops.zeros_like(prompt_mask)
    # Each row's end: the first position it may not generate.
    ends = end_positions(prompt_mask, max_new_tokens)
    # A row whose prompt fills the buffer or its budget has nothing to generate.
    done = ops.sum(ops.cast(prompt_mask, "int32"), axis=1) >= ends

    def fill(logits, position, token_ids, generated, done):
        """Position `position` of every row, from the logits predicting it."""
        if process_logits is not None:
            logits = process_logits(logits, token_ids, position - 1)
        new = choose(logits, ops.stack([seed, position]))
        is_prompt = column(prompt_mask, position)
        fresh = ops.logical_and(ops.logical_not(is_prompt), ops.logical_not(done))
        token = ops.where(is_prompt, column(token_ids, position), ops.where(done, pad_id, new))
        token_ids = write_column(token_ids, position, token)
        generated = write_column(generated, position, fresh)
        if stop_token_ids is not None:
            stopped = ops.any(ops.equal(new[:, None], stop_token_ids[None, :]), axis=1)
            done = ops.logical_or(done, ops.logical_and(fresh, stopped))
        # The row's last position is filled: nothing more to generate.
        done = ops.logical_or(done, position + 1 >= ends)
        return token_ids, generated, done

    def cond(index, token_ids, generated, done, cache):
        return ops.logical_and(index < length - 1, ops.logical_not(ops.all(done)))

    def body(index, token_ids, generated, done, cache):
        logits, cache = call_next_fn(next_fn, token_ids, cache, index, has_cache)
        token_ids, generated, done = fill(logits, index + 1, token_ids, generated, done)
        return index + 1, token_ids, generated, done, cache

    index = start_index
    if prefill_logits is not None:
        logits = check_prefill_logits(prefill_logits)
        # Prompts filling the whole buffer leave no position to fill: the
        # clamped write then rewrites the last prompt token with itself.
        position = ops.minimum(start_index + 1, length - 1)
        token_ids, generated, done = fill(logits, position, token_ids, generated, done)
        index = start_index + 1
    _, token_ids, generated, _, _ = ops.while_loop(
        cond,
        body,
        (index, token_ids, generated, done, () if cache is None else cache),
        maximum_iterations=ops.maximum(length - 1 - index, 0),
    )
    return token_ids, generated


def end_positions(prompt_mask, max_new_tokens):
    """`(B,)` int32: each row's prompt length plus `max_new_tokens` (an int
    >= 0, a scalar or `(B,)` int tensor), at most the buffer length; the
    buffer length for `None`."""
    length = ops.shape(prompt_mask)[1]
    prompt_length = ops.sum(ops.cast(prompt_mask, "int32"), axis=1)
    if max_new_tokens is None:
        return ops.full_like(prompt_length, length)
    if is_python_number(max_new_tokens):
        max_new_tokens = check_non_negative_int("max_new_tokens", max_new_tokens)
    else:
        max_new_tokens = ops.convert_to_tensor(max_new_tokens)
        if len(max_new_tokens.shape) > 1 or "int" not in keras.backend.standardize_dtype(
            max_new_tokens.dtype
        ):
            raise ValueError(
                "`max_new_tokens` must be an integer, or a scalar or (batch,) int tensor. "
                f"Received: max_new_tokens with shape {tuple(max_new_tokens.shape)} and dtype "
                f"{keras.backend.standardize_dtype(max_new_tokens.dtype)}"
            )
        # A traced negative budget acts as 0.
        max_new_tokens = ops.maximum(ops.cast(max_new_tokens, "int32"), 0)
    return ops.minimum(prompt_length + max_new_tokens, length)


def check_sampling_options(temperature, top_k, top_p):
    """Checks `temperature` (>= 0), `top_k` (int >= 0) and `top_p` (in
    [0, 1]), each a number or a scalar tensor (checked when its value is
    known); returns them. Callers that turn the options into tensors before
    a compiled loop check them here first."""
    temperature = check_number_or_scalar_tensor(
        "temperature", temperature, check_non_negative_number
    )
    top_k = check_number_or_scalar_tensor("top_k", top_k, check_non_negative_int)
    top_p = check_number_or_scalar_tensor("top_p", top_p, check_unit_interval)
    return temperature, top_k, top_p


def _token_chooser(temperature, top_k, top_p):
    """`(logits (B, V) float32, seed (2,) int32) -> (B,) int32`.

    Python option values decide branches while tracing; tensor values through
    `ops.cond`, so one trace serves all values.
    """

    def choose(logits, seed):
        greedy = ops.cast(ops.argmax(logits, axis=-1), "int32")

        def sampled():
            scaled = logits / ops.maximum(ops.cast(temperature, "float32"), 1e-6)
            if is_python_number(top_k) and is_python_number(top_p):
                no_limit = top_k == 0 and top_p >= 1
                filtered = scaled if no_limit else _filter_logits(scaled, top_k, top_p)
            else:
                needs_filter = ops.logical_or(
                    ops.convert_to_tensor(top_k) > 0, ops.convert_to_tensor(top_p) < 1
                )
                filtered = ops.cond(
                    needs_filter, lambda: _filter_logits(scaled, top_k, top_p), lambda: scaled
                )
            # Gumbel-max: argmax(logits + Gumbel noise) is a sample of
            # softmax(logits). The noise is drawn per vocabulary id whatever
            # is filtered out, so top_k / top_p only remove candidates and one
            # seed picks consistent tokens across settings.
            gumbel = -ops.log(-ops.log(_uniform_noise(ops.shape(filtered), seed)))
            return ops.cast(ops.argmax(filtered + gumbel, axis=-1), "int32")

        if is_python_number(temperature):
            return greedy if temperature == 0 else sampled()
        return ops.cond(ops.convert_to_tensor(temperature) > 0, sampled, lambda: greedy)

    return choose


def _uniform_noise(shape, seed):
    """Uniform noise in (0, 1) from a stateless `(2,)` int32 seed tensor."""
    return keras.random.uniform(shape, minval=1e-20, maxval=1.0, seed=_TensorSeed(seed))


def _filter_logits(logits, top_k, top_p):
    """Sets to -inf every logit outside the top `top_k` (0 = all) and outside
    the nucleus `top_p` of what remains; the best token always stays."""
    vocab = ops.shape(logits)[-1]
    ranked = -ops.sort(-logits, axis=-1)  # (B, V), descending
    rank = ops.arange(vocab, dtype="int32")[None, :]
    top_k = ops.cast(top_k, "int32")
    k = ops.where(top_k > 0, ops.minimum(top_k, vocab), vocab)
    in_top_k = rank < k
    probabilities = ops.softmax(ops.where(in_top_k, ranked, -np.inf), axis=-1)
    # Probability mass strictly before each rank: a token is kept while the
    # tokens above it have not yet reached `top_p`.
    mass_before = ops.cumsum(probabilities, axis=-1) - probabilities
    keep = ops.logical_and(in_top_k, mass_before < ops.cast(top_p, "float32"))
    keep = ops.logical_or(keep, rank == 0)
    threshold = ops.min(ops.where(keep, ranked, np.inf), axis=-1, keepdims=True)
    return ops.where(logits >= threshold, logits, -np.inf)


def _seed_tensor(seed, greedy_only):
    if seed is None:
        if greedy_only:
            return ops.convert_to_tensor(0, "int32")
        return keras.random.randint((), 0, _SEED_MODULUS, dtype="int32")
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return ops.convert_to_tensor(int(seed) % _SEED_MODULUS, "int32")
    if isinstance(seed, (bool, numbers.Number)):
        raise ValueError(f"`seed` must be an integer or an int tensor. Received: seed={seed!r}")
    seed = ops.convert_to_tensor(seed)
    if len(seed.shape) != 0 or "int" not in keras.backend.standardize_dtype(seed.dtype):
        raise ValueError(
            "`seed` must be an integer or a scalar int tensor. Received: seed with shape "
            f"{tuple(seed.shape)} and dtype {keras.backend.standardize_dtype(seed.dtype)}"
        )
    return ops.cast(seed, "int32")


def _check_stop_token_ids(stop_token_ids):
    """Returns a 1-D int32 tensor, or `None` when there is none."""
    if stop_token_ids is None:
        return None
    if isinstance(stop_token_ids, (list, tuple, set, frozenset)):
        ids = list(stop_token_ids)
        for value in ids:
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    "`stop_token_ids` must be non-negative integer token ids. "
                    f"Received: stop_token_ids={stop_token_ids!r}"
                )
        return ops.convert_to_tensor(ids, "int32") if ids else None
    ids = ops.convert_to_tensor(stop_token_ids)
    if len(ids.shape) != 1 or "int" not in keras.backend.standardize_dtype(ids.dtype):
        raise ValueError(
            "`stop_token_ids` must be a sequence of ints or a 1-D int tensor. Received: "
            f"stop_token_ids with shape {tuple(ids.shape)}"
        )
    return ops.cast(ids, "int32")

