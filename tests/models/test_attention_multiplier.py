"""Backbones thread stacked attention multipliers `(layers, batch, heads,
queries, keys)` like head masks, and can return each block's input."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_attn.models import Classifier, Generator, Translator


def _np(x):
    return ops.convert_to_numpy(x)


def _models():
    return {
        "generator": Generator.from_preset("tiny", sequence_length=16, num_layers=2),
        "classifier": Classifier.from_preset("tiny", num_classes=2, num_layers=2),
        "translator": Translator.from_preset(
            "tiny", source_length=16, target_length=8, num_encoder_layers=2,
            num_decoder_layers=2,
            num_heads={"encoder": [2, 4], "decoder": [4, 4], "cross_attention": [4, 2]},
        ),
    }


@pytest.fixture(scope="module")
def models():
    return _models()


def _inputs(model):
    targets = ["xy"] if model.task_name == "translator" else None
    return model.texts_to_inputs(["abc d"], targets=targets)


@pytest.mark.parametrize("name", ["generator", "classifier", "translator"])
def test_ones_change_nothing_and_zeros_equal_a_zero_head_mask(models, name):
    model = models[name]
    batch = _inputs(model)
    plain = model.backbone(batch.inputs)
    scores = model.backbone(batch.inputs, return_attention_scores=True)
    for kind in model.attention_kinds.values():
        shape = scores[kind.scores_output].shape  # (layers, batch, heads, q, k)
        ones = model.backbone(
            batch.inputs, **{kind.multiplier_argument: np.ones(shape, "float32")}
        )
        for output, value in plain.items():
            np.testing.assert_allclose(_np(ones[output]), _np(value), atol=1e-5)
        # Zero weights for head 1 of the last layer == head mask 0 there.
        multiplier = np.ones((shape[0], 1, shape[2], 1, 1), "float32")
        multiplier[-1, 0, 1] = 0.0
        head_mask = np.ones((shape[0], shape[2]), "float32")
        head_mask[-1, 1] = 0.0
        removed = model.backbone(batch.inputs, **{kind.multiplier_argument: multiplier})
        masked = model.backbone(batch.inputs, **{kind.head_mask_argument: head_mask})
        for output in plain:
            np.testing.assert_allclose(_np(removed[output]), _np(masked[output]), atol=1e-5)
        last = list(plain)[-1] if name != "classifier" else "sequence_output"
        assert np.abs(_np(removed[last]) - _np(plain[last])).max() > 1e-4


def test_wrong_shape_names_the_argument(models):
    model = models["translator"]
    batch = _inputs(model)
    with pytest.raises(ValueError, match="cross_attention_multiplier"):
        model.backbone(batch.inputs, cross_attention_multiplier=np.ones((2, 1, 3, 1, 1)))
    with pytest.raises(ValueError, match="attention_multiplier"):
        models["generator"].backbone(
            _inputs(models["generator"]).inputs, attention_multiplier=np.ones((1, 1, 4, 1, 1))
        )


def test_block_inputs_are_the_residual_stream_entering_each_block(models):
    model = models["generator"]
    backbone = model.backbone
    batch = _inputs(model)
    outputs = backbone(batch.inputs, return_block_inputs=True)
    inputs = _np(outputs["block_inputs"])
    assert inputs.shape[:2] == (2, 1)
    # Block 0's input is the embedding (positions added); block 1's input is
    # block 0's output.
    ids = batch.inputs["token_ids"]
    embedded = backbone.embedding.add_positions(backbone.token_embedding(ids))
    np.testing.assert_allclose(inputs[0], _np(embedded), atol=1e-5)
    after_first = backbone.blocks[0](inputs[0], decoder_padding_mask=ids != 0)
    np.testing.assert_allclose(inputs[1], _np(after_first), atol=1e-5)

    translator = models["translator"]
    outputs = translator.backbone(_inputs(translator).inputs, return_block_inputs=True)
    assert outputs["encoder_block_inputs"].shape[0] == 2
    assert outputs["decoder_block_inputs"].shape[0] == 2


def test_keras_file_round_trip_keeps_the_multiplier_call(tmp_path, models):
    backbone = models["generator"].backbone
    path = str(tmp_path / "backbone.keras")
    backbone.save(path)
    restored = keras.saving.load_model(path)
    assert restored.get_config() == backbone.get_config()
    ids = _inputs(models["generator"]).inputs["token_ids"]
    multiplier = np.random.default_rng(0).random((2, 1, 4, 1, ids.shape[1])).astype("float32")
    np.testing.assert_allclose(
        _np(restored(ids, attention_multiplier=multiplier)["sequence_output"]),
        _np(backbone(ids, attention_multiplier=multiplier)["sequence_output"]),
        atol=1e-6,
    )
