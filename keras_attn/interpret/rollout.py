"""Attention rollout (Abnar & Zuidema, 2020): how much each input token feeds
each output position once attention is followed through every layer."""

import numpy as np

from keras_attn.interpret.checked_maps import (
    SELF_ATTENTION_KINDS,
    as_maps_list,
    checked_attention,
    choose_kind,
    reduce_heads,
)
from keras_attn.utils.arguments import check_number_in_range


def residual_adjusted_attention(maps, kind=None, residual=0.5, head_reduction="mean"):
    """Each layer's attention with its heads reduced and the residual
    connection added: `Â = (1 - residual)·A + residual·I`, rows re-normalised.

    A token's output of a block is its input plus what attention brings, so
    raw weights understate how much each position keeps of itself; Abnar &
    Zuidema model that with an identity share (`residual=0.5`). These are the
    per-layer matrices that rollout multiplies and flow uses as capacities.

    Args:
        maps: an `AttentionMaps` (or a list of them, for a list of results).
        kind: a self-attention kind, `"encoder"` or `"decoder"`; default the
            only one the maps hold (a translator's maps hold both).
        residual: the identity's share in [0, 1]; 0 keeps raw attention.
        head_reduction: `"mean"` (the paper's), `"max"` or `"min"` over each
            layer's real heads (`maps.head_counts`).

    Returns:
        float32 `(layers, tokens, tokens)`, rows summing to one.

    Example:
    >>> from keras_attn.models import Classifier
    >>> from keras_attn.interpret import attention_maps
    >>> classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=2)
    >>> maps = attention_maps(classifier, ["hi"])[0]
    >>> layers = residual_adjusted_attention(maps)
    >>> layers.shape, layers.sum(-1).round(4).tolist()
    ((2, 4, 4), [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    """
    maps_list, was_list = as_maps_list(maps)
    residual = check_number_in_range("residual", residual, 0, 1)
    results = []
    for item in maps_list:
        kind_used = choose_kind(item, kind, "residual_adjusted_attention", SELF_ATTENTION_KINDS)
        results.append(_adjusted_layers(item, kind_used, residual, head_reduction))
    return [r.astype("float32") for r in results] if was_list else results[0].astype("float32")


def attention_rollout(maps, kind=None, residual=0.5, head_reduction="mean"):
    """Attention rollout: the product of the residual-adjusted attention of
    every layer, from the first layer up.

    `rollout = Â_L · … · Â_2 · Â_1`, so `rollout[q, k]` is the share of input
    token `k` in output position `q` if every layer mixed its inputs linearly
    by its (head-averaged) attention plus the residual connection.

    Cross-attention has no rollout of its own: its rows mix *encoder outputs*,
    which are already mixtures of source tokens, into the decoder's residual
    stream, so a cross-attention map alone is one factor, not a path from the
    inputs. `kind="cross"` follows the standard extension instead: the
    decoder's rollout runs over target and source tokens together, each
    layer's self-attention mixing target positions and its cross-attention
    adding `(1 - residual)·A_cross · R_encoder` (the encoder's rollout) to the
    `residual` share each position keeps. The result is that joint rollout's
    `(target, source)` block; its rows sum to the source's share (< 1), the
    rest lies on target tokens.

    Args:
        maps: an `AttentionMaps`, or a list of them (returns a list).
        kind: `"encoder"` or `"decoder"` (self-attention), or `"cross"` for a
            translator; default the only self-attention kind of a one-stack
            model (a translator's maps need it named).
        residual: the identity's share `Â = (1 - residual)·A + residual·I`,
            in [0, 1] (Abnar & Zuidema use 0.5; 0 multiplies raw attention).
        head_reduction: `"mean"` (the paper's), `"max"` or `"min"` over each
            layer's real heads (`maps.head_counts`); rows are re-normalised
            after the residual is added.

    Returns:
        float32 `(queries, keys)`: `(tokens, tokens)` for self-attention,
        rows summing to one; `(target, source)` for `"cross"`.

    Example:
    >>> from keras_attn.models import Generator
    >>> from keras_attn.interpret import attention_maps
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=2)
    >>> maps = attention_maps(generator, ["abc"])[0]
    >>> rollout = attention_rollout(maps)
    >>> rollout.shape, rollout.sum(-1).round(4).tolist()
    ((4, 4), [1.0, 1.0, 1.0, 1.0])
    >>> rollout[0].tolist()  # causal: the first position only sees itself
    [1.0, 0.0, 0.0, 0.0]
    """
    maps_list, was_list = as_maps_list(maps)
    residual = check_number_in_range("residual", residual, 0, 1)
    results = []
    for item in maps_list:
        kind_used = choose_kind(
            item, kind, "attention_rollout", SELF_ATTENTION_KINDS + ("cross",)
        )
        if kind_used == "cross":
            results.append(_cross_rollout(item, residual, head_reduction))
        else:
            results.append(_product(_adjusted_layers(item, kind_used, residual, head_reduction)))
    results = [r.astype("float32") for r in results]
    return results if was_list else results[0]


def _adjusted_layers(maps, kind, residual, head_reduction):
    attention = checked_attention(maps, kind)
    layers = reduce_heads(attention, maps.head_counts[kind], head_reduction)
    identity = np.eye(layers.shape[-1])
    adjusted = (1 - residual) * layers + residual * identity
    return _normalized_rows(adjusted)


def _normalized_rows(matrices):
    # A mean of distributions is one already; a max or min over heads is not.
    # A row can only sum to 0 with residual=0 and a "min" that leaves nothing;
    # it stays 0 rather than dividing by zero.
    sums = matrices.sum(-1, keepdims=True)
    return np.divide(matrices, sums, out=np.zeros_like(matrices), where=sums > 0)


def _product(layers):
    rollout = np.eye(layers.shape[-1])
    for layer in layers:  # first layer first: rollout_l = Â_l · rollout_(l-1)
        rollout = layer @ rollout
    return rollout


def _cross_rollout(maps, residual, head_reduction):
    missing = [k for k in ("encoder", "decoder", "cross") if k not in maps.kinds]
    if missing:
        raise ValueError(
            "`kind='cross'` rolls a translator's decoder out over its encoder and needs "
            f"encoder, decoder and cross attention; these maps lack {missing}."
        )
    encoder = _product(_adjusted_layers(maps, "encoder", residual, head_reduction))
    decoder = _adjusted_layers(maps, "decoder", residual, head_reduction)
    cross_attention = checked_attention(maps, "cross")
    cross = _normalized_rows(reduce_heads(cross_attention, maps.head_counts["cross"],
                                          head_reduction))
    if len(cross) != len(decoder):
        raise ValueError(
            "`maps` must hold one cross-attention layer per decoder layer. Received: "
            f"{len(decoder)} decoder and {len(cross)} cross-attention layers"
        )
    targets = decoder.shape[-1]
    # Each target position as a mixture over (target tokens, source tokens).
    on_targets, on_sources = np.eye(targets), np.zeros((targets, encoder.shape[0]))
    for self_layer, cross_layer in zip(decoder, cross):
        on_targets, on_sources = self_layer @ on_targets, self_layer @ on_sources
        on_targets = residual * on_targets
        on_sources = residual * on_sources + (1 - residual) * cross_layer @ encoder
    return on_sources
