"""Gradients of an explained output with respect to attention multipliers and
token embeddings, the common ground of relevance and attributions.

Gradients need the backend's autodiff: this module uses TensorFlow's
`GradientTape` (keras-attn's backend); `keras.ops` has no gradient op.
"""

import numpy as np
import tensorflow as tf

# Backbone input of each token sequence -> (embeddings input, padding-mask
# input, backbone attribute of its token embedding layer).
SEQUENCE_INPUTS = {
    "tokens": ("token_ids", "token_embeddings", "padding_mask", "token_embedding"),
    "source": ("source_ids", "source_token_embeddings", "source_padding_mask",
               "source_token_embedding"),
    "target": ("target_ids", "target_token_embeddings", "target_padding_mask",
               "target_token_embedding"),
}


def sequence_length(batch, sequence):
    """The (trimmed) width of a sequence's inputs in `batch`."""
    return np.asarray(batch.inputs[SEQUENCE_INPUTS[sequence][0]]).shape[1]


def multiplier_shapes(model, batch, rows=None):
    """Kind -> the shape `(layers, rows, max_heads, queries, keys)` of its
    attention multiplier for `batch` (or for `rows` rows of it)."""
    shapes = {}
    for name, kind in model.attention_kinds.items():
        if kind.multiplier_argument is None:
            raise ValueError(
                f"This {model.task_name}'s backbone cannot scale its {name} attention "
                "weights (its `attention_kinds` name no multiplier argument)"
            )
        counts = getattr(model.backbone, kind.head_counts)
        shapes[name] = (
            len(counts),
            batch.batch_size if rows is None else rows,
            max(counts),
            sequence_length(batch, kind.queries),
            sequence_length(batch, kind.keys),
        )
    return shapes


def repeat_inputs(inputs, times):
    """Backbone inputs with the batch repeated `times` (row `r` of the
    result is row `r % batch` of `inputs`)."""
    return {name: np.concatenate([np.asarray(value)] * times) for name, value in inputs.items()}


def multiplier_gradients(model, inputs, selector, multipliers):
    """The explained scores and their gradients with respect to the
    attention multipliers.

    Args:
        model: a task.
        inputs: backbone inputs (ids or token embeddings).
        selector: an `OutputSelector` for the rows of `inputs`.
        multipliers: kind -> float `(layers, batch, heads, queries, keys)`.

    Returns:
        `(scores (batch,), gradients kind -> (layers, batch, heads, queries,
        keys), attention scores kind -> same)` as NumPy arrays; the
        attention scores are the weights before the multipliers.
    """
    kinds = model.attention_kinds
    tensors = {name: tf.convert_to_tensor(value, tf.float32) for name, value in multipliers.items()}
    with tf.GradientTape() as tape:
        for tensor in tensors.values():
            tape.watch(tensor)
        arguments = {kinds[name].multiplier_argument: tensor for name, tensor in tensors.items()}
        outputs = model.backbone(inputs, return_attention_scores=True, **arguments)
        scores = selector(model.logits_from_backbone(outputs, inputs))
        # Each row's score depends on its own row only: one backward pass
        # of the sum gives every row's gradient.
        total = tf.reduce_sum(scores)
    gradients = tape.gradient(total, tensors)
    return (
        scores.numpy(),
        {name: gradient.numpy() for name, gradient in gradients.items()},
        {name: np.asarray(outputs[kinds[name].scores_output]) for name in tensors},
    )


def embedding_gradients(model, inputs, selector, embeddings):
    """The explained scores and their gradients with respect to token
    embeddings.

    Args:
        inputs: the other backbone inputs (padding masks, segment ids).
        embeddings: embeddings input name -> float `(batch, time, hidden)`.

    Returns:
        `(scores (batch,), gradients name -> (batch, time, hidden))` as NumPy.
    """
    tensors = {name: tf.convert_to_tensor(value, tf.float32) for name, value in embeddings.items()}
    with tf.GradientTape() as tape:
        for tensor in tensors.values():
            tape.watch(tensor)
        full = dict(inputs, **tensors)
        scores = selector(model.logits_from_backbone(model.backbone(full), full))
        total = tf.reduce_sum(scores)
    gradients = tape.gradient(total, tensors)
    return scores.numpy(), {name: gradient.numpy() for name, gradient in gradients.items()}


def quadrature(method, steps):
    """Nodes and weights of a rule for integrals over `[0, 1]`.

    `"gauss_legendre"`: `steps` Gauss-Legendre nodes (exact for polynomials
    of degree `2 * steps - 1`); `"trapezoid"`: `steps` intervals,
    `steps + 1` nodes including both ends.
    """
    if method == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1.0) / 2.0, weights / 2.0
    nodes = np.linspace(0.0, 1.0, steps + 1)
    weights = np.full(steps + 1, 1.0 / steps)
    weights[[0, -1]] /= 2.0
    return nodes, weights


QUADRATURES = ("gauss_legendre", "trapezoid")
