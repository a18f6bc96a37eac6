import math

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.layers.learned_position_embedding import LearnedPositionEmbedding
from keras_attn.layers.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_attn.layers.token_and_position_embedding import TokenAndPositionEmbedding
from tests.harness import run_layer_checks

TOKEN_IDS = np.array([[5, 3, 9, 0, 0], [1, 2, 3, 4, 19]], dtype="int32")


def make_layer(**kwargs):
    arguments = {"vocabulary_size": 20, "sequence_length": 8, "embedding_dim": 6}
    arguments.update(kwargs)
    return TokenAndPositionEmbedding(**arguments)


def numpy_of(tensor):
    return ops.convert_to_numpy(tensor)


def keras_mask(tensor):
    return getattr(tensor, "_keras_mask", None)


@pytest.mark.parametrize("position_encoding", ["learned", "sinusoidal", "none"])
def test_standard_checks(tmp_path, position_encoding):
    run_layer_checks(
        TokenAndPositionEmbedding,
        {
            "vocabulary_size": 20,
            "sequence_length": 8,
            "embedding_dim": 6,
            "position_encoding": position_encoding,
            "scale_embeddings": True,
        },
        {"inputs": TOKEN_IDS},
        tmp_path,
        expected_output_shape=(2, 5, 6),
        # The token table, plus the position table when learned.
        expected_num_trainable_weights=2 if position_encoding == "learned" else 1,
    )


def test_standard_checks_reverse(tmp_path):
    run_layer_checks(
        TokenAndPositionEmbedding,
        {
            "vocabulary_size": 20,
            "sequence_length": 8,
            "embedding_dim": 6,
            "position_encoding": "none",
        },
        {"inputs": np.random.default_rng(0).normal(size=(2, 5, 6)).astype("float32")},
        tmp_path,
        call_kwargs={"reverse": True},
        expected_output_shape=(2, 5, 20),
        expected_num_trainable_weights=1,  # the token table, tied to the logits
    )


def test_learned_forward_is_token_plus_position_rows():
    layer = make_layer()
    output = numpy_of(layer(TOKEN_IDS))
    assert isinstance(layer.position_embedding, LearnedPositionEmbedding)
    tokens = numpy_of(layer.token_embedding.embeddings)
    positions = numpy_of(layer.position_embedding.position_embeddings)
    np.testing.assert_allclose(output, tokens[TOKEN_IDS] + positions[:5], atol=1e-6)
    shifted = numpy_of(layer(TOKEN_IDS[:, :2], start_index=6))
    np.testing.assert_allclose(shifted, tokens[TOKEN_IDS[:, :2]] + positions[6:8], atol=1e-6)


def test_sinusoidal_forward_and_positions():
    layer = make_layer(position_encoding="sinusoidal")
    assert isinstance(layer.position_embedding, SinusoidalPositionEncoding)
    tokens = numpy_of(layer(TOKEN_IDS)) - numpy_of(layer.token_embedding(TOKEN_IDS))
    encoding = numpy_of(layer.position_embedding(np.zeros((1, 8, 6), "float32")))[0]
    np.testing.assert_allclose(tokens[0], encoding[:5], atol=1e-6)
    positions = np.array([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]], "int32")
    with_positions = numpy_of(layer(TOKEN_IDS, positions=positions))
    with_positions -= numpy_of(layer.token_embedding(TOKEN_IDS))
    np.testing.assert_allclose(with_positions[0], encoding[[0, 0, 0, 1, 2]], atol=1e-6)


def test_scale_embeddings_multiplies_by_sqrt_dim():
    layer = make_layer(position_encoding="none", scale_embeddings=True)
    assert layer.position_embedding is None
    output = numpy_of(layer(TOKEN_IDS))
    tokens = numpy_of(layer.token_embedding.embeddings)
    np.testing.assert_allclose(output, tokens[TOKEN_IDS] * math.sqrt(6), rtol=1e-6)


def test_reverse_uses_transposed_token_matrix():
    layer = make_layer()
    hidden = np.random.default_rng(1).normal(size=(2, 5, 6)).astype("float32")
    logits = numpy_of(layer(hidden, reverse=True))
    tokens = numpy_of(layer.token_embedding.embeddings)
    np.testing.assert_allclose(logits, hidden @ tokens.T, rtol=1e-5, atol=1e-6)
    layer.token_embedding.embeddings.assign(tokens * 2.0)
    np.testing.assert_allclose(numpy_of(layer(hidden, reverse=True)), 2 * logits, rtol=1e-5)


