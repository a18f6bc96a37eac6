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
        # query, key, value and output projections: kernel and bias each.
        expected_num_trainable_weights=8,
    )
    run_layer_checks(
        MultiHeadAttention,
        init_kwargs,
        {"query": _rand(B, T, D, seed=28)},
        tmp_path,
        call_kwargs={"use_causal_mask": True, "return_attention_scores": True},
        expected_output_shape=(B, T, D),
        expected_num_trainable_weights=8,
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


# ------------------------------------------------------------ use_gate


def _shared(reference_kwargs, example_inputs, ours_kwargs=None):
    """Keras' layer and ours, built on `example_inputs`, sharing weights."""
    reference = keras.layers.MultiHeadAttention(**reference_kwargs)
    ours = MultiHeadAttention(**reference_kwargs, **(ours_kwargs or {}))
    reference(*example_inputs)
    ours(*example_inputs)
    ours.set_weights(reference.get_weights())
    return reference, ours


def _assert_same(actual, expected, atol=1e-5):
    actual, expected = keras.tree.flatten(actual), keras.tree.flatten(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert tuple(a.shape) == tuple(e.shape)
        np.testing.assert_allclose(_np(a), _np(e), atol=atol)


@pytest.mark.parametrize("scores", [False, True], ids=["fast", "scores"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
def test_use_gate_matches_keras(cross, scores):
    query = _rand(B, T, D, seed=40)
    value = _rand(B, S, 12, seed=41) if cross else query
    reference, ours = _shared(
        dict(num_heads=4, key_dim=4, value_dim=3, use_gate=True), (query, value)
    )
    assert [w.path.split("/", 1)[1] for w in ours.weights] == [
        w.path.split("/", 1)[1] for w in reference.weights
    ]
    assert ours.gate_dense.activation is keras.activations.sigmoid
    mask = _random_mask(B, T, value.shape[1], seed=42)
    for kwargs in (dict(), dict(attention_mask=mask), dict(use_causal_mask=not cross)):
        kwargs["return_attention_scores"] = scores
        _assert_same(ours(query, value, **kwargs), reference(query, value, **kwargs))
    ungated = MultiHeadAttention(num_heads=4, key_dim=4, value_dim=3)
    ungated(query, value)
    weights = reference.get_weights()
    ungated.set_weights(weights[:4] + weights[6:])
    assert not np.allclose(_np(ungated(query, value)), _np(ours(query, value)))


def test_use_gate_with_cache_and_grouped_heads_equals_full_pass():
    layer = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=2, use_gate=True,
                               rope_max_wavelength=50)
    x = _rand(B, T, D, seed=43)
    full = _np(layer(x, x, use_causal_mask=True))
    cache = layer.empty_cache(B, T)
    for i in range(T):
        step, cache = layer(x[:, i : i + 1], x[:, i : i + 1], cache=cache, cache_update_index=i,
                            use_causal_mask=True)
        np.testing.assert_allclose(_np(step)[:, 0], full[:, i], atol=1e-5)


# ------------------------------------------------- attention_axes, any rank


H, W = 3, 5
AXES_CASES = {
    "axis_2": dict(shape=(B, H, W, D), axes=(2,)),
    "axis_1": dict(shape=(B, H, W, D), axes=(1,)),
    "axis_minus_2": dict(shape=(B, H, W, D), axes=(-2,)),
    "axes_1_2": dict(shape=(B, H, W, D), axes=(1, 2)),
    "axes_none": dict(shape=(B, H, W, D), axes=None),
    "axes_2_1": dict(shape=(B, H, W, D), axes=(2, 1)),
    "rank5_axes_1_3": dict(shape=(B, 2, H, W, 8), axes=(1, 3)),
}


def _axes_inputs(case, cross=False):
    shape = AXES_CASES[case]["shape"]
    query = _rand(*shape, seed=44)
    if not cross:
        return query, query
    # The key/value sequence differs along the attended axes only.
    resolved = MultiHeadAttention(num_heads=1, key_dim=1,
                                  attention_axes=AXES_CASES[case]["axes"])
    axes = resolved._resolve_attention_axes(len(shape))
    value_shape = [d + 2 if i in axes else d for i, d in enumerate(shape)]
    value_shape[-1] = 6
    return query, _rand(*value_shape, seed=45)


def _scores_shape(query, value, axes, heads):
    rank = query.ndim
    axes = tuple(a % rank for a in axes) if axes else tuple(range(1, rank - 1))
    others = [query.shape[a] for a in range(1, rank - 1) if a not in axes]
    return (query.shape[0], *others, heads, *[query.shape[a] for a in axes],
            *[value.shape[a] for a in axes])


@pytest.mark.parametrize("masked", [False, True], ids=["unmasked", "masked"])
@pytest.mark.parametrize("cross", [False, True], ids=["self", "cross"])
@pytest.mark.parametrize("case", list(AXES_CASES), ids=list(AXES_CASES))
def test_attention_axes_match_keras(case, cross, masked):
    axes = AXES_CASES[case]["axes"]
    query, value = _axes_inputs(case, cross)
    reference, ours = _shared(
        dict(num_heads=2, key_dim=4, attention_axes=axes, output_shape=(3, 2)), (query, value)
    )
    kwargs = {}
    if masked:
        scores_shape = _scores_shape(query, value, axes, 2)
        n_axes = len(axes) if axes else query.ndim - 2
        # Keras' layout: the scores' without the head axis.
        head_axis = len(scores_shape) - 2 * n_axes - 1
        mask_shape = scores_shape[:head_axis] + scores_shape[head_axis + 1:]
        kwargs["attention_mask"] = _random_mask(*mask_shape, seed=46)
    for scores in (False, True):
        expected = reference(query, value, return_attention_scores=scores, **kwargs)
        actual = ours(query, value, return_attention_scores=scores, **kwargs)
        _assert_same(actual, expected)
        if scores:
            assert tuple(actual[1].shape) == _scores_shape(query, value, axes or (), 2)


@pytest.mark.parametrize("case", ["axis_2", "axis_1"])
def test_single_attention_axis_padding_causal_and_window_match_keras(case):
    query, value = _axes_inputs(case)
    axis = AXES_CASES[case]["axes"][0]
    value_mask = np.ones(query.shape[:-1], bool)
    index = [slice(None)] * 3
    index[axis] = slice(-2, None)
    value_mask[0][tuple(index[1:])] = False
    reference, ours = _shared(dict(num_heads=2, key_dim=4, attention_axes=(axis,)),
                              (query, value))
    for scores in (False, True):
        kwargs = dict(return_attention_scores=scores)
        if case == "axis_2":
            # Keras' causal mask and band follow axis 1 only; this pair runs
            # where Keras' own padding masks are well defined.
            _assert_same(ours(query, value, value_mask=value_mask, **kwargs),
                         reference(query, value, value_mask=value_mask, **kwargs))
        else:
            _assert_same(ours(query, value, use_causal_mask=True, **kwargs),
                         reference(query, value, use_causal_mask=True, **kwargs))
    if case == "axis_1":
        window_reference, window_ours = _shared(
            dict(num_heads=2, key_dim=4, attention_axes=(1,), sliding_window=2), (query, value)
        )
        _assert_same(window_ours(query, value, use_causal_mask=True),
                     window_reference(query, value, use_causal_mask=True))


def test_two_attention_axes_padding_masks_equal_the_explicit_mask():
    # Keras' padding masks assume one trailing attention axis; ours follow the
    # attended axes, so they must equal the explicit (B, h, w, h, w) mask.
    layer = MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=(1, 2))
    query, value = _rand(B, H, W, D, seed=47), _rand(B, H + 1, W + 2, 6, seed=48)
    query_mask = np.random.default_rng(49).random((B, H, W)) > 0.3
    value_mask = np.random.default_rng(50).random((B, H + 1, W + 2)) > 0.3
    value_mask[:, 0, 0] = True
    explicit = query_mask[:, :, :, None, None] & value_mask[:, None, None, :, :]
    out, scores = layer(query, value, query_mask=query_mask, value_mask=value_mask,
                        return_attention_scores=True)
    expected_out, expected_scores = layer(query, value, attention_mask=explicit,
                                          return_attention_scores=True)
    _assert_same((out, scores), (expected_out, expected_scores), atol=1e-6)
    scores = _np(scores)
    np.testing.assert_array_equal(scores[~np.broadcast_to(explicit[:, None], scores.shape)], 0)
    # Masked query rows attend to nothing: the output is the projection's bias.
    bias = _np(layer.output_dense.bias)
    np.testing.assert_allclose(_np(out)[~query_mask], np.broadcast_to(bias, (
        (~query_mask).sum(), D)), atol=1e-6)
    visible = scores.sum(axis=(-2, -1))
    np.testing.assert_allclose(visible[np.broadcast_to(query_mask[:, None], visible.shape)],
                               1.0, atol=1e-5)


def test_extras_on_any_rank():
    x = _rand(B, H, W, D, seed=51)
    # Grouped-query heads equal full heads with the shared key/value heads repeated.
    ours = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=2,
                              attention_axes=(1, 2))
    ours(x, x)
    reference = keras.layers.MultiHeadAttention(num_heads=4, key_dim=4, attention_axes=(1, 2))
    reference(x, x)
    weights = ours.get_weights()
    for i in (2, 3, 4, 5):
        weights[i] = np.repeat(weights[i], 2, axis=-2)
    reference.set_weights(weights)
    _assert_same(ours(x, x, return_attention_scores=True),
                 reference(x, x, return_attention_scores=True))
    full = _np(ours(x, x))
    bias = _np(ours.output_dense.bias)
    # head_mask: one-hot masks add up to the full output.
    per_head = [_np(ours(x, x, head_mask=np.eye(4)[h])) - bias for h in range(4)]
    np.testing.assert_allclose(sum(per_head) + bias, full, atol=1e-5)
    per_example = _np(ours(x, x, head_mask=np.array([[1] * 4, [0] * 4], "float32")))
    np.testing.assert_allclose(per_example[0], full[0], atol=1e-6)
    np.testing.assert_allclose(per_example[1], np.broadcast_to(bias, full[1].shape), atol=1e-6)
    # attention_bias: a huge negative bias acts like the mask.
    mask = _random_mask(B, H, W, H, W, seed=52)
    bias_logits = np.where(mask[:, None], 0.0, -1e9).astype("float32")
    np.testing.assert_allclose(_np(ours(x, x, attention_bias=bias_logits)),
                               _np(ours(x, x, attention_mask=mask)), atol=1e-5)


def test_multi_axis_attention_rejects_sequence_only_extras():
    x = _rand(B, H, W, D, seed=53)
    layer = MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=(1, 2))
    with pytest.raises(ValueError, match="`use_causal_mask` needs a single attention axis"):
        layer(x, x, use_causal_mask=True)
    with pytest.raises(ValueError, match="`cache` needs `\\(batch, time, features\\)`"):
        layer(x, x, cache=np.zeros((B, 2, W, 2, 4), "float32"), cache_update_index=0)
    with pytest.raises(ValueError, match="`cache_update_index`"):
        layer(x, x, cache_update_index=0)
    with pytest.raises(ValueError, match="`positions`"):
        layer(x, x, positions=np.arange(W))
    with pytest.raises(ValueError, match="`rope_max_wavelength`"):
        MultiHeadAttention(num_heads=2, key_dim=4, rope_max_wavelength=100)(x, x)
    with pytest.raises(ValueError, match="`sliding_window` needs a single attention axis"):
        MultiHeadAttention(num_heads=2, key_dim=4, sliding_window=2)(x, x)
    with pytest.raises(ValueError, match="`attention_axes` must name distinct axes"):
        MultiHeadAttention(num_heads=2, key_dim=4, attention_axes=(3,))(x, x)
    with pytest.raises(ValueError, match="`value` must have rank 4"):
        layer(x, x[:, 0])
    with pytest.raises(ValueError, match="`attention_mask` must have shape"):
        layer(x, x, attention_mask=np.ones((B, H, W, H, W + 1), bool))
    with pytest.raises(ValueError, match="`value_mask` must have shape"):
        layer(x, x, value_mask=np.ones((B, H, W + 1), bool))


