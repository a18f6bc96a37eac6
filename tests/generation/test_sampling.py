import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.generation import sample
from keras_attn.generation.sampling import _TensorSeed
from tests.generation.references import (
    bigram_logits_fn,
    bigram_next_fn,
    greedy_reference,
    log_softmax,
    pad_prompts,
    random_table,
    tiny_decoder_lm,
)

VOCAB, LENGTH = 7, 9
TABLE = random_table(VOCAB, seed=0)
PROMPTS = [[1, 2, 3], [4], [5, 6, 1, 2, 3, 4], [2, 2]]


def _numpy(x):
    return ops.convert_to_numpy(x)


def _counter_cache(batch):
    return {"steps": np.zeros((batch,), "int32")}


def _row_logits_next_fn(token_ids, cache, index):
    """Every step of row `b` predicts from the fixed logits `cache[b]`."""
    return cache, cache


def test_greedy_matches_numpy_reference():
    token_ids, mask = pad_prompts(PROMPTS, LENGTH)
    out, generated = sample(bigram_next_fn(TABLE), token_ids, mask, _counter_cache(len(PROMPTS)))
    for row, prompt in enumerate(PROMPTS):
        expected = greedy_reference(bigram_logits_fn(TABLE), prompt, LENGTH)
        np.testing.assert_array_equal(_numpy(out)[row], expected)
    np.testing.assert_array_equal(_numpy(generated), ~mask)


def test_mixed_length_batch_equals_each_prompt_alone_with_attention_caches():
    next_fn, empty_caches, logits_fn = tiny_decoder_lm(vocab=12, length=10)
    prompts = [[3, 7], [5, 1, 9, 2, 4], [8, 8, 2, 6]]
    token_ids, mask = pad_prompts(prompts, 10)
    run = tf.function(lambda ids, m, caches: sample(next_fn, ids, m, caches))
    batch, _ = run(token_ids, mask, empty_caches(3))
    for row, prompt in enumerate(prompts):
        alone, _ = run(token_ids[row : row + 1], mask[row : row + 1], empty_caches(1))
        np.testing.assert_array_equal(_numpy(batch)[row], _numpy(alone)[0])
        # ... and both equal re-running the whole causal pass per token.
        np.testing.assert_array_equal(_numpy(alone)[0], greedy_reference(logits_fn, prompt, 10))


