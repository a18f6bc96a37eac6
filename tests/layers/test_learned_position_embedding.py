import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.layers.learned_position_embedding import LearnedPositionEmbedding
from tests.harness import run_layer_checks


def test_standard_checks(tmp_path):
    run_layer_checks(
        LearnedPositionEmbedding,
        {"sequence_length": 6},
        {"inputs": np.random.default_rng(0).normal(size=(2, 5, 4)).astype("float32")},
        tmp_path,
        expected_output_shape=(2, 5, 4),
        expected_num_trainable_weights=1,  # the (sequence_length, dim) table
    )


def make_layer(sequence_length=8, dim=4):
    layer = LearnedPositionEmbedding(sequence_length)
    layer.build((None, None, dim))
    table = ops.convert_to_numpy(layer.position_embeddings)
    return layer, table


def test_table_shape_and_rows_broadcast_over_batch():
    layer, table = make_layer()
    assert table.shape == (8, 4)
    output = ops.convert_to_numpy(layer(np.zeros((3, 5, 4), "float32")))
    assert output.shape == (3, 5, 4)
    for row in output:
        np.testing.assert_array_equal(row, table[:5])


@pytest.mark.parametrize("as_tensor", [False, True])
def test_start_index_selects_later_rows(as_tensor):
    layer, table = make_layer()
    start_index = ops.convert_to_tensor(5, dtype="int32") if as_tensor else 5
    output = ops.convert_to_numpy(layer(np.zeros((2, 3, 4), "float32"), start_index=start_index))
    np.testing.assert_array_equal(output[1], table[5:8])


def test_explicit_positions():
    layer, table = make_layer()
    positions = np.array([[0, 1, 2], [3, 5, 7]], dtype="int32")
    output = ops.convert_to_numpy(layer(np.zeros((2, 3, 4), "float32"), positions=positions))
    np.testing.assert_array_equal(output, table[positions])
    shared = ops.convert_to_numpy(
        layer(np.zeros((2, 2, 4), "float32"), positions=np.array([6, 2], "int32"))
    )
    np.testing.assert_array_equal(shared[0], table[[6, 2]])
    np.testing.assert_array_equal(shared[1], table[[6, 2]])


def test_tensor_start_index_under_xla():
    layer, table = make_layer()

    @tf.function(jit_compile=True)
    def step(inputs, start_index):
        return layer(inputs, start_index=start_index)

    output = ops.convert_to_numpy(step(np.zeros((1, 2, 4), "float32"), tf.constant(3)))
    np.testing.assert_array_equal(output[0], table[3:5])


@pytest.mark.parametrize("start_index, time", [(6, 3), (0, 9), (8, 1)])
def test_out_of_range_start_index_raises(start_index, time):
    layer, _ = make_layer()
    with pytest.raises(ValueError, match="start_index"):
        layer(np.zeros((1, time, 4), "float32"), start_index=start_index)


def test_last_positions_are_allowed():
    layer, table = make_layer()
    output = ops.convert_to_numpy(layer(np.zeros((1, 2, 4), "float32"), start_index=6))
    np.testing.assert_array_equal(output[0], table[6:8])


def test_bad_arguments():
    for bad in (0, -3, 2.5, None):
        with pytest.raises(ValueError, match="sequence_length"):
            LearnedPositionEmbedding(bad)
    layer = LearnedPositionEmbedding(4)
    with pytest.raises(ValueError, match="inputs"):
        layer(np.zeros((2, 4), "float32"))
    with pytest.raises(ValueError, match="start_index"):
        layer(np.zeros((1, 2, 4), "float32"), start_index=-1)