# ------------------------------------------------------- every mask shape


MASK_SHAPES = {
    "T_S": (T, S),
    "1_S": (1, S),
    "1_T_S": (1, T, S),
    "B_1_S": (B, 1, S),
    "B_T_1": (B, T, 1),
    "1_1_S": (1, 1, S),
    "B_T_S": (B, T, S),
    "B_N_T_S": (B, 4, T, S),
    "B_1_T_S": (B, 1, T, S),
    "1_N_1_S": (1, 4, 1, S),
}


@pytest.mark.parametrize("scores", [False, True], ids=["fast", "scores"])
@pytest.mark.parametrize("shape", list(MASK_SHAPES), ids=list(MASK_SHAPES))
def test_every_broadcastable_mask_shape_matches_keras(shape, scores):
    query, value = _rand(B, T, D, seed=54), _rand(B, S, 12, seed=55)
    reference, ours = _shared(dict(num_heads=4, key_dim=4), (query, value))
    mask = np.random.default_rng(56).random(MASK_SHAPES[shape]) > 0.4
    if mask.shape[-1] > 1:
        mask[..., 0] = True
    # Keras' fused path averages all values in rows with no visible key (ours
    # zero them, as Keras' explicit path does): compare the other rows there.
    # Keras inserts the missing axes just before (T, S): (B, T, S) -> (B, 1, T, S).
    expanded = mask.reshape(mask.shape[:-2] + (1,) * (4 - mask.ndim) + mask.shape[-2:])
    rows = np.broadcast_to(expanded, (B, 4, T, S)).any(-1).all(1)
    assert rows.any()
    for given in (mask, mask.astype("int32")):
        kwargs = dict(attention_mask=given, return_attention_scores=scores)
        actual, expected = ours(query, value, **kwargs), reference(query, value, **kwargs)
        if scores:
            _assert_same(actual, expected)
        else:
            np.testing.assert_allclose(_np(actual)[rows], _np(expected)[rows], atol=1e-5)
            np.testing.assert_allclose(
                _np(actual)[~rows],
                np.broadcast_to(_np(ours.output_dense.bias), ((~rows).sum(), D)), atol=1e-6)


