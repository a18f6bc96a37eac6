import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.generation import beam_search, sample
from keras_attn.generation.logits_processors import banned_ngram_tokens, penalize_repetitions
from tests.generation.references import (
    bigram_logits_fn,
    bigram_next_fn,
    controlled_logits_fn,
    exhaustive_best,
    greedy_reference,
    pad_prompts,
    random_table,
    repeated_ngrams,
)

EOS = 0


def _numpy(x):
    return ops.convert_to_numpy(x)


def _fixed_logits_next_fn(logits):
    """Every step of every row predicts from the same logits."""
    logits = ops.convert_to_tensor(np.asarray(logits, "float32"))

    def next_fn(token_ids, cache, index):
        return ops.broadcast_to(logits[None, :], (ops.shape(token_ids)[0], logits.shape[0])), cache

    return next_fn


# A bigram "model" over 6 tokens that loops a b a b ... (a = 1, b = 2): the
# best next token after each one, then the second and third best.
#   after 1: 2 (5.0), 3 (4.0), 4 (3.0)
#   after 2: 1 (5.0), 4 (4.0)
#   after 3: 4 (5.0)
#   after 4: 5 (5.0)
#   after 5: 1 (5.0), 2 (4.0)
LOOP = np.zeros((6, 6), "float32")
LOOP[1, 2], LOOP[1, 3], LOOP[1, 4] = 5.0, 4.0, 3.0
LOOP[2, 1], LOOP[2, 4] = 5.0, 4.0
LOOP[3, 4] = 5.0
LOOP[4, 5] = 5.0
LOOP[5, 1], LOOP[5, 2] = 5.0, 4.0


@pytest.mark.parametrize(
    "prompt, size, expected",
    [
        # No ban: a b a b ...
        ([1], 0, [1, 2, 1, 2, 1, 2, 1, 2]),
        # n = 2, prompt [1]. Bigrams so far -> ban -> choice:
        #  pos 1: {} -> 2;  pos 2: {12}, tail 2 -> 1;
        #  pos 3: {12, 21}, tail 1 bans 2 -> 3 (second after 1);
        #  pos 4: tail 3 -> 4;  pos 5: tail 4 -> 5;  pos 6: tail 5, no 5x yet -> 1;
        #  pos 7: tail 1 bans 2 (12) and 3 (13) -> 4 (third after 1).
        ([1], 2, [1, 2, 1, 3, 4, 5, 1, 4]),
        # n = 3, prompt [1]:
        #  pos 1: 2;  pos 2: tail 12, no trigram yet -> 1;  pos 3: tail 21, only 121 -> 2;
        #  pos 4: tail 12, 121 bans 1 -> 4 (second after 2);  pos 5: 5;  pos 6: 1;
        #  pos 7: tail 51, no trigram 51x -> 2.
        ([1], 3, [1, 2, 1, 2, 4, 5, 1, 2]),
        # The prompt counts: prompt [5, 1, 2], n = 2, bigrams {51, 12}:
        #  pos 3: tail 2 -> 1;  pos 4: tail 1 bans 2 -> 3;  pos 5: 4;  pos 6: 5;
        #  pos 7: tail 5 bans 1 (51 of the prompt) -> 2 (second after 5).
        ([5, 1, 2], 2, [5, 1, 2, 1, 3, 4, 5, 2]),
    ],
)
def test_no_repeat_ngram_on_a_looping_bigram_model_by_hand(prompt, size, expected):
    token_ids, mask = pad_prompts([prompt], 8)
    out, _ = sample(bigram_next_fn(LOOP), token_ids, mask, None, no_repeat_ngram_size=size)
    assert _numpy(out)[0].tolist() == expected
    best, _ = beam_search(
        bigram_next_fn(LOOP), token_ids, mask, None, 1, no_repeat_ngram_size=size
    )
    assert _numpy(best)[0].tolist() == expected
    if size:
        assert repeated_ngrams(expected, size) == []


@pytest.mark.parametrize(
    "logits, penalty, expected",
    [
        # Token 5 (2.0) beats 6 (1.5); once 5 is in the row its logit is
        # 2.0 / 1.5 = 1.33 < 1.5, so 6 comes next; then both are present
        # (1.33 vs 1.0) and 5 wins again, for good (the penalty does not
        # grow with the count).
        ({5: 2.0, 6: 1.5}, 1.5, [1, 5, 6, 5, 5, 5]),
        ({5: 2.0, 6: 1.5}, 1.0, [1, 5, 5, 5, 5, 5]),
        # Negative logits are multiplied: 3 (-0.5) then -0.75 < 4 (-0.6), so
        # 4; then -0.75 vs -0.9: 3.
        ({3: -0.5, 4: -0.6}, 1.5, [1, 3, 4, 3, 3, 3]),
        # The prompt counts: 5 is in it, so 6 comes first.
        ({5: 2.0, 6: 1.5}, 1.5, [5, 6, 5, 5, 5, 5]),
    ],
)
def test_repetition_penalty_with_known_logits_by_hand(logits, penalty, expected):
    row = np.full((8,), -10.0, "float32")
    for token, value in logits.items():
        row[token] = value
    token_ids, mask = pad_prompts([expected[:1]], 6)
    next_fn = _fixed_logits_next_fn(row)
    out, _ = sample(next_fn, token_ids, mask, None, repetition_penalty=penalty)
    assert _numpy(out)[0].tolist() == expected
    best, _ = beam_search(next_fn, token_ids, mask, None, 1, repetition_penalty=penalty)
    assert _numpy(best)[0].tolist() == expected