def test_stop_tokens_pad_the_rest_and_end_the_loop_early():
    # A chain 1 -> 2 -> 3 -> 4 -> 5 -> 6 -> 1; 3 is the stop token.
    table = np.full((VOCAB, VOCAB), -5.0, "float32")
    for token in range(1, VOCAB):
        table[token, token % (VOCAB - 1) + 1] = 5.0
    calls = []
    step = bigram_next_fn(table)

    def next_fn(token_ids, cache, index):
        calls.append(index)  # eager loop: one Python call per step
        return step(token_ids, cache, index)

    prompts = [[1], [1, 2], [3, 4]]  # the last prompt holds a stop token
    token_ids, mask = pad_prompts(prompts, LENGTH, pad_id=0)
    out, generated = sample(next_fn, token_ids, mask, None, stop_token_ids=(3,), pad_id=0)
    out, generated = _numpy(out), _numpy(generated)
    np.testing.assert_array_equal(out[0], [1, 2, 3, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(out[1], [1, 2, 3, 0, 0, 0, 0, 0, 0])
    # A stop token inside the prompt does not stop the row.
    np.testing.assert_array_equal(out[2], [3, 4, 5, 6, 1, 2, 3, 0, 0])
    for row, prompt in enumerate(prompts):
        expected = greedy_reference(bigram_logits_fn(table), prompt, LENGTH, (3,))
        np.testing.assert_array_equal(out[row], expected)
    np.testing.assert_array_equal(generated[0], [0, 1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(generated[2], [0, 0, 1, 1, 1, 1, 1, 0, 0])
    # The last row stops after filling position 6: 6 steps, not LENGTH - 1.
    assert len(calls) == 6


def test_same_seed_same_output_and_different_seeds_differ():
    table = random_table(16, seed=3, scale=0.5)  # high entropy
    token_ids, mask = pad_prompts([[1], [2, 3]], 24)

    def run(seed):
        out, _ = sample(bigram_next_fn(table), token_ids, mask, None, temperature=1.0, seed=seed)
        return _numpy(out)

    first = run(0)
    np.testing.assert_array_equal(run(0), first)
    assert not np.array_equal(run(1), first)


def test_seed_none_draws_from_the_global_generator():
    token_ids, mask = pad_prompts(PROMPTS, LENGTH)

    def run():
        return _numpy(sample(bigram_next_fn(TABLE), token_ids, mask, None, temperature=1.0)[0])

    keras.utils.set_random_seed(5)
    first = run()
    assert first.min() >= 0 and first.max() < VOCAB
    np.testing.assert_array_equal(first[mask], token_ids[mask])
    keras.utils.set_random_seed(5)
    np.testing.assert_array_equal(run(), first)


@pytest.mark.parametrize("temperature", [0.3, 1.0, 5.0])
def test_top_k_one_and_tiny_top_p_are_greedy_at_any_temperature(temperature):
    token_ids, mask = pad_prompts(PROMPTS, LENGTH)
    greedy, _ = sample(bigram_next_fn(TABLE), token_ids, mask, None)
    for options in ({"top_k": 1}, {"top_p": 1e-6}):
        out, _ = sample(
            bigram_next_fn(TABLE),
            token_ids,
            mask,
            None,
            temperature=temperature,
            seed=11,
            **options,
        )
        np.testing.assert_array_equal(_numpy(out), _numpy(greedy))


def test_top_k_samples_stay_among_each_rows_k_best():
    rng = np.random.default_rng(5)
    rows, vocab, k = 48, 10, 3
    logits = rng.normal(size=(rows, vocab)).astype("float32")
    token_ids, mask = pad_prompts([[1]] * rows, 40)
    out, _ = sample(_row_logits_next_fn, token_ids, mask, logits, temperature=2.0, top_k=k, seed=1)
    samples = _numpy(out)[:, 1:]
    top = np.argsort(-logits, axis=1)[:, :k]
    for row in range(rows):
        assert set(samples[row]) <= set(top[row])
    # Not collapsed onto one token: with 39 draws at temperature 2 each row
    # sees all of its k tokens.
    assert all(set(samples[row]) == set(top[row]) for row in range(rows))


def test_top_p_keeps_the_smallest_nucleus():
    rows = 32
    rng = np.random.default_rng(2)
    probabilities = np.array([0.5, 0.3, 0.15, 0.05])
    permutations = np.stack([rng.permutation(4) for _ in range(rows)])
    logits = np.log(probabilities)[permutations].astype("float32")
    token_ids, mask = pad_prompts([[1]] * rows, 30)
    # Mass before the tokens: 0, 0.5, 0.8, 0.95 -> top_p=0.7 keeps two tokens.
    out, _ = sample(
        _row_logits_next_fn, token_ids, mask, logits, temperature=1.0, top_p=0.7, seed=4
    )
    samples = _numpy(out)[:, 1:]
    for row in range(rows):
        nucleus = set(np.flatnonzero(permutations[row] <= 1))
        assert set(samples[row]) == nucleus


@pytest.mark.parametrize(
    "options, keep",
    [
        ({}, 5),
        ({"top_k": 2}, 2),
        # softmax(logits / 2) = .375 .227 .177 .138 .084: mass before 0 .375 .602 .779
        ({"top_p": 0.7, "temperature": 2.0}, 3),
        # top_k=2 renormalizes to .731 .269 before the nucleus: one token left.
        ({"top_k": 2, "top_p": 0.6}, 1),
    ],
)
def test_sample_frequencies_follow_the_filtered_softmax(options, keep):
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0], "float32")
    rows = 4000
    token_ids, mask = pad_prompts([[1]] * rows, 2)
    options = {"temperature": 1.0, **options}
    out, _ = sample(
        _row_logits_next_fn, token_ids, mask, np.tile(logits, (rows, 1)), seed=9, **options
    )
    counts = np.bincount(_numpy(out)[:, 1], minlength=5) / rows
    scaled = log_softmax(logits / options["temperature"])
    probabilities = np.exp(scaled)
    probabilities[keep:] = 0
    probabilities /= probabilities.sum()
    np.testing.assert_allclose(counts, probabilities, atol=4 * np.sqrt(0.25 / rows))


def test_tensor_options_in_one_xla_trace():
    traces = []
    table = random_table(16, seed=3, scale=0.5)
    token_ids, mask = pad_prompts([[1], [2, 3]], 16)

    @tf.function(jit_compile=True)
    def generate(temperature, top_k, top_p, seed):
        traces.append(1)
        return sample(
            bigram_next_fn(table),
            token_ids,
            mask,
            None,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            seed=seed,
        )[0]

    def run(temperature, top_k=0, top_p=1.0, seed=0):
        return _numpy(
            generate(
                tf.constant(temperature),
                tf.constant(top_k),
                tf.constant(top_p),
                tf.constant(seed),
            )
        )

    greedy = _numpy(sample(bigram_next_fn(table), token_ids, mask, None)[0])
    np.testing.assert_array_equal(run(0.0), greedy)
    hot = run(1.0)
    assert not np.array_equal(hot, greedy)
    np.testing.assert_array_equal(run(1.0), hot)  # same seed, same output
    assert not np.array_equal(run(1.0, seed=1), hot)
    np.testing.assert_array_equal(run(1.0, top_k=1), greedy)
    np.testing.assert_array_equal(run(3.0, top_p=1e-6), greedy)
    # Traced values are not checked: out-of-range ones act as the nearest
    # valid one (top_p 0 keeps the best token, a negative top_k no limit).
    np.testing.assert_array_equal(run(3.0, top_p=0.0), greedy)
    np.testing.assert_array_equal(run(1.0, top_k=-1), hot)
    assert len(traces) == 1


def test_prefilled_cache_and_start_index():
    next_fn, empty_caches, _ = tiny_decoder_lm(vocab=12, length=10)
    prompts = [[3, 7, 2], [5, 1, 9, 2, 4]]
    token_ids, mask = pad_prompts(prompts, 10)
    expected, _ = sample(next_fn, token_ids, mask, empty_caches(2))
    # Prefill positions 0 and 1 in one call, then decode from position 2.
    _, caches = next_fn(token_ids[:, :2], empty_caches(2), 0)
    out, generated = sample(next_fn, token_ids, mask, caches, start_index=2)
    np.testing.assert_array_equal(_numpy(out), _numpy(expected))
    np.testing.assert_array_equal(_numpy(generated), ~mask)


def _bad(**overrides):
    token_ids, mask = pad_prompts(PROMPTS, LENGTH)
    arguments = {"token_ids": token_ids, "prompt_mask": mask, "cache": None, **overrides}
    return lambda: sample(bigram_next_fn(TABLE), **arguments)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"top_p": 0.0}, "`top_p` must be a number in \\(0, 1\\]. Received: top_p=0.0"),
        ({"top_p": 1.5}, "`top_p` must be a number in \\(0, 1\\]. Received: top_p=1.5"),
        ({"top_p": tf.constant(2.0)}, "`top_p` must be a number in \\(0, 1\\]"),
        ({"top_k": -1}, "`top_k` must be a non-negative integer. Received: top_k=-1"),
        ({"top_k": 2.5}, "`top_k` must be a non-negative integer. Received: top_k=2.5"),
        ({"temperature": -0.5}, "`temperature` must be a number >= 0"),
        ({"temperature": np.ones(2)}, "`temperature` must be a number or a scalar tensor"),
        ({"seed": 1.5}, "`seed` must be an integer"),
        ({"stop_token_ids": (-1,)}, "`stop_token_ids` must be non-negative integer"),
        ({"pad_id": -1}, "`pad_id` must be a non-negative integer"),
        ({"prompt_mask": np.ones((4, 8), bool)}, "`prompt_mask` must have the shape of"),
        ({"token_ids": np.ones((4,), "int32")}, "`token_ids` must have rank 2"),
        ({"token_ids": np.ones((4, 9), "float32")}, "`token_ids` must hold integer"),
        ({"start_index": 1}, "`start_index` .* Received: start_index=1 with prompt lengths"),
        ({"start_index": -1}, "`start_index` must be a non-negative integer"),
    ],
)
def test_bad_arguments_raise_value_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        _bad(**overrides)()


