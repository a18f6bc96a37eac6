import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.layers.alibi_bias import ALiBiBias
from tests.harness import run_layer_checks


def bias(layer, time, **kwargs):
    return ops.convert_to_numpy(layer(np.zeros((2, time, 4), "float32"), **kwargs))


def test_standard_checks(tmp_path):
    # Batch 1: the output's leading axis is 1, and fit needs targets of the inputs' batch.
    run_layer_checks(
        ALiBiBias,
        {"num_heads": 3},
        {"query": np.zeros((1, 4, 8), "float32")},
        tmp_path,
        call_kwargs={"key_length": 6, "start_index": 2},
        expected_output_shape=(1, 3, 4, 6),
        expected_num_trainable_weights=0,  # the slopes are constants
    )


def test_power_of_two_slopes():
    np.testing.assert_array_equal(ALiBiBias(8).slopes, [1 / 2**k for k in range(1, 9)])
    np.testing.assert_allclose(ALiBiBias(16).slopes, [2 ** (-k / 2) for k in range(1, 17)])


def test_non_power_of_two_slopes_follow_paper_rule():
    # 6 heads: the 4 slopes of 4 heads, then slopes 1 and 3 of 8 heads.
    np.testing.assert_allclose(ALiBiBias(6).slopes, [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8])
    # 12 heads: the 8 slopes of 8 heads, then slopes 1, 3, 5, 7 of 16 heads.
    expected = [2.0**-k for k in range(1, 9)] + [2.0**-0.5, 2.0**-1.5, 2.0**-2.5, 2.0**-3.5]
    np.testing.assert_allclose(ALiBiBias(12).slopes, expected)
    np.testing.assert_allclose(ALiBiBias(1).slopes, [2.0**-8])


def test_slopes_are_a_copy():
    layer = ALiBiBias(4)
    layer.slopes[0] = 99.0
    assert layer.slopes[0] == 0.25


def test_bias_values():
    layer = ALiBiBias(4)  # slopes 1/4, 1/16, 1/64, 1/256
    values = bias(layer, 3)
    assert values.shape == (1, 4, 3, 3)
    assert values[0, 0, 2, 0] == pytest.approx(-0.5)
    assert values[0, 1, 0, 2] == pytest.approx(-2 / 16)
    assert values[0, 3, 1, 1] == 0.0
    distance = np.abs(np.arange(3)[:, None] - np.arange(3)[None, :])
    np.testing.assert_allclose(values[0], -layer.slopes[:, None, None] * distance)


def test_start_index_shifts_queries():
    layer = ALiBiBias(2)
    full = bias(layer, 5)
    step = bias(layer, 1, start_index=3)
    assert step.shape == (1, 2, 1, 4)
    np.testing.assert_allclose(step[0, :, 0], full[0, :, 3, :4])
    padded_cache = bias(layer, 2, start_index=1, key_length=5)
    np.testing.assert_allclose(padded_cache[0], full[0, :, 1:3, :])


def test_tensor_start_index_under_xla():
    layer = ALiBiBias(2)
    full = bias(layer, 6)

    @tf.function(jit_compile=True)
    def step(query, start_index):
        return layer(query, key_length=6, start_index=start_index)

    actual = ops.convert_to_numpy(step(np.zeros((1, 1, 4), "float32"), tf.constant(4)))
    np.testing.assert_allclose(actual[0, :, 0], full[0, :, 4])
    # Without key_length a tensor start_index gives T keys.
    assert layer(np.zeros((1, 2, 4), "float32"), start_index=tf.constant(3)).shape == (1, 2, 2, 2)


def test_compute_dtype():
    output = ALiBiBias(2, dtype="mixed_float16")(np.zeros((1, 3, 4), "float32"))
    assert keras.backend.standardize_dtype(output.dtype) == "float16"


def test_bad_arguments():
    for bad in (0, -2, 2.0):
        with pytest.raises(ValueError, match="num_heads"):
            ALiBiBias(bad)
    layer = ALiBiBias(2)
    with pytest.raises(ValueError, match="key_length"):
        layer(np.zeros((1, 3, 4), "float32"), key_length=0)
    with pytest.raises(ValueError, match="start_index"):
        layer(np.zeros((1, 3, 4), "float32"), start_index=-1)
    with pytest.raises(ValueError, match="query"):
        layer(np.zeros((3,), "float32"))
