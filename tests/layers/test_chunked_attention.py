import os

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.layers import multi_head_attention as mha_module
from keras_attn.layers.chunked_attention import chunked_attention
from keras_attn.layers.multi_head_attention import MultiHeadAttention

D = 12
BLOCK = 4


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _layer_pair(**kwargs):
    """Two layers with the same weights: one always chunked (tiny threshold
    and tiles), one never."""
    kwargs.setdefault("num_heads", 4)
    kwargs.setdefault("key_dim", 3)
    chunked = MultiHeadAttention(
        chunked_attention_threshold=1, chunked_attention_block_size=BLOCK, **kwargs
    )
    reference = MultiHeadAttention(chunked_attention_threshold=None, **kwargs)
    return chunked, reference


@pytest.fixture
def chunked_calls(monkeypatch):
    """Counts calls of the chunked path from the layer."""
    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return chunked_attention(*args, **kwargs)

    monkeypatch.setattr(mha_module, "chunked_attention", spy)
    return calls


CASES = {
    "non_causal": dict(),
    "causal": dict(causal=True),
    "padded": dict(query_mask=True, value_mask=True),
    "causal_padded": dict(causal=True, value_mask=True),
    "grouped_query": dict(num_key_value_heads=2, causal=True, value_mask=True),
    "multi_query": dict(num_key_value_heads=1),
    "odd_cross_lengths": dict(cross=True, value_mask=True),
    "explicit_mask": dict(attention_mask=True),
    "fully_masked_rows": dict(attention_mask="rows", query_mask=True),
    "sliding_window": dict(sliding_window=3),
    "causal_sliding_window": dict(sliding_window=3, causal=True, value_mask=True),
    "gated_rotary": dict(use_gate=True, rope_max_wavelength=100, key_dim=4, causal=True),
}


def _inputs(case, batch=2, query_length=11, key_length=9):
    rng = np.random.default_rng(1)
    key_length = key_length if case.get("cross") else query_length
    query = _rand(batch, query_length, D, seed=2)
    value = _rand(batch, key_length, D, seed=3) if case.get("cross") else query
    call = {}
    if case.get("causal"):
        call["use_causal_mask"] = True
    if case.get("query_mask"):
        mask = rng.random((batch, query_length)) > 0.3
        mask[:, 0] = True
        call["query_mask"] = mask
    if case.get("value_mask"):
        mask = rng.random((batch, key_length)) > 0.3
        mask[:, 0] = True
        call["value_mask"] = mask
    if case.get("attention_mask") is True:
        call["attention_mask"] = rng.random((batch, query_length, key_length)) > 0.4
    elif case.get("attention_mask") == "rows":
        mask = rng.random((batch, 1, query_length, key_length)) > 0.4
        mask[:, :, 2] = False  # query 2 sees no key at all
        mask[1, :, 7] = False
        call["attention_mask"] = mask
    return query, value, call


def _outputs_and_gradients(layer, query, value, call):
    query, value = tf.constant(query), tf.constant(value)
    upstream = tf.constant(_rand(*query.shape[:-1], D, seed=4))
    with tf.GradientTape() as tape:
        tape.watch([query, value])
        output = layer(query, value, **call)
        loss = tf.reduce_sum(output * upstream)
    variables = layer.trainable_variables
    gradients = tape.gradient(loss, [query, value, *variables])
    return [output] + gradients, [v.path for v in variables]


@pytest.mark.parametrize("name", list(CASES), ids=list(CASES))
def test_chunked_path_matches_fused_path_outputs_and_gradients(name, chunked_calls):
    case = dict(CASES[name])
    layer_kwargs = {
        key: case.pop(key)
        for key in (
            "num_key_value_heads", "sliding_window", "use_gate", "rope_max_wavelength", "key_dim"
        )
        if key in case
    }
    query, value, call = _inputs(case)
    chunked, reference = _layer_pair(**layer_kwargs)
    chunked(query, value, **call)
    reference(query, value, **call)
    reference.set_weights(chunked.get_weights())
    chunked_calls.clear()

    got, names = _outputs_and_gradients(chunked, query, value, call)
    assert len(chunked_calls) == 1, "the long call must take the chunked path"
    want, _ = _outputs_and_gradients(reference, query, value, call)
    labels = ["output", "d query", "d value", *(f"d {n}" for n in names)]
    assert len(got) == len(want) == len(labels)
    for label, a, b in zip(labels, got, want):
        assert a is not None and b is not None, label
        np.testing.assert_allclose(
            ops.convert_to_numpy(a), ops.convert_to_numpy(b), atol=2e-5, rtol=2e-5,
            err_msg=label,
        )


