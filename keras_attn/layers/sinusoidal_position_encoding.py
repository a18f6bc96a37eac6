"""Fixed sinusoidal position encoding (Vaswani et al., 2017)."""

import keras
import numpy as np
from keras import ops

from keras_attn.utils.arguments import (
    check_non_negative_int,
    check_positive_number,
    check_rank,
)


@keras.saving.register_keras_serializable(package="keras_attn")
class SinusoidalPositionEncoding(keras.layers.Layer):
    """Sine/cosine position encoding of "Attention Is All You Need".

    Column pairs are interleaved as in the paper:

        PE[pos, 2i]     = sin(pos / max_wavelength ** (2i / dim))
        PE[pos, 2i + 1] = cos(pos / max_wavelength ** (2i / dim))

    An odd `dim` is allowed; its last column is a sine. The layer has no
    weights and returns only the encoding, broadcast to the inputs' shape, so
    the caller decides how to combine it (usually `inputs + encoding`).

    Args:
        max_wavelength: positive number, the longest wavelength (the paper's
            10000).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, time, dim)` tensor; only its shape is used.
        start_index: int or scalar int tensor, absolute position of time step
            0 (the next cache slot during cached decoding).
        positions: optional int tensor `(time,)` or `(batch, time)` of
            absolute positions. Overrides `start_index`; lets left-padded
            sequences in one batch start counting at their first real token.

    Returns:
        Tensor of the inputs' shape, in the layer's compute dtype.

    Example:
    >>> embeddings = keras.random.normal((2, 5, 16))
    >>> encoding = SinusoidalPositionEncoding()(embeddings)
    >>> encoded = embeddings + encoding
    >>> tuple(encoded.shape)
    (2, 5, 16)
    >>> ops.convert_to_numpy(encoding[0, 0, :4]).tolist()  # position 0: sin 0, cos 0
    [0.0, 1.0, 0.0, 1.0]
    >>> ops.convert_to_numpy(encoding[0, 1, :2]).round(4)  # position 1: sin 1, cos 1
    array([0.8415, 0.5403], dtype=float32)
    """

    def __init__(self, max_wavelength=10000, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = check_positive_number("max_wavelength", max_wavelength)

    def _inverse_frequencies(self, dim):
        # Frequencies in float64 numpy, so float32 rounding happens once, at the cast.
        pair_index = np.arange(dim) // 2
        return (1.0 / np.power(float(self.max_wavelength), 2.0 * pair_index / dim)).astype(
            "float32"
        )

    def call(self, inputs, start_index=0, positions=None):
        check_rank("inputs", inputs.shape, 3, "(batch, time, dim)")
        dim = inputs.shape[-1]
        if positions is None:
            if not ops.is_tensor(start_index):
                check_non_negative_int("start_index", start_index)
            time = ops.shape(inputs)[1]
            positions = ops.arange(time, dtype="int32") + ops.cast(start_index, "int32")
        else:
            check_rank("positions", positions.shape, (1, 2), "(time,) or (batch, time)")
        angles = ops.cast(positions, "float32")[..., None] * self._inverse_frequencies(dim)
        is_sine_column = np.arange(dim) % 2 == 0
        encoding = ops.where(is_sine_column, ops.sin(angles), ops.cos(angles))
        encoding = ops.cast(encoding, self.compute_dtype)
        return ops.broadcast_to(encoding, ops.shape(inputs))

    def get_config(self):
        config = super().get_config()
        config.update({"max_wavelength": self.max_wavelength})
        return config
