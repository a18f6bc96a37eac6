import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers.feed_forward import FeedForward
from tests.harness import run_layer_checks

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 5, 8)).astype("float32")


def _randomize(layer, rng):
    # Non-zero biases so the numpy comparison also checks where they enter.
    for weight in layer.weights:
        weight.assign(rng.normal(scale=0.5, size=weight.shape).astype("float32"))


def _weights(layer):
    return {w.path.split("/", 1)[1]: ops.convert_to_numpy(w) for w in layer.weights}


def _numpy_feed_forward(x, w, activation):
    hidden = x @ w["intermediate_dense/kernel"] + w["intermediate_dense/bias"]
    if activation == "swiglu":
        gate = x @ w["gate_dense/kernel"] + w["gate_dense/bias"]
        hidden = gate / (1.0 + np.exp(-gate)) * hidden
    elif activation == "gelu":
        erf = np.vectorize(math.erf)
        hidden = 0.5 * hidden * (1.0 + erf(hidden / math.sqrt(2.0)))
    elif activation == "gelu_approximate":
        inner = math.sqrt(2.0 / math.pi) * (hidden + 0.044715 * hidden**3)
        hidden = 0.5 * hidden * (1.0 + np.tanh(inner))
    else:
        hidden = np.maximum(hidden, 0.0)
    return hidden @ w["output_dense/kernel"] + w["output_dense/bias"]


@pytest.mark.parametrize(
    "init_kwargs",
    [
        {"intermediate_dim": 16, "activation": "relu"},
        {"intermediate_dim": 16, "activation": "gelu", "dropout": 0.2, "seed": 3},
        {"intermediate_dim": 12, "activation": "swiglu", "use_bias": False, "output_dim": 4},
    ],
    ids=["relu", "gelu_dropout", "swiglu_no_bias_output_dim"],
)
def test_layer_checks(init_kwargs, tmp_path):
    output_dim = init_kwargs.get("output_dim", 8)
    # intermediate and output Dense (+ gate Dense for SwiGLU); kernel (+ bias) each.
    num_dense = 3 if init_kwargs["activation"] == "swiglu" else 2
    run_layer_checks(
        FeedForward,
        init_kwargs,
        {"inputs": X},
        tmp_path,
        expected_output_shape=(2, 5, output_dim),
        expected_num_trainable_weights=num_dense * (2 if init_kwargs.get("use_bias", True) else 1),
    )


@pytest.mark.parametrize("activation", ["relu", "gelu", "gelu_approximate", "swiglu"])
def test_matches_numpy(activation):
    layer = FeedForward(intermediate_dim=16, activation=activation, name="ffn")
    layer.build(X.shape)
    _randomize(layer, np.random.default_rng(1))
    expected = _numpy_feed_forward(X, _weights(layer), activation)
    actual = ops.convert_to_numpy(layer(X))
    np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=1e-5)


def test_swiglu_has_separate_gate_and_up_projections():
    layer = FeedForward(intermediate_dim=16, activation="swiglu", name="ffn")
    layer.build(X.shape)
    names = sorted(_weights(layer))
    assert names == [
        "gate_dense/bias",
        "gate_dense/kernel",
        "intermediate_dense/bias",
        "intermediate_dense/kernel",
        "output_dense/bias",
        "output_dense/kernel",
    ]
    # Separately initialized: a shared unseeded initializer would make them equal.
    weights = _weights(layer)
    assert not np.allclose(weights["gate_dense/kernel"], weights["intermediate_dense/kernel"])


def test_dropout_only_in_training():
    layer = FeedForward(intermediate_dim=64, dropout=0.5, seed=1)
    inference = ops.convert_to_numpy(layer(X))
    np.testing.assert_allclose(ops.convert_to_numpy(layer(X, training=False)), inference)
    assert not np.allclose(ops.convert_to_numpy(layer(X, training=True)), inference)


def test_keras_mask_is_passed_on():
    tokens = keras.Input((5,), dtype="int32")
    embedded = keras.layers.Embedding(10, 8, mask_zero=True)(tokens)
    outputs = FeedForward(intermediate_dim=16)(embedded)
    model = keras.Model(tokens, outputs)
    result = model(np.array([[1, 2, 3, 0, 0]]))
    np.testing.assert_array_equal(
        ops.convert_to_numpy(result._keras_mask), [[True, True, True, False, False]]
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"intermediate_dim": 0}, "intermediate_dim"),
        ({"intermediate_dim": 8, "activation": "tanh"}, "activation"),
        ({"intermediate_dim": 8, "dropout": 1.0}, "dropout"),
        ({"intermediate_dim": 8, "output_dim": -2}, "output_dim"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        FeedForward(**kwargs)


def test_bad_input_rank():
    with pytest.raises(ValueError, match="`inputs`"):
        FeedForward(intermediate_dim=8)(np.ones((3,), "float32"))
