"""Hand-made `AttentionMaps` (no model) for the plot and viewer tests."""

import numpy as np

from keras_attn.interpret import AttentionMaps


def self_attention_maps(tokens, layers=2, heads=3, seed=0):
    """Encoder maps whose rows are random probability distributions."""
    rng = np.random.default_rng(seed)
    weights = rng.random((layers, heads, len(tokens), len(tokens))).astype("float32") ** 4
    weights /= weights.sum(-1, keepdims=True)
    return AttentionMaps(
        tokens={"tokens": list(tokens)},
        attention={"encoder": weights},
        sequences={"encoder": ("tokens", "tokens")},
        head_counts={"encoder": [heads] * layers},
    )


def translation_maps(source, target, seed=0):
    """Encoder, decoder and cross maps of a one-layer, two-head translator."""
    rng = np.random.default_rng(seed)

    def rows(queries, keys):
        weights = rng.random((1, 2, queries, keys)).astype("float32") + 0.01
        return weights / weights.sum(-1, keepdims=True)

    return AttentionMaps(
        tokens={"source": list(source), "target": list(target)},
        attention={
            "encoder": rows(len(source), len(source)),
            "decoder": rows(len(target), len(target)),
            "cross": rows(len(target), len(source)),
        },
        sequences={"encoder": ("source", "source"), "decoder": ("target", "target"),
                   "cross": ("target", "source")},
        head_counts={"encoder": [2], "decoder": [2], "cross": [2]},
    )