def test_keras_averages_rows_with_no_visible_key_and_ours_zero_them():
    query = _rand(B, T, D, seed=57)
    reference, ours = _shared(dict(num_heads=2, key_dim=4), (query, query))
    mask = np.ones((T, T), bool)
    mask[1] = False
    out = _np(ours(query, query, attention_mask=mask))
    np.testing.assert_allclose(out[:, 1], np.broadcast_to(_np(ours.output_dense.bias), (B, D)),
                               atol=1e-6)
    np.testing.assert_allclose(out[:, [0, 2, 3, 4, 5]],
                               _np(reference(query, query, attention_mask=mask))[:, [0, 2, 3, 4,
                                                                                      5]],
                               atol=1e-5)


# --------------------------------------------- output shapes, symbolic calls


SPEC_CASES = {
    "self": dict(query=(B, T, D), value=None, kwargs=dict()),
    "self_output_shape": dict(query=(B, T, D), value=None, kwargs=dict(output_shape=(3, 4))),
    "cross": dict(query=(B, T, D), value=(B, S, 12), kwargs=dict()),
    "rank4_axes_1_2": dict(query=(B, H, W, D), value=(B, H + 1, W + 1, 6),
                           kwargs=dict(attention_axes=(1, 2))),
    "rank4_axis_2": dict(query=(B, H, W, D), value=(B, H, W + 2, 6),
                         kwargs=dict(attention_axes=2, value_dim=3)),
}


