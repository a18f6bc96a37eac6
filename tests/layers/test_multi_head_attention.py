import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.layers.multi_head_attention import MultiHeadAttention
from tests.harness import run_layer_checks

B, T, S, D = 2, 6, 5, 16


def _np(x):
    return ops.convert_to_numpy(ops.cast(x, "float32"))


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype("float32")


def _pair(query_dim=D, value_dim_in=D, key_in=None, **kwargs):
    """A Keras reference layer and ours sharing the same weights."""
    kwargs.setdefault("num_heads", 4)
    kwargs.setdefault("key_dim", 4)
    reference = keras.layers.MultiHeadAttention(**kwargs)
    ours = MultiHeadAttention(**kwargs)
    q = np.zeros((1, 3, query_dim), "float32")
    v = np.zeros((1, 3, value_dim_in), "float32")
    k = None if key_in is None else np.zeros((1, 3, key_in), "float32")
    reference(q, v, k)
    ours(q, v, k)
    ours.set_weights(reference.get_weights())
    return reference, ours


def _random_mask(*shape, seed=0):
    mask = np.random.default_rng(seed).random(shape) > 0.4
    mask[..., 0] = True  # every query row keeps at least one key
    return mask


# --------------------------------------------------------------- parity


PARITY_CASES = {
    "self": dict(),
    "self_no_bias": dict(use_bias=False),
    "value_dim_and_output_shape": dict(value_dim=6, output_shape=10),
    "cross": dict(cross=True),
    "cross_with_separate_key": dict(cross=True, key_in=7),
    "value_padding": dict(value_mask=True),
    "explicit_mask": dict(attention_mask=True),
    "causal": dict(causal=True),
    "causal_and_value_padding": dict(causal=True, value_mask=True),
}


@pytest.mark.parametrize("scores", [False, True], ids=["fast", "scores"])
@pytest.mark.parametrize("case", list(PARITY_CASES), ids=list(PARITY_CASES))
def test_parity_with_keras_multi_head_attention(case, scores):
    spec = dict(PARITY_CASES[case])
    cross = spec.pop("cross", False)
    key_in = spec.pop("key_in", None)
    use_value_mask = spec.pop("value_mask", False)
    use_attention_mask = spec.pop("attention_mask", False)
    causal = spec.pop("causal", False)
    value_features = 12 if cross else D
    reference, ours = _pair(value_dim_in=value_features, key_in=key_in, **spec)

    kv_len = S if cross else T
    query = _rand(B, T, D, seed=1)
    value = query if not cross else _rand(B, kv_len, value_features, seed=2)
    key = None if key_in is None else _rand(B, kv_len, key_in, seed=3)
    kwargs = dict(use_causal_mask=causal, return_attention_scores=scores)
    if use_value_mask:
        value_mask = np.ones((B, kv_len), bool)
        value_mask[0, -2:] = False
        kwargs["value_mask"] = value_mask
    if use_attention_mask:
        kwargs["attention_mask"] = _random_mask(B, T, kv_len, seed=4)

    expected = reference(query, value, key, **kwargs)
    actual = ours(query, value, key, **kwargs)
    if scores:
        np.testing.assert_allclose(_np(actual[0]), _np(expected[0]), atol=1e-5)
        np.testing.assert_allclose(_np(actual[1]), _np(expected[1]), atol=1e-5)
    else:
        np.testing.assert_allclose(_np(actual), _np(expected), atol=1e-5)


def test_parity_with_query_padding_at_real_positions():
    reference, ours = _pair()
    query = _rand(B, T, D, seed=5)
    query_mask = np.ones((B, T), bool)
    query_mask[1, -3:] = False
    # Keras takes a query padding mask only from the tensor's Keras mask.
    masked_query = keras.layers.Masking(mask_value=0.0)(query * query_mask[..., None])
    expected = _np(reference(masked_query, masked_query))
    for scores in (False, True):
        out = ours(query, query, query_mask=query_mask, value_mask=query_mask,
                   return_attention_scores=scores)
        out = _np(out[0] if scores else out)
        np.testing.assert_allclose(out[query_mask], expected[query_mask], atol=1e-5)
        # Padded queries see no key: their attention output is zero, so the
        # layer returns the output projection's bias there.
        bias = _np(ours.output_dense.bias)
        np.testing.assert_allclose(out[~query_mask], np.broadcast_to(bias, out[~query_mask].shape),
                                   atol=1e-6)