def test_fully_masked_rows_give_the_output_bias():
    chunked, _ = _layer_pair(bias_initializer="ones")
    query = _rand(1, 9, D)
    mask = np.ones((1, 9, 9), bool)
    mask[0, 4] = False
    output = ops.convert_to_numpy(chunked(query, query, attention_mask=mask))
    # No visible key: zero context, so the output is the projection's bias.
    np.testing.assert_allclose(output[0, 4], np.ones(D), atol=1e-6)
    assert np.all(np.isfinite(output))


def test_chunked_path_matches_explicit_scores_path():
    chunked, _ = _layer_pair(num_key_value_heads=2)
    query = _rand(2, 13, D)
    fast = chunked(query, query, use_causal_mask=True)
    explicit, _ = chunked(query, query, use_causal_mask=True, return_attention_scores=True)
    np.testing.assert_allclose(
        ops.convert_to_numpy(fast), ops.convert_to_numpy(explicit), atol=2e-5
    )


def test_chunked_path_inside_a_compiled_function_matches():
    chunked, reference = _layer_pair(num_key_value_heads=2)
    query = _rand(2, 10, D)
    mask = np.random.default_rng(0).random((2, 10)) > 0.3
    reference(query, query)
    chunked(query, query)
    reference.set_weights(chunked.get_weights())

    @tf.function(jit_compile=True)
    def compiled(x, m):
        return chunked(x, x, value_mask=m, use_causal_mask=True)

    np.testing.assert_allclose(
        ops.convert_to_numpy(compiled(query, mask)),
        ops.convert_to_numpy(reference(query, query, value_mask=mask, use_causal_mask=True)),
        atol=2e-5,
    )


def test_function_skips_tiles_the_causal_mask_removes(monkeypatch):
    # Count the key tiles visited (logit tiles computed) in the forward pass.
    visited = []
    original_einsum = ops.einsum

    def counting_einsum(subscripts, *operands):
        if subscripts == "bqkgh,bskh->bkgqs":
            visited.append(subscripts)
        return original_einsum(subscripts, *operands)

    monkeypatch.setattr(ops, "einsum", counting_einsum)
    query = tf.constant(_rand(1, 16, 2, 4))
    chunked_attention(query, query, query, scale=0.5, causal=True, block_size=4)
    causal_tiles = len(visited)
    visited.clear()
    chunked_attention(query, query, query, scale=0.5, causal=False, block_size=4)
    full_tiles = len(visited)
    visited.clear()
    chunked_attention(query, query, query, scale=0.5, sliding_window=2, block_size=4)
    window_tiles = len(visited)
    # Run eagerly, keras.ops.map computes the first query tile once more to
    # learn its output signature: that tile's key tiles count twice.
    assert full_tiles == 16 + 4
    assert causal_tiles == (1 + 2 + 3 + 4) + 1
    assert window_tiles == (2 + 3 + 3 + 2) + 2  # the diagonal tiles and their neighbours


PATH_CASES = {
    "long_self_attention": (dict(), True),
    "scores_requested": (dict(return_attention_scores=True), False),
    "dropout_in_training": (dict(training=True), False),
    "attention_multiplier": (dict(attention_multiplier=np.ones((1, 4, 9, 9), "float32")), False),
    "attention_bias": (dict(attention_bias=np.zeros((1, 4, 9, 9), "float32")), False),
}


@pytest.mark.parametrize("name", list(PATH_CASES), ids=list(PATH_CASES))
def test_which_calls_take_the_chunked_path(name, chunked_calls):
    arguments, chunked = PATH_CASES[name]
    dropout = 0.5 if name == "dropout_in_training" else 0.0
    layer = MultiHeadAttention(
        num_heads=4, key_dim=3, dropout=dropout, chunked_attention_threshold=9,
        chunked_attention_block_size=BLOCK,
    )
    query = _rand(1, 9, D)
    layer(query, query, **arguments)
    assert len(chunked_calls) == (1 if chunked else 0)


