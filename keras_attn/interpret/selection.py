"""Choosing one attention matrix out of `AttentionMaps`, and the checks that
the plots, the viewer and `explain` share: a kind the maps hold, a layer and
head in range, arrays whose shape matches their tokens."""

import numpy as np

from keras_attn.utils.arguments import ArgumentError, check_choice


def check_kind(maps, kind):
    """`kind` if `maps` holds it, else a `ValueError` listing those it holds."""
    return check_choice("kind", kind, maps.kinds)


def check_layer(maps, kind, layer):
    """The layer index (negative counts from the end) in range for `kind`."""
    layers = maps.attention[kind].shape[0]
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not (
        -layers <= layer < layers
    ):
        raise ArgumentError.of(
            "layer", f"an integer in [0, {layers}) for the {kind} attention ({layers} layers)",
            layer,
        )
    return int(layer) % layers


def check_head(maps, kind, layer, head):
    """The head index in range for `layer` of `kind`, or `None` (all heads)."""
    if head is None:
        return None
    heads = maps.head_counts[kind][layer]
    if isinstance(head, bool) or not isinstance(head, (int, np.integer)) or not (
        -heads <= head < heads
    ):
        raise ArgumentError.of(
            "head",
            f"an integer in [0, {heads}) (layer {layer} of the {kind} attention has {heads} "
            "heads) or None for their mean",
            head,
        )
    return int(head) % heads


def head_matrix(maps, kind, layer=-1, head=None):
    """One `(queries, keys)` attention matrix of `maps`.

    Args:
        maps: an `AttentionMaps`.
        kind: `"encoder"`, `"decoder"` or `"cross"` (one `maps` holds).
        layer: the layer; negative counts from the last.
        head: the head, or `None` for the mean over the layer's heads (only
            those it has: a narrower layer's padding heads are left out).

    Returns:
        `(matrix, query_tokens, key_tokens, layer, head)` with the layer and
        head made non-negative.
    """
    kind = check_kind(maps, kind)
    layer = check_layer(maps, kind, layer)
    head = check_head(maps, kind, layer, head)
    heads = maps.attention[kind][layer]
    if head is None:
        matrix = heads[: maps.head_counts[kind][layer]].mean(axis=0)
    else:
        matrix = heads[head]
    return matrix, maps.query_tokens(kind), maps.key_tokens(kind), layer, head


def check_matrix(name, matrix, query_tokens, key_tokens):
    """`matrix` as a finite float array of shape `(len(query_tokens),
    len(key_tokens))`; a `ValueError` naming `name` otherwise."""
    matrix = np.asarray(matrix, dtype="float64")
    expected = (len(query_tokens), len(key_tokens))
    if matrix.shape != expected:
        raise ArgumentError.of(
            name, f"shape {expected} (query tokens x key tokens)", matrix,
            received=f"{name} with shape {matrix.shape}", verb="have",
        )
    if not np.all(np.isfinite(matrix)):
        raise ArgumentError.of(name, "finite values", matrix,
                               received=f"{name} with NaN or infinite entries", verb="have")
    return matrix


def check_token_scores(name, scores, tokens):
    """`scores` as a finite float vector with one entry per token."""
    scores = np.asarray(scores, dtype="float64")
    if scores.shape != (len(tokens),):
        raise ArgumentError.of(
            name, f"one score per token: shape ({len(tokens)},)", scores,
            received=f"{name} with shape {scores.shape} for {len(tokens)} tokens", verb="have",
        )
    if not np.all(np.isfinite(scores)):
        raise ArgumentError.of(name, "finite values", scores,
                               received=f"{name} with NaN or infinite entries", verb="have")
    return scores