def test_keras_mask_on_inputs_is_used():
    ours = MultiHeadAttention(num_heads=2, key_dim=4)
    tokens = np.array([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]])
    embedded = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
    _, scores = ours(embedded, embedded, return_attention_scores=True)
    scores = _np(scores)
    assert np.all(scores[0, :, :3, 3:] == 0)
    np.testing.assert_allclose(scores[0, :, :3].sum(-1), 1.0, atol=1e-6)


# ------------------------------------------------------ fully masked rows


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("scores", [False, True], ids=["fast", "scores"])
def test_fully_masked_rows_are_finite_zeros(policy, scores):
    layer = MultiHeadAttention(num_heads=2, key_dim=4, use_bias=False, dtype=policy)
    x = _rand(B, T, 8, seed=6)
    mask = np.ones((B, T, T), bool)
    mask[0, 2, :] = False  # query 2 of example 0 sees nothing
    out = layer(x, x, attention_mask=mask, return_attention_scores=scores)
    output = _np(out[0] if scores else out)
    assert np.all(np.isfinite(output))
    np.testing.assert_array_equal(output[0, 2], 0.0)
    assert np.abs(output[0, 1]).sum() > 0
    if scores:
        weights = _np(out[1])
        assert np.all(np.isfinite(weights))
        np.testing.assert_array_equal(weights[0, :, 2], 0.0)
        np.testing.assert_allclose(weights[0, :, 1].sum(-1), 1.0, atol=1e-2)


# ------------------------------------------------ padding and causality


def _identical_layers(**kwargs):
    """Two layers with the same weights and dropout seed state."""
    first = MultiHeadAttention(**kwargs)
    second = MultiHeadAttention(**kwargs)
    x = np.zeros((1, 2, D), "float32")
    first(x, x)
    second(x, x)
    second.set_weights(first.get_weights())
    return first, second


PATHS = {
    "fast": dict(layer=dict(), call=dict()),
    "scores": dict(layer=dict(), call=dict(return_attention_scores=True)),
    "dropout_training": dict(layer=dict(dropout=0.5, seed=7), call=dict(training=True)),
    "gqa_rope": dict(layer=dict(num_key_value_heads=2, rope_max_wavelength=100), call=dict()),
    "alibi_like_bias": dict(layer=dict(), call=dict(attention_bias=_rand(1, 4, T, T, seed=8))),
}


@pytest.mark.parametrize("path", list(PATHS), ids=list(PATHS))
def test_padding_does_not_change_real_positions(path):
    spec = PATHS[path]
    first, second = _identical_layers(num_heads=4, key_dim=4, **spec["layer"])
    x = _rand(B, T, D, seed=9)
    padding = np.ones((B, T), bool)
    padding[:, -2:] = False
    other = x.copy()
    other[:, -2:] = _rand(B, 2, D, seed=10) * 10
    out_a = first(x, x, value_mask=padding, **spec["call"])
    out_b = second(other, other, value_mask=padding, **spec["call"])
    out_a = _np(out_a[0] if isinstance(out_a, tuple) else out_a)
    out_b = _np(out_b[0] if isinstance(out_b, tuple) else out_b)
    np.testing.assert_allclose(out_a[:, :-2], out_b[:, :-2], atol=1e-5)
    assert not np.allclose(out_a[:, -2:], out_b[:, -2:])


@pytest.mark.parametrize("path", list(PATHS), ids=list(PATHS))
def test_future_tokens_do_not_leak(path):
    spec = PATHS[path]
    first, second = _identical_layers(num_heads=4, key_dim=4, **spec["layer"])
    x = _rand(B, T, D, seed=11)
    changed = x.copy()
    changed[:, 3:] = _rand(B, T - 3, D, seed=12)
    out_a = first(x, x, use_causal_mask=True, **spec["call"])
    out_b = second(changed, changed, use_causal_mask=True, **spec["call"])
    out_a = _np(out_a[0] if isinstance(out_a, tuple) else out_a)
    out_b = _np(out_b[0] if isinstance(out_b, tuple) else out_b)
    np.testing.assert_allclose(out_a[:, :3], out_b[:, :3], atol=1e-5)
    assert not np.allclose(out_a[:, 3:], out_b[:, 3:])