@pytest.mark.parametrize("case", list(SPEC_CASES), ids=list(SPEC_CASES))
def test_compute_output_shape_and_spec_match_keras(case):
    spec = SPEC_CASES[case]
    query = _rand(*spec["query"], seed=58)
    value = query if spec["value"] is None else _rand(*spec["value"], seed=59)
    reference, ours = _shared(dict(num_heads=2, key_dim=4, **spec["kwargs"]), (query, value))
    assert ours.compute_output_shape(query.shape, value.shape) == \
        reference.compute_output_shape(query.shape, value.shape)
    eager = reference(query, value, return_attention_scores=True)
    for batch in (B, None):
        symbolic_query = keras.KerasTensor((batch, *query.shape[1:]))
        symbolic_value = keras.KerasTensor((batch, *value.shape[1:]))
        output = ours.compute_output_spec(symbolic_query, symbolic_value)
        assert output.shape == reference.compute_output_spec(symbolic_query,
                                                             symbolic_value).shape
        output, scores = ours.compute_output_spec(symbolic_query, symbolic_value,
                                                  return_attention_scores=True)
        assert output.dtype == scores.dtype == ours.compute_dtype
        # Keras' own spec says (B, N, T, T) for the scores whatever the key
        # length and rank; its eager scores (and ours) say otherwise.
        expected = tuple(eager[1].shape)
        assert scores.shape == (batch, *expected[1:])
        if case in ("self", "self_output_shape"):
            assert scores.shape == reference.compute_output_spec(
                symbolic_query, symbolic_value, return_attention_scores=True)[1].shape


