"""Attention sinks: how much attention lands on the first position, against
what attending uniformly would put there."""

import dataclasses

import numpy as np

from keras_attn.interpret.attention_maps import attention_maps
from keras_attn.interpret.checked_maps import as_maps_list, checked_attention, choose_kind


@dataclasses.dataclass
class AttentionSinks:
    """The share of attention on the first key position, per layer and head.

    Attributes:
        kind: the attention kind measured (`"encoder"`, `"decoder"`, `"cross"`).
        share: float `(layers, heads)`, the attention on key 0 averaged over
            every real query position of every text; NaN in heads a layer
            lacks (see `AttentionMaps.head_counts`).
        layer_share: float `(layers,)`, `share` averaged over each layer's
            real heads.
        baseline: float, what uniform attention puts on key 0 averaged over
            the same queries: `1 / (i + 1)` for query `i` under a causal mask
            (it sees keys `0..i`), `1 / keys` otherwise.
        ratio: `share / baseline` `(layers, heads)`; well above 1 marks a sink.
        queries: how many query positions were averaged.

    Example:
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    >>> sinks = attention_sinks(generator, ["abcd"])  # [BOS] a b c d: 5 queries
    >>> sinks.kind, sinks.share.shape, sinks.layer_share.shape, sinks.queries
    ('decoder', (1, 4), (1,), 5)
    >>> bool(np.allclose(sinks.ratio, sinks.share / sinks.baseline))
    True
    """

    kind: str
    share: np.ndarray
    layer_share: np.ndarray
    baseline: float
    ratio: np.ndarray
    queries: int


def attention_sinks(model, texts, kind=None, targets=None):
    """The share of attention on the first position of `texts` in every
    layer and head of `model`, against the uniform baseline.

    A causal model's first position is the one key every query sees, and
    trained models often park attention there ("attention sinks"); under a
    causal mask a query at position `i` attending uniformly would still put
    `1 / (i + 1)` on it, so the share is compared with that baseline.

    Args:
        model: a task (`Generator`, `Translator`, `Classifier`, ...).
        texts: a list of strings.
        kind: the attention kind; default the only one of a one-stack model
            (a translator's `"encoder"`, `"decoder"` or `"cross"` must be named).
        targets: as for `attention_maps` (e.g. a translator's target texts).

    Returns:
        `AttentionSinks`.

    Example:
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=2)
    >>> sinks = attention_sinks(generator, ["abc"])
    >>> sinks.share.shape, round(sinks.baseline, 4)  # (1 + 1/2 + 1/3 + 1/4) / 4
    ((2, 4), 0.5208)
    """
    return sinks_from_maps(attention_maps(model, texts, targets), kind)


def sinks_from_maps(maps, kind=None):
    """`AttentionSinks` from an `AttentionMaps` or a list of them (pooled:
    every query row of every text counts once).

    `"decoder"` attention is causal (baseline `1 / (i + 1)` at query `i`);
    `"encoder"` and `"cross"` attention see every key (baseline `1 / keys`).

    Example:
    >>> from keras_attn.interpret import AttentionMaps
    >>> uniform = np.full((1, 1, 2, 2), 0.5, dtype="float32")
    >>> maps = AttentionMaps(tokens={"tokens": ["a", "b"]}, attention={"encoder": uniform},
    ...                      sequences={"encoder": ("tokens", "tokens")},
    ...                      head_counts={"encoder": [1]})
    >>> sinks = sinks_from_maps(maps)
    >>> sinks.share.tolist(), sinks.baseline, sinks.ratio.tolist()
    ([[0.5]], 0.5, [[1.0]])
    """
    maps_list, _ = as_maps_list(maps)
    kinds = {choose_kind(item, kind, "attention_sinks") for item in maps_list}
    if len(kinds) != 1:
        raise ValueError(
            "`maps` must all come from one kind of model: with kind=None they resolve to "
            f"{sorted(kinds)}. Pass `kind`."
        )
    (kind,) = kinds
    first_key_total = baseline_total = queries = 0
    shapes = set()
    for item in maps_list:
        attention = checked_attention(item, kind)
        shapes.add(attention.shape[:2])
        num_queries, num_keys = attention.shape[2:]
        first_key_total = first_key_total + attention[:, :, :, 0].sum(-1)
        if kind == "decoder":
            baseline_total += (1.0 / np.arange(1, num_queries + 1)).sum()
        else:
            baseline_total += num_queries / num_keys
        queries += num_queries
    if len(shapes) != 1:
        raise ValueError(
            "`maps` must all come from one model: their (layers, heads) differ. "
            f"Received: {sorted(shapes)}"
        )
    share = first_key_total / queries
    head_counts = maps_list[0].head_counts[kind]
    for layer, count in enumerate(head_counts):
        share[layer, count:] = np.nan
    baseline = float(baseline_total / queries)
    return AttentionSinks(
        kind=kind,
        share=share,
        layer_share=np.array([row[:count].mean() for row, count in zip(share, head_counts)]),
        baseline=baseline,
        ratio=share / baseline,
        queries=int(queries),
    )