def test_dropout_changes_training_outputs_only():
    layer = MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.5, seed=1)
    x = _rand(B, T, D, seed=13)
    inference = _np(layer(x, x))
    np.testing.assert_allclose(_np(layer(x, x)), inference)
    assert not np.allclose(_np(layer(x, x, training=True)), inference)


# ------------------------------------------------------ cached decoding


CACHE_CONFIGS = {
    "mha": dict(num_heads=4, key_dim=4),
    "gqa": dict(num_heads=4, key_dim=4, num_key_value_heads=2),
    "mqa_rope": dict(num_heads=4, key_dim=4, num_key_value_heads=1, rope_max_wavelength=50),
    "sliding_window": dict(num_heads=2, key_dim=8, sliding_window=3),
}


@pytest.mark.parametrize("config", list(CACHE_CONFIGS), ids=list(CACHE_CONFIGS))
def test_cached_decoding_equals_full_causal_pass(config):
    layer = MultiHeadAttention(**CACHE_CONFIGS[config])
    x = _rand(B, T, D, seed=14)
    full, full_scores = layer(x, x, use_causal_mask=True, return_attention_scores=True)
    full, full_scores = _np(full), _np(full_scores)

    # Prefill three tokens at once, then one token per step.
    cache = layer.empty_cache(B, T)
    prefill, cache = layer(x[:, :3], x[:, :3], cache=cache, cache_update_index=0,
                           use_causal_mask=True)
    np.testing.assert_allclose(_np(prefill), full[:, :3], atol=1e-5)
    for i in range(3, T):
        step, scores, cache = layer(x[:, i : i + 1], x[:, i : i + 1], cache=cache,
                                    cache_update_index=i, use_causal_mask=True,
                                    return_attention_scores=True)
        np.testing.assert_allclose(_np(step)[:, 0], full[:, i], atol=1e-5)
        np.testing.assert_allclose(_np(scores)[:, :, 0], full_scores[:, :, i], atol=1e-5)


def test_cached_decoding_with_tensor_index_under_xla():
    layer = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=2,
                               rope_max_wavelength=50)
    x = _rand(B, T, D, seed=15)
    full = _np(layer(x, x, use_causal_mask=True))

    @tf.function(jit_compile=True)
    def step(token, cache, index):
        return layer(token, token, cache=cache, cache_update_index=index, use_causal_mask=True)

    cache = layer.empty_cache(B, T)
    for i in range(T):
        out, cache = step(x[:, i : i + 1], cache, tf.constant(i))
        np.testing.assert_allclose(_np(out)[:, 0], full[:, i], atol=1e-5)


def test_cross_attention_cache_filled_once_equals_full_pass():
    layer = MultiHeadAttention(num_heads=4, key_dim=4)
    query = _rand(B, T, D, seed=16)
    memory = _rand(B, S, 12, seed=17)
    memory_mask = np.ones((B, S), bool)
    memory_mask[1, -2:] = False
    full = _np(layer(query, memory, value_mask=memory_mask))

    cache = layer.empty_cache(B, S)
    _, cache = layer(query[:, :1], memory, cache=cache, cache_update_index=0,
                     value_mask=memory_mask)
    for i in range(T):
        step, unchanged = layer(query[:, i : i + 1], cache=cache, value_mask=memory_mask)
        np.testing.assert_allclose(_np(step)[:, 0], full[:, i], atol=1e-5)
        np.testing.assert_array_equal(_np(unchanged), _np(cache))


# ------------------------------------------------- grouped-query heads


def test_grouped_query_with_all_heads_equals_multi_head_attention():
    reference, _ = _pair()
    ours = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=4)
    x = _rand(B, T, D, seed=18)
    ours(x, x)
    ours.set_weights(reference.get_weights())
    for scores in (False, True):
        expected = reference(x, x, use_causal_mask=True, return_attention_scores=scores)
        actual = ours(x, x, use_causal_mask=True, return_attention_scores=scores)
        for a, e in zip(keras.tree.flatten(actual), keras.tree.flatten(expected)):
            np.testing.assert_allclose(_np(a), _np(e), atol=1e-5)


