import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.training.schedules import InverseSquareRootSchedule


def _formula(step_num, model_dim, warmup_steps, scale=1.0):
    # Vaswani et al. 2017, eq. 3, with step_num counted from 1.
    return scale * model_dim**-0.5 * min(step_num**-0.5, step_num * warmup_steps**-1.5)


@pytest.mark.parametrize("scale", [1.0, 2.5])
def test_matches_formula(scale):
    schedule = InverseSquareRootSchedule(model_dim=512, warmup_steps=4000, scale=scale)
    for step_num in (1, 2, 4000, 8000, 40000):
        # The optimizer passes its 0-based iteration count.
        actual = float(schedule(step_num - 1))
        np.testing.assert_allclose(actual, _formula(step_num, 512, 4000, scale), rtol=1e-6)


def test_peaks_at_warmup_steps():
    schedule = InverseSquareRootSchedule(model_dim=64, warmup_steps=50)
    steps = np.arange(0, 500)
    values = ops.convert_to_numpy(schedule(steps))
    assert int(np.argmax(values)) + 1 == 50
    np.testing.assert_allclose(values.max(), (64 * 50) ** -0.5, rtol=1e-6)
    assert np.all(np.diff(values[:49]) > 0) and np.all(np.diff(values[49:]) < 0)
    assert values[0] > 0  # the very first update is not wasted


def test_tensor_steps_and_dtype():
    schedule = InverseSquareRootSchedule(model_dim=16, warmup_steps=10)
    value = schedule(keras.Variable(9, dtype="int64", trainable=False))
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    np.testing.assert_allclose(float(value), _formula(10, 16, 10), rtol=1e-6)


def test_config_round_trip():
    schedule = InverseSquareRootSchedule(model_dim=256, warmup_steps=100, scale=0.5)
    config = schedule.get_config()
    assert InverseSquareRootSchedule.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(schedule))
    assert isinstance(restored, InverseSquareRootSchedule)
    assert restored.get_config() == config
    optimizer = keras.optimizers.deserialize(
        keras.optimizers.serialize(keras.optimizers.Adam(schedule))
    )
    assert optimizer.learning_rate is not None
    assert isinstance(optimizer._learning_rate, InverseSquareRootSchedule)


def test_first_update_uses_step_one_in_jit_fit():
    schedule = InverseSquareRootSchedule(model_dim=16, warmup_steps=10)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="ones")]
    )
    model.compile(optimizer=keras.optimizers.SGD(schedule), loss="mse", jit_compile=True)
    x = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], "float32")
    y = np.array([[1.0], [-2.0]], "float32")
    kernel = model.layers[0].kernel
    with tf.GradientTape() as tape:
        loss = ops.mean(ops.square(model(x) - y))
    grad = ops.convert_to_numpy(tape.gradient(loss, kernel))
    before = ops.convert_to_numpy(kernel).copy()

    model.fit(x, y, batch_size=2, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(
        ops.convert_to_numpy(kernel), before - _formula(1, 16, 10) * grad, rtol=1e-5
    )

    history = model.fit(x, y, batch_size=1, epochs=5, shuffle=False, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert int(model.optimizer.iterations) == 11
    np.testing.assert_allclose(
        float(model.optimizer.learning_rate), _formula(12, 16, 10), rtol=1e-6
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"model_dim": 0}, "model_dim"),
        ({"model_dim": 8.5}, "model_dim"),
        ({"model_dim": 8, "warmup_steps": -1}, "warmup_steps"),
        ({"model_dim": 8, "scale": 0}, "scale"),
    ],
)
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        InverseSquareRootSchedule(**kwargs)
