import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.generation import beam_search, sample
from tests.generation.references import (
    bigram_logits_fn,
    bigram_next_fn,
    empty_history_cache,
    exhaustive_best,
    history_logits_fn,
    history_next_fn,
    pad_prompts,
    random_table,
    tiny_decoder_lm,
)

EOS = 0
VOCAB = 4
# With V tokens and G generated positions, at most (V - 1) ** (G - 1) * V
# extensions compete in one step; that many beams make the search exhaustive.
EXHAUSTIVE_BEAMS = (VOCAB - 1) ** 3 * VOCAB
PROMPTS = [[1, 2], [3], [2, 3, 1]]
LENGTH = 5  # at most 4 generated tokens


def _numpy(x):
    return ops.convert_to_numpy(x)


def _counter_cache(batch):
    return {"steps": np.zeros((batch,), "int32")}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_beam_is_greedy_decoding_with_eos_as_stop_token(seed):
    table = random_table(6, seed=seed)
    token_ids, mask = pad_prompts([[1, 2], [3], [4, 5, 1, 2]], 9)
    greedy, _ = sample(
        bigram_next_fn(table), token_ids, mask, None, stop_token_ids=(EOS,), pad_id=0
    )
    best, _ = beam_search(bigram_next_fn(table), token_ids, mask, None, 1, eos_id=EOS)
    np.testing.assert_array_equal(_numpy(best), _numpy(greedy))


def test_one_beam_is_greedy_with_attention_caches():
    next_fn, empty_caches, _ = tiny_decoder_lm(vocab=12, length=10)
    token_ids, mask = pad_prompts([[3, 7], [5, 1, 9, 2, 4]], 10)
    greedy, _ = sample(next_fn, token_ids, mask, empty_caches(2), stop_token_ids=(5,))
    best, _ = beam_search(next_fn, token_ids, mask, empty_caches(2), 1, eos_id=5)
    np.testing.assert_array_equal(_numpy(best), _numpy(greedy))


@pytest.mark.parametrize("length_penalty", [0.0, 1.0, 3.0])
def test_enough_beams_find_the_exhaustive_best(length_penalty):
    table = random_table(VOCAB, seed=4, scale=1.5)
    token_ids, mask = pad_prompts(PROMPTS, LENGTH)
    best, scores = beam_search(
        bigram_next_fn(table),
        token_ids,
        mask,
        _counter_cache(len(PROMPTS)),
        EXHAUSTIVE_BEAMS,
        length_penalty=length_penalty,
        eos_id=EOS,
    )
    for row, prompt in enumerate(PROMPTS):
        expected, score = exhaustive_best(
            bigram_logits_fn(table), prompt, LENGTH, EOS, length_penalty
        )
        np.testing.assert_array_equal(_numpy(best)[row], expected)
        np.testing.assert_allclose(_numpy(scores)[row], score, rtol=1e-5)


def test_cache_nest_is_reordered_with_the_beams():
    # The 4-gram model reads the previous two tokens from its cache only.
    table = np.random.default_rng(6).normal(size=(VOCAB,) * 4).astype("float32") * 2
    token_ids, mask = pad_prompts(PROMPTS, LENGTH)
    for num_beams in (3, EXHAUSTIVE_BEAMS):
        best, _ = beam_search(
            history_next_fn(table),
            token_ids,
            mask,
            empty_history_cache(3, LENGTH),
            num_beams,
            eos_id=EOS,
        )
        if num_beams == EXHAUSTIVE_BEAMS:
            for row, prompt in enumerate(PROMPTS):
                expected, _ = exhaustive_best(history_logits_fn(table), prompt, LENGTH, EOS, 0.0)
                np.testing.assert_array_equal(_numpy(best)[row], expected)
        # Each row alone (its own cache) gives the same answer.
        for row in range(len(PROMPTS)):
            alone, _ = beam_search(
                history_next_fn(table),
                token_ids[row : row + 1],
                mask[row : row + 1],
                empty_history_cache(1, LENGTH),
                num_beams,
                eos_id=EOS,
            )
            np.testing.assert_array_equal(_numpy(alone)[0], _numpy(best)[row])