def test_penalty_and_ban_on_one_step_by_hand():
    token_ids = np.array([[3, 1, 2, 3, 1, 0, 0]], "int32")  # filled up to index 4
    logits = np.array([[2.0, 2.0, -1.0, 0.0, 4.0]], "float32")
    penalized = _numpy(penalize_repetitions(logits, token_ids, 4, 2.0))
    # Present: 1, 2, 3 (not 0, which is only past the index).
    np.testing.assert_allclose(penalized, [[2.0, 1.0, -2.0, 0.0, 4.0]])
    banned = lambda n, index=4: _numpy(banned_ngram_tokens(token_ids, index, n, 5))[0]  # noqa: E731
    # n = 2, tail 1: bigram 1 2 -> 2.  n = 3, tail 3 1: trigram 3 1 2 -> 2.
    assert np.flatnonzero(banned(2)).tolist() == [2]
    assert np.flatnonzero(banned(3)).tolist() == [2]
    # n = 1: every present token; n = 6: no 6-gram fits in the 5 filled positions.
    assert np.flatnonzero(banned(1)).tolist() == [1, 2, 3]
    assert np.flatnonzero(banned(6)).tolist() == []
    # At index 3 (tail 3, position 4 not yet filled): 3 1 bans 1.
    assert np.flatnonzero(banned(2, index=3)).tolist() == [1]


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("size, penalty", [(1, 1.0), (2, 1.0), (3, 1.3), (0, 1.8), (2, 0.7)])
def test_greedy_matches_the_plain_reference_and_one_beam(seed, size, penalty):
    table = random_table(6, seed=seed)
    prompts = [[1, 2], [3], [4, 5, 1, 2], [2, 2, 2]]
    token_ids, mask = pad_prompts(prompts, 12)
    out, _ = sample(
        bigram_next_fn(table), token_ids, mask, None,
        no_repeat_ngram_size=size, repetition_penalty=penalty,
    )
    reference_fn = controlled_logits_fn(bigram_logits_fn(table), size, penalty)
    for row, prompt in enumerate(prompts):
        np.testing.assert_array_equal(_numpy(out)[row], greedy_reference(reference_fn, prompt, 12))
    greedy, _ = sample(
        bigram_next_fn(table), token_ids, mask, None, stop_token_ids=(EOS,),
        no_repeat_ngram_size=size, repetition_penalty=penalty,
    )
    best, _ = beam_search(
        bigram_next_fn(table), token_ids, mask, None, 1, eos_id=EOS,
        no_repeat_ngram_size=size, repetition_penalty=penalty,
    )
    np.testing.assert_array_equal(_numpy(best), _numpy(greedy))


def test_enough_beams_find_the_exhaustive_best_under_the_controls():
    vocab, length = 4, 6
    table = random_table(vocab, seed=4, scale=1.5)
    prompts = [[1, 2], [3], [2, 3, 1]]
    token_ids, mask = pad_prompts(prompts, length)
    best, scores = beam_search(
        bigram_next_fn(table), token_ids, mask, None, (vocab - 1) ** 3 * vocab,
        length_penalty=1.0, eos_id=EOS, no_repeat_ngram_size=2, repetition_penalty=1.5,
    )
    reference_fn = controlled_logits_fn(bigram_logits_fn(table), 2, 1.5)
    for row, prompt in enumerate(prompts):
        expected, score = exhaustive_best(reference_fn, prompt, length, EOS, 1.0)
        np.testing.assert_array_equal(_numpy(best)[row], expected)
        np.testing.assert_allclose(_numpy(scores)[row], score, rtol=1e-5)


def test_every_beam_keeps_its_own_history():
    table = random_table(5, seed=7, scale=0.5)  # flat: beams explore
    token_ids, mask = pad_prompts([[1], [2, 3]], 14)
    beams, _ = beam_search(
        bigram_next_fn(table), token_ids, mask, None, 4, return_all_beams=True,
        no_repeat_ngram_size=2,
    )
    beams = _numpy(beams)
    for row in beams:
        for beam in row:
            assert repeated_ngrams(beam.tolist(), 2) == []
    plain, _ = beam_search(bigram_next_fn(table), token_ids, mask, None, 4, return_all_beams=True)
    assert any(repeated_ngrams(beam.tolist(), 2) for beam in _numpy(plain).reshape(8, 14))


