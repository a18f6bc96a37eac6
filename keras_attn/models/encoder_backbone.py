"""BERT-style bidirectional Transformer encoder."""

import keras
from keras import ops

from keras_attn.layers.normalization import make_normalization
from keras_attn.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_attn.layers.transformer_encoder_block import TransformerEncoderBlock
from keras_attn.models.backbone import Backbone
from keras_attn.utils.arguments import (
    check_choice,
    check_non_negative_int,
    check_positive_int,
    check_rank,
)


@keras.saving.register_keras_serializable(package="keras_attn")
class EncoderBackbone(Backbone):
    """A stack of bidirectional encoder blocks (Devlin et al. 2019).

    token ids (+ segment ids) -> token + position + segment embedding ->
    norm -> dropout -> `num_layers` x `TransformerEncoderBlock` -> sequence
    output, plus a pooled output (`tanh(dense(sequence_output[:, 0]))`, the
    BERT pooler over the `[CLS]` position).

    Args:
        vocabulary_size: number of token ids; id 0 is padding.
        sequence_length: longest input.
        num_layers, num_heads, hidden_dim, intermediate_dim: the shape.
        num_segments: size of the segment (token type) vocabulary; 0 for none.
        dropout: dropout on embeddings, residual branches and attention.
        activation: feed-forward activation (`"gelu"` in BERT).
        normalization: `"layer_norm"` or `"rms_norm"`.
        norm_first: pre-norm blocks; BERT is post-norm (`False`).
        position_encoding: `"learned"` (BERT) or `"sinusoidal"`.
        norm_epsilon: epsilon of every norm (1e-12 in BERT).

    Call arguments:
        inputs: int token ids `(batch, time)`, or a dict with `"token_ids"`
            and optionally `"segment_ids"` and `"padding_mask"` (defaults to
            `token_ids != 0`).

    Returns:
        dict with `"sequence_output"` `(batch, time, hidden_dim)` and
        `"pooled_output"` `(batch, hidden_dim)`.

    Example:
    >>> encoder = EncoderBackbone(vocabulary_size=100, sequence_length=16,
    ...     num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64)
    >>> outputs = encoder(keras.ops.ones((2, 16), "int32"))
    >>> outputs["sequence_output"].shape, outputs["pooled_output"].shape
    ((2, 16, 32), (2, 32))
    """

    config_keys = (
        "vocabulary_size",
        "sequence_length",
        "num_layers",
        "num_heads",
        "hidden_dim",
        "intermediate_dim",
        "num_segments",
        "dropout",
        "activation",
        "normalization",
        "norm_first",
        "position_encoding",
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
        num_segments=2,
        dropout=0.0,
        activation="gelu",
        normalization="layer_norm",
        norm_first=False,
        position_encoding="learned",
        norm_epsilon=1e-12,
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
        self.num_segments = check_non_negative_int("num_segments", num_segments)
        self.norm_first = bool(norm_first)
        self.position_encoding = check_choice(
            "position_encoding", position_encoding, ("learned", "sinusoidal")
        )

        self.embedding = TokenAndPositionEmbedding(
            vocabulary_size,
            sequence_length,
            hidden_dim,
            position_encoding=position_encoding,
            dtype=self.dtype_policy,
            name="embedding",
        )
        self.segment_embedding = None
        if num_segments:
            self.segment_embedding = keras.layers.Embedding(
                num_segments, hidden_dim, dtype=self.dtype_policy, name="segment_embedding"
            )
        self.embedding_norm = make_normalization(
            normalization, norm_epsilon, dtype=self.dtype_policy, name="embedding_norm"
        )
        self.embedding_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        self.blocks = [
            TransformerEncoderBlock(
                **self._block_kwargs(norm_first=norm_first), name=f"encoder_block_{i}"
            )
            for i in range(num_layers)
        ]
        # Pre-norm stacks end un-normalized; post-norm blocks end with a norm.
        self.final_norm = None
        if norm_first:
            self.final_norm = make_normalization(
                normalization, norm_epsilon, dtype=self.dtype_policy, name="final_norm"
            )
        self.pooler = keras.layers.Dense(
            hidden_dim, activation="tanh", dtype=self.dtype_policy, name="pooler"
        )
        self.build((None, sequence_length))

    def build(self, input_shape=None):
        hidden_shape = (None, None, self.hidden_dim)
        self.embedding.build()
        if self.segment_embedding is not None:
            self.segment_embedding.build((None, None))
        self.embedding_norm.build(hidden_shape)
        for block in self.blocks:
            block.build(hidden_shape)
        if self.final_norm is not None:
            self.final_norm.build(hidden_shape)
        self.pooler.build((None, self.hidden_dim))
        self.built = True

    def embed(self, token_ids, segment_ids=None, training=None):
        """The normalized input embeddings `(batch, time, hidden_dim)`."""
        x = self.embedding(token_ids)
        if self.segment_embedding is not None:
            if segment_ids is None:
                segment_ids = ops.zeros_like(token_ids)
            x = x + self.segment_embedding(segment_ids)
        x = self.embedding_norm(x)
        return self.embedding_dropout(x, training=training)

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            token_ids = inputs["token_ids"]
            segment_ids = inputs.get("segment_ids")
            padding_mask = inputs.get("padding_mask")
        else:
            token_ids, segment_ids, padding_mask = inputs, None, None
        check_rank("token_ids", token_ids.shape, 2, "(batch, time)")
        if padding_mask is None:
            padding_mask = ops.not_equal(token_ids, 0)
        x = self.embed(token_ids, segment_ids, training=training)
        for block in self.blocks:
            x = block(x, padding_mask=padding_mask, training=training)
        if self.final_norm is not None:
            x = self.final_norm(x)
        return {"sequence_output": x, "pooled_output": self.pooler(x[:, 0])}
