"""The normalization layers a Transformer block or model may use."""

import keras

NORMALIZATIONS = ("layer_norm", "rms_norm")


def make_normalization(kind, epsilon, dtype=None, name=None):
    """A `keras.layers.LayerNormalization` or `keras.layers.RMSNormalization`.

    Args:
        kind: `"layer_norm"` (Ba et al. 2016) or `"rms_norm"` (Zhang and
            Sennrich 2019).
        epsilon: added to the variance for numerical stability.
        dtype: dtype policy.
        name: layer name.
    """
    layer_cls = (
        keras.layers.RMSNormalization if kind == "rms_norm" else keras.layers.LayerNormalization
    )
    return layer_cls(epsilon=epsilon, dtype=dtype, name=name)
