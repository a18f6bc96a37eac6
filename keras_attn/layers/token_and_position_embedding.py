"""Token embedding plus position encoding, with a reversible (tied or untied)
output projection."""

import math

import keras
from keras import ops

from keras_attn.layers.learned_position_embedding import (
    LearnedPositionEmbedding,
    check_positions_fit,
)
from keras_attn.layers.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_attn.utils.arguments import check_choice, check_positive_int, check_rank

POSITION_ENCODINGS = ("learned", "sinusoidal", "none")


@keras.saving.register_keras_serializable(package="keras_attn")
class TokenAndPositionEmbedding(keras.layers.Layer):
    """Embeds token ids and adds a position encoding; reversible for logits.

    Forward: `(batch, time)` token ids -> `(batch, time, embedding_dim)` equal
    to the token embedding (times `sqrt(embedding_dim)` when
    `scale_embeddings`, as in Vaswani et al. 2017) plus the position encoding.
    With `mask_zero`, id 0 is padding and the mask `ids != 0` is attached to
    the output, so following layers receive it through Keras masking.

    The forward pass is two steps, each public: the token lookup
    `token_embedding(ids)` (a `keras.layers.ReversibleEmbedding`), then
    `add_positions(token_embeddings)` (scaling and position encoding). A
    caller holding its own token embeddings (soft prompts, adversarial
    perturbations, attribution methods) enters at the second step.

    Reverse (`reverse=True`): hidden states `(batch, time, embedding_dim)` ->
    logits `(batch, time, vocabulary_size)` with the transposed token
    embedding matrix when `tie_weights` (input and output embeddings tied),
    or with the token embedding's own `reverse_embeddings` matrix
    `(embedding_dim, vocabulary_size)` otherwise.

    Args:
        vocabulary_size: positive int, number of token ids.
        sequence_length: positive int, the longest sequence (last position + 1)
            the layer accepts, whatever `position_encoding` is.
        embedding_dim: positive int, width of the embeddings.
        position_encoding: `"learned"` (a trainable table, as BERT and GPT-2),
            `"sinusoidal"` (fixed, as Vaswani et al.) or `"none"` (e.g. when
            attention uses rotary embeddings or ALiBi).
        mask_zero: bool, whether id 0 is padding to be masked.
        scale_embeddings: bool, multiply token embeddings by
            `sqrt(embedding_dim)`.
        embeddings_initializer: initializer of the token embeddings and of the
            learned position table.
        max_wavelength: max wavelength of the sinusoidal encoding.
        tie_weights: bool, reverse with the transposed token matrix (True)
            or with a separate trainable matrix (False).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Attributes:
        token_embedding: the `keras.layers.ReversibleEmbedding` of the
            tokens (no scaling, no positions, no mask).
        position_embedding: the position layer, `None` for `"none"`.

    Call arguments:
        inputs: int token ids `(batch, time)`, or hidden states
            `(batch, time, embedding_dim)` with `reverse=True`.
        start_index: int or scalar int tensor, position of time step 0. A
            Python int with `start_index + time > sequence_length` raises
            `ValueError`.
        positions: optional int tensor `(time,)` or `(batch, time)` of
            absolute positions, overriding `start_index`.
        reverse: bool, compute logits from hidden states instead.

    Returns:
        `(batch, time, embedding_dim)` embeddings, or
        `(batch, time, vocabulary_size)` logits with `reverse=True`.

    Example:
    >>> embedding = TokenAndPositionEmbedding(1000, 128, 64)
    >>> token_ids = keras.ops.convert_to_tensor([[5, 7, 9, 0]])
    >>> hidden = embedding(token_ids)  # (1, 4, 64), mask [[T, T, T, F]]
    >>> logits = embedding(hidden, reverse=True)  # (1, 4, 1000)
    """

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        embedding_dim,
        position_encoding="learned",
        mask_zero=True,
        scale_embeddings=False,
        embeddings_initializer="uniform",
        max_wavelength=10000,
        tie_weights=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.embedding_dim = check_positive_int("embedding_dim", embedding_dim)
        self.position_encoding = check_choice(
            "position_encoding", position_encoding, POSITION_ENCODINGS
        )
        self.mask_zero = bool(mask_zero)
        self.scale_embeddings = bool(scale_embeddings)
        self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
        self.max_wavelength = max_wavelength
        self.tie_weights = bool(tie_weights)
        self.supports_masking = True

        self.token_embedding = keras.layers.ReversibleEmbedding(
            self.vocabulary_size,
            self.embedding_dim,
            tie_weights=self.tie_weights,
            # Embeddings skip autocasting; the reverse projection is a large
            # matmul that should run in the compute dtype (bfloat16/float16)
            # under mixed precision, as the rest of the model does.
            reverse_dtype=(
                None
                if self.compute_dtype == self.variable_dtype
                else self.compute_dtype
            ),
            embeddings_initializer=self.embeddings_initializer,
            dtype=self.dtype_policy,
            name="token_embedding",
        )
        if self.position_encoding == "learned":
            self.position_embedding = LearnedPositionEmbedding(
                self.sequence_length,
                # A fresh copy: one seeded initializer instance must not feed two weights.
                initializer=keras.initializers.serialize(self.embeddings_initializer),
                dtype=self.dtype_policy,
                name="position_embedding",
            )
        elif self.position_encoding == "sinusoidal":
            self.position_embedding = SinusoidalPositionEncoding(
                max_wavelength=max_wavelength,
                dtype=self.dtype_policy,
                name="position_embedding",
            )
        else:
            self.position_embedding = None

    def build(self, inputs_shape=None):
        # Built from the fixed sizes, not the inputs, because the first call
        # may be a reverse one on hidden states.
        if not self.token_embedding.built:
            self.token_embedding.build()
        if self.position_embedding is not None:
            self.position_embedding.build((None, None, self.embedding_dim))

    def call(self, inputs, start_index=0, positions=None, reverse=False):
        if reverse:
            check_rank("inputs", inputs.shape, 3, "(batch, time, embedding_dim) with reverse=True")
            return self.token_embedding(ops.cast(inputs, self.compute_dtype), reverse=True)

        check_rank("inputs", inputs.shape, 2, "(batch, time) of token ids")
        return self.add_positions(
            self.token_embedding(inputs), start_index=start_index, positions=positions
        )

    def add_positions(self, token_embeddings, start_index=0, positions=None):
        """The second half of the forward pass: scales `token_embeddings`
        `(batch, time, embedding_dim)` (the output of `token_embedding`) by
        `sqrt(embedding_dim)` when `scale_embeddings` and adds the position
        encoding. `start_index` and `positions` are as in `call`."""
        check_rank(
            "token_embeddings", token_embeddings.shape, 3, "(batch, time, embedding_dim)"
        )
        if token_embeddings.shape[-1] not in (None, self.embedding_dim):
            raise ValueError(
                f"`token_embeddings` must have last dimension embedding_dim="
                f"{self.embedding_dim}. Received: shape {tuple(token_embeddings.shape)}"
            )
        if positions is None:
            check_positions_fit(start_index, token_embeddings.shape[1], self.sequence_length)
        if not self.built:
            # Called directly rather than through `__call__`.
            self.build()
        embeddings = ops.cast(token_embeddings, self.compute_dtype)
        if self.scale_embeddings:
            embeddings = embeddings * ops.cast(math.sqrt(self.embedding_dim), embeddings.dtype)
        if self.position_embedding is not None:
            embeddings = embeddings + self.position_embedding(
                embeddings, start_index=start_index, positions=positions
            )
        return embeddings

    def compute_mask(self, inputs, mask=None):
        # Keras passes only `inputs` here, not `reverse`; hidden states (rank 3)
        # mean a reverse call, whose logits carry no padding mask.
        if not self.mask_zero or len(inputs.shape) != 2:
            return None
        return ops.not_equal(inputs, 0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "sequence_length": self.sequence_length,
                "embedding_dim": self.embedding_dim,
                "position_encoding": self.position_encoding,
                "mask_zero": self.mask_zero,
                "scale_embeddings": self.scale_embeddings,
                "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
                "max_wavelength": self.max_wavelength,
                "tie_weights": self.tie_weights,
            }
        )
        return config
