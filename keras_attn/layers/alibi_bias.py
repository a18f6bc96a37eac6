"""Attention with Linear Biases, ALiBi (Press et al., 2022, "Train Short, Test Long")."""

import math

import keras
import numpy as np
from keras import ops

from keras_attn.utils.arguments import check_non_negative_int, check_positive_int, check_rank


def _power_of_two_slopes(num_heads):
    ratio = 2.0 ** (-8.0 / num_heads)
    return [ratio ** (head + 1) for head in range(num_heads)]


def alibi_slopes(num_heads):
    """Per-head slopes of the ALiBi paper, as a float64 numpy array.

    For a power of two `n` the slopes are `2 ** (-8 / n * (h + 1))`. Otherwise
    the paper takes the slopes of the nearest lower power of two `p`, then the
    remaining `n - p` from every other slope of `2p` heads, so the extra heads
    interleave with the first ones instead of all being flatter.
    """
    num_heads = check_positive_int("num_heads", num_heads)
    lower_power = 2 ** math.floor(math.log2(num_heads))
    slopes = _power_of_two_slopes(lower_power)
    if lower_power != num_heads:
        slopes += _power_of_two_slopes(2 * lower_power)[0::2][: num_heads - lower_power]
    return np.asarray(slopes, dtype="float64")


@keras.saving.register_keras_serializable(package="keras_attn")
class ALiBiBias(keras.layers.Layer):
    """Additive attention bias penalising distance linearly, one slope per head.

    `bias[0, h, i, j] = -slopes[h] * |start_index + i - j|`: query `i` sits at
    absolute position `start_index + i`, key `j` at position `j`. Combined with
    a causal mask this is the usual ALiBi of decoders; without one it is the
    symmetric variant for encoders. Add the bias to the attention logits
    before the softmax; no position embedding is then needed.

    Args:
        num_heads: positive int, number of attention heads.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Attributes:
        slopes: numpy array `(num_heads,)` of the per-head slopes.

    Call arguments:
        query: tensor `(batch, time, ...)`; only its length `T` is used.
        key_length: int or scalar int tensor `S`, number of keys. Defaults to
            `start_index + T` when `start_index` is a Python int (keys are
            every position up to the last query), and to `T` when it is a
            tensor: pass it explicitly (usually the cache length) when
            decoding with a tensor `start_index`.
        start_index: int or scalar int tensor, absolute position of query 0.

    Returns:
        Float tensor `(1, num_heads, T, S)` in the layer's compute dtype.

    Example:
    >>> alibi = ALiBiBias(num_heads=4)
    >>> alibi.slopes.tolist()
    [0.25, 0.0625, 0.015625, 0.00390625]
    >>> bias = alibi(keras.random.normal((2, 5, 32)))
    >>> tuple(bias.shape)
    (1, 4, 5, 5)
    >>> ops.convert_to_numpy(bias[0, :, 4, 0]).tolist()  # query 4 to key 0: -4 * slope
    [-1.0, -0.25, -0.0625, -0.015625]
    """

    def __init__(self, num_heads, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self._slopes = alibi_slopes(self.num_heads)

    @property
    def slopes(self):
        return self._slopes.copy()

    def call(self, query, key_length=None, start_index=0):
        if len(query.shape) < 2:
            check_rank("query", query.shape, 2, "or more: (batch, time, ...)")
        query_length = ops.shape(query)[1]
        start_is_int = not ops.is_tensor(start_index)
        if start_is_int:
            check_non_negative_int("start_index", start_index)
        if key_length is None:
            key_length = start_index + query_length if start_is_int else query_length
        elif not ops.is_tensor(key_length):
            check_positive_int("key_length", key_length)
        query_positions = ops.arange(query_length, dtype="int32") + ops.cast(start_index, "int32")
        key_positions = ops.arange(key_length, dtype="int32")
        distance = ops.abs(query_positions[:, None] - key_positions[None, :])
        slopes = ops.convert_to_tensor(self._slopes.astype("float32"))[:, None, None]
        bias = -slopes * ops.cast(distance, "float32")[None, :, :]
        return ops.cast(bias[None, ...], self.compute_dtype)

    def get_config(self):
        config = super().get_config()
        config.update({"num_heads": self.num_heads})
        return config