@pytest.mark.parametrize("case", list(SPEC_CASES), ids=list(SPEC_CASES))
def test_symbolic_call_in_functional_model(case):
    spec = SPEC_CASES[case]
    query = _rand(*spec["query"], seed=60)
    value = query if spec["value"] is None else _rand(*spec["value"], seed=61)
    layer = MultiHeadAttention(num_heads=2, key_dim=4, use_gate=True, **spec["kwargs"])
    query_input = keras.Input(query.shape[1:])
    value_input = keras.Input(value.shape[1:])
    output, scores = layer(query_input, value_input, return_attention_scores=True)
    model = keras.Model([query_input, value_input], [output, scores])
    eager = layer(query, value, return_attention_scores=True)
    assert tuple(output.shape) == (None, *eager[0].shape[1:])
    assert tuple(scores.shape) == (None, *eager[1].shape[1:])
    _assert_same(model([query, value]), eager, atol=1e-6)


def test_compute_output_spec_with_cache():
    layer = MultiHeadAttention(num_heads=2, key_dim=4, num_key_value_heads=1)
    step = keras.KerasTensor((B, 1, D))
    cache = keras.KerasTensor((B, 2, T, 1, 4))
    output, scores, new_cache = layer.compute_output_spec(
        step, step, cache=cache, cache_update_index=0, return_attention_scores=True
    )
    assert (output.shape, scores.shape, new_cache.shape) == ((B, 1, D), (B, 2, 1, T), cache.shape)
    output, new_cache = layer.compute_output_spec(step, cache=cache)
    assert (output.shape, new_cache.shape) == ((B, 1, D), cache.shape)


# ------------------------------------------------------ quantize and LoRA


@pytest.mark.parametrize("use_gate", [False, True], ids=["plain", "gated"])
def test_int8_quantization_matches_keras_quantized_layer(use_gate):
    query, value = _rand(B, T, D, seed=62), _rand(B, S, 12, seed=63)
    reference, ours = _shared(dict(num_heads=4, key_dim=4, use_gate=use_gate), (query, value))
    float_output = _np(ours(query, value))
    query_input, value_input = keras.Input((T, D)), keras.Input((S, 12))
    reference_model = keras.Model([query_input, value_input],
                                  reference(query_input, value_input))
    with pytest.warns(UserWarning):  # Keras warns about its weightless layers
        reference_model.quantize("int8")
    ours.quantize("int8")
    names = ["query", "key", "value", "attention_output"] + (["gate"] if use_gate else [])
    quantized = {layer.name: layer.quantization_mode for layer in ours._flatten_layers()}
    assert all(quantized[name] == "int8" for name in names)
    assert ours.quantization_mode is None  # the attention itself runs in float
    # Same weights, same int8 quantizers: the same numbers as Keras' layer.
    for scores in (False, True):
        np.testing.assert_allclose(
            _np(keras.tree.flatten(ours(query, value, return_attention_scores=scores))[0]),
            _np(reference_model([query, value])), atol=1e-5)
    # Per-channel int8 weights and per-token int8 activations: each
    # projection is off by about 1% of its scale, so 5% of the output's
    # scale bounds the error of the four (or five) chained ones.
    error = np.abs(_np(ours(query, value)) - float_output).max()
    assert 0 < error < 0.05 * np.abs(float_output).max()


