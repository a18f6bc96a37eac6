"""GPT-style decoder-only Transformer: token ids in, hidden states out."""

import keras
from keras import ops

from keras_attn.layers.normalization import make_normalization
from keras_attn.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_attn.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_attn.models.backbone import (
    Backbone,
    check_key_value_heads,
    config_head_counts,
    resolve_head_counts,
    resolve_head_dim,
    run_blocks,
    split_attention_multiplier,
    split_head_mask,
    stack_attention_scores,
)
from keras_attn.utils.arguments import (
    check_boolean,
    check_choice,
    check_ids_in_range,
    check_positive_int,
    check_positive_number,
    check_rank,
)

POSITION_ENCODINGS = ("learned", "sinusoidal", "rotary")


@keras.saving.register_keras_serializable(package="keras_attn")
class DecoderBackbone(Backbone):
    """A stack of causal pre-norm decoder blocks (Radford et al. 2019).

    token ids -> `token_embedding` lookup -> [token embeddings enter here]
    -> + position embedding (learned / sinusoidal; rotary is applied inside
    attention instead) -> dropout -> `num_layers` x `TransformerDecoderBlock`
    (causal self-attention, feed-forward) -> final norm -> hidden states.

    The backbone stops at hidden states; a task projects them onto the
    vocabulary with `backbone.token_embedding(hidden, reverse=True)`: the
    transposed token matrix when `tie_embeddings` (GPT-2), or the layer's own
    `reverse_embeddings` matrix `(hidden_dim, vocabulary_size)` otherwise.

    Args:
        vocabulary_size: number of token ids; id `pad_token_id` is padding.
        sequence_length: longest sequence (and decoding cache) supported.
        num_layers: number of decoder blocks.
        num_heads: attention heads, an int for every block or a list of
            `num_layers` ints (e.g. a pruned model).
        hidden_dim: width of the residual stream.
        intermediate_dim: width of the feed-forward layer.
        head_dim: size of every attention head; defaults to
            `hidden_dim // max(num_heads)`, which must then divide
            `hidden_dim`. `get_config` stores the resolved int.
        num_key_value_heads: key/value heads (grouped-query attention); must
            divide every block's head count. Defaults to the head count.
        dropout: dropout on embeddings, residual branches and attention.
        activation: `"relu"`, `"gelu"` or `"swiglu"`.
        normalization: `"layer_norm"` or `"rms_norm"`.
        position_encoding: `"learned"`, `"sinusoidal"` or `"rotary"`.
        rope_max_wavelength: rotary base when `position_encoding="rotary"`.
        rope_scaling_factor: with rotary positions, positions are divided by
            it (linear position interpolation); 1 changes nothing.
        tie_embeddings: project onto the transposed token embedding matrix
            (otherwise `token_embedding` holds a separate output matrix).
        norm_epsilon: epsilon of every norm.
        pad_token_id: the padding id, dropped by the default padding mask
            (`token_ids != pad_token_id`) and by cached decoding's query
            mask; `None` when the vocabulary has no padding token (GPT-2):
            every position is then real unless a `padding_mask` says
            otherwise. Default 0 (`[PAD]` of keras-attn tokenizers).
        use_bias: whether the attention and feed-forward projections have
            biases (GPT-2: yes; LLaMA-style models: no).

    Attributes:
        token_embedding: the `keras.layers.ReversibleEmbedding` of the tokens.
        embedding: the `TokenAndPositionEmbedding` holding it and the
            position table.
        blocks: the `TransformerDecoderBlock`s; `head_counts` their heads.

    Call arguments:
        inputs: int token ids `(batch, time)`, right-padded with 0; or a dict
            with either `"token_ids"` or `"token_embeddings"` (float
            `(batch, time, hidden_dim)`, what `token_embedding(token_ids)`
            returns: no position, no scaling; they are added after), and
            optionally `"padding_mask"` `(batch, time)`, True for real tokens
            (default: `token_ids != pad_token_id`, or all real for embeddings).
        return_attention_scores: also return every block's post-softmax
            self-attention weights.
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
        - `"sequence_output"`: `(batch, time, hidden_dim)`, after the final
          norm; position `t` predicts token `t + 1`.
        - `"attention_scores"` (with `return_attention_scores`):
          `(num_layers, batch, max(num_heads), time, time)`; a block with
          fewer heads has rows of zeros for the missing ones.
        - `"block_inputs"` (with `return_block_inputs`):
          `(num_layers, batch, time, hidden_dim)`, the residual stream
          entering each block.

    Example:
    >>> backbone = DecoderBackbone(vocabulary_size=100, sequence_length=16,
    ...     num_layers=2, num_heads=[4, 2], hidden_dim=32, intermediate_dim=64)
    >>> ids = keras.ops.ones((2, 16), "int32")
    >>> outputs = backbone(ids, return_attention_scores=True)
    >>> tuple(outputs["sequence_output"].shape), tuple(outputs["attention_scores"].shape)
    ((2, 16, 32), (2, 2, 4, 16, 16))
    >>> logits = backbone.token_embedding(outputs["sequence_output"], reverse=True)
    >>> caches = backbone.empty_caches(batch_size=2)
    >>> hidden, caches = backbone.call_with_cache(ids[:, :1], caches, index=0)
    """

    config_keys = (
        "vocabulary_size",
        "sequence_length",
        "num_layers",
        "num_heads",
        "hidden_dim",
        "intermediate_dim",
        "head_dim",
        "num_key_value_heads",
        "dropout",
        "activation",
        "normalization",
        "position_encoding",
        "rope_max_wavelength",
        "tie_embeddings",
        "norm_epsilon",
        "pad_token_id",
        "use_bias",
        "rope_scaling_factor",
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
        num_key_value_heads=None,
        dropout=0.0,
        activation="gelu",
        normalization="layer_norm",
        position_encoding="learned",
        rope_max_wavelength=10000,
        tie_embeddings=True,
        norm_epsilon=1e-5,
        pad_token_id=0,
        use_bias=True,
        rope_scaling_factor=1.0,
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
        self.num_key_value_heads = check_key_value_heads(num_key_value_heads, self.head_counts)
        self.position_encoding = check_choice(
            "position_encoding", position_encoding, POSITION_ENCODINGS
        )
        self.rope_max_wavelength = check_positive_number(
            "rope_max_wavelength", rope_max_wavelength
        )
        self.rope_scaling_factor = float(
            check_positive_number("rope_scaling_factor", rope_scaling_factor)
        )
        self.tie_embeddings = bool(tie_embeddings)
        self.use_bias = check_boolean("use_bias", use_bias)
        rotary = position_encoding == "rotary"

        self.embedding = TokenAndPositionEmbedding(
            vocabulary_size,
            sequence_length,
            hidden_dim,
            position_encoding="none" if rotary else position_encoding,
            tie_weights=self.tie_embeddings,
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
                    num_heads=count,
                    num_key_value_heads=self.num_key_value_heads,
                    rope_max_wavelength=rope_max_wavelength if rotary else None,
                    rope_scaling_factor=self.rope_scaling_factor,
                    use_bias=self.use_bias,
                ),
                name=f"decoder_block_{i}",
            )
            for i, count in enumerate(self.head_counts)
        ]
        self.final_norm = make_normalization(
            normalization, norm_epsilon, dtype=self.dtype_policy, name="final_norm"
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
        for block in self.blocks:
            block.build(hidden_shape)
        self.final_norm.build(hidden_shape)
        self.built = True

    def call(
        self, inputs, training=None, return_attention_scores=False, head_mask=None,
        attention_multiplier=None, return_block_inputs=False,
    ):
        token_embeddings, padding_mask, _ = self._token_inputs(
            inputs, "token_ids", "token_embeddings", "padding_mask", self.token_embedding
        )
        head_masks = split_head_mask("head_mask", head_mask, self.head_counts)
        multipliers = split_attention_multiplier(
            "attention_multiplier", attention_multiplier, self.head_counts
        )
        block_inputs = [] if return_block_inputs else None
        x = self.embedding.add_positions(token_embeddings)
        x = self.embedding_dropout(x, training=training)
        x, scores = run_blocks(
            self.blocks, x, head_masks, return_attention_scores, training,
            multipliers=multipliers, block_inputs=block_inputs,
            decoder_padding_mask=padding_mask,
        )
        outputs = {"sequence_output": self.final_norm(x)}
        if return_block_inputs:
            outputs["block_inputs"] = ops.stack(block_inputs, axis=0)
        if return_attention_scores:
            outputs["attention_scores"] = stack_attention_scores(
                [block_scores["self_attention"] for block_scores in scores],
                max(self.head_counts),
            )
        return outputs

    def empty_caches(self, batch_size, max_length=None):
        """One zero key/value cache per block, each `(B, 2, max_length, K, head_dim)`."""
        max_length = max_length or self.sequence_length
        return tuple(
            block.empty_self_attention_cache(batch_size, max_length) for block in self.blocks
        )

    def call_with_cache(self, token_ids, caches, index):
        """Runs `token_ids` written at position `index` against the caches.

        Args:
            token_ids: int `(batch, new_tokens)`; `pad_token_id` queries attend to
                nothing (padding).
            caches: the tuple from `empty_caches` (or a previous call).
            index: int or scalar int tensor, position of `token_ids[:, 0]`.

        Returns:
            `(hidden (batch, new_tokens, hidden_dim), updated caches)`; the
            hidden states are after the final norm, as `sequence_output`.
        """
        check_rank("token_ids", token_ids.shape, 2, "(batch, new_tokens)")
        check_ids_in_range("token_ids", token_ids, self.vocabulary_size)
        x = self.embedding.add_positions(self.token_embedding(token_ids), start_index=index)
        # The new tokens' padding masks them as queries; the cache slots are
        # keys, masked by causality.
        query_mask = self.query_mask(token_ids)
        updated = []
        for block, cache in zip(self.blocks, caches):
            x, cache = block(
                x,
                self_attention_cache=cache,
                self_attention_cache_update_index=index,
                mask=query_mask,
            )
            updated.append(cache)
        return self.final_norm(x), tuple(updated)
