"""BERT-style bidirectional Transformer encoder."""

import keras
from keras import ops

from keras_attn.layers.normalization import make_normalization
from keras_attn.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_attn.layers.transformer_encoder_block import TransformerEncoderBlock
from keras_attn.models.backbone import (
    Backbone,
    config_head_counts,
    resolve_head_counts,
    resolve_head_dim,
    run_blocks,
    split_attention_multiplier,
    split_head_mask,
    stack_attention_scores,
)
from keras_attn.utils.arguments import (
    check_choice,
    check_ids_in_range,
    check_non_negative_int,
    check_positive_int,
    check_rank,
    check_same_batch,
)


@keras.saving.register_keras_serializable(package="keras_attn")
class EncoderBackbone(Backbone):
    """A stack of bidirectional encoder blocks (Devlin et al. 2019).

    token ids -> `token_embedding` lookup -> [token embeddings enter here]
    -> + position embedding -> + segment embedding -> norm -> dropout ->
    `num_layers` x `TransformerEncoderBlock` -> (final norm when pre-norm)
    -> sequence output, plus a pooled output
    (`tanh(dense(sequence_output[:, 0]))`, the BERT pooler over the `[CLS]`
    position; `pooler_activation` changes the tanh).

    Args:
        vocabulary_size: number of token ids; id `pad_token_id` is padding.
        sequence_length: longest input.
        num_layers, hidden_dim, intermediate_dim: the shape.
        num_heads: attention heads, an int for every block or a list of
            `num_layers` ints (e.g. a pruned model).
        head_dim: size of every attention head; defaults to
            `hidden_dim // max(num_heads)`, which must then divide
            `hidden_dim`. `get_config` stores the resolved int.
        num_segments: size of the segment (token type) vocabulary; 0 for none.
        dropout: dropout on embeddings, residual branches and attention.
        activation: feed-forward activation: `"gelu"` (exact), or
            `"gelu_approximate"` (tanh, BERT's in keras-hub), `"relu"`,
            `"swiglu"`.
        normalization: `"layer_norm"` or `"rms_norm"`.
        norm_first: pre-norm blocks; BERT is post-norm (`False`).
        position_encoding: `"learned"` (BERT) or `"sinusoidal"`.
        norm_epsilon: epsilon of every norm (1e-12 in BERT).
        pad_token_id: the padding id, dropped by the default padding mask
            (`token_ids != pad_token_id`) and by cached decoding's query
            mask; `None` when the vocabulary has no padding token (GPT-2):
            every position is then real unless a `padding_mask` says
            otherwise. Default 0 (`[PAD]` of keras-attn tokenizers).
        pooler_activation: activation of the pooler's dense layer: `"tanh"`
            (BERT) or `"relu"` (the pre-classifier layer of DistilBERT,
            which has no pooler of its own).

    Attributes:
        token_embedding: the `keras.layers.ReversibleEmbedding` of the tokens
            (tied: `reverse=True` uses the transposed matrix, as BERT's MLM
            head does).
        embedding: the `TokenAndPositionEmbedding` holding it and the
            position table; `segment_embedding`, `blocks`, `pooler`.

    Call arguments:
        inputs: int token ids `(batch, time)`, or a dict with either
            `"token_ids"` or `"token_embeddings"` (float
            `(batch, time, hidden_dim)`, what `token_embedding(token_ids)`
            returns: position and segment embeddings are added after), and
            optionally `"segment_ids"` (default 0) and `"padding_mask"`
            `(batch, time)`, True for real tokens (default: `token_ids != pad_token_id`,
            or all real for embeddings).
        return_attention_scores: also return every block's post-softmax
            attention weights.
        head_mask: float `(num_layers, max(num_heads))`; entry `[l, h]`
            multiplies the output of head `h` of block `l` (0 removes it).
            Entries past a block's head count are ignored. Differentiable.
        attention_multiplier: float `(num_layers, batch, max(num_heads),
            time, time)` (batch, time axes may be 1); slice `[l]` multiplies
            block `l`'s post-softmax attention weights (ones change nothing;
            its gradient at ones is `A * dL/dA`). Differentiable.
        return_block_inputs: also return each block's input.
        training: enables dropout.

    Returns:
        dict with
        - `"sequence_output"`: `(batch, time, hidden_dim)`.
        - `"pooled_output"`: `(batch, hidden_dim)`.
        - `"attention_scores"` (with `return_attention_scores`):
          `(num_layers, batch, max(num_heads), time, time)`; a block with
          fewer heads has rows of zeros for the missing ones.
        - `"block_inputs"` (with `return_block_inputs`):
          `(num_layers, batch, time, hidden_dim)`, the residual stream
          entering each block.

    Example:
    >>> encoder = EncoderBackbone(vocabulary_size=100, sequence_length=16,
    ...     num_layers=2, num_heads=2, hidden_dim=32, intermediate_dim=64)
    >>> outputs = encoder(keras.ops.ones((2, 16), "int32"))
    >>> tuple(outputs["sequence_output"].shape), tuple(outputs["pooled_output"].shape)
    ((2, 16, 32), (2, 32))
    >>> embeddings = encoder.token_embedding(keras.ops.ones((2, 16), "int32"))
    >>> same = encoder({"token_embeddings": embeddings})
    """

    config_keys = (
        "vocabulary_size",
        "sequence_length",
        "num_layers",
        "num_heads",
        "hidden_dim",
        "intermediate_dim",
        "head_dim",
        "num_segments",
        "dropout",
        "activation",
        "normalization",
        "norm_first",
        "position_encoding",
        "norm_epsilon",
        "pad_token_id",
        "pooler_activation",
    )

    def __init__(
        self,
        vocabulary_size,
        sequence_length,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        head_dim=None,
        num_segments=2,
        dropout=0.0,
        activation="gelu",
        normalization="layer_norm",
        norm_first=False,
        position_encoding="learned",
        norm_epsilon=1e-12,
        pad_token_id=0,
        pooler_activation="tanh",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocabulary_size = check_positive_int("vocabulary_size", vocabulary_size)
        self.sequence_length = check_positive_int("sequence_length", sequence_length)
        self._set_pad_token_id(pad_token_id, self.vocabulary_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self._set_block_arguments(
            hidden_dim, intermediate_dim, dropout, activation, normalization, norm_epsilon
        )
        self.head_counts = resolve_head_counts("num_heads", num_heads, self.num_layers)
        self.num_heads = config_head_counts(num_heads)
        self.head_dim = resolve_head_dim(head_dim, self.hidden_dim, self.head_counts)
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
                **self._block_kwargs(norm_first=norm_first, num_heads=count),
                name=f"encoder_block_{i}",
            )
            for i, count in enumerate(self.head_counts)
        ]
        # Pre-norm stacks end un-normalized; post-norm blocks end with a norm.
        self.final_norm = None
        if norm_first:
            self.final_norm = make_normalization(
                normalization, norm_epsilon, dtype=self.dtype_policy, name="final_norm"
            )
        self.pooler_activation = check_choice(
            "pooler_activation", pooler_activation, ("tanh", "relu")
        )
        self.pooler = keras.layers.Dense(
            hidden_dim, activation=self.pooler_activation, dtype=self.dtype_policy, name="pooler"
        )
        self.build((None, sequence_length))

    @property
    def token_embedding(self):
        """The `keras.layers.ReversibleEmbedding`: ids -> token embeddings,
        and with `reverse=True` hidden states -> logits."""
        return self.embedding.token_embedding

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

    def embed(self, token_ids=None, segment_ids=None, training=None, token_embeddings=None):
        """The normalized input embeddings `(batch, time, hidden_dim)`, from
        `token_ids` or from `token_embeddings` (the token lookup's output)."""
        if token_embeddings is None:
            token_embeddings = self.token_embedding(token_ids)
        x = self.embedding.add_positions(token_embeddings)
        if self.segment_embedding is not None:
            if segment_ids is None:
                segment_ids = ops.zeros(ops.shape(x)[:2], "int32")
            x = x + self.segment_embedding(segment_ids)
        x = self.embedding_norm(x)
        return self.embedding_dropout(x, training=training)

    def _check_segment_ids(self, segment_ids, tokens_name, token_shape):
        """`segment_ids` as a tensor of the tokens' `(batch, time)` with ids
        in `[0, num_segments)` (values checked when known, as token ids)."""
        segment_ids = ops.convert_to_tensor(segment_ids)
        check_rank("segment_ids", segment_ids.shape, 2, "(batch, time)")
        check_same_batch([(tokens_name, token_shape), ("segment_ids", segment_ids.shape)])
        if None not in (segment_ids.shape[1], token_shape[1]) and (
            segment_ids.shape[1] != token_shape[1]
        ):
            raise ValueError(
                f"`segment_ids` must have shape (batch, {token_shape[1]}), one id per token. "
                f"Received: segment_ids with shape {tuple(segment_ids.shape)}"
            )
        if self.segment_embedding is not None:
            check_ids_in_range("segment_ids", segment_ids, self.num_segments, "`num_segments`")
        return segment_ids

    def call(
        self, inputs, training=None, return_attention_scores=False, head_mask=None,
        attention_multiplier=None, return_block_inputs=False,
    ):
        token_embeddings, padding_mask, _ = self._token_inputs(
            inputs,
            "token_ids",
            "token_embeddings",
            "padding_mask",
            self.token_embedding,
            allowed=("segment_ids",),
        )
        segment_ids = inputs.get("segment_ids") if isinstance(inputs, dict) else None
        if segment_ids is not None:
            tokens_name = "token_ids" if "token_ids" in inputs else "token_embeddings"
            segment_ids = self._check_segment_ids(
                segment_ids, tokens_name, token_embeddings.shape
            )
        head_masks = split_head_mask("head_mask", head_mask, self.head_counts)
        multipliers = split_attention_multiplier(
            "attention_multiplier", attention_multiplier, self.head_counts
        )
        block_inputs = [] if return_block_inputs else None
        x = self.embed(
            segment_ids=segment_ids, training=training, token_embeddings=token_embeddings
        )
        x, scores = run_blocks(
            self.blocks, x, head_masks, return_attention_scores, training,
            multipliers=multipliers, block_inputs=block_inputs, padding_mask=padding_mask,
        )
        if self.final_norm is not None:
            x = self.final_norm(x)
        outputs = {"sequence_output": x, "pooled_output": self.pooler(x[:, 0])}
        if return_attention_scores:
            outputs["attention_scores"] = stack_attention_scores(scores, max(self.head_counts))
        if return_block_inputs:
            outputs["block_inputs"] = ops.stack(block_inputs, axis=0)
        return outputs
