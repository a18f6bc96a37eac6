import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers.transformer_encoder_block import TransformerEncoderBlock
from tests.harness import run_layer_checks

B, T, D = 2, 6, 16
RNG = np.random.default_rng(0)
X = RNG.normal(size=(B, T, D)).astype("float32")
LENGTHS = (4, 2)
PADDING_MASK = np.arange(T)[None, :] < np.array(LENGTHS)[:, None]  # (B, T)

CONFIGS = {
    "pre_layer_norm_relu": {"num_heads": 2, "intermediate_dim": 32},
    "post_rms_norm_gelu": {
        "num_heads": 4,
        "intermediate_dim": 24,
        "norm_first": False,
        "normalization": "rms_norm",
        "activation": "gelu",
    },
    "pre_rms_swiglu_gqa_rope_dropout": {
        "num_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_dim": 24,
        "normalization": "rms_norm",
        "activation": "swiglu",
        "rope_max_wavelength": 100,
        "dropout": 0.1,
        "attention_dropout": 0.1,
        "seed": 7,
    },
}


def _numpy(x):
    return ops.convert_to_numpy(x)


def _randomize(layer, rng):
    for weight in layer.weights:
        weight.assign(rng.normal(scale=0.3, size=weight.shape).astype("float32") + 0.1)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_layer_checks(name, tmp_path):
    call_kwargs = {"return_attention_scores": True} if name.startswith("post") else None
    run_layer_checks(
        TransformerEncoderBlock,
        CONFIGS[name],
        {"inputs": X, "padding_mask": PADDING_MASK},
        tmp_path,
        call_kwargs=call_kwargs,
        expected_output_shape=(B, T, D),
        expected_num_trainable_weights=_num_weights(CONFIGS[name]),
    )


def _num_weights(config):
    # Attention: 4 projections x (kernel, bias). Feed-forward: 2 Dense (3 for
    # SwiGLU) x (kernel, bias). Two norms: LayerNorm has gamma and beta,
    # RMSNorm a scale only.
    attention = 8
    feed_forward = 6 if config.get("activation") == "swiglu" else 4
    norm = 1 if config.get("normalization") == "rms_norm" else 2
    return attention + feed_forward + 2 * norm


@pytest.mark.parametrize("name", list(CONFIGS))
def test_padding_does_not_change_real_positions(name):
    block = TransformerEncoderBlock(**CONFIGS[name])
    garbage_a = np.where(PADDING_MASK[..., None], X, 100.0).astype("float32")
    garbage_b = np.where(PADDING_MASK[..., None], X, -3.0 * X).astype("float32")
    out_a = _numpy(block(garbage_a, padding_mask=PADDING_MASK))
    out_b = _numpy(block(garbage_b, padding_mask=PADDING_MASK))
    for row, length in enumerate(LENGTHS):
        np.testing.assert_allclose(out_a[row, :length], out_b[row, :length], atol=1e-5)
        # The same as the sequence without any padding at all.
        alone = _numpy(block(X[row : row + 1, :length]))
        np.testing.assert_allclose(out_a[row, :length], alone[0], atol=1e-5)


def test_keras_mask_is_used_and_passed_on():
    tokens = np.array([[3, 1, 4, 1, 0, 0], [5, 9, 0, 0, 0, 0]])
    embedding = keras.layers.Embedding(10, D, mask_zero=True)
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32)
    inputs = keras.Input((T,), dtype="int32")
    model = keras.Model(inputs, block(embedding(inputs)))
    result = model(tokens)
    np.testing.assert_array_equal(_numpy(result._keras_mask), tokens != 0)
    explicit = block(embedding(tokens), padding_mask=tokens != 0)
    np.testing.assert_allclose(_numpy(result), _numpy(explicit), atol=1e-6)


@pytest.mark.parametrize("name", ["pre_layer_norm_relu", "pre_rms_swiglu_gqa_rope_dropout"])
def test_attention_scores_respect_padding(name):
    block = TransformerEncoderBlock(**CONFIGS[name])
    _, scores = block(X, padding_mask=PADDING_MASK, return_attention_scores=True)
    scores = _numpy(scores)
    assert scores.shape == (B, CONFIGS[name]["num_heads"], T, T)
    for row, length in enumerate(LENGTHS):
        real_rows = scores[row, :, :length]
        np.testing.assert_allclose(real_rows[..., :length].sum(-1), 1.0, atol=1e-5)
        np.testing.assert_array_equal(real_rows[..., length:], 0.0)
        # Padded queries attend to nothing.
        np.testing.assert_array_equal(scores[row, :, length:], 0.0)


def test_head_mask():
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32)
    plain = _numpy(block(X))
    np.testing.assert_allclose(_numpy(block(X, head_mask=np.ones(2, "float32"))), plain)
    masked = _numpy(block(X, head_mask=np.array([[1.0, 0.0], [1.0, 1.0]], "float32")))
    assert not np.allclose(masked[0], plain[0])
    np.testing.assert_allclose(masked[1], plain[1], atol=1e-6)


