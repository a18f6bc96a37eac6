"""Beam search with a length penalty and finished hypotheses, in one compiled
loop."""

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
    check_number,
    check_number_or_scalar_tensor,
    check_positive_int,
    is_python_number,
)


def length_penalty_factor(generated_length, alpha):
    """GNMT's length penalty (Wu et al. 2016): `((5 + length) / 6) ** alpha`.

    A hypothesis scores `log_prob / length_penalty_factor(length, alpha)`;
    `alpha = 0` ranks by log-probability, `alpha > 0` favours longer ones.

    Example:
    >>> round(float(length_penalty_factor(5, 1.0)), 4)  # (5 + 5) / 6
    1.6667
    >>> float(length_penalty_factor(5, 0.0))  # alpha 0: no penalty
    1.0
    """
    generated_length = ops.maximum(ops.cast(generated_length, "float32"), 0.0)
    return ops.power((5.0 + generated_length) / 6.0, ops.cast(alpha, "float32"))


def beam_search(
    next_fn,
    token_ids,
    prompt_mask,
    cache,
    num_beams,
    length_penalty=0.0,
    eos_id=None,
    pad_id=0,
    start_index=0,
    return_all_beams=False,
    no_repeat_ngram_size=0,
    repetition_penalty=1.0,
    prefill_logits=None,
):
    """Finds high-scoring continuations of right-padded prompts.

    One `ops.while_loop` (XLA-compilable) over a fixed-size buffer; the
    `next_fn` contract and the prompt layout are those of `sample` (see
    `keras_attn.generation.decoding`). The `num_beams` beams of each prompt are
    flattened into the batch axis, row `b * num_beams + j`, for `next_fn`; the
    cache nest is repeated `num_beams` times on axis 0 and, every step,
    re-gathered by each beam's parent.

    Each step extends every alive beam by every token and keeps the
    `2 * num_beams` best extensions by log-probability:

    - an extension by `eos_id` that ranks among the `num_beams` best becomes a
      finished hypothesis (as in Hugging Face's beam search, so `num_beams=1`
      is greedy decoding), scored `log_prob / ((5 + n) / 6) ** length_penalty`
      with `n` the number of generated tokens, `eos_id` included; the
      `num_beams` best finished hypotheses are kept and never extended;
    - the `num_beams` best other extensions are the new alive beams.

    A prompt is done when no alive beam can still beat its worst kept
    finished hypothesis (a bound that holds for any `length_penalty`); the
    loop ends when every prompt is done or the buffer is full. The answer is
    the best finished hypothesis, or the best alive beam (scored with the
    penalty of its length) when none finished. Prompt tokens are forced and
    add nothing to the score.

    Args:
        next_fn: `(token_ids (B', 1), cache, index) -> (logits (B', vocab),
            cache)`, called with `B' = B * num_beams`.
        token_ids: `(B, L)` int, prompts right-padded into the output buffer.
        prompt_mask: `(B, L)` bool, True on each row's prompt (a non-empty
            prefix).
        cache: the model's cache nest for `B` rows (batch on axis 0) or
            `None`; empty by default, or prefilled with the first
            `start_index` positions.
        num_beams: static Python int > 0.
        length_penalty: the GNMT `alpha`, a Python number or scalar tensor.
        eos_id: int token that ends a hypothesis, or `None` (every beam runs
            to the end of the buffer).
        pad_id: int written after `eos_id`.
        start_index: int or scalar int tensor, positions already in `cache`.
        return_all_beams: also return the other beams.
        no_repeat_ngram_size, repetition_penalty: as in `sample`, a Python
            number or scalar tensor each. They act on every beam's logits
            with that beam's own history, before the log-softmax, so beam
            scores are log-probabilities of the controlled distribution and
            `num_beams=1` stays greedy decoding with the same controls.
        prefill_logits: `(B, vocab)` float, `next_fn`'s output for the
            token at `start_index` of each prompt, already computed (e.g. by
            a parallel prefill); `cache` then holds position `start_index`
            too. The first step expands the beams from them, saving one
            model step over `B * num_beams` rows.

    Constant per-prompt state that `next_fn` needs (a translator's
    cross-attention keys and values) belongs in its closure, repeated
    `num_beams` times on axis 0 once before the loop, not in `cache`: the
    cache nest is re-gathered every step, a closure never.

    Returns:
        `(token_ids (B, L), scores (B,))`: the best hypothesis per prompt and
        its length-penalized log-probability. With `return_all_beams`,
        `(token_ids (B, num_beams, L), scores (B, num_beams))`, finished
        hypotheses first, then alive beams, each best first.

    Example:
    >>> table = 4.0 * np.eye(8, k=1, dtype="float32")  # a bigram "model": t -> t + 1
    >>> next_fn = lambda ids, cache, index: (ops.take(table, ids[:, 0], axis=0), cache)
    >>> ids = np.array([[1, 2, 0, 0, 0], [3, 0, 0, 0, 0]])  # prompts [1, 2] and [3]
    >>> best, score = beam_search(next_fn, ids, ids > 0, None, num_beams=3, eos_id=5)
    >>> ops.convert_to_numpy(best).tolist()  # padded with 0 after [EOS] = 5
    [[1, 2, 3, 4, 5], [3, 4, 5, 0, 0]]
    >>> np.round(ops.convert_to_numpy(score).astype("float64"), 4).tolist()
    [-0.3619, -0.2413]
    """
    num_beams = check_positive_int("num_beams", num_beams)
    if eos_id is not None:
        eos_id = check_non_negative_int("eos_id", eos_id)
    pad_id = check_non_negative_int("pad_id", pad_id)
    length_penalty = _check_length_penalty(length_penalty)
    process_logits = repetition_processor(
        *check_repetition_controls(no_repeat_ngram_size, repetition_penalty)
    )
    token_ids, prompt_mask, start_index = check_prompts(token_ids, prompt_mask, start_index)
    batch, length = ops.shape(token_ids)[0], ops.shape(token_ids)[1]
    prompt_length = ops.sum(ops.cast(prompt_mask, "int32"), axis=1)  # (B,)
    # The most tokens a hypothesis of each prompt can generate.
    max_generated = length - prompt_length

    def repeat(x):
        return ops.repeat(x, num_beams, axis=0)

    def beam_rows(parent):
        """Flat row indices `(B * num_beams,)` of per-prompt beam indices."""
        offsets = ops.arange(batch, dtype="int32")[:, None] * num_beams
        return ops.reshape(offsets + ops.cast(parent, "int32"), (-1,))

    token_ids = ops.where(prompt_mask, token_ids, pad_id)
    alive_ids = repeat(token_ids)  # (B * N, L)
    # Only the first beam is live at first, so the N beams do not start as
    # N copies of one hypothesis.
    first_beam = ops.arange(num_beams)[None, :] == 0
    alive_scores = ops.broadcast_to(
        ops.cast(ops.where(first_beam, 0.0, -np.inf), "float32"), (batch, num_beams)
    )
    finished_ids = ops.reshape(alive_ids, (batch, num_beams, length))
    finished_scores = ops.full((batch, num_beams), -np.inf, "float32")
    done = ops.all(prompt_mask, axis=1)
    has_cache = cache is not None
    cache = keras.tree.map_structure(repeat, cache) if has_cache else ()

    def cond(index, alive_ids, alive_scores, finished_ids, finished_scores, done, cache):
        return ops.logical_and(index < length - 1, ops.logical_not(ops.all(done)))

    def advance(logits, index, alive_ids, alive_scores, finished_ids, finished_scores, done):
        """Position `index + 1` of every beam from the logits of `index`;
        returns the new state and each new beam's parent row."""
        if process_logits is not None:
            logits = process_logits(logits, alive_ids, index)
        position = index + 1
        vocab = logits.shape[-1] or ops.shape(logits)[-1]
        log_probs = ops.reshape(ops.log_softmax(logits, axis=-1), (batch, num_beams, vocab))
        totals = ops.reshape(alive_scores[:, :, None] + log_probs, (batch, num_beams * vocab))
        num_candidates = 2 * num_beams
        if isinstance(vocab, int):
            num_candidates = min(num_candidates, num_beams * vocab)
        candidate_scores, candidate = ops.top_k(totals, num_candidates)  # best first
        candidate = ops.cast(candidate, "int32")
        candidate_parent = candidate // vocab
        candidate_token = candidate % vocab
        if eos_id is None:
            candidate_eos = ops.zeros_like(candidate, "bool")
        else:
            candidate_eos = ops.equal(candidate_token, eos_id)

        # Alive: the best `num_beams` extensions that do not end in eos. A
        # prompt still inside its prompt keeps its beams and takes the token.
        new_scores, pick = ops.top_k(ops.where(candidate_eos, -np.inf, candidate_scores), num_beams)
        forced = column(prompt_mask, position)[:, None]  # (B, 1)
        parent = ops.where(
            forced,
            ops.arange(num_beams, dtype="int32")[None, :],
            ops.take_along_axis(candidate_parent, pick, axis=1),
        )
        prompt_token = ops.reshape(column(alive_ids, position), (batch, num_beams))
        token = ops.where(forced, prompt_token, ops.take_along_axis(candidate_token, pick, axis=1))
        new_alive_scores = ops.where(forced, alive_scores, new_scores)
        rows = beam_rows(parent)
        new_alive_ids = write_column(
            ops.take(alive_ids, rows, axis=0), position, ops.reshape(token, (-1,))
        )

        if eos_id is not None:
            generated_length = position + 1 - prompt_length  # (B,) with eos
            penalty = length_penalty_factor(generated_length, length_penalty)[:, None]
            rank = ops.arange(num_candidates)[None, :]
            admitted = ops.logical_and(
                ops.logical_and(candidate_eos, rank < num_beams), ops.logical_not(forced)
            )
            new_finished_scores = ops.where(admitted, candidate_scores / penalty, -np.inf)
            new_finished_ids = write_column(
                ops.take(alive_ids, beam_rows(candidate_parent), axis=0),
                position,
                ops.full((batch * num_candidates,), eos_id, "int32"),
            )
            pool_scores = ops.concatenate([finished_scores, new_finished_scores], axis=1)
            pool_ids = ops.concatenate(
                [finished_ids, ops.reshape(new_finished_ids, (batch, num_candidates, length))],
                axis=1,
            )
            finished_scores, keep = ops.top_k(pool_scores, num_beams)
            finished_ids = ops.take_along_axis(pool_ids, keep[:, :, None], axis=1)

            # Log-probabilities only fall, so an alive beam's score can at
            # best reach its log-probability under the largest penalty ahead.
            best_alive = ops.max(new_alive_scores, axis=1)
            largest_penalty = ops.maximum(
                length_penalty_factor(generated_length + 1, length_penalty),
                length_penalty_factor(max_generated, length_penalty),
            )
            hopeless = best_alive / largest_penalty < ops.min(finished_scores, axis=1)
            stuck = ops.logical_not(ops.isfinite(best_alive))
            done = ops.logical_or(done, ops.logical_or(hopeless, stuck))
        state = (new_alive_ids, new_alive_scores, finished_ids, finished_scores, done)
        return state, rows

    def body(index, alive_ids, alive_scores, finished_ids, finished_scores, done, cache):
        logits, cache = call_next_fn(next_fn, alive_ids, cache, index, has_cache)
        state, rows = advance(
            logits, index, alive_ids, alive_scores, finished_ids, finished_scores, done
        )
        # Only the caches follow the beams: what `next_fn` keeps outside its
        # cache nest (e.g. constant cross-attention keys) is never copied.
        cache = keras.tree.map_structure(lambda x: ops.take(x, rows, axis=0), cache)
        return (index + 1, *state, cache)

    index = start_index
    state = (alive_ids, alive_scores, finished_ids, finished_scores, done)
    if prefill_logits is not None:
        # Every beam of a prompt holds the same prefilled cache, so the
        # first step reorders nothing.
        logits = repeat(check_prefill_logits(prefill_logits))
        # Prompts filling the whole buffer leave no position to fill: the
        # clamped step then keeps the last prompt token (a forced one).
        state, _ = advance(logits, ops.minimum(start_index, length - 2), *state)
        index = start_index + 1
    index, alive_ids, alive_scores, finished_ids, finished_scores, _, _ = ops.while_loop(
        cond,
        body,
        (index, *state, cache),
        maximum_iterations=ops.maximum(length - 1 - index, 0),
    )

    # Alive beams are scored with the penalty of the length they reached.
    reached = ops.maximum(index + 1 - prompt_length, 0)
    alive_scores = alive_scores / length_penalty_factor(reached, length_penalty)[:, None]
    alive_scores, order = ops.top_k(alive_scores, num_beams)
    alive_ids = ops.take_along_axis(
        ops.reshape(alive_ids, (batch, num_beams, length)), order[:, :, None], axis=1
    )
    # Slot j: the j-th finished hypothesis, or, past the finished ones, alive
    # beam j - num_finished.
    num_finished = ops.sum(ops.cast(ops.isfinite(finished_scores), "int32"), axis=1)[:, None]
    slot = ops.arange(num_beams, dtype="int32")[None, :]
    source = ops.where(slot < num_finished, slot, num_beams + slot - num_finished)
    all_scores = ops.take_along_axis(
        ops.concatenate([finished_scores, alive_scores], axis=1), source, axis=1
    )
    all_ids = ops.take_along_axis(
        ops.concatenate([finished_ids, alive_ids], axis=1), source[:, :, None], axis=1
    )
    if return_all_beams:
        return all_ids, all_scores
    return all_ids[:, 0], all_scores[:, 0]


def _check_length_penalty(value):
    """A finite Python float, or a float32 scalar tensor (checked when known)."""
    value = check_number_or_scalar_tensor("length_penalty", value, check_number)
    return float(value) if is_python_number(value) else ops.cast(value, "float32")
