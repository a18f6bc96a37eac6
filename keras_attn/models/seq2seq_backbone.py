"""Encoder-decoder Transformer for sequence-to-sequence tasks (translation)."""

import keras
from keras import ops

from keras_attn.layers.normalization import make_normalization
from keras_attn.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_attn.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_attn.layers.transformer_encoder_block import TransformerEncoderBlock
from keras_attn.models.backbone import Backbone
from keras_attn.utils.arguments import (
    check_choice,
    check_positive_int,
    check_rank,
)


@keras.saving.register_keras_serializable(package="keras_attn")
class Seq2SeqBackbone(Backbone):
    """The Transformer of Vaswani et al. 2017: an encoder over the source and
    a causal decoder over the target that cross-attends to it.

    Embeddings are scaled by `sqrt(hidden_dim)` as in the paper. With
    `share_embeddings` the source and target use one token matrix (one
    shared vocabulary); with `tie_embeddings` the output projection is the
    transposed target matrix (the paper ties all three).

    Args:
        source_vocabulary_size, target_vocabulary_size: id 0 is padding.
            Must be equal with `share_embeddings`.
        source_length, target_length: longest source / target sequence.
        num_encoder_layers, num_decoder_layers, num_heads, hidden_dim,
        intermediate_dim: the shape (base: 6, 6, 8, 512, 2048).
        dropout: dropout on embeddings, residual branches and attention.
        activation: `"relu"` (paper), `"gelu"` or `"swiglu"`.
        normalization: `"layer_norm"` or `"rms_norm"`.
        norm_first: pre-norm blocks (more stable when small); the paper is
            post-norm (`False`).
        position_encoding: `"sinusoidal"` (paper) or `"learned"`.
        share_embeddings: one token matrix for source and target.
        tie_embeddings: output projection = transposed target matrix.
        norm_epsilon: epsilon of every norm.

    Call arguments:
        inputs: dict with int `"source_ids"` `(batch, source_length)` and
            `"target_ids"` `(batch, target_length)` (decoder inputs, i.e.
            the target shifted right and starting with `[BOS]`), right-padded
            with 0.

    Returns:
        float32 logits `(batch, target_length, target_vocabulary_size)`.

    Example:
    >>> model = Seq2SeqBackbone(source_vocabulary_size=50,
    ...     target_vocabulary_size=50, source_length=12, target_length=10,
    ...     num_encoder_layers=1, num_decoder_layers=1, num_heads=2,
    ...     hidden_dim=16, intermediate_dim=32)
    >>> logits = model({"source_ids": keras.ops.ones((2, 12), "int32"),
    ...                 "target_ids": keras.ops.ones((2, 10), "int32")})
    """

    config_keys = (
        "source_vocabulary_size",
        "target_vocabulary_size",
        "source_length",
        "target_length",
        "num_encoder_layers",
        "num_decoder_layers",
        "num_heads",
        "hidden_dim",
        "intermediate_dim",
        "dropout",
        "activation",
        "normalization",
        "norm_first",
        "position_encoding",
        "share_embeddings",
        "tie_embeddings",
        "norm_epsilon",
    )

    def __init__(
        self,
        source_vocabulary_size,
        target_vocabulary_size,
        source_length,
        target_length,
        num_encoder_layers,
        num_decoder_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        dropout=0.0,
        activation="relu",
        normalization="layer_norm",
        norm_first=True,
        position_encoding="sinusoidal",
        share_embeddings=True,
        tie_embeddings=True,
        norm_epsilon=1e-6,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.source_vocabulary_size = check_positive_int(
            "source_vocabulary_size", source_vocabulary_size
        )
        self.target_vocabulary_size = check_positive_int(
            "target_vocabulary_size", target_vocabulary_size
        )
        self.source_length = check_positive_int("source_length", source_length)
        self.target_length = check_positive_int("target_length", target_length)
        self.num_encoder_layers = check_positive_int("num_encoder_layers", num_encoder_layers)
        self.num_decoder_layers = check_positive_int("num_decoder_layers", num_decoder_layers)
        self._set_block_arguments(
            num_heads, hidden_dim, intermediate_dim, dropout, activation, normalization,
            norm_epsilon,
        )
        self.norm_first = bool(norm_first)
        self.position_encoding = check_choice(
            "position_encoding", position_encoding, ("learned", "sinusoidal")
        )
        self.share_embeddings = bool(share_embeddings)
        self.tie_embeddings = bool(tie_embeddings)
        if share_embeddings and source_vocabulary_size != target_vocabulary_size:
            raise ValueError(
                "`share_embeddings=True` needs one vocabulary: `source_vocabulary_size` must "
                f"equal `target_vocabulary_size`. Received: {source_vocabulary_size} and "
                f"{target_vocabulary_size}"
            )

        def embedding(vocabulary_size, length, name):
            return TokenAndPositionEmbedding(
                vocabulary_size,
                length,
                hidden_dim,
                position_encoding=position_encoding,
                scale_embeddings=True,
                dtype=self.dtype_policy,
                name=name,
            )

        # A shared matrix needs one position table long enough for both sides.
        shared_length = max(source_length, target_length)
        self.source_embedding = embedding(
            source_vocabulary_size,
            shared_length if share_embeddings else source_length,
            "source_embedding",
        )
        self.target_embedding = (
            self.source_embedding
            if share_embeddings
            else embedding(target_vocabulary_size, target_length, "target_embedding")
        )
        self.embedding_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        block_kwargs = self._block_kwargs(norm_first=norm_first)
        self.encoder_blocks = [
            TransformerEncoderBlock(**block_kwargs, name=f"encoder_block_{i}")
            for i in range(num_encoder_layers)
        ]
        self.decoder_blocks = [
            TransformerDecoderBlock(
                **block_kwargs, use_cross_attention=True, name=f"decoder_block_{i}"
            )
            for i in range(num_decoder_layers)
        ]
        # Pre-norm stacks need a final norm; post-norm blocks end with one.
        self.encoder_norm = self.decoder_norm = None
        if norm_first:
            self.encoder_norm = make_normalization(
                normalization, norm_epsilon, dtype=self.dtype_policy, name="encoder_norm"
            )
            self.decoder_norm = make_normalization(
                normalization, norm_epsilon, dtype=self.dtype_policy, name="decoder_norm"
            )
        self.output_projection = None
        if not tie_embeddings:
            self.output_projection = keras.layers.Dense(
                target_vocabulary_size,
                use_bias=False,
                dtype=self.dtype_policy,
                name="output_projection",
            )
        self.build()

    def build(self, input_shape=None):
        hidden_shape = (None, None, self.hidden_dim)
        self.source_embedding.build()
        self.target_embedding.build()
        for block in self.encoder_blocks:
            block.build(hidden_shape)
        for block in self.decoder_blocks:
            block.build(hidden_shape, hidden_shape)
        for norm in (self.encoder_norm, self.decoder_norm):
            if norm is not None:
                norm.build(hidden_shape)
        if self.output_projection is not None:
            self.output_projection.build(hidden_shape)
        self.built = True

    # ------------------------------------------------------------- encoder

    def encode(self, source_ids, training=None):
        """Returns `(encoder_outputs (B, S, hidden_dim), source_mask (B, S))`."""
        check_rank("source_ids", source_ids.shape, 2, "(batch, source_time)")
        source_mask = ops.not_equal(source_ids, 0)
        x = self.embedding_dropout(self.source_embedding(source_ids), training=training)
        for block in self.encoder_blocks:
            x = block(x, padding_mask=source_mask, training=training)
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x, source_mask

    # ------------------------------------------------------------- decoder

    def _logits(self, hidden):
        if self.decoder_norm is not None:
            hidden = self.decoder_norm(hidden)
        if self.output_projection is None:
            logits = self.target_embedding(hidden, reverse=True)
        else:
            logits = self.output_projection(hidden)
        return ops.cast(logits, "float32")

    def decode(self, target_ids, encoder_outputs, source_mask, training=None):
        """Logits for every target position, attending to the encoder."""
        check_rank("target_ids", target_ids.shape, 2, "(batch, target_time)")
        x = self.embedding_dropout(self.target_embedding(target_ids), training=training)
        for block in self.decoder_blocks:
            x = block(
                x,
                encoder_sequence=encoder_outputs,
                encoder_padding_mask=source_mask,
                training=training,
            )
        return self._logits(x)

    def call(self, inputs, training=None):
        encoder_outputs, source_mask = self.encode(inputs["source_ids"], training=training)
        return self.decode(inputs["target_ids"], encoder_outputs, source_mask, training=training)

    # ------------------------------------------------------ cached decoding

    def empty_caches(self, batch_size, max_length=None):
        """Zero self-attention caches, one per decoder block."""
        max_length = max_length or self.target_length
        return tuple(
            block.empty_self_attention_cache(batch_size, max_length)
            for block in self.decoder_blocks
        )

    def cross_attention_caches(self, encoder_outputs):
        """Each decoder block's cross-attention keys and values, computed once."""
        batch, source_length = ops.shape(encoder_outputs)[0], encoder_outputs.shape[1]
        caches = []
        for block in self.decoder_blocks:
            empty = block.empty_cross_attention_cache(batch, source_length)
            # Filling the cache needs a query; one zero step is enough.
            _, filled = block.cross_attention(
                ops.zeros_like(encoder_outputs[:, :1]),
                encoder_outputs,
                cache=empty,
                cache_update_index=0,
            )
            caches.append(filled)
        return tuple(caches)

    def decode_with_cache(self, target_ids, caches, cross_caches, source_mask, index):
        """Runs `target_ids` written at `index` against the caches.

        Args:
            target_ids: int `(batch, new_tokens)`.
            caches: self-attention caches (from `empty_caches` or a previous
                call).
            cross_caches: from `cross_attention_caches`.
            source_mask: bool `(batch, source_time)`.
            index: int or scalar int tensor, position of `target_ids[:, 0]`.

        Returns:
            `(logits (batch, new_tokens, vocabulary), updated caches)`.
        """
        x = self.target_embedding(target_ids, start_index=index)
        updated = []
        for block, cache, cross_cache in zip(self.decoder_blocks, caches, cross_caches):
            x, cache, _ = block(
                x,
                encoder_padding_mask=source_mask,
                self_attention_cache=cache,
                self_attention_cache_update_index=index,
                cross_attention_cache=cross_cache,
            )
            updated.append(cache)
        return self._logits(x), tuple(updated)
