"""Norm-based attention analysis (Kobayashi, Kuribayashi, Yokoi & Inui 2020,
"Attention is Not Only a Weight"): `‖α_ij f(x_j)‖` instead of `α_ij`."""

import dataclasses

import numpy as np
from keras import ops

from keras_attn.interpret.attention_maps import maps_from_outputs
from keras_attn.utils.arguments import check_choice

# Backbone outputs with each block's input, per attention kind; cross
# attention reads the encoder's output instead.
_BLOCK_INPUTS = {"encoder": "encoder_block_inputs", "decoder": "decoder_block_inputs"}


def _blocks(backbone, kind):
    if kind == "encoder":
        return getattr(backbone, "encoder_blocks", None) or backbone.blocks
    return getattr(backbone, "decoder_blocks", None) or backbone.blocks


def transformed_values(attention, values):
    """`f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h`: each head's value vector sent
    through its slice of the output projection (no output bias).

    Args:
        attention: a `keras_attn.layers.MultiHeadAttention`.
        values: its value input `(batch, keys, features)`.

    Returns:
        `(batch, heads, keys, output features)`.

    Example:
    >>> from keras_attn.layers import MultiHeadAttention
    >>> attention = MultiHeadAttention(num_heads=2, key_dim=4)
    >>> x = keras.random.normal((1, 3, 8))
    >>> _ = attention(x, x)  # builds the weights
    >>> transformed = transformed_values(attention, x)
    >>> transformed.shape, transformed.dtype.name
    ((1, 2, 3, 8), 'float32')
    """
    value = attention.value_dense(values)  # (B, S, K, value_dim)
    groups = attention.num_heads // attention.num_key_value_heads
    if groups > 1:
        value = ops.repeat(value, groups, axis=2)
    kernel = attention.output_dense.kernel  # (heads, value_dim, features)
    transformed = ops.einsum("bsnd,ndo->bnso", value, ops.cast(kernel, value.dtype))
    return np.asarray(ops.convert_to_numpy(transformed), "float32")


def value_norms(model, texts, targets=None, heads="each"):
    """The norm of what each key contributes to each query:
    `‖α_ij · f(x_j)‖` per layer and head (Kobayashi et al. 2020).

    `α` are the attention weights and `f(x_j)` the head's value vector of key
    `j` sent through that head's slice of the output projection, computed
    from the attention layer's weights and its value input (each block's
    input after its pre-norm, as the backbone returns them with
    `return_block_inputs=True`; for cross-attention, the encoder's output).
    A weight on a key with a small transformed value counts for little.

    Args:
        model: a `Generator`, `Classifier`, `MaskedLanguageModel` or
            `Translator`.
        texts: a list of strings.
        targets: the task's second texts (see `Task.texts_to_inputs`).
        heads: `"each"`: `‖α^h_ij f_h(x_j)‖` per head; `"sum"`: the layer's
            `‖Σ_h α^h_ij f_h(x_j)‖` (Kobayashi et al.'s heads-combined
            analysis), as one head per layer.

    Returns:
        One `AttentionMaps` per text whose `.attention[kind]` holds the norms
        `(layers, heads, queries, keys)` (or `(layers, 1, queries, keys)`);
        plots and the viewer show them as they show attention.

    Example:
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=2)
    >>> (maps,) = value_norms(generator, ["abc"])
    >>> maps.attention["decoder"].shape, bool((maps.attention["decoder"] >= 0).all())
    ((2, 4, 4, 4), True)
    """
    heads = check_choice("heads", heads, ("each", "sum"))
    batch = model.texts_to_inputs(texts, targets)
    backbone = model.backbone
    outputs = backbone(batch.inputs, return_attention_scores=True, return_block_inputs=True)
    norms = {}
    for kind_name, kind in model.attention_kinds.items():
        weights = np.asarray(outputs[kind.scores_output], "float32")  # (L, B, H, T, S)
        layers = []
        for index, block in enumerate(_blocks(backbone, kind_name)):
            if kind_name == "cross":
                attention = block.cross_attention
                values = outputs["encoder_sequence_output"]
            else:
                attention = block.self_attention
                values = outputs.get(_BLOCK_INPUTS[kind_name], outputs.get("block_inputs"))[index]
                if block.norm_first:
                    values = block.self_attention_norm(values)
            transformed = transformed_values(attention, values)  # (B, N, S, D)
            count = attention.num_heads
            alpha = weights[index, :, :count]  # (B, N, T, S)
            if heads == "each":
                layer = alpha * np.linalg.norm(transformed, axis=-1)[:, :, None, :]
                layer = np.pad(layer, [(0, 0), (0, weights.shape[2] - count), (0, 0), (0, 0)])
            else:
                summed = np.einsum("bnts,bnso->btso", alpha, transformed)
                layer = np.linalg.norm(summed, axis=-1)[:, None]
            layers.append(layer)
        norms[kind.scores_output] = np.stack(layers).astype("float32")
    maps = maps_from_outputs(model, batch, norms)
    if heads == "sum":
        maps = [
            dataclasses.replace(
                one, head_counts={kind: [1] * len(counts) for kind, counts in
                                  one.head_counts.items()}
            )
            for one in maps
        ]
    return maps
