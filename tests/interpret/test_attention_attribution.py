"""Attention attribution (Hao et al. 2021): integrated gradients over one
layer's attention weights at a time."""

import numpy as np

from keras_attn.interpret import attention_attribution, select_outputs
from keras_attn.models import Classifier, Generator, Translator


def _score_with_head_mask(model, batch, selector, argument, mask):
    outputs = model.backbone(batch.inputs, **{argument: mask})
    return float(np.asarray(selector(model.logits_from_backbone(outputs, batch.inputs)))[0])


def _check_layer_completeness(model, texts, kind_names, targets=None):
    # Along m = α·1 on layer l, dF/dα = Σ_hij ∂F/∂m_hij, so the attributions
    # of layer l sum to F(weights) - F(layer l's weights all zero), and zero
    # weights on every head of a layer is exactly a head mask of zeros there
    # (tested in tests/models/test_attention_multiplier.py).
    (maps,) = attention_attribution(model, texts, targets=targets, steps=20)
    batch = model.texts_to_inputs(texts, targets)
    selector = select_outputs(model, batch)
    full = selector.explained[0].score
    for name in kind_names:
        kind = model.attention_kinds[name]
        counts = getattr(model.backbone, kind.head_counts)
        for layer in range(len(counts)):
            mask = np.ones((len(counts), max(counts)), "float32")
            mask[layer] = 0.0
            removed = _score_with_head_mask(model, batch, selector, kind.head_mask_argument, mask)
            total = maps.attention[name][layer].sum()
            assert abs(full - removed) > 1e-4
            np.testing.assert_allclose(total, full - removed, rtol=0.01, atol=1e-5)
    return maps


def test_each_layer_sums_to_the_score_it_carries_generator():
    model = Generator.from_preset("tiny", sequence_length=16, num_layers=2)
    maps = _check_layer_completeness(model, ["abcd"], ["decoder"])
    assert maps.attention["decoder"].shape == (2, 4, 5, 5)
    np.testing.assert_array_equal(np.triu(maps.attention["decoder"][0, 0], 1), 0)


def test_each_layer_sums_to_the_score_it_carries_translator():
    model = Translator.from_preset(
        "tiny", source_length=16, target_length=8, num_encoder_layers=1, num_decoder_layers=2,
        activation="gelu",
    )
    maps = _check_layer_completeness(
        model, ["abc"], ["encoder", "decoder", "cross"], targets=["xy"]
    )
    assert maps.attention["cross"].shape == (2, 4, 3, 4)


def test_classifier_shapes_and_batches():
    model = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    one, two = attention_attribution(model, ["hi", "hello"], target=0, steps=3, batch_size=2)
    assert one.attention["encoder"].shape == (1, 4, 4, 4)
    assert two.attention["encoder"].shape == (1, 4, 7, 7)
    # Batching the rows differently changes nothing.
    (alone,) = attention_attribution(model, ["hi"], target=0, steps=3, batch_size=64)
    np.testing.assert_allclose(alone.attention["encoder"], one.attention["encoder"], atol=1e-6)