def test_model_quantize_reaches_the_projections():
    x = _rand(B, T, D, seed=64)
    inputs = keras.Input((T, D))
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    model = keras.Model(inputs, layer(inputs, inputs, use_causal_mask=True))
    before = _np(model(x))
    with pytest.warns(UserWarning):
        model.quantize("int8")
    assert layer.query_dense.quantization_mode == "int8"
    after = _np(model(x))
    assert 0 < np.abs(after - before).max() < 0.05 * np.abs(before).max()
    with pytest.raises(ValueError, match="already quantized"):
        layer.query_dense.quantize("int8")


@pytest.mark.parametrize("use_bias", [False, True], ids=["no_bias", "bias"])
@pytest.mark.parametrize("targets", [None, ("query", "value")], ids=["all", "query_value"])
def test_enable_lora_matches_keras_sublayer_lora(targets, use_bias, tmp_path):
    query = _rand(B, T, D, seed=65)
    reference, ours = _shared(dict(num_heads=2, key_dim=4, use_gate=True, use_bias=use_bias),
                              (query, query))
    names = targets or ("query", "key", "gate", "value", "attention_output")
    ours.enable_lora(2, target_names=targets)
    for name in names:
        getattr(reference, f"_{name if name != 'attention_output' else 'output'}_dense") \
            .enable_lora(2)
    assert len(ours.trainable_weights) == len(reference.trainable_weights)
    assert len(ours.non_trainable_weights) == len(reference.non_trainable_weights)
    # Five projections: a kernel each, plus a bias each with use_bias.
    frozen_kernels = len(names)
    assert len(ours.non_trainable_weights) == frozen_kernels
    assert len(ours.trainable_weights) == 2 * len(names) + (5 - len(names)) + 5 * use_bias
    if targets is None and not use_bias:
        assert all("lora_kernel" in w.path for w in ours.trainable_weights)
    # B starts at zero: nothing changes until training.
    np.testing.assert_allclose(_np(ours(query, query)), _np(reference(query, query)), atol=1e-5)
    for layer in (ours.query_dense, ours.value_dense):
        layer.lora_kernel_b.assign(_rand(*layer.lora_kernel_b.shape, seed=66) * 0.1)
    adapted = _np(ours(query, query))
    clone = MultiHeadAttention.from_config(ours.get_config())
    assert clone.get_config() == ours.get_config()
    # Saving merges the adapters into the kernels (Keras' EinsumDense does).
    inputs = keras.Input((T, D))
    model = keras.Model(inputs, ours(inputs, inputs))
    path = str(tmp_path / "lora.keras")
    model.save(path)
    np.testing.assert_allclose(_np(keras.models.load_model(path)(query)), adapted, atol=1e-5)
    ungated = MultiHeadAttention(num_heads=2, key_dim=4)
    ungated(query, query)
    with pytest.raises(ValueError, match="target_names"):
        ungated.enable_lora(2, target_names=("gate",))


@pytest.mark.parametrize("name, widths", [
    ("query", (32, 16, 16)),
    ("value", (16, 8, 16)),
    ("key", (16, 16, 24)),
])
def test_a_built_layer_refuses_inputs_of_another_feature_width(name, widths):
    # Before: another query width silently changed the output's batch size.
    layer = MultiHeadAttention(num_heads=2, key_dim=4)
    query, value, key = _rand(B, T, D), _rand(B, S, D, seed=1), _rand(B, S, D, seed=2)
    expected = _np(layer(query, value, key))
    given = {"query": query, "value": value, "key": key}
    given = {n: _rand(B, given[n].shape[1], w) for n, w in zip(("query", "value", "key"), widths)}
    width = widths[("query", "value", "key").index(name)]
    with pytest.raises(
        ValueError, match=rf"`{name}` must have {D} features .* \({width} features\)"
    ):
        layer(given["query"], given["value"], given["key"])
    # The refusal leaves the layer as it was.
    np.testing.assert_allclose(_np(layer(query, value, key)), expected, atol=1e-6)