@pytest.mark.parametrize("kv_heads", [1, 2])
def test_grouped_query_equals_multi_head_with_shared_key_value_weights(kv_heads):
    groups = 4 // kv_heads
    ours = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=kv_heads)
    x = _rand(B, T, D, seed=19)
    ours(x, x)
    reference = keras.layers.MultiHeadAttention(num_heads=4, key_dim=4)
    reference(x, x)
    weights = ours.get_weights()
    # Query head n reads key/value head n // groups: repeat the shared heads.
    for i in (2, 3, 4, 5):  # key kernel, key bias, value kernel, value bias
        weights[i] = np.repeat(weights[i], groups, axis=-2)
    reference.set_weights(weights)
    for scores in (False, True):
        expected = reference(x, x, return_attention_scores=scores)
        actual = ours(x, x, return_attention_scores=scores)
        for a, e in zip(keras.tree.flatten(actual), keras.tree.flatten(expected)):
            np.testing.assert_allclose(_np(a), _np(e), atol=1e-5)


# ------------------------------------------------ bias, heads, windows


def test_attention_bias_is_added_to_logits_on_both_paths():
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    x = _rand(B, T, D, seed=20)
    bias = np.zeros((1, 2, T, T), "float32")
    bias[..., 1] = -1e9  # a huge negative bias hides key 1 like a mask does
    mask = np.ones((B, T, T), bool)
    mask[..., 1] = False
    masked = _np(layer(x, x, attention_mask=mask))
    np.testing.assert_allclose(_np(layer(x, x, attention_bias=bias)), masked, atol=1e-5)
    out, scores = layer(x, x, attention_bias=bias, return_attention_scores=True)
    np.testing.assert_allclose(_np(out), masked, atol=1e-5)
    assert np.all(_np(scores)[..., 1] == 0)
    soft = _rand(1, 2, T, T, seed=21)
    fast = _np(layer(x, x, attention_bias=soft))
    explicit = _np(layer(x, x, attention_bias=soft, return_attention_scores=True)[0])
    np.testing.assert_allclose(fast, explicit, atol=1e-5)
    assert not np.allclose(fast, _np(layer(x, x)))


def test_head_mask_scales_each_head_contribution():
    layer = MultiHeadAttention(num_heads=4, key_dim=4)
    x = _rand(B, T, D, seed=22)
    full = _np(layer(x, x))
    bias = _np(layer.output_dense.bias)
    np.testing.assert_allclose(_np(layer(x, x, head_mask=np.ones(4))), full, atol=1e-6)
    np.testing.assert_allclose(_np(layer(x, x, head_mask=np.zeros(4))),
                               np.broadcast_to(bias, full.shape), atol=1e-6)
    # The output is linear in the per-head outputs: one-hot masks add up.
    per_head = [_np(layer(x, x, head_mask=np.eye(4)[h])) - bias for h in range(4)]
    np.testing.assert_allclose(sum(per_head) + bias, full, atol=1e-5)
    per_example = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], "float32")
    mixed = _np(layer(x, x, head_mask=per_example, return_attention_scores=True)[0])
    np.testing.assert_allclose(mixed[0], full[0], atol=1e-5)
    np.testing.assert_allclose(mixed[1], np.broadcast_to(bias, full[1].shape), atol=1e-6)


def test_sliding_window_matches_band_mask():
    windowed = MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=2)
    plain = MultiHeadAttention(num_heads=2, key_dim=4)
    x = _rand(B, T, D, seed=23)
    windowed(x, x)
    plain(x, x)
    plain.set_weights(windowed.get_weights())
    i, j = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    band = np.broadcast_to((j <= i) & (i - j < 2), (B, T, T))
    np.testing.assert_allclose(_np(windowed(x, x, use_causal_mask=True)),
                               _np(plain(x, x, attention_mask=band)), atol=1e-6)


def test_fast_and_explicit_paths_agree():
    layer = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=2)
    x = _rand(B, T, D, seed=24)
    mask = _random_mask(B, T, T, seed=25)
    fast = _np(layer(x, x, attention_mask=mask, use_causal_mask=True))
    explicit = _np(layer(x, x, attention_mask=mask, use_causal_mask=True,
                         return_attention_scores=True)[0])
    np.testing.assert_allclose(fast, explicit, atol=1e-5)


# -------------------------------------------------------- shared battery


