"""Seq2SeqBackbone switches that BART-style checkpoints need: unscaled token
embeddings, a norm on each side's embeddings, a target position table of its
own over shared tokens; defaults unchanged."""

import keras
import numpy as np
from keras import ops

from keras_attn.models import Seq2SeqBackbone

SMALL = dict(
    source_vocabulary_size=30, target_vocabulary_size=30, source_length=8, target_length=6,
    num_encoder_layers=1, num_decoder_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
    position_encoding="learned",
)
BART_LIKE = dict(scale_embeddings=False, embedding_norm=True, share_position_embeddings=False)


def outputs(backbone, source, target):
    result = backbone({"source_ids": source, "target_ids": target})
    return {key: ops.convert_to_numpy(value) for key, value in result.items()}


def test_defaults_scale_and_share_one_position_table_without_embedding_norms():
    backbone = Seq2SeqBackbone(**SMALL)
    assert backbone.scale_embeddings and not backbone.embedding_norm
    assert backbone.share_position_embeddings and backbone.target_position_embedding is None
    assert backbone.source_embedding_norm is None and backbone.target_embedding_norm is None
    assert backbone.source_embedding.position_embedding.sequence_length == 8  # max of both


def test_bart_switches_compute_what_they_say():
    backbone = Seq2SeqBackbone(**SMALL, **BART_LIKE)
    assert backbone.target_embedding is backbone.source_embedding  # tokens still shared
    tables = {w.path.split("/", 1)[1]: tuple(w.shape) for w in backbone.weights
              if "position" in w.path}
    assert tables == {"source_embedding/position_embedding/embeddings": (8, 8),
                      "target_position_embedding/embeddings": (6, 8)}
    rng = np.random.default_rng(0)
    for weight in backbone.weights:
        weight.assign(rng.normal(0, 0.5, weight.shape).astype("float32"))
    ids = np.array([[3, 4, 5]], "int32")
    tokens = ops.convert_to_numpy(backbone.target_token_embedding(ids))
    positions = ops.convert_to_numpy(backbone.target_position_embedding.position_embeddings)[:3]
    x = tokens + positions  # unscaled, the target's own positions
    norm = backbone.target_embedding_norm
    gamma, beta = (ops.convert_to_numpy(w) for w in (norm.gamma, norm.beta))
    mean, variance = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    expected = (x - mean) / np.sqrt(variance + backbone.norm_epsilon) * gamma + beta
    np.testing.assert_allclose(
        ops.convert_to_numpy(backbone.embed_target(backbone.target_token_embedding(ids))),
        expected, atol=1e-5,
    )
    # Cached decoding adds the same positions as the full pass.
    source = np.array([[5, 6, 7, 0]], "int32")
    full = outputs(backbone, source, np.array([[1, 3, 4]], "int32"))["decoder_sequence_output"]
    encoded, source_mask = backbone.encode(source)
    caches = backbone.empty_caches(1)
    cross = backbone.cross_attention_caches(encoded)
    steps = []
    for index, token in enumerate([1, 3, 4]):
        hidden, caches = backbone.decode_with_cache(
            ops.convert_to_tensor([[token]], "int32"), caches, cross, source_mask, index
        )
        steps.append(ops.convert_to_numpy(hidden)[:, 0])
    np.testing.assert_allclose(np.stack(steps, axis=1), full, atol=1e-5)


def test_switches_round_trip_through_config_and_keras_files(tmp_path):
    backbone = Seq2SeqBackbone(**SMALL, **BART_LIKE)
    config = backbone.get_config()
    assert {key: config[key] for key in BART_LIKE} == BART_LIKE
    assert Seq2SeqBackbone.from_config(config).get_config() == config
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    loaded = keras.saving.load_model(path)
    source, target = np.array([[5, 6, 7, 0]], "int32"), np.array([[1, 3, 4]], "int32")
    expected, got = outputs(backbone, source, target), outputs(loaded, source, target)
    for key in expected:
        np.testing.assert_array_equal(got[key], expected[key])
