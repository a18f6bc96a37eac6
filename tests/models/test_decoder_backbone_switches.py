"""DecoderBackbone switches that LLaMA-style checkpoints need: projections
without biases and rotary position scaling; defaults unchanged."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.models import DecoderBackbone

LLAMA_LIKE = dict(
    vocabulary_size=40, sequence_length=12, num_layers=2, num_heads=4, num_key_value_heads=2,
    hidden_dim=16, intermediate_dim=24, activation="swiglu", normalization="rms_norm",
    position_encoding="rotary", tie_embeddings=False,
)


def _llama_parameter_count(vocabulary, width, inner, layers, heads, kv_heads):
    head_dim = width // heads
    attention = width * heads * head_dim * 2 + width * kv_heads * head_dim * 2
    feed_forward = 3 * width * inner
    norms = 2 * width
    return 2 * vocabulary * width + layers * (attention + feed_forward + norms) + width


def test_defaults_keep_biases_and_unscaled_rotary_positions():
    backbone = DecoderBackbone(**LLAMA_LIKE)
    assert backbone.use_bias and backbone.rope_scaling_factor == 1.0
    assert any(weight.path.endswith("bias") for weight in backbone.weights)


def test_use_bias_false_leaves_no_bias_anywhere():
    backbone = DecoderBackbone(**LLAMA_LIKE, use_bias=False)
    assert not [weight.path for weight in backbone.weights if weight.path.endswith("bias")]
    assert backbone.count_params() == _llama_parameter_count(40, 16, 24, 2, 4, 2)
    for block in backbone.blocks:
        assert not block.use_bias and not block.feed_forward.use_bias
    with pytest.raises(ValueError, match="use_bias"):
        DecoderBackbone(**LLAMA_LIKE, use_bias="no")


def test_rope_scaling_factor_reaches_every_block_and_changes_later_positions():
    plain = DecoderBackbone(**LLAMA_LIKE, use_bias=False)
    scaled = DecoderBackbone(**LLAMA_LIKE, use_bias=False, rope_scaling_factor=2.0)
    scaled.set_weights(plain.get_weights())
    assert [block.self_attention._rotary.scaling_factor for block in scaled.blocks] == [2.0, 2.0]
    ids = np.random.default_rng(0).integers(1, 40, (2, 12)).astype("int32")
    a = ops.convert_to_numpy(plain(ids)["sequence_output"])
    b = ops.convert_to_numpy(scaled(ids)["sequence_output"])
    np.testing.assert_allclose(a[:, 0], b[:, 0], atol=1e-5)  # position 0: no rotation
    assert not np.allclose(a[:, 1:], b[:, 1:], atol=1e-4)
    with pytest.raises(ValueError, match="rope_scaling_factor"):
        DecoderBackbone(**LLAMA_LIKE, rope_scaling_factor=-1.0)


def test_switches_round_trip_through_config_and_keras_files(tmp_path):
    backbone = DecoderBackbone(**LLAMA_LIKE, use_bias=False, rope_scaling_factor=2.0)
    config = backbone.get_config()
    assert (config["use_bias"], config["rope_scaling_factor"]) == (False, 2.0)
    assert DecoderBackbone.from_config(config).get_config() == config
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    restored = keras.models.load_model(path)
    assert restored.get_config() == config
    ids = np.random.default_rng(1).integers(1, 40, (2, 12)).astype("int32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(restored(ids)["sequence_output"]),
        ops.convert_to_numpy(backbone(ids)["sequence_output"]),
        atol=1e-6,
    )