def test_controls_compose_with_sampling():
    table = random_table(8, seed=3, scale=0.5)  # high entropy
    token_ids, mask = pad_prompts([[1], [2, 3], [4]] * 4, 16)
    options = dict(temperature=1.5, top_k=6, top_p=0.95)
    out, _ = sample(bigram_next_fn(table), token_ids, mask, None, seed=2, **options)
    assert any(repeated_ngrams(row.tolist(), 2) for row in _numpy(out))
    out, _ = sample(
        bigram_next_fn(table), token_ids, mask, None, seed=2, no_repeat_ngram_size=2, **options
    )
    for row in _numpy(out):
        assert repeated_ngrams(row.tolist(), 2) == []
    # top_k=1 at any temperature is greedy decoding with the same controls.
    greedy, _ = sample(
        bigram_next_fn(table), token_ids, mask, None, no_repeat_ngram_size=3,
        repetition_penalty=1.4,
    )
    hot, _ = sample(
        bigram_next_fn(table), token_ids, mask, None, temperature=4.0, top_k=1, seed=5,
        no_repeat_ngram_size=3, repetition_penalty=1.4,
    )
    np.testing.assert_array_equal(_numpy(hot), _numpy(greedy))


def test_tensor_controls_in_one_xla_trace_each():
    table = random_table(6, seed=1)
    prompts = [[1, 2], [3], [4, 5, 1, 2]]
    token_ids, mask = pad_prompts(prompts, 12)
    traces = []

    @tf.function(jit_compile=True)
    def greedy(size, penalty):
        traces.append("greedy")
        return sample(
            bigram_next_fn(table), token_ids, mask, None,
            no_repeat_ngram_size=size, repetition_penalty=penalty,
        )[0]

    @tf.function(jit_compile=True)
    def beams(size, penalty):
        traces.append("beam")
        return beam_search(
            bigram_next_fn(table), token_ids, mask, None, 3, eos_id=EOS,
            no_repeat_ngram_size=size, repetition_penalty=penalty,
        )[0]

    settings = [(0, 1.0), (2, 1.0), (1, 1.0), (0, 1.6), (3, 1.25), (2, 0.8)]
    for size, penalty in settings:
        served = _numpy(greedy(tf.constant(size), tf.constant(penalty)))
        eager, _ = sample(
            bigram_next_fn(table), token_ids, mask, None,
            no_repeat_ngram_size=size, repetition_penalty=penalty,
        )
        np.testing.assert_array_equal(served, _numpy(eager))
        served = _numpy(beams(tf.constant(size), tf.constant(penalty)))
        eager, _ = beam_search(
            bigram_next_fn(table), token_ids, mask, None, 3, eos_id=EOS,
            no_repeat_ngram_size=size, repetition_penalty=penalty,
        )
        np.testing.assert_array_equal(served, _numpy(eager))
    # Traced values are not checked: out-of-range ones turn the control off.
    plain = _numpy(sample(bigram_next_fn(table), token_ids, mask, None)[0])
    for size, penalty in [(-2, 1.0), (0, -1.0), (0, 0.0), (0, float("nan"))]:
        np.testing.assert_array_equal(
            _numpy(greedy(tf.constant(size), tf.constant(penalty))), plain
        )
    assert traces == ["greedy", "beam"]


def _bad(**overrides):
    token_ids, mask = pad_prompts([[1, 2]], 6)
    return lambda search: search(
        bigram_next_fn(LOOP), token_ids, mask, None,
        **({"num_beams": 2} if search is beam_search else {}), **overrides,
    )


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"no_repeat_ngram_size": -1},
         "`no_repeat_ngram_size` must be a non-negative integer. Received: "
         "no_repeat_ngram_size=-1"),
        ({"no_repeat_ngram_size": 2.5}, "`no_repeat_ngram_size` must be a non-negative integer"),
        ({"no_repeat_ngram_size": tf.constant(-3)}, "`no_repeat_ngram_size` must be"),
        ({"no_repeat_ngram_size": np.ones(2, "int32")}, "a number or a scalar tensor"),
        ({"repetition_penalty": 0.0},
         "`repetition_penalty` must be a finite number > 0 \\(1.0: off\\). Received: "
         "repetition_penalty=0.0"),
        ({"repetition_penalty": -1.2}, "`repetition_penalty` must be a finite number > 0"),
        ({"repetition_penalty": float("nan")}, "`repetition_penalty` must be a finite number"),
        ({"repetition_penalty": float("inf")}, "`repetition_penalty` must be a finite number"),
        ({"repetition_penalty": tf.constant(0.0)}, "`repetition_penalty` must be"),
        ({"repetition_penalty": "high"}, "`repetition_penalty` must be"),
    ],
)
@pytest.mark.parametrize("search", [sample, beam_search], ids=["sample", "beam_search"])
def test_bad_controls_raise_value_error(overrides, message, search):
    with pytest.raises(ValueError, match=message):
        _bad(**overrides)(search)
