"""GPT-style decoder-only Transformer: token ids in, next-token logits out."""

import keras
from keras import ops

from keras_attn.layers.normalization import make_normalization
from keras_attn.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_attn.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_attn.models.backbone import Backbone
from keras_attn.utils.arguments import (
    check_choice,
    check_positive_int,
    check_positive_number,
    check_rank,
)

POSITION_ENCODINGS = ("learned", "sinusoidal", "rotary")


@keras.saving.register_keras_serializable(package="keras_attn")
class DecoderBackbone(Backbone):
    """A stack of causal pre-norm decoder blocks (Radford et al. 2019).

    token ids -> token + position embedding -> `num_layers` x
    `TransformerDecoderBlock` (causal self-attention, feed-forward) ->
    final norm -> logits, projected with the transposed token embedding when
    `tie_embeddings` (GPT-2) or with a separate matrix.

    Args:
        vocabulary_size: number of token ids; id 0 is padding.
        sequence_length: longest sequence (and decoding cache) supported.
        num_layers: number of decoder blocks.
        num_heads: attention heads per block.
        hidden_dim: width of the residual stream.
        intermediate_dim: width of the feed-forward layer.
        num_key_value_heads: key/value heads (grouped-query attention);
            defaults to `num_heads`.
        dropout: dropout on embeddings, residual branches and attention.
        activation: `"relu"`, `"gelu"` or `"swiglu"`.
        normalization: `"layer_norm"` or `"rms_norm"`.
        position_encoding: `"learned"`, `"sinusoidal"` or `"rotary"`.
        rope_max_wavelength: rotary base when `position_encoding="rotary"`.
        tie_embeddings: project onto the token embedding matrix.
        norm_epsilon: epsilon of every norm.

    Call arguments:
        token_ids: int `(batch, time)`, right-padded with 0.

    Returns:
        float32 logits `(batch, time, vocabulary_size)`; position `t`
        predicts token `t + 1`.

    Example:
    >>> backbone = DecoderBackbone(vocabulary_size=100, sequence_length=16,
    ...     num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64)
    >>> logits = backbone(keras.ops.ones((2, 16), "int32"))  # (2, 16, 100)
    >>> caches = backbone.empty_caches(batch_size=2)
    >>> step_logits, caches = backbone.call_with_cache(
    ...     keras.ops.ones((2, 1), "int32"), caches, index=0)
    """

    config_keys = (
        "vocabulary_size",
        "sequence_length",
        "num_layers",
        "num_heads",
        "hidden_dim",
        "intermediate_dim",
        "num_key_value_heads",
        "dropout",
        "activation",
        "normalization",
        "position_encoding",
        "rope_max_wavelength",
        "tie_embeddings",
        "norm_epsilon",
    )

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        num_key_value_heads=None,
        dropout=0.0,
        activation="gelu",
        normalization="layer_norm",
        position_encoding="learned",
        rope_max_wavelength=10000,
        tie_embeddings=True,
        norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self._set_block_arguments(
            num_heads, hidden_dim, intermediate_dim, dropout, activation, normalization,
            norm_epsilon,
        )
        self.num_key_value_heads = num_key_value_heads
        self.position_encoding = check_choice(
            "position_encoding", position_encoding, POSITION_ENCODINGS
        )
        self.rope_max_wavelength = check_positive_number(
            "rope_max_wavelength", rope_max_wavelength
        )
        self.tie_embeddings = bool(tie_embeddings)
        rotary = position_encoding == "rotary"

        self.embedding = TokenAndPositionEmbedding(
            vocabulary_size,
            sequence_length,
            hidden_dim,
            position_encoding="none" if rotary else position_encoding,
            dtype=self.dtype_policy,
            name="embedding",
        )
        self.embedding_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        self.blocks = [
            TransformerDecoderBlock(
                **self._block_kwargs(
                    norm_first=True,
                    num_key_value_heads=num_key_value_heads,
                    rope_max_wavelength=rope_max_wavelength if rotary else None,
                ),
                name=f"decoder_block_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = make_normalization(
            normalization, norm_epsilon, dtype=self.dtype_policy, name="final_norm"
        )
        self.output_projection = None
        if not self.tie_embeddings:
            self.output_projection = keras.layers.Dense(
                vocabulary_size, use_bias=False, dtype=self.dtype_policy, name="output_projection"
            )
        self.build((None, sequence_length))

    def build(self, input_shape=None):
        hidden_shape = (None, None, self.hidden_dim)
        self.embedding.build()
        for block in self.blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        if self.output_projection is not None:
            self.output_projection.build(hidden_shape)
        self.built = True

    def _logits(self, hidden):
        hidden = self.final_norm(hidden)
        if self.output_projection is None:
            logits = self.embedding(hidden, reverse=True)
        else:
            logits = self.output_projection(hidden)
        # Softmax and losses run in float32 under mixed precision.
        return ops.cast(logits, "float32")

    def call(self, token_ids, training=None):
        check_rank("token_ids", token_ids.shape, 2, "(batch, time)")
        x = self.embedding(token_ids)
        x = self.embedding_dropout(x, training=training)
        for block in self.blocks:
            x = block(x, training=training)
        return self._logits(x)

    def empty_caches(self, batch_size, max_length=None):
        """One zero key/value cache per block, each `(B, 2, max_length, K, H)`."""
        max_length = max_length or self.sequence_length
        return tuple(
            block.empty_self_attention_cache(batch_size, max_length) for block in self.blocks
        )

    def call_with_cache(self, token_ids, caches, index):
        """Runs `token_ids` written at position `index` against the caches.

        Args:
            token_ids: int `(batch, new_tokens)`.
            caches: the tuple from `empty_caches` (or a previous call).
            index: int or scalar int tensor, position of `token_ids[:, 0]`.

        Returns:
            `(logits (batch, new_tokens, vocabulary_size), updated caches)`.
        """
        x = self.embedding(token_ids, start_index=index)
        updated = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block(
                x, self_attention_cache=cache, self_attention_cache_update_index=index
            )
            updated.append(cache)
        return self._logits(x), tuple(updated)
