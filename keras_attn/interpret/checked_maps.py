"""Reading `AttentionMaps` safely, for every method, plot and view that
does: which attention kind to read, that the maps hold what they claim, and
choosing one layer's and head's matrix (the plots, the viewer, `explain`).

A method receives maps built by `attention_maps`, but also maps a user built,
sliced or saved; a wrong shape there would otherwise come out as a plausible
looking but meaningless array, so every method checks its input here first.
"""

import numpy as np

from keras_attn.interpret.attention_maps import AttentionMaps
from keras_attn.utils.arguments import ArgumentError, check_choice

SELF_ATTENTION_KINDS = ("encoder", "decoder")

# float32 softmax rows sum to one within a few ulps per key; a row this far
# off is not a distribution (e.g. logits, or a head index shifted by one).
ROW_SUM_TOLERANCE = 1e-3


def as_maps_list(maps):
    """`(list of AttentionMaps, whether a list was given)`; raises on anything else."""
    if isinstance(maps, AttentionMaps):
        return [maps], False
    if isinstance(maps, (list, tuple)) and maps and all(
        isinstance(item, AttentionMaps) for item in maps
    ):
        return list(maps), True
    raise ArgumentError.of(
        "maps", "an AttentionMaps or a non-empty list of them (from `attention_maps`)", maps,
        received=f"maps of type {type(maps).__name__}",
    )


def choose_kind(maps, kind, method, kinds=None):
    """The attention kind `method` reads from `maps`.

    Args:
        maps: an `AttentionMaps`.
        kind: the kind asked for, or `None` for the only one `method` can read.
        method: the method's name, for messages (e.g. `"attention_rollout"`).
        kinds: the kinds `method` accepts (default: any kind).
    """
    readable = tuple(k for k in maps.kinds if kinds is None or k in kinds)
    if kind is None:
        if len(readable) == 1:
            return readable[0]
        raise ArgumentError.of(
            "kind", f"one of {', '.join(map(repr, readable))} for these maps: {method} has "
            "no default when the model has more than one attention stack", kind,
        )
    if kind in maps.kinds and kind not in readable:
        raise ArgumentError.of(
            "kind", f"one of {', '.join(map(repr, readable))}: {method} reads self-attention "
            f"only, and {kind!r} attention mixes two different token sequences", kind,
        )
    return check_choice("kind", kind, readable)


def checked_attention(maps, kind):
    """`maps.attention[kind]` as float64 after checking it against the maps'
    tokens and head counts: `(layers, heads, queries, keys)`."""
    attention = np.asarray(maps.attention[kind], dtype="float64")
    queries, keys = len(maps.query_tokens(kind)), len(maps.key_tokens(kind))
    head_counts = list(maps.head_counts[kind])
    name = f"maps.attention[{kind!r}]"
    if attention.ndim != 4 or attention.shape[2:] != (queries, keys):
        raise ArgumentError.of(
            name, f"shape (layers, heads, {queries}, {keys}): one row per query token and one "
            f"column per key token ({queries} and {keys} tokens)", attention,
            received=f"{name} with shape {attention.shape}", verb="have",
        )
    layers, heads = attention.shape[:2]
    if len(head_counts) != layers or not all(0 < count <= heads for count in head_counts):
        raise ArgumentError.of(
            f"maps.head_counts[{kind!r}]",
            f"one count in [1, {heads}] per layer ({layers} layers, as {name} has)",
            head_counts,
        )
    for layer, count in enumerate(head_counts):
        real = attention[layer, :count]
        row_sums = real.sum(-1)
        if not np.all(np.isfinite(real)) or np.any(real < 0) or np.any(
            np.abs(row_sums - 1) > ROW_SUM_TOLERANCE
        ):
            worst = float(np.max(np.abs(row_sums - 1))) if np.all(np.isfinite(real)) else "nan"
            raise ArgumentError.of(
                name, "non-negative rows that sum to one in every real head (attention "
                "probabilities, not scores)", attention,
                received=f"layer {layer} with rows off one by up to {worst}", verb="have",
            )
    return attention


def reduce_heads(attention, head_counts, head_reduction="mean"):
    """One `(queries, keys)` map per layer from its real heads only.

    A layer narrower than the widest has all-zero rows in the heads it lacks;
    those must not enter a mean or a minimum.
    """
    check_choice("head_reduction", head_reduction, ("mean", "max", "min"))
    reduce = {"mean": np.mean, "max": np.max, "min": np.min}[head_reduction]
    return np.stack(
        [reduce(layer[:count], axis=0) for layer, count in zip(attention, head_counts)]
    )


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
        matrix = reduce_heads(heads[None], [maps.head_counts[kind][layer]])[0]
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