def test_mixed_length_batch_equals_each_prompt_alone_with_attention_caches():
    next_fn, empty_caches, _ = tiny_decoder_lm(vocab=12, length=10)
    prompts = [[3, 7], [5, 1, 9, 2, 4], [8, 8, 2, 6]]
    token_ids, mask = pad_prompts(prompts, 10)
    run = tf.function(
        lambda ids, m, caches: beam_search(
            next_fn, ids, m, caches, 3, length_penalty=0.6, eos_id=5, return_all_beams=True
        )
    )
    beams, scores = run(token_ids, mask, empty_caches(3))
    for row in range(len(prompts)):
        alone, alone_scores = run(token_ids[row : row + 1], mask[row : row + 1], empty_caches(1))
        np.testing.assert_array_equal(_numpy(beams)[row], _numpy(alone)[0])
        np.testing.assert_allclose(_numpy(scores)[row], _numpy(alone_scores)[0], rtol=1e-5)


def test_length_penalty_turns_the_preference_from_short_to_long():
    # After 1: eos (p=0.6) or the chain 2 -> 3 -> 4 -> eos (p=0.4 * 0.99^3).
    probabilities = np.full((5, 5), 1e-6)
    probabilities[1, [EOS, 2]] = [0.6, 0.4]
    probabilities[2, 3] = probabilities[3, 4] = probabilities[4, EOS] = 0.99
    probabilities[0, EOS] = 1.0
    table = np.log(probabilities / probabilities.sum(1, keepdims=True)).astype("float32")
    token_ids, mask = pad_prompts([[1]], 6)
    short, long = [1, EOS, 0, 0, 0, 0], [1, 2, 3, 4, EOS, 0]
    for length_penalty, expected in ((0.0, short), (2.0, long)):
        reference, _ = exhaustive_best(bigram_logits_fn(table), [1], 6, EOS, length_penalty)
        np.testing.assert_array_equal(reference, expected)
        # One beam finishes `short` first and must not stop there: a longer
        # hypothesis can still win under the penalty.
        for num_beams in (1, 3):
            best, _ = beam_search(
                bigram_next_fn(table),
                token_ids,
                mask,
                None,
                num_beams,
                length_penalty=length_penalty,
                eos_id=EOS,
            )
            np.testing.assert_array_equal(_numpy(best)[0], expected)


def test_loop_ends_once_no_alive_beam_can_win():
    # From every token, eos is the likeliest next token.
    table = random_table(6, seed=3, scale=0.5)
    table[:, EOS] = 6.0
    calls = []
    step = bigram_next_fn(table)

    def next_fn(token_ids, cache, index):
        calls.append(index)  # eager loop: one Python call per step
        return step(token_ids, cache, index)

    token_ids, mask = pad_prompts([[1, 2], [3]], 12)
    best, _ = beam_search(next_fn, token_ids, mask, None, 2, eos_id=EOS)
    np.testing.assert_array_equal(_numpy(best)[:, 2], [EOS, 0])
    np.testing.assert_array_equal(_numpy(best)[:, 1], [2, EOS])
    # Both prompts have two finished hypotheses better than any alive beam
    # after filling position 3; without the bound the loop would take 11 steps.
    assert len(calls) == 3


def test_all_beams_are_sorted_finished_first():
    table = random_table(6, seed=8)
    token_ids, mask = pad_prompts([[1, 2], [3]], 7)
    beams, scores = beam_search(
        bigram_next_fn(table), token_ids, mask, None, 4, eos_id=EOS, return_all_beams=True
    )
    best, best_scores = beam_search(bigram_next_fn(table), token_ids, mask, None, 4, eos_id=EOS)
    beams, scores = _numpy(beams), _numpy(scores)
    assert beams.shape == (2, 4, 7) and scores.shape == (2, 4)
    np.testing.assert_array_equal(beams[:, 0], _numpy(best))
    np.testing.assert_array_equal(scores[:, 0], _numpy(best_scores))
    for row in range(2):
        finished = [(beam == EOS).any() for beam in beams[row, :, 1:]]
        # Finished hypotheses come first, each group best first.
        assert finished == sorted(finished, reverse=True)
        for group in (True, False):
            group_scores = scores[row][np.array(finished) == group]
            assert np.all(np.diff(group_scores) <= 0)
        assert len(set(map(tuple, beams[row]))) == 4  # distinct hypotheses


def test_without_eos_every_beam_runs_to_the_end():
    table = random_table(VOCAB, seed=4, scale=1.5)
    token_ids, mask = pad_prompts(PROMPTS, LENGTH)
    best, scores = beam_search(bigram_next_fn(table), token_ids, mask, None, EXHAUSTIVE_BEAMS)
    for row, prompt in enumerate(PROMPTS):
        # The most likely full-length continuation, found by trying them all.
        candidates = (
            np.stack(np.meshgrid(*[range(VOCAB)] * (LENGTH - len(prompt))))
            .reshape(LENGTH - len(prompt), -1)
            .T
        )
        log_probs = []
        for continuation in candidates:
            sequence = list(prompt) + list(continuation)
            steps = [
                np.log(np.exp(table[a]) / np.exp(table[a]).sum())[b]
                for a, b in zip(sequence[len(prompt) - 1 : -1], sequence[len(prompt) :])
            ]
            log_probs.append(sum(steps))
        expected = list(prompt) + list(candidates[int(np.argmax(log_probs))])
        np.testing.assert_array_equal(_numpy(best)[row], expected)
        np.testing.assert_allclose(_numpy(scores)[row], max(log_probs), rtol=1e-5)


