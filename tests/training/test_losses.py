import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.training.losses import MaskedSparseCategoricalCrossentropy, token_cross_entropy

RNG = np.random.default_rng(0)
VOCAB = 7
LOGITS = RNG.normal(scale=2.0, size=(3, 5, VOCAB)).astype("float32")
# 0 is padding; rows hold 5, 3 and 1 real tokens.
TARGETS = np.array([[4, 2, 6, 1, 3], [5, 1, 2, 0, 0], [3, 0, 0, 0, 0]], "int32")


def _log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _numpy_loss(targets, logits, label_smoothing=0.0, ignore_index=0, sample_weight=None):
    log_probs = _log_softmax(logits.astype("float64"))
    vocab = logits.shape[-1]
    smoothed = np.full(log_probs.shape, label_smoothing / vocab)
    np.put_along_axis(
        smoothed, targets[..., None], 1.0 - label_smoothing + label_smoothing / vocab, axis=-1
    )
    token_losses = -(smoothed * log_probs).sum(axis=-1)
    real = np.ones_like(token_losses) if ignore_index is None else targets != ignore_index
    weights = real if sample_weight is None else real * sample_weight
    return (token_losses * weights).sum() / real.sum()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore_index", [0, None])
def test_matches_numpy(label_smoothing, ignore_index):
    loss = MaskedSparseCategoricalCrossentropy(
        label_smoothing=label_smoothing, ignore_index=ignore_index
    )
    expected = _numpy_loss(TARGETS, LOGITS, label_smoothing, ignore_index)
    np.testing.assert_allclose(float(loss(TARGETS, LOGITS)), expected, rtol=1e-5)
    # (batch, time, 1) targets are accepted too.
    np.testing.assert_allclose(float(loss(TARGETS[..., None], LOGITS)), expected, rtol=1e-5)


def test_mean_is_over_real_tokens_not_positions():
    loss = MaskedSparseCategoricalCrossentropy()
    token_losses = -np.take_along_axis(_log_softmax(LOGITS), TARGETS[..., None], -1)[..., 0]
    real = TARGETS != 0
    np.testing.assert_allclose(
        float(loss(TARGETS, LOGITS)), token_losses[real].sum() / 9, rtol=1e-5
    )
    assert not np.isclose(token_losses[real].sum() / 9, token_losses[real].sum() / 15)


def test_from_probabilities():
    probabilities = ops.convert_to_numpy(ops.softmax(LOGITS, axis=-1))
    loss = MaskedSparseCategoricalCrossentropy(from_logits=False, label_smoothing=0.2)
    np.testing.assert_allclose(
        float(loss(TARGETS, probabilities)), _numpy_loss(TARGETS, LOGITS, 0.2), rtol=1e-5
    )


def test_padded_positions_do_not_contribute():
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    reference = float(loss(TARGETS, LOGITS))

    noisy = LOGITS.copy()
    noisy[TARGETS == 0] = RNG.normal(scale=50.0, size=noisy[TARGETS == 0].shape)
    np.testing.assert_allclose(float(loss(TARGETS, noisy)), reference, rtol=1e-6)
    # Not even a non-finite prediction at a padded position leaks into the loss.
    noisy[TARGETS == 0] = np.inf
    np.testing.assert_allclose(float(loss(TARGETS, noisy)), reference, rtol=1e-6)

    longer_targets = np.concatenate([TARGETS, np.zeros((3, 4), "int32")], axis=1)
    longer_logits = np.concatenate(
        [LOGITS, RNG.normal(size=(3, 4, VOCAB)).astype("float32")], axis=1
    )
    np.testing.assert_allclose(float(loss(longer_targets, longer_logits)), reference, rtol=1e-6)


def test_ignore_index_outside_vocabulary():
    targets = np.where(TARGETS == 0, -100, TARGETS)
    loss = MaskedSparseCategoricalCrossentropy(ignore_index=-100)
    np.testing.assert_allclose(
        float(loss(targets, LOGITS)), _numpy_loss(TARGETS, LOGITS), rtol=1e-5
    )


def test_all_padding_gives_zero_and_finite_gradient():
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    logits = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        value = loss(np.zeros((3, 5), "int32"), logits)
    gradient = ops.convert_to_numpy(tape.gradient(value, logits))
    assert float(value) == 0.0
    assert np.all(np.isfinite(gradient))
    np.testing.assert_array_equal(gradient, 0.0)


def test_sample_weight_per_sequence_and_per_token():
    loss = MaskedSparseCategoricalCrossentropy()
    per_sequence = np.array([1.0, 0.5, 2.0], "float32")
    np.testing.assert_allclose(
        float(loss(TARGETS, LOGITS, sample_weight=per_sequence)),
        _numpy_loss(TARGETS, LOGITS, sample_weight=per_sequence[:, None]),
        rtol=1e-5,
    )
    per_token = RNG.uniform(size=TARGETS.shape).astype("float32")
    np.testing.assert_allclose(
        float(loss(TARGETS, LOGITS, sample_weight=per_token)),
        _numpy_loss(TARGETS, LOGITS, sample_weight=per_token),
        rtol=1e-5,
    )