def test_threshold_and_decoding_steps(chunked_calls):
    layer = MultiHeadAttention(num_heads=2, key_dim=4, chunked_attention_threshold=8)
    layer(_rand(1, 7, D), _rand(1, 7, D))  # 49 < 64 pairs
    assert not chunked_calls
    layer(_rand(1, 8, D), _rand(1, 8, D))
    assert len(chunked_calls) == 1
    cache = layer.empty_cache(batch_size=1, max_length=80)
    # A one-token decoding step never takes it, however long the cache.
    layer(_rand(1, 1, D), _rand(1, 1, D), cache=cache, cache_update_index=5, use_causal_mask=True)
    assert len(chunked_calls) == 1
    never = MultiHeadAttention(num_heads=2, key_dim=4, chunked_attention_threshold=None)
    never(_rand(1, 64, D), _rand(1, 64, D))
    assert len(chunked_calls) == 1


def test_cached_prefill_on_the_chunked_path_matches():
    chunked, reference = _layer_pair(num_key_value_heads=2)
    prompt = _rand(1, 10, D)
    chunked(prompt, prompt)
    reference(prompt, prompt)
    reference.set_weights(chunked.get_weights())
    got, got_cache = chunked(
        prompt, prompt, cache=chunked.empty_cache(1, 16), cache_update_index=3,
        use_causal_mask=True,
    )
    want, want_cache = reference(
        prompt, prompt, cache=reference.empty_cache(1, 16), cache_update_index=3,
        use_causal_mask=True,
    )
    np.testing.assert_allclose(ops.convert_to_numpy(got), ops.convert_to_numpy(want), atol=2e-5)
    np.testing.assert_allclose(
        ops.convert_to_numpy(got_cache), ops.convert_to_numpy(want_cache), atol=1e-6
    )


def test_bfloat16_chunked_path_is_close_to_float32():
    query = _rand(1, 40, 4, 8)
    key = _rand(1, 40, 2, 8)
    value = _rand(1, 40, 2, 8)
    exact = chunked_attention(query, key, value, scale=0.3, causal=True, block_size=16)
    low = chunked_attention(
        *(ops.cast(x, "bfloat16") for x in (query, key, value)), scale=0.3, causal=True,
        block_size=16,
    )
    assert low.dtype == "bfloat16"
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.cast(low, "float32")), ops.convert_to_numpy(exact), atol=5e-2
    )


def test_keras_file_round_trip_keeps_the_chunked_arguments(tmp_path):
    inputs = keras.Input((10, D))
    layer = MultiHeadAttention(
        num_heads=2, key_dim=4, chunked_attention_threshold=5, chunked_attention_block_size=3
    )
    model = keras.Model(inputs, layer(inputs, inputs, use_causal_mask=True))
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    restored_layer = restored.layers[-1]
    assert restored_layer.chunked_attention_threshold == 5
    assert restored_layer.chunked_attention_block_size == 3
    x = _rand(2, 10, D)
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(x)), ops.convert_to_numpy(model(x)), atol=1e-6
    )
    never = MultiHeadAttention.from_config(
        {**layer.get_config(), "chunked_attention_threshold": None}
    )
    assert never.get_config()["chunked_attention_threshold"] is None


@pytest.mark.parametrize(
    "argument, value",
    [("chunked_attention_threshold", 0), ("chunked_attention_block_size", -2),
     ("chunked_attention_block_size", None)],
)
def test_bad_chunked_arguments_name_the_argument(argument, value):
    with pytest.raises(ValueError, match=argument):
        MultiHeadAttention(num_heads=2, key_dim=4, **{argument: value})


def test_function_rejects_dynamic_lengths_and_bad_masks():
    query = _rand(1, 8, 2, 4)
    with pytest.raises(ValueError, match="attention_mask"):
        chunked_attention(query, query, query, 0.5, attention_mask=np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="heads"):
        chunked_attention(query, _rand(1, 8, 3, 4), _rand(1, 8, 3, 4), 0.5)

    @tf.function(input_signature=[tf.TensorSpec((1, None, 2, 4))])
    def dynamic(x):
        return chunked_attention(x, x, x, 0.5)

    with pytest.raises(ValueError, match="statically known"):
        dynamic(query)