def test_every_row_needs_a_prompt_token_and_a_right_padded_prompt():
    token_ids, mask = pad_prompts(PROMPTS, LENGTH)
    empty = mask.copy()
    empty[1] = False
    with pytest.raises(ValueError, match="at least one prompt token.*empty row\\(s\\) \\[1\\]"):
        sample(bigram_next_fn(TABLE), token_ids, empty, None)
    holes = mask.copy()
    holes[0, 1] = False
    with pytest.raises(ValueError, match="prefix of each row.*row\\(s\\) \\[0\\]"):
        sample(bigram_next_fn(TABLE), token_ids, holes, None)


def test_tensor_seed_generator_feeds_keras_random():
    seed = tf.constant([3, 4], "int32")
    first = keras.random.uniform((5,), seed=_TensorSeed(seed))
    again = keras.random.uniform((5,), seed=_TensorSeed(seed))
    np.testing.assert_array_equal(_numpy(first), _numpy(again))
    assert not np.array_equal(
        _numpy(first), _numpy(keras.random.uniform((5,), seed=_TensorSeed(seed + 1)))
    )


def test_xla_compiled_loop_over_attention_caches():
    next_fn, empty_caches, _ = tiny_decoder_lm(vocab=12, length=10)
    token_ids, mask = pad_prompts([[3, 7], [5, 1, 9, 2, 4]], 10)
    compiled = tf.function(
        lambda temperature: sample(
            next_fn, token_ids, mask, empty_caches(2), temperature=temperature, seed=1
        )[0],
        jit_compile=True,
    )
    eager, _ = sample(next_fn, token_ids, mask, empty_caches(2))
    np.testing.assert_array_equal(_numpy(compiled(tf.constant(0.0))), _numpy(eager))


