import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.layers.sinusoidal_position_encoding import SinusoidalPositionEncoding
from tests.harness import run_layer_checks


def paper_table(length, dim, max_wavelength=10000.0):
    table = np.zeros((length, dim))
    for pos in range(length):
        for column in range(dim):
            i = column // 2
            angle = pos / max_wavelength ** (2 * i / dim)
            table[pos, column] = np.sin(angle) if column % 2 == 0 else np.cos(angle)
    return table


def encode(layer, batch, time, dim, **kwargs):
    inputs = np.zeros((batch, time, dim), dtype="float32")
    return ops.convert_to_numpy(layer(inputs, **kwargs))


def test_standard_checks(tmp_path):
    run_layer_checks(
        SinusoidalPositionEncoding,
        {"max_wavelength": 100},
        {"inputs": np.random.default_rng(0).normal(size=(2, 5, 8)).astype("float32")},
        tmp_path,
        expected_output_shape=(2, 5, 8),
        expected_num_trainable_weights=0,
    )


def test_standard_checks_with_positions_input(tmp_path):
    run_layer_checks(
        SinusoidalPositionEncoding,
        {},
        {
            "inputs": np.zeros((2, 3, 4), dtype="float32"),
            "positions": np.array([[0, 1, 2], [4, 5, 6]], dtype="int32"),
        },
        tmp_path,
        expected_output_shape=(2, 3, 4),
        expected_num_trainable_weights=0,
    )


@pytest.mark.parametrize("dim", [8, 7])
def test_matches_paper_formula(dim):
    actual = encode(SinusoidalPositionEncoding(), 2, 12, dim)
    np.testing.assert_allclose(actual[0], paper_table(12, dim), atol=1e-5)
    np.testing.assert_array_equal(actual[0], actual[1])


def test_max_wavelength_is_used():
    actual = encode(SinusoidalPositionEncoding(max_wavelength=50), 1, 6, 6)
    np.testing.assert_allclose(actual[0], paper_table(6, 6, 50.0), atol=1e-5)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_start_index_selects_later_rows(as_tensor):
    layer = SinusoidalPositionEncoding()
    full = encode(layer, 1, 10, 6)[0]
    start_index = ops.convert_to_tensor(4, dtype="int32") if as_tensor else 4
    shifted = encode(layer, 1, 3, 6, start_index=start_index)[0]
    np.testing.assert_allclose(shifted, full[4:7], atol=1e-6)


def test_explicit_positions_per_row():
    layer = SinusoidalPositionEncoding()
    full = encode(layer, 1, 10, 6)[0]
    positions = np.array([[0, 1, 2], [5, 6, 7]], dtype="int32")
    actual = encode(layer, 2, 3, 6, positions=positions, start_index=9)
    np.testing.assert_allclose(actual[0], full[0:3], atol=1e-6)
    np.testing.assert_allclose(actual[1], full[5:8], atol=1e-6)


def test_tensor_start_index_under_xla():
    layer = SinusoidalPositionEncoding()
    full = encode(layer, 1, 8, 4)[0]

    @tf.function(jit_compile=True)
    def step(inputs, start_index):
        return layer(inputs, start_index=start_index)

    actual = ops.convert_to_numpy(step(np.zeros((2, 1, 4), "float32"), tf.constant(5)))
    np.testing.assert_allclose(actual[:, 0], np.stack([full[5], full[5]]), atol=1e-6)


def test_compute_dtype_under_mixed_policy():
    layer = SinusoidalPositionEncoding(dtype="mixed_bfloat16")
    output = layer(np.zeros((1, 3, 4), "float32"))
    assert keras.backend.standardize_dtype(output.dtype) == "bfloat16"


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_wavelength"):
        SinusoidalPositionEncoding(max_wavelength=0)
    layer = SinusoidalPositionEncoding()
    with pytest.raises(ValueError, match="inputs"):
        layer(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="start_index"):
        layer(np.zeros((1, 2, 4), "float32"), start_index=-1)
    with pytest.raises(ValueError, match="positions"):
        layer(np.zeros((1, 2, 4), "float32"), positions=np.zeros((1, 1, 2), "int32"))
