"""The backbone contract: output dicts, attention scores, head masks,
token-embedding inputs, per-layer head counts and head sizes."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.models import DecoderBackbone, EncoderBackbone, Seq2SeqBackbone

DECODER = dict(vocabulary_size=40, sequence_length=12, num_layers=2, num_heads=4, hidden_dim=16,
               intermediate_dim=32)
ENCODER = dict(DECODER)
SEQ2SEQ = dict(source_vocabulary_size=40, target_vocabulary_size=40, source_length=10,
               target_length=8, num_encoder_layers=2, num_decoder_layers=2, num_heads=4,
               hidden_dim=16, intermediate_dim=32)
B, T, S = 2, 12, 10
TT = 8


def _np(x):
    return ops.convert_to_numpy(x)


def _ids(batch, length, seed=0, padded_from=None):
    ids = np.random.default_rng(seed).integers(7, 40, (batch, length)).astype("int32")
    if padded_from is not None:
        ids[1, padded_from:] = 0
    return ids


def _decoder_inputs():
    return _ids(B, T, padded_from=9)


def _encoder_inputs():
    return {"token_ids": _ids(B, T, padded_from=9),
            "segment_ids": (np.arange(T)[None] >= 6).astype("int32").repeat(B, 0)}


def _seq2seq_inputs():
    return {"source_ids": _ids(B, S, padded_from=7), "target_ids": _ids(B, TT, seed=1)}


# name -> (class, config, inputs, head mask arguments {argument: head counts key})
BACKBONES = {
    "decoder": (DecoderBackbone, DECODER, _decoder_inputs),
    "encoder": (EncoderBackbone, ENCODER, _encoder_inputs),
    "seq2seq": (Seq2SeqBackbone, SEQ2SEQ, _seq2seq_inputs),
}
HEAD_MASKS = {
    "decoder": {"head_mask": "head_counts"},
    "encoder": {"head_mask": "head_counts"},
    "seq2seq": {
        "encoder_head_mask": "encoder_head_counts",
        "decoder_head_mask": "decoder_head_counts",
        "cross_attention_head_mask": "cross_attention_head_counts",
    },
}
SCORE_KEYS = {
    "decoder": {"head_mask": "attention_scores"},
    "encoder": {"head_mask": "attention_scores"},
    "seq2seq": {
        "encoder_head_mask": "encoder_attention_scores",
        "decoder_head_mask": "decoder_attention_scores",
        "cross_attention_head_mask": "cross_attention_scores",
    },
}
NON_UNIFORM_HEADS = {
    "decoder": [4, 2],
    "encoder": [2, 4],
    "seq2seq": {"encoder": [4, 1], "decoder": [2, 4], "cross_attention": [4, 2]},
}


def _assert_outputs_close(a, b, atol):
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_allclose(_np(a[key]), _np(b[key]), atol=atol, err_msg=key)


# ------------------------------------------------------------- outputs


def test_decoder_outputs_and_scores():
    backbone = DecoderBackbone(**DECODER)
    ids = _decoder_inputs()
    outputs = backbone(ids)
    assert set(outputs) == {"sequence_output"}
    assert outputs["sequence_output"].shape == (B, T, 16)
    with_scores = backbone(ids, return_attention_scores=True)
    np.testing.assert_allclose(_np(with_scores["sequence_output"]),
                               _np(outputs["sequence_output"]), atol=1e-5)
    scores = _np(with_scores["attention_scores"])
    assert scores.shape == (2, B, 4, T, T)
    # Post-softmax rows of real queries sum to 1; causal: no weight on the future.
    np.testing.assert_allclose(scores[:, 0].sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(scores, k=1) == 0)
    # Padded keys get no weight.
    assert np.all(scores[:, 1, :, :, 9:] == 0)


def test_encoder_outputs_and_scores():
    backbone = EncoderBackbone(**ENCODER)
    outputs = backbone(_encoder_inputs(), return_attention_scores=True)
    assert set(outputs) == {"sequence_output", "pooled_output", "attention_scores"}
    assert outputs["sequence_output"].shape == (B, T, 16)
    assert outputs["pooled_output"].shape == (B, 16)
    scores = _np(outputs["attention_scores"])
    assert scores.shape == (2, B, 4, T, T)
    np.testing.assert_allclose(scores[:, 0].sum(-1), 1.0, atol=1e-5)
    assert np.all(scores[:, 1, :, :, 9:] == 0)
    assert np.any(scores[:, 0, :, :, 9:] > 0)  # bidirectional


def test_seq2seq_outputs_and_scores():
    backbone = Seq2SeqBackbone(**SEQ2SEQ)
    inputs = _seq2seq_inputs()
    outputs = backbone(inputs)
    assert set(outputs) == {"encoder_sequence_output", "decoder_sequence_output"}
    assert outputs["encoder_sequence_output"].shape == (B, S, 16)
    assert outputs["decoder_sequence_output"].shape == (B, TT, 16)
    with_scores = backbone(inputs, return_attention_scores=True)
    shapes = {key: tuple(value.shape) for key, value in with_scores.items()}
    assert shapes == {
        "encoder_sequence_output": (B, S, 16),
        "decoder_sequence_output": (B, TT, 16),
        "encoder_attention_scores": (2, B, 4, S, S),
        "decoder_attention_scores": (2, B, 4, TT, TT),
        "cross_attention_scores": (2, B, 4, TT, S),
    }
    decoder_scores = _np(with_scores["decoder_attention_scores"])
    assert np.all(np.triu(decoder_scores, k=1) == 0)
    cross = _np(with_scores["cross_attention_scores"])
    np.testing.assert_allclose(cross.sum(-1), 1.0, atol=1e-5)
    assert np.all(cross[:, 1, :, :, 7:] == 0)  # padded source positions


def test_non_uniform_heads_pad_scores_with_zero_rows():
    backbone = DecoderBackbone(**dict(DECODER, num_heads=[4, 2]))
    scores = _np(backbone(_decoder_inputs(), return_attention_scores=True)["attention_scores"])
    assert scores.shape == (2, B, 4, T, T)
    assert np.all(scores[1, :, 2:] == 0)
    np.testing.assert_allclose(scores[1, 0, :2].sum(-1), 1.0, atol=1e-5)
    seq2seq = Seq2SeqBackbone(**dict(SEQ2SEQ, num_heads=NON_UNIFORM_HEADS["seq2seq"]))
    outputs = seq2seq(_seq2seq_inputs(), return_attention_scores=True)
    assert np.all(_np(outputs["encoder_attention_scores"])[1, :, 1:] == 0)
    assert np.all(_np(outputs["decoder_attention_scores"])[0, :, 2:] == 0)
    assert np.all(_np(outputs["cross_attention_scores"])[1, :, 2:] == 0)
    assert _np(outputs["cross_attention_scores"]).shape == (2, B, 4, TT, S)


# ----------------------------------------------------- token embeddings


def _as_embeddings(name, backbone, inputs):
    if name == "seq2seq":
        return {
            "source_token_embeddings": backbone.source_token_embedding(inputs["source_ids"]),
            "source_padding_mask": inputs["source_ids"] != 0,
            "target_token_embeddings": backbone.target_token_embedding(inputs["target_ids"]),
            "target_padding_mask": inputs["target_ids"] != 0,
        }
    ids = inputs["token_ids"] if isinstance(inputs, dict) else inputs
    embedded = {"token_embeddings": backbone.token_embedding(ids), "padding_mask": ids != 0}
    if isinstance(inputs, dict) and "segment_ids" in inputs:
        embedded["segment_ids"] = inputs["segment_ids"]
    return embedded


@pytest.mark.parametrize("name", list(BACKBONES))
def test_token_embeddings_give_the_same_outputs_as_ids(name):
    cls, config, make_inputs = BACKBONES[name]
    extra = {"tie_embeddings": False, "share_embeddings": False} if name == "seq2seq" else {}
    backbone = cls(**config, **extra)
    inputs = make_inputs()
    from_ids = backbone(inputs, return_attention_scores=True)
    from_embeddings = backbone(_as_embeddings(name, backbone, inputs),
                               return_attention_scores=True)
    _assert_outputs_close(from_ids, from_embeddings, atol=1e-6)


def test_token_embeddings_default_to_all_real_and_take_gradients():
    backbone = DecoderBackbone(**DECODER)
    ids = _ids(B, T)  # no padding: the default masks agree
    embeddings = tf.Variable(_np(backbone.token_embedding(ids)))
    np.testing.assert_allclose(
        _np(backbone({"token_embeddings": embeddings})["sequence_output"]),
        _np(backbone(ids)["sequence_output"]),
        atol=1e-6,
    )
    with tf.GradientTape() as tape:
        loss = ops.sum(ops.square(backbone({"token_embeddings": embeddings})["sequence_output"]))
    gradient = _np(tape.gradient(loss, embeddings))
    assert gradient.shape == (B, T, 16)
    assert np.all(np.isfinite(gradient)) and np.any(gradient != 0)


def test_seq2seq_embedding_gradients_reach_both_sides():
    backbone = Seq2SeqBackbone(**SEQ2SEQ)
    inputs = _seq2seq_inputs()
    source = tf.Variable(_np(backbone.source_token_embedding(inputs["source_ids"])))
    target = tf.Variable(_np(backbone.target_token_embedding(inputs["target_ids"])))
    with tf.GradientTape() as tape:
        outputs = backbone({"source_token_embeddings": source, "target_token_embeddings": target})
        loss = ops.sum(ops.square(outputs["decoder_sequence_output"]))
    for gradient in tape.gradient(loss, [source, target]):
        assert np.any(_np(gradient) != 0)


def test_encoder_method_accepts_embeddings():
    backbone = Seq2SeqBackbone(**SEQ2SEQ)
    source = _ids(B, S, padded_from=7)
    encoded, mask = backbone.encode(source)
    embedded, embedded_mask = backbone.encode(
        {"source_token_embeddings": backbone.source_token_embedding(source)},
        source_padding_mask=source != 0,
    )
    np.testing.assert_allclose(_np(encoded), _np(embedded), atol=1e-6)
    np.testing.assert_array_equal(_np(mask), _np(embedded_mask))


@pytest.mark.parametrize(
    "inputs, match",
    [
        ({"token_ids": _ids(B, T), "token_embeddings": np.zeros((B, T, 16), "float32")},
         "exactly one of `token_ids` and `token_embeddings`"),
        ({"padding_mask": np.ones((B, T), bool)}, "exactly one"),
        ({"token_embeddings": np.zeros((B, T, 8), "float32")}, "hidden_dim=16"),
        ({"token_embeddings": np.zeros((B, T), "float32")}, "`token_embeddings` must have rank 3"),
        ({"token_ids": _ids(B, T), "padding_mask": np.ones((B, 3), bool)}, "`padding_mask`"),
        ({"token_ids": _ids(B, T), "segment_ids": _ids(B, T)}, "Unexpected input key"),
    ],
)
def test_bad_decoder_inputs(inputs, match):
    with pytest.raises(ValueError, match=match):
        DecoderBackbone(**DECODER)(inputs)


def test_bad_seq2seq_inputs():
    backbone = Seq2SeqBackbone(**SEQ2SEQ)
    with pytest.raises(ValueError, match="`inputs` must be a dict"):
        backbone(_ids(B, S))
    with pytest.raises(ValueError, match="one of `source_ids` and `source_token_embeddings`"):
        backbone({"target_ids": _ids(B, TT)})
    with pytest.raises(ValueError, match="Unexpected input key.*source_mask"):
        backbone(dict(_seq2seq_inputs(), source_mask=np.ones((B, S), bool)))


# ---------------------------------------------------------- head masks


@pytest.mark.parametrize("name", list(BACKBONES))
def test_head_masks_scale_heads_and_take_gradients(name):
    cls, config, make_inputs = BACKBONES[name]
    backbone = cls(**dict(config, num_heads=NON_UNIFORM_HEADS[name]))
    inputs = make_inputs()
    plain = backbone(inputs)
    arguments = {
        argument: np.ones((len(getattr(backbone, counts)), max(getattr(backbone, counts))),
                          "float32")
        for argument, counts in HEAD_MASKS[name].items()
    }
    _assert_outputs_close(plain, backbone(inputs, **arguments), atol=1e-6)
    for argument in arguments:
        # Removing head 0 of layer 1 changes the outputs; an entry past a
        # layer's head count changes nothing.
        counts = getattr(backbone, HEAD_MASKS[name][argument])
        off = dict(arguments)
        off[argument] = arguments[argument].copy()
        off[argument][1, 0] = 0.0
        changed = backbone(inputs, **off)
        assert not all(np.allclose(_np(changed[k]), _np(plain[k])) for k in plain), argument
        if counts[1] < max(counts):
            ignored = dict(arguments)
            ignored[argument] = arguments[argument].copy()
            ignored[argument][1, counts[1]:] = 0.0
            _assert_outputs_close(plain, backbone(inputs, **ignored), atol=1e-6)
    variables = {argument: tf.Variable(value) for argument, value in arguments.items()}
    with tf.GradientTape(persistent=True) as tape:
        outputs = backbone(inputs, **variables)
        loss = sum(ops.sum(ops.square(value)) for value in outputs.values())
    for argument, variable in variables.items():
        gradient = _np(tape.gradient(loss, variable))
        counts = getattr(backbone, HEAD_MASKS[name][argument])
        assert gradient.shape == variable.shape
        for layer, count in enumerate(counts):
            assert np.all(gradient[layer, :count] != 0), (argument, layer)
            assert np.all(gradient[layer, count:] == 0), (argument, layer)


@pytest.mark.parametrize("name", list(BACKBONES))
def test_bad_head_mask_shape(name):
    cls, config, make_inputs = BACKBONES[name]
    backbone = cls(**config)
    for argument in HEAD_MASKS[name]:
        with pytest.raises(ValueError, match=f"`{argument}` must have shape.*\\(2, 4\\)"):
            backbone(make_inputs(), **{argument: np.ones((2, 3), "float32")})
        with pytest.raises(ValueError, match=f"`{argument}` must have shape"):
            backbone(make_inputs(), **{argument: np.ones((4,), "float32")})


# ------------------------------------------------------ config and saving


@pytest.mark.parametrize("name", list(BACKBONES))
def test_non_uniform_heads_round_trip(name, tmp_path):
    cls, config, make_inputs = BACKBONES[name]
    backbone = cls(**dict(config, num_heads=NON_UNIFORM_HEADS[name]))
    config_out = backbone.get_config()
    assert config_out["num_heads"] == NON_UNIFORM_HEADS[name]
    assert config_out["head_dim"] == 4
    clone = cls.from_config(config_out)
    assert clone.get_config() == config_out
    assert clone.count_params() == backbone.count_params()
    path = str(tmp_path / f"{name}.keras")
    backbone.save(path)
    restored = keras.models.load_model(path)
    assert restored.get_config() == config_out
    inputs = make_inputs()
    _assert_outputs_close(backbone(inputs, return_attention_scores=True),
                          restored(inputs, return_attention_scores=True), atol=1e-6)


def test_head_dim_sets_the_head_size_and_is_stored_resolved():
    backbone = EncoderBackbone(**dict(ENCODER, num_heads=2, head_dim=12))
    assert backbone.get_config()["head_dim"] == 12
    attention = backbone.blocks[0].self_attention
    assert attention.query_dense.kernel.shape == (16, 2, 12)
    assert attention.output_dense.kernel.shape == (2, 12, 16)
    assert backbone(_encoder_inputs())["sequence_output"].shape == (B, T, 16)
    assert DecoderBackbone(**DECODER).get_config()["head_dim"] == 4
    # The default comes from the largest count.
    assert DecoderBackbone(**dict(DECODER, num_heads=[2, 8])).head_dim == 2


@pytest.mark.parametrize(
    "cls, config, match",
    [
        (DecoderBackbone, dict(DECODER, num_heads=[4]), "`num_heads`.*list of 2"),
        (DecoderBackbone, dict(DECODER, num_heads=[4, 0]), "`num_heads\\[1\\]`"),
        (DecoderBackbone, dict(DECODER, num_heads=3), "`hidden_dim` must be divisible"),
        (DecoderBackbone, dict(DECODER, head_dim=0), "`head_dim`"),
        (DecoderBackbone, dict(DECODER, num_heads=[4, 2], num_key_value_heads=4),
         "`num_key_value_heads` must divide.*num_heads=2 in layer 1"),
        (EncoderBackbone, dict(ENCODER, num_heads=[4, 2, 2]), "`num_heads`"),
        (Seq2SeqBackbone, dict(SEQ2SEQ, num_heads={"encoder": [4, 4], "decoder": [4, 4]}),
         "`num_heads` as a dict must have exactly the keys"),
        (Seq2SeqBackbone,
         dict(SEQ2SEQ, num_heads={"encoder": [4, 4], "decoder": [4], "cross_attention": 4}),
         "`num_heads\\['decoder'\\]`"),
    ],
)
def test_bad_head_configs(cls, config, match):
    with pytest.raises(ValueError, match=match):
        cls(**config)


def test_grouped_query_heads_with_per_layer_counts():
    backbone = DecoderBackbone(**dict(DECODER, num_heads=[4, 2], num_key_value_heads=2))
    assert backbone.blocks[1].self_attention.num_key_value_heads == 2
    ids = _ids(B, T)
    full = _np(backbone(ids)["sequence_output"])
    hidden, _ = backbone.call_with_cache(ids, backbone.empty_caches(B), 0)
    np.testing.assert_allclose(_np(hidden), full, atol=1e-5)


# ------------------------------------------ fewer heads == masked heads


KEPT_HEADS = [0, 2]  # heads kept in the pruned layer


def _copy_with_kept_heads(full, pruned, pruned_attention):
    """Gives `pruned` the weights of `full`, the attention layers named in
    `pruned_attention` keeping only `KEPT_HEADS`."""
    assert len(full.weights) == len(pruned.weights)
    for source, target in zip(full.weights, pruned.weights):
        assert source.path.split("/", 1)[1] == target.path.split("/", 1)[1]
        value = _np(source)
        if any(f"/{layer}/" in source.path for layer in pruned_attention):
            if source.path.endswith("attention_output/kernel"):
                value = value[KEPT_HEADS]
            elif source.path.endswith("kernel"):  # query/key/value (dim, heads, size)
                value = value[:, KEPT_HEADS]
            elif not source.path.endswith("attention_output/bias"):  # (heads, size)
                value = value[KEPT_HEADS]
        target.assign(value)


def _masked(counts_full, layer):
    mask = np.ones((len(counts_full), max(counts_full)), "float32")
    mask[layer] = 0.0
    mask[layer, KEPT_HEADS] = 1.0
    return mask


@pytest.mark.parametrize(
    "cls, config, inputs, pruned_heads, pruned_attention, head_masks",
    [
        (DecoderBackbone, DECODER, _decoder_inputs, [4, 2], ["decoder_block_1/self_attention"],
         {"head_mask": _masked([4, 4], 1)}),
        (EncoderBackbone, ENCODER, _encoder_inputs, [2, 4], ["encoder_block_0/self_attention"],
         {"head_mask": _masked([4, 4], 0)}),
        (Seq2SeqBackbone, SEQ2SEQ, _seq2seq_inputs,
         {"encoder": [4, 2], "decoder": [2, 4], "cross_attention": [4, 2]},
         ["encoder_block_1/self_attention", "decoder_block_0/self_attention",
          "decoder_block_1/cross_attention"],
         {"encoder_head_mask": _masked([4, 4], 1), "decoder_head_mask": _masked([4, 4], 0),
          "cross_attention_head_mask": _masked([4, 4], 1)}),
    ],
    ids=["decoder", "encoder", "seq2seq"],
)
def test_fewer_heads_equal_the_full_model_with_those_heads_masked(
    cls, config, inputs, pruned_heads, pruned_attention, head_masks
):
    full = cls(**config)
    pruned = cls(**dict(config, num_heads=pruned_heads, head_dim=4))
    _copy_with_kept_heads(full, pruned, pruned_attention)
    data = inputs()
    masked = full(data, **head_masks)
    _assert_outputs_close(masked, pruned(data), atol=1e-5)
    assert not all(np.allclose(_np(masked[k]), _np(full(data)[k])) for k in masked)


# ----------------------------------------------------- output projection


def test_untied_decoder_projects_with_its_own_matrix_and_keeps_the_parameter_count():
    tied = DecoderBackbone(**DECODER)
    untied = DecoderBackbone(**dict(DECODER, tie_embeddings=False))
    assert isinstance(untied.token_embedding, keras.layers.ReversibleEmbedding)
    assert untied.count_params() == tied.count_params() + 40 * 16
    hidden = untied(_ids(B, T))["sequence_output"]
    logits = _np(untied.token_embedding(hidden, reverse=True))
    reverse = _np(untied.token_embedding.reverse_embeddings)
    np.testing.assert_allclose(logits, _np(hidden) @ reverse, rtol=1e-5, atol=1e-5)
    tied_hidden = tied(_ids(B, T))["sequence_output"]
    np.testing.assert_allclose(
        _np(tied.token_embedding(tied_hidden, reverse=True)),
        _np(tied_hidden) @ _np(tied.token_embedding.embeddings).T, rtol=1e-5, atol=1e-5,
    )


@pytest.mark.parametrize("share, tie, extra", [(True, True, 0), (True, False, 1),
                                               (False, True, 1), (False, False, 2)])
def test_seq2seq_embedding_sharing_and_tying(share, tie, extra):
    backbone = Seq2SeqBackbone(**dict(SEQ2SEQ, share_embeddings=share, tie_embeddings=tie))
    assert (backbone.source_token_embedding is backbone.target_token_embedding) == share
    assert backbone.target_token_embedding.tie_weights == tie
    base = Seq2SeqBackbone(**SEQ2SEQ).count_params()
    # Each extra matrix (separate target table, untied projection) is 40 x 16;
    # shared tables keep max(source, target) = 10 position rows (sinusoidal: none).
    assert backbone.count_params() == base + extra * 40 * 16


def test_tasks_project_hidden_states_with_the_backbone_token_embedding():
    from keras_attn.models import Generator, Translator
    from keras_attn.tokenizers import ByteTokenizer

    tokenizer = ByteTokenizer()
    vocabulary = tokenizer.vocabulary_size
    generator = Generator(
        DecoderBackbone(**dict(DECODER, vocabulary_size=vocabulary, tie_embeddings=False)),
        tokenizer,
    )
    ids = _ids(B, T)
    hidden = _np(generator.backbone(ids)["sequence_output"])
    reverse = _np(generator.backbone.token_embedding.reverse_embeddings)
    logits = generator(ids)
    assert keras.backend.standardize_dtype(logits.dtype) == "float32"
    np.testing.assert_allclose(_np(logits), hidden @ reverse, rtol=1e-4, atol=1e-5)

    translator = Translator(
        Seq2SeqBackbone(**dict(SEQ2SEQ, source_vocabulary_size=vocabulary,
                               target_vocabulary_size=vocabulary)),
        tokenizer,
    )
    inputs = _seq2seq_inputs()
    hidden = _np(translator.backbone(inputs)["decoder_sequence_output"])
    matrix = _np(translator.backbone.target_token_embedding.embeddings)
    np.testing.assert_allclose(_np(translator(inputs)), hidden @ matrix.T, rtol=1e-4, atol=1e-5)


def test_tasks_trace_with_an_unknown_time_axis():
    """Length-bucketed batches reach the model traced with a `None` time axis
    (one trace for all buckets): every task must follow the run-time length
    and give the eager outputs."""
    import tensorflow as tf

    from keras_attn.models import Classifier, Generator, Translator

    ids = np.random.default_rng(0).integers(7, 200, (3, 9)).astype("int32")
    ids[1, 6:] = 0
    cases = [
        (Generator.from_preset("tiny", sequence_length=32, num_layers=1,
                               position_encoding="rotary"), ids),
        (Classifier.from_preset("tiny", num_classes=2, num_layers=1),
         {"token_ids": ids, "segment_ids": np.zeros_like(ids), "padding_mask": ids > 0}),
        (Translator.from_preset("tiny", source_length=16, target_length=12,
                                num_encoder_layers=1, num_decoder_layers=1),
         {"source_ids": ids, "target_ids": ids[:, :5]}),
    ]
    for model, inputs in cases:
        spec = tf.nest.map_structure(
            lambda x: tf.TensorSpec([x.shape[0], None], tf.as_dtype(x.dtype)), inputs
        )
        traced = tf.function(model.__call__, input_signature=[spec], autograph=False)
        np.testing.assert_allclose(
            np.asarray(traced(inputs)), np.asarray(model(inputs)), atol=1e-5
        )


@pytest.mark.parametrize("task", ["translator", "classifier", "generator"])
def test_a_dtype_given_to_from_preset_reaches_the_backbone(task, tmp_path):
    from keras_attn.models import Classifier, Generator, Translator

    cls = {"translator": Translator, "classifier": Classifier, "generator": Generator}[task]
    extra = {"num_classes": 2} if task == "classifier" else {}
    model = cls.from_preset("tiny", dtype="mixed_bfloat16", **extra)
    assert model.backbone.dtype_policy.name == "mixed_bfloat16"
    assert model.backbone.compute_dtype == "bfloat16"
    assert model.backbone.variable_dtype == "float32"
    model.save_to_preset(tmp_path / "preset")
    assert cls.from_preset(tmp_path / "preset").backbone.compute_dtype == "bfloat16"