def test_untied_reverse_uses_its_own_matrix(tmp_path):
    layer = make_layer(tie_weights=False)
    assert isinstance(layer.token_embedding, keras.layers.ReversibleEmbedding)
    hidden = np.random.default_rng(2).normal(size=(2, 5, 6)).astype("float32")
    logits = numpy_of(layer(hidden, reverse=True))
    reverse = numpy_of(layer.token_embedding.reverse_embeddings)
    assert reverse.shape == (6, 20)
    np.testing.assert_allclose(logits, hidden @ reverse, rtol=1e-5, atol=1e-6)
    tied = make_layer()
    tied.build()
    assert len(layer.weights) == len(tied.weights) + 1
    run_layer_checks(
        TokenAndPositionEmbedding,
        {"vocabulary_size": 20, "sequence_length": 8, "embedding_dim": 6, "tie_weights": False},
        {"inputs": hidden},
        tmp_path,
        call_kwargs={"reverse": True},
        expected_output_shape=(2, 5, 20),
        # Token matrix, its own reverse matrix and the learned positions.
        expected_num_trainable_weights=3,
    )


@pytest.mark.parametrize("position_encoding", ["learned", "sinusoidal", "none"])
def test_forward_is_token_lookup_then_add_positions(position_encoding):
    layer = make_layer(position_encoding=position_encoding, scale_embeddings=True)
    looked_up = layer.token_embedding(TOKEN_IDS)
    np.testing.assert_allclose(
        numpy_of(layer.add_positions(looked_up, start_index=1)),
        numpy_of(layer(TOKEN_IDS, start_index=1)),
        atol=1e-6,
    )
    with pytest.raises(ValueError, match="token_embeddings.*embedding_dim=6"):
        layer.add_positions(np.zeros((2, 5, 4), "float32"))
    with pytest.raises(ValueError, match="start_index"):
        layer.add_positions(numpy_of(looked_up), start_index=4)


def test_padding_mask_reaches_next_layer():
    class MaskProbe(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.supports_masking = True

        def call(self, inputs, mask=None):
            assert mask is not None, "no mask reached the next layer"
            return ops.cast(mask, "float32")

    token_ids = keras.Input(shape=(5,), dtype="int32")
    hidden = make_layer()(token_ids)
    model = keras.Model(token_ids, MaskProbe()(hidden))
    np.testing.assert_array_equal(numpy_of(model(TOKEN_IDS)), TOKEN_IDS != 0)


def test_mask_zero_false_and_reverse_give_no_mask():
    layer = make_layer()
    np.testing.assert_array_equal(numpy_of(layer.compute_mask(TOKEN_IDS)), TOKEN_IDS != 0)
    hidden = layer(TOKEN_IDS)
    assert keras_mask(hidden) is not None
    assert layer.compute_mask(numpy_of(hidden)) is None
    assert keras_mask(layer(hidden, reverse=True)) is None
    unmasked = make_layer(mask_zero=False)
    assert unmasked.compute_mask(TOKEN_IDS) is None
    assert keras_mask(unmasked(TOKEN_IDS)) is None


def test_mixed_precision_dtypes():
    layer = make_layer(dtype="mixed_bfloat16", scale_embeddings=True)
    hidden = layer(TOKEN_IDS)
    logits = layer(hidden, reverse=True)
    assert keras.backend.standardize_dtype(hidden.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(logits.dtype) == "bfloat16"
    assert keras.backend.standardize_dtype(layer.token_embedding.embeddings.dtype) == "float32"


@pytest.mark.parametrize("position_encoding", ["learned", "sinusoidal", "none"])
def test_out_of_range_start_index_raises(position_encoding):
    layer = make_layer(position_encoding=position_encoding)
    with pytest.raises(ValueError, match="start_index"):
        layer(TOKEN_IDS, start_index=4)
    with pytest.raises(ValueError, match="start_index"):
        layer(TOKEN_IDS, start_index=-1)


@pytest.mark.parametrize(
    "argument, value",
    [
        ("vocabulary_size", 0),
        ("sequence_length", -1),
        ("embedding_dim", 2.5),
        ("position_encoding", "rotary"),
    ],
)
def test_bad_constructor_arguments(argument, value):
    with pytest.raises(ValueError, match=argument):
        make_layer(**{argument: value})


def test_bad_input_ranks():
    layer = make_layer()
    with pytest.raises(ValueError, match="inputs.*rank 2"):
        layer(np.zeros((2, 5, 1), "int32"))
    with pytest.raises(ValueError, match="inputs.*rank 3"):
        layer(np.zeros((2, 6), "float32"), reverse=True)
