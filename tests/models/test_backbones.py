"""DecoderBackbone, EncoderBackbone and Seq2SeqBackbone: caches, padding,
published parameter counts, XLA, mixed precision and tf.distribute. (The
output contract, head masks and embedding inputs: test_backbone_contract.py.)"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.models import DecoderBackbone, EncoderBackbone, Seq2SeqBackbone
from keras_attn.models.classifier_presets import CLASSIFIER_PRESETS
from keras_attn.models.generator_presets import GENERATOR_PRESETS
from keras_attn.models.translator_presets import TRANSLATOR_PRESETS
from keras_attn.training import MaskedSparseCategoricalCrossentropy

TINY_DECODER = dict(
    vocabulary_size=40, sequence_length=12, num_layers=2, num_heads=2, hidden_dim=16,
    intermediate_dim=32,
)
TINY_ENCODER = dict(TINY_DECODER)
TINY_SEQ2SEQ = dict(
    source_vocabulary_size=40, target_vocabulary_size=40, source_length=10, target_length=8,
    num_encoder_layers=2, num_decoder_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=32,
)


def _np(x):
    return ops.convert_to_numpy(x)


def _ids(batch, length, vocabulary=40, seed=0):
    return np.random.default_rng(seed).integers(7, vocabulary, (batch, length)).astype("int32")


# ------------------------------------------------------- parameter counts


def _layer_norm(width):
    return 2 * width


def _attention(width):
    return 4 * (width * width + width)


def _feed_forward(width, inner):
    return width * inner + inner + inner * width + width


def test_gpt2_small_preset_has_the_published_parameter_count():
    config = GENERATOR_PRESETS["gpt2_small"]["backbone"]
    backbone = DecoderBackbone(**config)
    width, inner, layers = 768, 3072, 12
    per_block = _attention(width) + _feed_forward(width, inner) + 2 * _layer_norm(width)
    expected = 50257 * width + 1024 * width + layers * per_block + _layer_norm(width)
    assert expected == 124_439_808
    assert backbone.count_params() == expected


def test_bert_base_preset_has_the_published_parameter_count():
    backbone = EncoderBackbone(**CLASSIFIER_PRESETS["bert_base"]["backbone"])
    width, inner = 768, 3072
    embeddings = (30522 + 512 + 2) * width + _layer_norm(width)
    per_block = _attention(width) + _feed_forward(width, inner) + 2 * _layer_norm(width)
    pooler = width * width + width
    expected = embeddings + 12 * per_block + pooler
    assert expected == 109_482_240
    assert backbone.count_params() == expected


@pytest.mark.parametrize(
    "preset, width, inner", [("transformer_base", 512, 2048), ("transformer_big", 1024, 4096)]
)
def test_transformer_presets_match_their_declared_shapes(preset, width, inner):
    backbone = Seq2SeqBackbone(**TRANSLATOR_PRESETS[preset]["backbone"])
    # One shared, tied embedding matrix; sinusoidal positions have no weights.
    encoder_block = _attention(width) + _feed_forward(width, inner) + 2 * _layer_norm(width)
    decoder_block = 2 * _attention(width) + _feed_forward(width, inner) + 3 * _layer_norm(width)
    expected = 37000 * width + 6 * encoder_block + 6 * decoder_block
    assert backbone.count_params() == expected
    # Vaswani et al. report about 65M and 213M parameters.
    assert abs(expected - {"transformer_base": 65e6, "transformer_big": 213e6}[preset]) < 3e6


# --------------------------------------------------------------- caches


@pytest.mark.parametrize("position_encoding", ["learned", "sinusoidal", "rotary"])
def test_decoder_cached_steps_equal_full_pass(position_encoding):
    backbone = DecoderBackbone(**TINY_DECODER, position_encoding=position_encoding,
                               num_key_value_heads=1)
    ids = _ids(2, 12)
    full = _np(backbone(ids)["sequence_output"])
    caches = backbone.empty_caches(2)
    hidden, caches = backbone.call_with_cache(ids[:, :5], caches, 0)
    np.testing.assert_allclose(_np(hidden), full[:, :5], atol=1e-5)
    for i in range(5, 12):
        hidden, caches = backbone.call_with_cache(ids[:, i : i + 1], caches, i)
        np.testing.assert_allclose(_np(hidden)[:, 0], full[:, i], atol=1e-5)


def test_decoder_future_tokens_do_not_change_earlier_outputs():
    backbone = DecoderBackbone(**TINY_DECODER)
    ids = _ids(2, 12)
    changed = ids.copy()
    changed[:, 6:] = _ids(2, 6, seed=1)
    a = _np(backbone(ids)["sequence_output"])
    b = _np(backbone(changed)["sequence_output"])
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-5)
    assert not np.allclose(a[:, 6:], b[:, 6:])


def test_seq2seq_cached_decoding_equals_full_pass():
    backbone = Seq2SeqBackbone(**TINY_SEQ2SEQ)
    source = _ids(2, 10)
    source[1, 6:] = 0
    target = _ids(2, 8, seed=2)
    outputs = backbone({"source_ids": source, "target_ids": target})
    full = _np(outputs["decoder_sequence_output"])
    encoded, source_mask = backbone.encode(source)
    np.testing.assert_allclose(_np(encoded), _np(outputs["encoder_sequence_output"]), atol=1e-6)
    cross = backbone.cross_attention_caches(encoded)
    caches = backbone.empty_caches(2)
    for i in range(8):
        hidden, caches = backbone.decode_with_cache(target[:, i : i + 1], caches, cross,
                                                    source_mask, i)
        np.testing.assert_allclose(_np(hidden)[:, 0], full[:, i], atol=1e-5)


def test_encoder_padding_does_not_change_real_positions():
    backbone = EncoderBackbone(**TINY_ENCODER, dropout=0.0)
    ids = _ids(2, 12)
    ids[:, 8:] = 0
    short = backbone(ids[:, :8])
    padded = backbone(ids)
    np.testing.assert_allclose(_np(padded["sequence_output"])[:, :8],
                               _np(short["sequence_output"]), atol=1e-5)
    segments = np.ones_like(ids)
    assert not np.allclose(
        _np(backbone({"token_ids": ids, "segment_ids": segments})["pooled_output"]),
        _np(padded["pooled_output"]),
    )


def test_seq2seq_source_padding_does_not_change_decoder_outputs():
    backbone = Seq2SeqBackbone(**TINY_SEQ2SEQ)
    source = _ids(2, 10)
    source[:, 7:] = 0
    other = source.copy()
    target = _ids(2, 8, seed=3)
    a = backbone({"source_ids": source, "target_ids": target})
    other_backbone_input = {"source_ids": other[:, :7], "target_ids": target}
    # A shorter static source length must give the same logits.
    short = Seq2SeqBackbone.from_config(dict(backbone.get_config(), source_length=7,
                                             share_embeddings=True))
    short.set_weights(backbone.get_weights())
    np.testing.assert_allclose(_np(a["decoder_sequence_output"]),
                               _np(short(other_backbone_input)["decoder_sequence_output"]),
                               atol=1e-5)


# --------------------------------------------------- config and training


BACKBONES = {
    "decoder": (DecoderBackbone, TINY_DECODER, lambda: _ids(4, 12), lambda: _ids(4, 12, seed=5)),
    "encoder": (EncoderBackbone, TINY_ENCODER, lambda: _ids(4, 12), None),
    "seq2seq": (
        Seq2SeqBackbone,
        TINY_SEQ2SEQ,
        lambda: {"source_ids": _ids(4, 10), "target_ids": _ids(4, 8, seed=1)},
        lambda: _ids(4, 8, seed=6),
    ),
}


@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_config_and_keras_file_round_trip(name, tmp_path):
    cls, config, inputs, _ = BACKBONES[name]
    backbone = cls(**config)
    clone = cls.from_config(backbone.get_config())
    assert clone.get_config() == backbone.get_config()
    path = str(tmp_path / f"{name}.keras")
    backbone.save(path)
    restored = keras.models.load_model(path)
    data = inputs()
    for a, b in zip(keras.tree.flatten(backbone(data)), keras.tree.flatten(restored(data))):
        np.testing.assert_allclose(_np(a), _np(b), atol=1e-6)


class TinyLanguageModel(keras.Model):
    """The smallest task: a backbone's hidden states projected onto the
    vocabulary with its reversible token embedding, as the tasks do."""

    def __init__(self, backbone, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, inputs, training=None):
        outputs = self.backbone(inputs, training=training)
        if isinstance(self.backbone, Seq2SeqBackbone):
            hidden, projection = (outputs["decoder_sequence_output"],
                                  self.backbone.target_token_embedding)
        else:
            hidden, projection = outputs["sequence_output"], self.backbone.token_embedding
        return ops.cast(projection(hidden, reverse=True), "float32")


def _fit_lm(cls, config, inputs, targets, **compile_kwargs):
    model = TinyLanguageModel(cls(**config))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=MaskedSparseCategoricalCrossentropy(), **compile_kwargs)
    return model, model.fit(inputs, targets, batch_size=4, epochs=3, verbose=0)


@pytest.mark.parametrize("name", ["decoder", "seq2seq"])
@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_language_backbones_train_with_xla_and_mixed_precision(name, policy):
    keras.config.set_dtype_policy(policy)
    cls, config, inputs, targets = BACKBONES[name]
    model, history = _fit_lm(cls, config, inputs(), targets(), jit_compile=True)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert model.backbone.compute_dtype == keras.config.dtype_policy().compute_dtype


@pytest.mark.parametrize("name", ["decoder", "seq2seq"])
def test_language_backbones_build_and_train_in_a_distribution_strategy(name):
    cls, config, inputs, targets = BACKBONES[name]
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        model, history = _fit_lm(cls, config, inputs(), targets())
    assert model.distribute_strategy is strategy
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize(
    "cls, config, match",
    [
        (DecoderBackbone, dict(TINY_DECODER, num_layers=0), "num_layers"),
        (DecoderBackbone, dict(TINY_DECODER, position_encoding="alibi"), "position_encoding"),
        (DecoderBackbone, dict(TINY_DECODER, normalization="batch_norm"), "normalization"),
        (DecoderBackbone, dict(TINY_DECODER, activation="tanh"), "activation"),
        (EncoderBackbone, dict(TINY_ENCODER, norm_epsilon=0), "norm_epsilon"),
        (EncoderBackbone, dict(TINY_ENCODER, num_segments=-1), "num_segments"),
        (Seq2SeqBackbone, dict(TINY_SEQ2SEQ, target_vocabulary_size=50), "share_embeddings"),
        (Seq2SeqBackbone, dict(TINY_SEQ2SEQ, dropout=2.0), "dropout"),
    ],
)
def test_bad_backbone_arguments(cls, config, match):
    with pytest.raises(ValueError, match=match):
        cls(**config)


def test_wrong_input_rank_names_the_argument():
    with pytest.raises(ValueError, match="`token_ids` must have rank 2"):
        DecoderBackbone(**TINY_DECODER)(np.ones((2, 3, 4), "int32"))


# ----------------------------------------------------------- bad inputs


def _small_backbones():
    return {
        "decoder": DecoderBackbone(**{**TINY_DECODER, "num_layers": 1}),
        "encoder": EncoderBackbone(**{**TINY_ENCODER, "num_layers": 1}),
        "seq2seq": Seq2SeqBackbone(
            **{**TINY_SEQ2SEQ, "num_encoder_layers": 1, "num_decoder_layers": 1}
        ),
    }


@pytest.fixture(scope="module")
def small_backbones():
    return _small_backbones()


def _with_id(kind, key, value):
    """Valid inputs of backbone `kind` with one id of `key` set to `value`."""
    ids = _ids(2, 6)
    bad = ids.copy()
    bad[1, 3] = value
    if kind == "seq2seq":
        inputs = {"source_ids": ids, "target_ids": ids}
        inputs[key] = bad
        return inputs
    return {"token_ids": bad}


@pytest.mark.parametrize("kind, key", [
    ("decoder", "token_ids"), ("encoder", "token_ids"),
    ("seq2seq", "source_ids"), ("seq2seq", "target_ids"),
])
@pytest.mark.parametrize("value", [-1, 40, 1000])
def test_ids_out_of_the_vocabulary_are_refused(small_backbones, kind, key, value):
    # Before: >= vocabulary raised a raw GatherV2 error, negative ids read the last row.
    with pytest.raises(ValueError, match=rf"`{key}` must hold ids in \[0, 40\).*first out of "
                                         rf"range: {value} at position \(1, 3\)"):
        small_backbones[kind](_with_id(kind, key, value))


def test_cached_decoding_calls_refuse_ids_out_of_range(small_backbones):
    decoder, seq2seq = small_backbones["decoder"], small_backbones["seq2seq"]
    with pytest.raises(ValueError, match=r"`token_ids` must hold ids in \[0, 40\)"):
        decoder.call_with_cache(np.array([[3, 40]], "int32"), decoder.empty_caches(1), 0)
    encoded, source_mask = seq2seq.encode(_ids(1, 4))
    with pytest.raises(ValueError, match=r"`target_ids` must hold ids in \[0, 40\)"):
        seq2seq.decode_with_cache(
            np.array([[-2]], "int32"), seq2seq.empty_caches(1),
            seq2seq.cross_attention_caches(encoded), source_mask, 0,
        )


@pytest.mark.parametrize("value", [-1, 2, 7])
def test_segment_ids_out_of_range_are_refused(small_backbones, value):
    segments = np.zeros((2, 6), "int32")
    segments[0, 2] = value
    with pytest.raises(ValueError, match=r"`segment_ids` must hold ids in \[0, 2\) "
                                         r"\(`num_segments`\)"):
        small_backbones["encoder"]({"token_ids": _ids(2, 6), "segment_ids": segments})


@pytest.mark.parametrize("shape, message", [
    ((3, 6), r"`segment_ids` must have the batch size of `token_ids` \(2\)"),
    ((2, 5), r"`segment_ids` must have shape \(batch, 6\)"),
    ((2, 6, 1), r"`segment_ids` must have rank 2"),
])
def test_segment_ids_of_another_shape_are_refused(small_backbones, shape, message):
    # Before: a raw [Op:AddV2] error (batch) or a broadcast (time).
    with pytest.raises(ValueError, match=message):
        small_backbones["encoder"](
            {"token_ids": _ids(2, 6), "segment_ids": np.zeros(shape, "int32")}
        )


@pytest.mark.parametrize("kind, inputs, message", [
    ("decoder", {"token_ids": _ids(2, 6), "padding_mask": np.ones((3, 6), bool)},
     r"`padding_mask` must have the batch size of `token_ids` \(2\)"),
    ("encoder", {"token_ids": _ids(2, 6), "padding_mask": np.ones((1, 6), bool)},
     r"`padding_mask` must have the batch size of `token_ids` \(2\)"),
    ("decoder", {"token_embeddings": np.zeros((2, 6, 16), "float32"),
                 "padding_mask": np.ones((4, 6), bool)},
     r"`padding_mask` must have the batch size of `token_embeddings` \(2\)"),
    ("seq2seq", {"source_ids": _ids(2, 6), "target_ids": _ids(3, 4)},
     r"`target_ids` must have the batch size of `source_ids` \(2\)"),
    ("seq2seq", {"source_ids": _ids(2, 6), "target_ids": _ids(2, 4),
                 "target_padding_mask": np.ones((1, 4), bool)},
     r"`target_padding_mask` must have the batch size of `source_ids` \(2\)"),
])
def test_batch_size_mismatches_are_refused_by_name(small_backbones, kind, inputs, message):
    # Before: raw InvalidArgumentErrors from inside attention ([Op:LogicalAnd]).
    with pytest.raises(ValueError, match=message):
        small_backbones[kind](inputs)


def test_traced_calls_skip_the_value_checks_and_match_eager_calls(small_backbones):
    # The checks read values only when known: compiled functions and symbolic
    # Keras inputs trace as before, and give the eager outputs for valid ids.
    decoder = small_backbones["decoder"]
    ids = _ids(2, 6)
    eager = _np(decoder(ids)["sequence_output"])
    traced = tf.function(lambda x: decoder(x)["sequence_output"], jit_compile=True)
    np.testing.assert_allclose(_np(traced(tf.constant(ids))), eager, atol=1e-5)
    # A None batch axis while tracing: the batch check compares known axes only.
    flexible = tf.function(
        lambda x, m: decoder({"token_ids": x, "padding_mask": m})["sequence_output"],
        input_signature=[tf.TensorSpec((None, 6), tf.int32), tf.TensorSpec((None, 6), tf.bool)],
    )
    np.testing.assert_allclose(_np(flexible(ids, ids != 0)), eager, atol=1e-5)
    symbolic = keras.Input((6,), dtype="int32")
    functional = keras.Model(symbolic, decoder(symbolic)["sequence_output"])
    np.testing.assert_allclose(_np(functional(ids)), eager, atol=1e-5)