@pytest.mark.parametrize(
    "init_kwargs",
    [
        dict(num_heads=2, key_dim=4),
        dict(num_heads=4, key_dim=4, num_key_value_heads=2, rope_max_wavelength=100,
             sliding_window=4, dropout=0.1, seed=3),
    ],
    ids=["plain", "gqa_rope_window_dropout"],
)
def test_standard_layer_checks(init_kwargs, tmp_path):
    run_layer_checks(
        MultiHeadAttention,
        init_kwargs,
        {"query": _rand(B, T, D, seed=26), "value": _rand(B, S, 12, seed=27)},
        tmp_path,
        expected_output_shape=(B, T, D),
    )
    run_layer_checks(
        MultiHeadAttention,
        init_kwargs,
        {"query": _rand(B, T, D, seed=28)},
        tmp_path,
        call_kwargs={"use_causal_mask": True, "return_attention_scores": True},
        expected_output_shape=(B, T, D),
    )


def test_functional_model_keeps_scores_and_cache_outputs():
    layer = MultiHeadAttention(num_heads=2, key_dim=4, output_shape=10)
    query = keras.Input((T, D), batch_size=B)
    output, scores = layer(query, query, return_attention_scores=True)
    assert tuple(output.shape) == (B, T, 10)
    assert tuple(scores.shape) == (B, 2, T, T)
    cache = keras.Input((2, T, 2, 4), batch_size=B)
    step = keras.Input((1, D), batch_size=B)
    output, new_cache = layer(step, step, cache=cache, cache_update_index=0)
    assert tuple(new_cache.shape) == (B, 2, T, 2, 4)
    model = keras.Model([step, cache], [output, new_cache])
    out, filled = model([_rand(B, 1, D), np.zeros((B, 2, T, 2, 4), "float32")])
    assert np.abs(_np(filled)[:, :, 0]).sum() > 0
    assert np.all(_np(filled)[:, :, 1:] == 0)


# ------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_heads=0, key_dim=4), "num_heads"),
        (dict(num_heads=2, key_dim=-1), "key_dim"),
        (dict(num_heads=2, key_dim=4, value_dim=0), "value_dim"),
        (dict(num_heads=6, key_dim=4, num_key_value_heads=4), "num_key_value_heads"),
        (dict(num_heads=2, key_dim=5, rope_max_wavelength=10000), "key_dim"),
        (dict(num_heads=2, key_dim=4, dropout=1.5), "dropout"),
        (dict(num_heads=2, key_dim=4, attention_axes=0), "attention_axes"),
        (dict(num_heads=2, key_dim=4, attention_axes="time"), "attention_axes"),
        (dict(num_heads=2, key_dim=4, attention_axes=(1, 2), sliding_window=3), "sliding_window"),
        (dict(num_heads=2, key_dim=4, attention_axes=(1, 2), rope_max_wavelength=100),
         "rope_max_wavelength"),
        (dict(num_heads=2, key_dim=4, sliding_window=0), "sliding_window"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiHeadAttention(**kwargs)


def test_bad_call_arguments():
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    x = _rand(B, T, D)
    with pytest.raises(ValueError, match=r"`query` must have rank 3.*Received.*rank 2"):
        layer(x[:, 0], x[:, 0])
    layer(x, x)
    with pytest.raises(ValueError, match="`value` must have rank 3"):
        layer(x, x[..., None])
    with pytest.raises(ValueError, match=r"`value_mask` must have shape \(batch, 6\)"):
        layer(x, x, value_mask=np.ones((B, T + 1), bool))
    with pytest.raises(ValueError, match="`attention_mask` must have shape"):
        layer(x, x, attention_mask=np.ones((B, T, T + 2), bool))
    with pytest.raises(ValueError, match="`query_mask` must have rank 2"):
        layer(x, x, query_mask=np.ones((B,), bool))
    with pytest.raises(ValueError, match="`head_mask` must have shape"):
        layer(x, x, head_mask=np.ones(3))
    cache = layer.empty_cache(B, 4)
    with pytest.raises(ValueError, match=r"`cache_update_index`.*Received: cache_update_index=3"):
        layer(x[:, :2], x[:, :2], cache=cache, cache_update_index=3)
    with pytest.raises(ValueError, match="cache_update_index"):
        layer(x[:, :1], x[:, :1], cache=cache, cache_update_index=tf.constant(4))
    with pytest.raises(ValueError, match="`cache` must have shape"):
        layer(x[:, :1], x[:, :1], cache=ops.zeros((B, 2, 4, 3, 4)), cache_update_index=0)
    different_dims = MultiHeadAttention(num_heads=2, key_dim=4, value_dim=6)
    with pytest.raises(ValueError, match="value_dim == key_dim"):
        different_dims.empty_cache(B, 4)