def test_compiled_with_xla_and_length_penalty_as_a_tensor():
    traces = []
    table = random_table(VOCAB, seed=4, scale=1.5)
    token_ids, mask = pad_prompts(PROMPTS, LENGTH)

    @tf.function(jit_compile=True)
    def search(length_penalty):
        traces.append(1)
        return beam_search(
            history_next_fn(np.tile(table[None, None], (VOCAB, VOCAB, 1, 1))),
            token_ids,
            mask,
            empty_history_cache(3, LENGTH),
            5,
            length_penalty=length_penalty,
            eos_id=EOS,
        )

    for length_penalty in (0.0, 3.0):
        best, scores = search(tf.constant(length_penalty))
        eager, eager_scores = beam_search(
            bigram_next_fn(table),
            token_ids,
            mask,
            None,
            5,
            length_penalty=length_penalty,
            eos_id=EOS,
        )
        np.testing.assert_array_equal(_numpy(best), _numpy(eager))
        np.testing.assert_allclose(_numpy(scores), _numpy(eager_scores), rtol=1e-5)
    assert len(traces) == 1


def _search(**overrides):
    token_ids, mask = pad_prompts(PROMPTS, LENGTH)
    arguments = {
        "token_ids": token_ids,
        "prompt_mask": mask,
        "cache": None,
        "num_beams": 2,
        "eos_id": EOS,
        **overrides,
    }
    return lambda: beam_search(bigram_next_fn(random_table(VOCAB)), **arguments)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"num_beams": 0}, "`num_beams` must be a positive integer. Received: num_beams=0"),
        ({"num_beams": -2}, "`num_beams` must be a positive integer"),
        ({"num_beams": 2.0}, "`num_beams` must be a positive integer"),
        ({"eos_id": -1}, "`eos_id` must be a non-negative integer"),
        ({"length_penalty": float("nan")}, "`length_penalty` must be a finite number"),
        ({"length_penalty": np.ones(3)}, "`length_penalty` must be a number or a scalar"),
        ({"prompt_mask": np.ones((3, 4), bool)}, "`prompt_mask` must have the shape of"),
        ({"prompt_mask": np.zeros((3, LENGTH), bool)}, "at least one prompt token"),
    ],
)
def test_bad_arguments_raise_value_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        _search(**overrides)()


def test_xla_compiled_search_over_attention_caches():
    next_fn, empty_caches, _ = tiny_decoder_lm(vocab=12, length=10)
    token_ids, mask = pad_prompts([[3, 7], [5, 1, 9, 2, 4]], 10)
    compiled = tf.function(
        lambda: beam_search(next_fn, token_ids, mask, empty_caches(2), 3, eos_id=5),
        jit_compile=True,
    )
    eager = beam_search(next_fn, token_ids, mask, empty_caches(2), 3, eos_id=5)
    for got, want in zip(compiled(), eager):
        np.testing.assert_allclose(_numpy(got), _numpy(want), rtol=1e-5)


def test_prefill_logits_replace_the_first_step():
    next_fn, empty_caches, _ = tiny_decoder_lm(vocab=12, length=10)
    token_ids, mask = pad_prompts([[3, 7], [5, 1, 9, 2, 4]], 10)
    expected = beam_search(next_fn, token_ids, mask, empty_caches(2), 3, eos_id=5,
                           length_penalty=0.6, return_all_beams=True)
    logits, caches = next_fn(token_ids[:, :2], empty_caches(2), 0)
    calls = []

    def counted(ids, cache, index):
        calls.append(int(index))
        return next_fn(ids, cache, index)

    got = beam_search(counted, token_ids, mask, caches, 3, eos_id=5, length_penalty=0.6,
                      start_index=1, prefill_logits=logits, return_all_beams=True)
    np.testing.assert_array_equal(_numpy(got[0]), _numpy(expected[0]))
    np.testing.assert_allclose(_numpy(got[1]), _numpy(expected[1]), rtol=1e-5)
    assert calls[0] == 2  # position 1 was never fed again