def _counting(next_fn):
    calls = []

    def counted(token_ids, cache, index):
        calls.append(int(index))  # eager loop: one Python call per step
        return next_fn(token_ids, cache, index)

    return counted, calls


def test_prefill_logits_replace_the_first_step():
    next_fn, empty_caches, logits_fn = tiny_decoder_lm(vocab=12, length=10)
    prompts = [[3, 7, 2], [5, 1, 9, 2, 4]]
    token_ids, mask = pad_prompts(prompts, 10)
    expected, expected_generated = sample(next_fn, token_ids, mask, empty_caches(2))
    # A parallel prefill of positions 0..2 (the shortest prompt) gives the
    # cache and the logits at position 2; the loop then starts by choosing 3.
    logits, caches = next_fn(token_ids[:, :3], empty_caches(2), 0)
    counted, calls = _counting(next_fn)
    out, generated = sample(counted, token_ids, mask, caches, start_index=2,
                            prefill_logits=logits)
    np.testing.assert_array_equal(_numpy(out), _numpy(expected))
    np.testing.assert_array_equal(_numpy(generated), _numpy(expected_generated))
    # Positions 3..9 are filled; the last one is never fed back.
    assert calls == list(range(3, 9))
    for row, prompt in enumerate(prompts):
        np.testing.assert_array_equal(_numpy(out)[row], greedy_reference(logits_fn, prompt, 10))


def test_token_budgets_end_each_row_and_the_loop():
    next_fn, empty_caches, _ = tiny_decoder_lm(vocab=12, length=12)
    prompts = [[3, 7], [5, 1, 9, 2], [8]]
    token_ids, mask = pad_prompts(prompts, 12)
    full, _ = sample(next_fn, token_ids, mask, empty_caches(3))
    budgets = np.array([3, 1, 0], "int32")
    counted, calls = _counting(next_fn)
    out, generated = sample(counted, token_ids, mask, empty_caches(3),
                            max_new_tokens=tf.constant(budgets))
    ends = mask.sum(axis=1) + budgets
    within = np.arange(12)[None, :] < ends[:, None]
    # Each row is the full-buffer output up to its budget, then padding.
    np.testing.assert_array_equal(_numpy(out), np.where(within, _numpy(full), 0))
    np.testing.assert_array_equal(_numpy(generated), within & ~mask)
    # The loop feeds positions 0 .. 3 (row 0 fills position 4) and stops.
    assert calls == [0, 1, 2, 3]
    # A Python budget and a scalar tensor act alike.
    one, _ = sample(next_fn, token_ids, mask, empty_caches(3), max_new_tokens=2)
    two, _ = sample(next_fn, token_ids, mask, empty_caches(3), max_new_tokens=tf.constant(2))
    np.testing.assert_array_equal(_numpy(one), _numpy(two))
    with pytest.raises(ValueError, match="`max_new_tokens` must be a non-negative integer"):
        sample(next_fn, token_ids, mask, empty_caches(3), max_new_tokens=-1)
    with pytest.raises(ValueError, match="`max_new_tokens` must be an integer, or a scalar"):
        sample(next_fn, token_ids, mask, empty_caches(3), max_new_tokens=np.ones((3, 1), "int32"))
