"""Attention attribution (Hao, Dong, Wei & Xu 2021, "Self-Attention
Attribution"): integrated gradients over the attention weights, one layer
at a time."""

import numpy as np

from keras_attn.interpret.attention_maps import maps_from_outputs
from keras_attn.interpret.gradients import (
    QUADRATURES,
    multiplier_gradients,
    multiplier_shapes,
    quadrature,
    repeat_inputs,
)
from keras_attn.interpret.targets import select_outputs
from keras_attn.utils.arguments import check_choice, check_positive_int


def attention_attribution(
    model, texts, target=None, targets=None, steps=20, method="gauss_legendre",
    batch_size=32, score="logit",
):
    """`Attr(A_l) = A_l ⊙ ∫₀¹ ∂F(α A_l)/∂A_l dα` for every layer `l` of every
    attention kind, the other layers keeping their weights.

    Layer `l`'s weights are scaled through the backbone's attention
    multiplier (`α` on layer `l`, ones elsewhere); since `∂F/∂m = A ⊙ ∂F/∂A`
    at the scaled weights, the attribution is the integral of the
    multiplier's gradient over `α`. Each (kind, layer, node) is one row of a
    backbone call: `layers × steps` rows per text and kind.

    Args:
        model: a `Generator`, `Classifier`, `MaskedLanguageModel` or
            `Translator` (encoder, decoder and cross-attention).
        texts: a list of strings.
        target: the output explained (see `select_outputs`).
        targets: the task's second texts (see `Task.texts_to_inputs`).
        steps: quadrature nodes (trapezoid: intervals). Hao et al. use a
            20-step Riemann sum.
        method: `"gauss_legendre"` or `"trapezoid"`.
        batch_size: rows per backbone call.
        score: `"logit"` or `"log_prob"`.

    Returns:
        One `AttentionMaps` per text whose `.attention[kind]` holds the
        attributions `(layers, heads, queries, keys)` (padding removed; not
        probabilities: they can be negative and rows need not sum to one).

    Example:
    >>> from keras_attn.models import Classifier
    >>> model = Classifier.from_preset("tiny", num_classes=2, num_layers=2)
    >>> (maps,) = attention_attribution(model, ["hi"], target=1, steps=4)
    >>> maps.attention["encoder"].shape  # layers, heads, [CLS] h i [SEP] twice
    (2, 4, 4, 4)
    """
    steps = check_positive_int("steps", steps)
    method = check_choice("method", method, QUADRATURES)
    batch_size = check_positive_int("batch_size", batch_size)
    batch = model.texts_to_inputs(texts, targets)
    rows = batch.batch_size
    selector = select_outputs(model, batch, target, score=score)
    shapes = multiplier_shapes(model, batch, rows=1)
    nodes, weights = quadrature(method, steps)
    # Every scaled row: (kind, layer, node index).
    units = [
        (kind, layer, index)
        for kind, shape in shapes.items()
        for layer in range(shape[0])
        for index in range(len(nodes))
    ]
    attributions = {
        kind: np.zeros((shape[0], rows) + shape[2:], "float64") for kind, shape in shapes.items()
    }
    per_call = max(1, batch_size // rows)
    for start in range(0, len(units), per_call):
        chunk = units[start : start + per_call]
        multipliers = {
            kind: np.ones((shape[0], rows * len(chunk)) + shape[2:], "float32")
            for kind, shape in shapes.items()
        }
        for offset, (kind, layer, index) in enumerate(chunk):
            multipliers[kind][layer, offset * rows : (offset + 1) * rows] = nodes[index]
        _, gradients, _ = multiplier_gradients(
            model, repeat_inputs(batch.inputs, len(chunk)), selector, multipliers
        )
        for offset, (kind, layer, index) in enumerate(chunk):
            attributions[kind][layer] += (
                weights[index] * gradients[kind][layer, offset * rows : (offset + 1) * rows]
            )
    outputs = {
        model.attention_kinds[kind].scores_output: value.astype("float32")
        for kind, value in attributions.items()
    }
    return maps_from_outputs(model, batch, outputs)
