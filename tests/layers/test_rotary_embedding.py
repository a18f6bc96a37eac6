import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.layers.rotary_embedding import RotaryEmbedding
from tests.harness import run_layer_checks

RNG = np.random.default_rng(0)


def random(*shape):
    return RNG.normal(size=shape).astype("float32")


def rope(layer, inputs, **kwargs):
    return ops.convert_to_numpy(layer(inputs, **kwargs))


def numpy_rope(inputs, positions, max_wavelength=10000.0):
    """Half-split RoPE on (time, dim) written out pair by pair."""
    dim = inputs.shape[-1]
    half = dim // 2
    output = np.empty_like(inputs, dtype="float64")
    for t, position in enumerate(positions):
        for i in range(half):
            angle = position / max_wavelength ** (2 * i / dim)
            a, b = inputs[t, i], inputs[t, i + half]
            output[t, i] = a * np.cos(angle) - b * np.sin(angle)
            output[t, i + half] = b * np.cos(angle) + a * np.sin(angle)
    return output


def test_standard_checks(tmp_path):
    run_layer_checks(
        RotaryEmbedding,
        {"max_wavelength": 100, "scaling_factor": 2.0},
        {"inputs": random(2, 5, 3, 8)},
        tmp_path,
        expected_output_shape=(2, 5, 3, 8),
        expected_num_trainable_weights=0,
    )


def test_standard_checks_with_positions_input(tmp_path):
    run_layer_checks(
        RotaryEmbedding,
        {},
        {"inputs": random(2, 3, 4), "positions": np.array([[0, 1, 2], [3, 4, 5]], "int32")},
        tmp_path,
        expected_output_shape=(2, 3, 4),
        expected_num_trainable_weights=0,
    )


def test_matches_reference_formula():
    inputs = random(1, 6, 8)
    actual = rope(RotaryEmbedding(), inputs)
    np.testing.assert_allclose(actual[0], numpy_rope(inputs[0], range(6)), atol=1e-5)


def test_preserves_norms():
    inputs = random(2, 7, 3, 8)
    outputs = rope(RotaryEmbedding(), inputs, start_index=11)
    np.testing.assert_allclose(
        np.linalg.norm(outputs, axis=-1), np.linalg.norm(inputs, axis=-1), rtol=1e-5
    )


def test_dot_product_depends_only_on_offset():
    layer = RotaryEmbedding()
    query, key = random(1, 1, 16), random(1, 1, 16)

    def score(query_position, key_position):
        rotated_query = rope(layer, query, positions=np.array([query_position], "int32"))
        rotated_key = rope(layer, key, positions=np.array([key_position], "int32"))
        return float(np.sum(rotated_query * rotated_key))

    same_offset = [score(3, 1), score(7, 5), score(20, 18), score(2, 0)]
    np.testing.assert_allclose(same_offset, same_offset[0], rtol=1e-4)
    other_offsets = [score(3, 0), score(1, 3), score(9, 1)]
    for other in other_offsets:
        assert abs(other - same_offset[0]) > 1e-3


@pytest.mark.parametrize("as_tensor", [False, True])
def test_start_index_matches_slice_of_longer_run(as_tensor):
    layer = RotaryEmbedding()
    inputs = random(2, 10, 2, 8)
    full = rope(layer, inputs)
    start_index = ops.convert_to_tensor(4, dtype="int32") if as_tensor else 4
    part = rope(layer, inputs[:, 4:7], start_index=start_index)
    np.testing.assert_allclose(part, full[:, 4:7], atol=1e-6)


def test_positions_per_batch_row():
    layer = RotaryEmbedding()
    inputs = random(2, 10, 8)
    full = rope(layer, inputs)
    positions = np.array([[4, 5, 6], [0, 1, 2]], "int32")
    window = np.stack([inputs[0, 4:7], inputs[1, 0:3]])
    actual = rope(layer, window, positions=positions, start_index=9)
    np.testing.assert_allclose(actual[0], full[0, 4:7], atol=1e-6)
    np.testing.assert_allclose(actual[1], full[1, 0:3], atol=1e-6)


def test_heads_share_the_rotation():
    layer = RotaryEmbedding()
    inputs = random(2, 5, 3, 8)
    per_head = rope(layer, inputs)
    for head in range(3):
        np.testing.assert_allclose(per_head[:, :, head], rope(layer, inputs[:, :, head]), atol=1e-6)


def test_scaling_factor_divides_positions():
    inputs = random(1, 1, 8)
    scaled = rope(RotaryEmbedding(scaling_factor=4.0), inputs, start_index=12)
    plain = rope(RotaryEmbedding(), inputs, start_index=3)
    np.testing.assert_allclose(scaled, plain, atol=1e-6)


def test_tensor_start_index_under_xla():
    layer = RotaryEmbedding()
    inputs = random(1, 8, 2, 4)
    full = rope(layer, inputs)

    @tf.function(jit_compile=True)
    def step(token, start_index):
        return layer(token, start_index=start_index)

    actual = ops.convert_to_numpy(step(inputs[:, 5:6], tf.constant(5)))
    np.testing.assert_allclose(actual, full[:, 5:6], atol=1e-6)


def test_keeps_input_dtype():
    output = RotaryEmbedding(dtype="mixed_float16")(random(1, 3, 2, 4))
    assert keras.backend.standardize_dtype(output.dtype) == "float16"


def test_odd_feature_dimension_raises():
    with pytest.raises(ValueError, match="feature dimension.*7"):
        RotaryEmbedding()(random(1, 3, 2, 7))


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_wavelength"):
        RotaryEmbedding(max_wavelength=-1)
    with pytest.raises(ValueError, match="scaling_factor"):
        RotaryEmbedding(scaling_factor=0)
    with pytest.raises(ValueError, match="inputs"):
        RotaryEmbedding()(random(3, 4))
    with pytest.raises(ValueError, match="start_index"):
        RotaryEmbedding()(random(1, 3, 4), start_index=1.5)
