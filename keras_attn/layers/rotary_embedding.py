"""Rotary position embedding, RoPE (Su et al., 2021, "RoFormer")."""

import keras
import numpy as np
from keras import ops

from keras_attn.utils.arguments import (
    check_non_negative_int,
    check_positive_number,
    check_rank,
)


@keras.saving.register_keras_serializable(package="keras_attn")
class RotaryEmbedding(keras.layers.Layer):
    """Rotates query/key features by an angle proportional to their position.

    Feature `i` of the first half is paired with feature `i + dim/2` of the
    second half (the "half split" of GPT-NeoX, LLaMA and keras-hub) and the
    pair is rotated by `position / scaling_factor * max_wavelength ** (-2i/dim)`.
    After rotation, the dot product of a query at position `m` and a key at
    position `n` depends on the positions only through `m - n`.

    Args:
        max_wavelength: positive number, the base of the frequencies
            (10000 in RoFormer; LLaMA-3 uses 500000).
        scaling_factor: positive number; positions are divided by it
            (linear position interpolation for longer contexts).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, time, ..., dim)` tensor, e.g. per-head queries
            `(batch, time, heads, head_dim)`. Axis 1 is the sequence axis,
            the last axis holds the features; `dim` must be even.
        start_index: int or scalar int tensor, position of time step 0.
        positions: optional int tensor `(time,)` or `(batch, time)` of
            absolute positions, overriding `start_index`.

    Returns:
        Tensor of the inputs' shape and dtype.

    Example:
    >>> query = keras.random.normal((2, 5, 4, 8))  # (batch, time, heads, head_dim)
    >>> rotated = RotaryEmbedding()(query)
    >>> tuple(rotated.shape)
    (2, 5, 4, 8)
    >>> bool(ops.all(rotated[:, 0] == query[:, 0]))  # position 0: angle 0
    True
    >>> norms = ops.norm(query, axis=-1), ops.norm(rotated, axis=-1)
    >>> np.allclose(*norms, atol=1e-5)  # a rotation keeps lengths
    True
    """

    def __init__(self, max_wavelength=10000, scaling_factor=1.0, **kwargs):
        super().__init__(**kwargs)
        self.max_wavelength = check_positive_number("max_wavelength", max_wavelength)
        self.scaling_factor = check_positive_number("scaling_factor", scaling_factor)

    def _check_inputs(self, inputs):
        shape = inputs.shape
        if len(shape) < 3:
            check_rank("inputs", shape, 3, "or more: (batch, time, ..., dim)")
        dim = shape[-1]
        if dim is None or dim % 2:
            raise ValueError(
                "The feature dimension (last axis) of `inputs` must be a known even number: "
                "rotary embedding rotates pairs of features. "
                f"Received: inputs with shape {tuple(shape)}, feature dimension {dim}"
            )
        return dim

    def _cos_sin(self, positions, dim):
        # Frequencies in float64 numpy, so float32 rounding happens once, at the cast.
        pair_index = np.arange(dim // 2)
        inverse_frequencies = 1.0 / np.power(float(self.max_wavelength), 2.0 * pair_index / dim)
        inverse_frequencies = (inverse_frequencies / self.scaling_factor).astype("float32")
        angles = ops.cast(positions, "float32")[..., None] * inverse_frequencies
        angles = ops.concatenate([angles, angles], axis=-1)
        return ops.cos(angles), ops.sin(angles)

    def call(self, inputs, start_index=0, positions=None):
        dim = self._check_inputs(inputs)
        if positions is None:
            if not ops.is_tensor(start_index):
                check_non_negative_int("start_index", start_index)
            time = ops.shape(inputs)[1]
            positions = ops.arange(time, dtype="int32") + ops.cast(start_index, "int32")
            positions = positions[None, :]
        else:
            check_rank("positions", positions.shape, (1, 2), "(time,) or (batch, time)")
            if len(positions.shape) == 1:
                positions = positions[None, :]
        cos, sin = self._cos_sin(positions, dim)
        # (batch|1, time, dim) -> (batch|1, time, 1, ..., 1, dim): one angle per
        # position, shared by every head (or other axis) in between.
        for _ in range(len(inputs.shape) - 3):
            cos = ops.expand_dims(cos, axis=-2)
            sin = ops.expand_dims(sin, axis=-2)
        cos = ops.cast(cos, inputs.dtype)
        sin = ops.cast(sin, inputs.dtype)
        first_half, second_half = ops.split(inputs, 2, axis=-1)
        rotated_half = ops.concatenate([-second_half, first_half], axis=-1)
        return inputs * cos + rotated_half * sin

    def get_config(self):
        config = super().get_config()
        config.update(
            {"max_wavelength": self.max_wavelength, "scaling_factor": self.scaling_factor}
        )
        return config