def test_reductions():
    per_token = MaskedSparseCategoricalCrossentropy(reduction="none")(TARGETS, LOGITS)
    assert tuple(per_token.shape) == TARGETS.shape
    per_token = ops.convert_to_numpy(per_token)
    np.testing.assert_array_equal(per_token[TARGETS == 0], 0.0)
    np.testing.assert_allclose(
        per_token, ops.convert_to_numpy(token_cross_entropy(TARGETS, LOGITS, ignore_index=0))
    )
    total = MaskedSparseCategoricalCrossentropy(reduction="sum")(TARGETS, LOGITS)
    np.testing.assert_allclose(float(total), per_token.sum(), rtol=1e-5)


def test_float16_logits_give_float32_loss():
    loss = MaskedSparseCategoricalCrossentropy(label_smoothing=0.1)
    logits = (LOGITS * 4).astype("float16")
    value = loss(TARGETS, logits)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert np.isfinite(float(value))
    np.testing.assert_allclose(
        float(value), _numpy_loss(TARGETS, logits.astype("float32"), 0.1), rtol=1e-5
    )


def test_keras_mask_on_predictions_is_honoured():
    inputs = keras.Input((5,), dtype="int32")
    hidden = keras.layers.Embedding(VOCAB, 4, mask_zero=True)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(VOCAB)(hidden))
    logits = model(TARGETS)
    assert getattr(logits, "_keras_mask", None) is not None
    unmasked = MaskedSparseCategoricalCrossentropy(ignore_index=None)
    expected = _numpy_loss(TARGETS, ops.convert_to_numpy(logits))
    np.testing.assert_allclose(float(unmasked(TARGETS, logits)), expected, rtol=1e-5)


def _copy_model(policy="float32"):
    return keras.Sequential(
        [
            keras.Input((6,), dtype="int32"),
            keras.layers.Embedding(VOCAB, 16, dtype=policy),
            keras.layers.Dense(16, activation="relu", dtype=policy),
            keras.layers.Dense(VOCAB, dtype=policy),
        ]
    )


def _copy_data():
    rng = np.random.default_rng(1)
    x = rng.integers(1, VOCAB, size=(32, 6)).astype("int32")
    lengths = rng.integers(2, 7, size=(32, 1))
    x = np.where(np.arange(6) < lengths, x, 0)
    return x, x.copy()


@pytest.mark.parametrize("policy", ["float32", "mixed_float16"])
def test_jit_fit_reduces_loss(policy):
    model = _copy_model(policy)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-2),
        loss=MaskedSparseCategoricalCrossentropy(label_smoothing=0.1),
        jit_compile=True,
    )
    x, y = _copy_data()
    history = model.fit(x, y, batch_size=16, epochs=6, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]


def test_serialization_round_trip(tmp_path):
    loss = MaskedSparseCategoricalCrossentropy(
        from_logits=False, label_smoothing=0.1, ignore_index=-1, reduction="sum", name="ce"
    )
    config = loss.get_config()
    assert MaskedSparseCategoricalCrossentropy.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(restored, MaskedSparseCategoricalCrossentropy)
    assert restored.get_config() == config

    model = _copy_model()
    model.compile(optimizer="adam", loss=MaskedSparseCategoricalCrossentropy(label_smoothing=0.1))
    x, y = _copy_data()
    model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    expected = model.evaluate(x, y, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded.loss, MaskedSparseCategoricalCrossentropy)
    assert reloaded.loss.label_smoothing == 0.1
    np.testing.assert_allclose(reloaded.evaluate(x, y, verbose=0), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"label_smoothing": -0.1}, "label_smoothing"),
        ({"ignore_index": 0.5}, "ignore_index"),
        ({"ignore_index": "pad"}, "ignore_index"),
        ({"reduction": "mean_over_everything"}, "reduction"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MaskedSparseCategoricalCrossentropy(**kwargs)


_TWO_REPLICAS = r"""
import os, json
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from keras_attn.training import MaskedSparseCategoricalCrossentropy

rng = np.random.default_rng(0)
x = rng.normal(size=(8, 5, 4)).astype("float32")
y = rng.integers(0, 6, (8, 5)).astype("int32")
y[:, 3:] = 0  # padding

def run(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = keras.Sequential([keras.Input((5, 4)), keras.layers.Dense(6)])
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss=MaskedSparseCategoricalCrossentropy())
    model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    return [w.tolist() for w in model.get_weights()]

two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
print(json.dumps({"replicas": two.num_replicas_in_sync,
                  "one": run(tf.distribute.get_strategy()), "two": run(two)}))
"""


def test_loss_averages_gradients_across_replicas():
    import json
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", _TWO_REPLICAS], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    for one, two in zip(out["one"], out["two"]):
        np.testing.assert_allclose(np.array(two), np.array(one), atol=1e-5)