def test_attention_bias_is_added_to_logits():
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32)
    # A large negative bias on key 0 removes it, like a mask does.
    bias = np.zeros((1, 1, T, T), "float32")
    bias[..., 0] = -1e9
    key_mask = np.ones((B, T, T), bool)
    key_mask[..., 0] = False
    biased = _numpy(block(X, attention_bias=bias))
    masked = _numpy(block(X, attention_mask=key_mask))
    np.testing.assert_allclose(biased, masked, atol=1e-5)


def _layer_norm(x, gamma, beta, epsilon):
    mean = x.mean(-1, keepdims=True)
    variance = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def test_post_norm_matches_numpy():
    num_heads, head_size = 4, D // 4
    block = TransformerEncoderBlock(
        num_heads=num_heads, intermediate_dim=24, norm_first=False, name="block"
    )
    block.build(X.shape)
    _randomize(block, np.random.default_rng(2))
    w = {v.path.split("/", 1)[1]: _numpy(v) for v in block.weights}
    eps = block.norm_epsilon

    def project(x, name):
        return np.einsum("btd,dnh->btnh", x, w[f"{name}/kernel"]) + w[f"{name}/bias"]

    q = project(X, "self_attention/query")
    k = project(X, "self_attention/key")
    v = project(X, "self_attention/value")
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(head_size)
    allowed = (PADDING_MASK[:, :, None] & PADDING_MASK[:, None, :])[:, None]
    logits = np.where(allowed, logits, -np.inf)
    row_max = np.max(np.where(allowed, logits, -1e30), -1, keepdims=True)
    weights = np.where(allowed, np.exp(logits - row_max), 0.0)
    weights = weights / np.maximum(weights.sum(-1, keepdims=True), 1e-30)
    context = np.einsum("bnts,bsnh->btnh", weights, v)
    attended = (
        np.einsum("btnh,nhd->btd", context, w["self_attention/attention_output/kernel"])
        + w["self_attention/attention_output/bias"]
    )
    x = _layer_norm(
        X + attended, w["self_attention_norm/gamma"], w["self_attention_norm/beta"], eps
    )
    hidden = np.maximum(
        x @ w["feed_forward/intermediate_dense/kernel"] + w["feed_forward/intermediate_dense/bias"],
        0.0,
    )
    ffn = hidden @ w["feed_forward/output_dense/kernel"] + w["feed_forward/output_dense/bias"]
    expected = _layer_norm(x + ffn, w["feed_forward_norm/gamma"], w["feed_forward_norm/beta"], eps)

    actual = _numpy(block(X, padding_mask=PADDING_MASK))
    np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-4)


def test_dropout_seeded_and_training_only():
    config = dict(CONFIGS["pre_layer_norm_relu"], dropout=0.3, attention_dropout=0.3, seed=5)
    block = TransformerEncoderBlock(**config)
    inference = _numpy(block(X))
    assert not np.allclose(_numpy(block(X, training=True)), inference)
    first, second = TransformerEncoderBlock(**config), TransformerEncoderBlock(**config)
    for layer in (first, second):
        layer.build(X.shape)
        layer.set_weights(block.get_weights())
    np.testing.assert_allclose(
        _numpy(first(X, training=True)), _numpy(second(X, training=True)), atol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_heads": 0, "intermediate_dim": 8}, "num_heads"),
        ({"num_heads": 2, "intermediate_dim": 8, "key_dim": 0}, "key_dim"),
        ({"num_heads": 4, "intermediate_dim": 8, "num_key_value_heads": 3}, "num_key_value_heads"),
        ({"num_heads": 2, "intermediate_dim": 8, "activation": "tanh"}, "activation"),
        ({"num_heads": 2, "intermediate_dim": 8, "normalization": "batch_norm"}, "normalization"),
        ({"num_heads": 2, "intermediate_dim": 8, "dropout": 1.5}, "dropout"),
        ({"num_heads": 2, "intermediate_dim": 8, "attention_dropout": -0.1}, "attention_dropout"),
        ({"num_heads": 2, "intermediate_dim": 8, "norm_epsilon": 0}, "norm_epsilon"),
        ({"num_heads": 2, "intermediate_dim": 8, "norm_first": "yes"}, "norm_first"),
        ({"num_heads": 2, "intermediate_dim": 8, "seed": -1}, "seed"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        TransformerEncoderBlock(**kwargs)


def test_hidden_dim_not_divisible_by_num_heads():
    with pytest.raises(ValueError, match="`num_heads`"):
        TransformerEncoderBlock(num_heads=3, intermediate_dim=8)(X)
    # An explicit head size lifts the constraint.
    out = TransformerEncoderBlock(num_heads=3, intermediate_dim=8, key_dim=4)(X)
    assert out.shape == X.shape


def test_bad_inputs():
    block = TransformerEncoderBlock(num_heads=2, intermediate_dim=8)
    with pytest.raises(ValueError, match="`inputs`"):
        block(X[0])
    with pytest.raises(ValueError, match="`padding_mask`"):
        block(X, padding_mask=PADDING_MASK[:, :3])
