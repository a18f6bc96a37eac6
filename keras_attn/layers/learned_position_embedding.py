"""Trainable absolute position embedding (a lookup table of positions)."""

import keras
from keras import ops

from keras_attn.utils.arguments import check_non_negative_int, check_positive_int, check_rank


def check_positions_fit(start_index, time, sequence_length):
    """Raises unless positions `start_index .. start_index + time - 1` exist.

    Only Python ints are checked: a tensor `start_index` is not known until
    run time, and XLA clamps out-of-range gathers instead of failing.
    """
    if ops.is_tensor(start_index):
        return
    check_non_negative_int("start_index", start_index)
    if time is not None and start_index + time > sequence_length:
        raise ValueError(
            "`start_index` + number of time steps must be at most "
            f"`sequence_length`={sequence_length}. Received: start_index={start_index!r} "
            f"with {time} time steps"
        )


@keras.saving.register_keras_serializable(package="keras_attn")
class LearnedPositionEmbedding(keras.layers.Layer):
    """Absolute position embedding learned as a `(sequence_length, dim)` table.

    Returns the table rows for the positions of the inputs' time steps,
    broadcast to the inputs' shape; the caller adds them to the inputs (as
    BERT and GPT-2 do).

    Args:
        sequence_length: positive int, the number of positions in the table
            (the longest sequence the layer can encode).
        initializer: initializer of the table.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(batch, time, dim)` tensor; only its shape is used.
        start_index: int or scalar int tensor, position of time step 0.
            A Python int with `start_index + time > sequence_length` raises
            `ValueError`.
        positions: optional int tensor `(time,)` or `(batch, time)` of
            absolute positions, overriding `start_index` (e.g. left-padded
            batches in cached decoding).

    Returns:
        Tensor of the inputs' shape, in the layer's compute dtype.

    Example:
    >>> embeddings = keras.random.normal((2, 5, 16))
    >>> position_layer = LearnedPositionEmbedding(sequence_length=128)
    >>> encoded = embeddings + position_layer(embeddings)
    >>> tuple(encoded.shape), tuple(position_layer.weights[0].shape)
    ((2, 5, 16), (128, 16))
    """

    def __init__(self, sequence_length, initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.initializer = keras.initializers.get(initializer)

    def build(self, inputs_shape):
        check_rank("inputs", inputs_shape, 3, "(batch, time, dim)")
        self.position_embeddings = self.add_weight(
            name="embeddings",
            shape=(self.sequence_length, inputs_shape[-1]),
            initializer=self.initializer,
            trainable=True,
        )

    def call(self, inputs, start_index=0, positions=None):
        check_rank("inputs", inputs.shape, 3, "(batch, time, dim)")
        if positions is None:
            check_positions_fit(start_index, inputs.shape[1], self.sequence_length)
            time = ops.shape(inputs)[1]
            positions = ops.arange(time, dtype="int32") + ops.cast(start_index, "int32")
        else:
            check_rank("positions", positions.shape, (1, 2), "(time,) or (batch, time)")
        rows = ops.take(self.position_embeddings, ops.cast(positions, "int32"), axis=0)
        return ops.broadcast_to(ops.cast(rows, self.compute_dtype), ops.shape(inputs))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "sequence_length": self.sequence_length,
                "initializer": keras.initializers.serialize(self.initializer),
            }
        )
        return config
