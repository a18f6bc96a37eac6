"""Encoder-decoder Transformer for sequence-to-sequence tasks (translation)."""

import keras
import numpy as np
from keras import ops

from keras_attn.layers.learned_position_embedding import LearnedPositionEmbedding
from keras_attn.layers.normalization import make_normalization
from keras_attn.layers.sinusoidal_position_encoding import SinusoidalPositionEncoding
from keras_attn.layers.token_and_position_embedding import TokenAndPositionEmbedding
from keras_attn.layers.transformer_decoder_block import TransformerDecoderBlock
from keras_attn.layers.transformer_encoder_block import TransformerEncoderBlock
from keras_attn.models.backbone import (
    Backbone,
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
    check_positive_int,
    check_rank,
    check_same_batch,
)

HEAD_GROUPS = ("encoder", "decoder", "cross_attention")


@keras.saving.register_keras_serializable(package="keras_attn")
class Seq2SeqBackbone(Backbone):
    """The Transformer of Vaswani et al. 2017: an encoder over the source and
    a causal decoder over the target that cross-attends to it.

    Each side: ids -> token lookup -> [token embeddings enter here] ->
    `* sqrt(hidden_dim)` (as in the paper; `scale_embeddings`) -> + positions
    -> embedding norm (`embedding_norm`, BART) -> dropout -> blocks -> final
    norm (pre-norm stacks) -> hidden states.

    The backbone stops at hidden states; a task projects the decoder's onto
    the target vocabulary with
    `backbone.target_token_embedding(hidden, reverse=True)`. With
    `share_embeddings` the source and target use one token layer (one shared
    vocabulary: `source_token_embedding is target_token_embedding`); with
    `tie_embeddings` the projection is the transposed target matrix (the
    paper ties all three), otherwise the target layer holds a separate
    `reverse_embeddings` matrix. (An unshared source layer never projects,
    so it has no matrix of its own.)

    Args:
        source_vocabulary_size, target_vocabulary_size: id `pad_token_id` is padding.
            Must be equal with `share_embeddings`.
        source_length, target_length: longest source / target sequence.
        num_encoder_layers, num_decoder_layers, hidden_dim, intermediate_dim:
            the shape (base: 6, 6, 512, 2048).
        num_heads: attention heads (base: 8): an int for every attention
            layer, or a dict `{"encoder": [...], "decoder": [...],
            "cross_attention": [...]}` with one count per encoder block,
            per decoder block (self-attention) and per decoder block
            (cross-attention).
        head_dim: size of every attention head; defaults to
            `hidden_dim // (largest head count)`, which must then divide
            `hidden_dim`. `get_config` stores the resolved int.
        dropout: dropout on embeddings, residual branches and attention.
        activation: `"relu"` (paper), `"gelu"` or `"swiglu"`.
        normalization: `"layer_norm"` or `"rms_norm"`.
        norm_first: pre-norm blocks (more stable when small); the paper is
            post-norm (`False`).
        position_encoding: `"sinusoidal"` (paper) or `"learned"`.
        share_embeddings: one token matrix for source and target.
        tie_embeddings: output projection = transposed target matrix.
        norm_epsilon: epsilon of every norm.
        scale_embeddings: multiply token embeddings by `sqrt(hidden_dim)`
            (default, the paper); BART does not.
        embedding_norm: normalize each side's embeddings (tokens plus
            positions) before the first block, one norm per side, as BART
            does. Default `False`.
        share_position_embeddings: with `share_embeddings`, the two sides
            also share one position table (default); `False` gives the
            target its own (`target_position_embedding`, BART's learned
            decoder positions) while the token matrix stays shared. No
            effect without `share_embeddings` (each side has its own then).
        pad_token_id: the padding id, dropped by the default padding mask
            (`token_ids != pad_token_id`) and by cached decoding's query
            mask; `None` when the vocabulary has no padding token (GPT-2):
            every position is then real unless a `padding_mask` says
            otherwise. Default 0 (`[PAD]` of keras-attn tokenizers).

    Attributes:
        source_token_embedding, target_token_embedding: the
            `keras.layers.ReversibleEmbedding`s of the tokens.
        source_embedding, target_embedding: the `TokenAndPositionEmbedding`s
            holding them and the position tables.
        target_position_embedding: the target's own position layer when the
            tokens are shared but the positions are not, else `None`.
        source_embedding_norm, target_embedding_norm: with
            `embedding_norm`, else `None`.
        encoder_blocks, decoder_blocks; head counts in
            `encoder_head_counts`, `decoder_head_counts`,
            `cross_attention_head_counts`.

    Call arguments:
        inputs: dict with the source as int `"source_ids"`
            `(batch, source_time)` or float `"source_token_embeddings"`
            `(batch, source_time, hidden_dim)`, and the decoder inputs (the
            target shifted right, starting with `[BOS]`) as `"target_ids"`
            `(batch, target_time)` or `"target_token_embeddings"`. Ids are
            right-padded with 0. Embeddings are what
            `source_token_embedding(ids)` / `target_token_embedding(ids)`
            return: unscaled, without positions. Optional
            `"source_padding_mask"`, `"target_padding_mask"`
            `(batch, time)`, True for real tokens (default: `ids != pad_token_id`, or
            all real for embeddings).
        return_attention_scores: also return every layer's post-softmax
            attention weights.
        encoder_head_mask: float `(num_encoder_layers, max encoder heads)`.
        decoder_head_mask: float `(num_decoder_layers, max decoder heads)`,
            for the decoder's self-attention.
        cross_attention_head_mask: float
            `(num_decoder_layers, max cross-attention heads)`.
            Each entry `[l, h]` multiplies the output of head `h` of layer
            `l`; entries past a layer's head count are ignored.
            Differentiable.
        encoder_attention_multiplier: float `(num_encoder_layers, batch,
            max encoder heads, source_time, source_time)`;
        decoder_attention_multiplier: float `(num_decoder_layers, batch,
            max decoder heads, target_time, target_time)`;
        cross_attention_multiplier: float `(num_decoder_layers, batch,
            max cross-attention heads, target_time, source_time)`.
            Slice `[l]` multiplies layer `l`'s post-softmax weights (batch,
            time axes may be 1; ones change nothing; the gradient at ones is
            `A * dL/dA`). Differentiable.
        return_block_inputs: also return each encoder and decoder block's
            input.
        training: enables dropout.

    Returns:
        dict with
        - `"encoder_sequence_output"`: `(batch, source_time, hidden_dim)`.
        - `"decoder_sequence_output"`: `(batch, target_time, hidden_dim)`.
        - with `return_attention_scores`: `"encoder_attention_scores"`
          `(num_encoder_layers, batch, max encoder heads, source_time,
          source_time)`, `"decoder_attention_scores"`
          `(num_decoder_layers, batch, max decoder heads, target_time,
          target_time)` and `"cross_attention_scores"`
          `(num_decoder_layers, batch, max cross heads, target_time,
          source_time)`; a layer with fewer heads than the largest count of
          its group has rows of zeros for the missing ones.
        - with `return_block_inputs`: `"encoder_block_inputs"`
          `(num_encoder_layers, batch, source_time, hidden_dim)` and
          `"decoder_block_inputs"` `(num_decoder_layers, batch, target_time,
          hidden_dim)`, the residual stream entering each block.

    Example:
    >>> model = Seq2SeqBackbone(source_vocabulary_size=50,
    ...     target_vocabulary_size=50, source_length=12, target_length=10,
    ...     num_encoder_layers=1, num_decoder_layers=1, num_heads=2,
    ...     hidden_dim=16, intermediate_dim=32)
    >>> outputs = model({"source_ids": keras.ops.ones((2, 12), "int32"),
    ...                  "target_ids": keras.ops.ones((2, 10), "int32")})
    >>> hidden = outputs["decoder_sequence_output"]  # (2, 10, 16)
    >>> logits = model.target_token_embedding(hidden, reverse=True)  # (2, 10, 50)
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
        "head_dim",
        "dropout",
        "activation",
        "normalization",
        "norm_first",
        "position_encoding",
        "share_embeddings",
        "tie_embeddings",
        "norm_epsilon",
        "pad_token_id",
        "scale_embeddings",
        "embedding_norm",
        "share_position_embeddings",
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
        head_dim=None,
        dropout=0.0,
        activation="relu",
        normalization="layer_norm",
        norm_first=True,
        position_encoding="sinusoidal",
        share_embeddings=True,
        tie_embeddings=True,
        norm_epsilon=1e-6,
        pad_token_id=0,
        scale_embeddings=True,
        embedding_norm=False,
        share_position_embeddings=True,
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
        self._set_pad_token_id(
            pad_token_id, min(self.source_vocabulary_size, self.target_vocabulary_size)
        )
        self.num_encoder_layers = check_positive_int("num_encoder_layers", num_encoder_layers)
        self.num_decoder_layers = check_positive_int("num_decoder_layers", num_decoder_layers)
        self._set_block_arguments(
            hidden_dim, intermediate_dim, dropout, activation, normalization, norm_epsilon
        )
        self._set_head_counts(num_heads)
        self.head_dim = resolve_head_dim(
            head_dim,
            self.hidden_dim,
            self.encoder_head_counts + self.decoder_head_counts + self.cross_attention_head_counts,
        )
        self.norm_first = bool(norm_first)
        self.position_encoding = check_choice(
            "position_encoding", position_encoding, ("learned", "sinusoidal")
        )
        self.share_embeddings = bool(share_embeddings)
        self.tie_embeddings = bool(tie_embeddings)
        self.scale_embeddings = bool(scale_embeddings)
        self.embedding_norm = bool(embedding_norm)
        self.share_position_embeddings = bool(share_position_embeddings)
        if share_embeddings and source_vocabulary_size != target_vocabulary_size:
            raise ValueError(
                "`share_embeddings=True` needs one vocabulary: `source_vocabulary_size` must "
                f"equal `target_vocabulary_size`. Received: {source_vocabulary_size} and "
                f"{target_vocabulary_size}"
            )

        def embedding(vocabulary_size, length, tie_weights, name):
            return TokenAndPositionEmbedding(
                vocabulary_size,
                length,
                hidden_dim,
                position_encoding=position_encoding,
                scale_embeddings=self.scale_embeddings,
                tie_weights=tie_weights,
                dtype=self.dtype_policy,
                name=name,
            )

        # A shared matrix with shared positions needs one position table long
        # enough for both sides.
        own_target_positions = self.share_embeddings and not self.share_position_embeddings
        shared_length = max(source_length, target_length)
        self.source_embedding = embedding(
            source_vocabulary_size,
            shared_length if share_embeddings and not own_target_positions else source_length,
            # An unshared source layer never projects: no matrix for it.
            self.tie_embeddings or not share_embeddings,
            "source_embedding",
        )
        self.target_embedding = (
            self.source_embedding
            if share_embeddings
            else embedding(
                target_vocabulary_size, target_length, self.tie_embeddings, "target_embedding"
            )
        )
        self.target_position_embedding = None
        if own_target_positions and position_encoding == "learned":
            self.target_position_embedding = LearnedPositionEmbedding(
                target_length,
                initializer=keras.initializers.serialize(
                    self.source_embedding.embeddings_initializer
                ),
                dtype=self.dtype_policy,
                name="target_position_embedding",
            )
        elif own_target_positions:
            # Sinusoids have no weights: the target's own is the same function.
            self.target_position_embedding = SinusoidalPositionEncoding(
                dtype=self.dtype_policy, name="target_position_embedding"
            )
        self.source_embedding_norm = self.target_embedding_norm = None
        if self.embedding_norm:
            self.source_embedding_norm = make_normalization(
                normalization, norm_epsilon, dtype=self.dtype_policy, name="source_embedding_norm"
            )
            self.target_embedding_norm = make_normalization(
                normalization, norm_epsilon, dtype=self.dtype_policy, name="target_embedding_norm"
            )
        self.embedding_dropout = keras.layers.Dropout(
            dropout, dtype=self.dtype_policy, name="embedding_dropout"
        )
        self.encoder_blocks = [
            TransformerEncoderBlock(
                **self._block_kwargs(norm_first=norm_first, num_heads=count),
                name=f"encoder_block_{i}",
            )
            for i, count in enumerate(self.encoder_head_counts)
        ]
        self.decoder_blocks = [
            TransformerDecoderBlock(
                **self._block_kwargs(
                    norm_first=norm_first,
                    num_heads=count,
                    use_cross_attention=True,
                    cross_attention_num_heads=cross_count,
                ),
                name=f"decoder_block_{i}",
            )
            for i, (count, cross_count) in enumerate(
                zip(self.decoder_head_counts, self.cross_attention_head_counts)
            )
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
        self.build()

    def _set_head_counts(self, num_heads):
        layers = {
            "encoder": self.num_encoder_layers,
            "decoder": self.num_decoder_layers,
            "cross_attention": self.num_decoder_layers,
        }
        if isinstance(num_heads, dict):
            if set(num_heads) != set(HEAD_GROUPS):
                raise ValueError(
                    "`num_heads` as a dict must have exactly the keys "
                    f"{list(HEAD_GROUPS)}, each a list of head counts (one per layer). "
                    f"Received keys: {sorted(num_heads)}"
                )
            counts = {
                group: resolve_head_counts(f"num_heads[{group!r}]", num_heads[group], layers[group])
                for group in HEAD_GROUPS
            }
            self.num_heads = {
                group: [int(c) for c in num_heads[group]]
                if isinstance(num_heads[group], (list, tuple))
                else int(num_heads[group])
                for group in HEAD_GROUPS
            }
        else:
            counts = {
                group: resolve_head_counts("num_heads", num_heads, layers[group])
                for group in HEAD_GROUPS
            }
            self.num_heads = int(num_heads)
        self.encoder_head_counts = counts["encoder"]
        self.decoder_head_counts = counts["decoder"]
        self.cross_attention_head_counts = counts["cross_attention"]

    @property
    def source_token_embedding(self):
        """The source `keras.layers.ReversibleEmbedding` (ids -> token embeddings)."""
        return self.source_embedding.token_embedding

    @property
    def target_token_embedding(self):
        """The target `keras.layers.ReversibleEmbedding`; with `reverse=True`
        it projects decoder hidden states onto the target vocabulary."""
        return self.target_embedding.token_embedding

    def build(self, input_shape=None):
        hidden_shape = (None, None, self.hidden_dim)
        self.source_embedding.build()
        if not self.share_embeddings:
            self.target_embedding.build()
        if self.target_position_embedding is not None:
            self.target_position_embedding.build(hidden_shape)
        for block in self.encoder_blocks:
            block.build(hidden_shape)
        for block in self.decoder_blocks:
            block.build(hidden_shape, hidden_shape)
        for norm in (
            self.encoder_norm, self.decoder_norm, self.source_embedding_norm,
            self.target_embedding_norm,
        ):
            if norm is not None:
                norm.build(hidden_shape)
        self.built = True

    # ------------------------------------------------------------- encoder

    def _run_encoder(
        self, inputs, training, head_mask, return_attention_scores, multiplier=None,
        block_inputs=None,
    ):
        token_embeddings, source_mask, _ = self._token_inputs(
            inputs,
            "source_ids",
            "source_token_embeddings",
            "source_padding_mask",
            self.source_token_embedding,
        )
        if source_mask is None:
            source_mask = ops.ones(ops.shape(token_embeddings)[:2], "bool")
        head_masks = split_head_mask("encoder_head_mask", head_mask, self.encoder_head_counts)
        multipliers = split_attention_multiplier(
            "encoder_attention_multiplier", multiplier, self.encoder_head_counts
        )
        x = self.source_embedding.add_positions(token_embeddings)
        if self.source_embedding_norm is not None:
            x = self.source_embedding_norm(x)
        x = self.embedding_dropout(x, training=training)
        x, scores = run_blocks(
            self.encoder_blocks, x, head_masks, return_attention_scores, training,
            multipliers=multipliers, block_inputs=block_inputs, padding_mask=source_mask,
        )
        if self.encoder_norm is not None:
            x = self.encoder_norm(x)
        return x, source_mask, scores

    def encode(self, source, training=None, source_padding_mask=None):
        """Runs the encoder.

        Args:
            source: int source ids `(batch, source_time)` (0 is padding), or
                a dict as the call's inputs holding `"source_ids"` or
                `"source_token_embeddings"` and optionally
                `"source_padding_mask"`.
            source_padding_mask: optional `(batch, source_time)`, True for
                real tokens.

        Returns:
            `(encoder_outputs (batch, source_time, hidden_dim),
            source_mask (batch, source_time))`, the inputs of
            `cross_attention_caches` and `decode_with_cache`.
        """
        if not isinstance(source, dict):
            source = {"source_ids": source}
        if source_padding_mask is not None:
            source = dict(source, source_padding_mask=source_padding_mask)
        x, source_mask, _ = self._run_encoder(source, training, None, False)
        return x, source_mask

    # ------------------------------------------------------------- decoder

    def embed_target(self, token_embeddings, start_index=0):
        """The decoder's block input before dropout: target token embeddings
        `(batch, time, hidden_dim)` scaled (`scale_embeddings`), plus the
        target positions from `start_index`, then the target embedding norm
        (`embedding_norm`)."""
        if self.target_position_embedding is None:
            x = self.target_embedding.add_positions(token_embeddings, start_index=start_index)
        else:
            # Shared tokens, own positions: no position from the shared layer.
            x = ops.cast(token_embeddings, self.compute_dtype)
            if self.scale_embeddings:
                x = x * ops.cast(np.sqrt(self.hidden_dim), x.dtype)
            x = x + self.target_position_embedding(x, start_index=start_index)
        if self.target_embedding_norm is not None:
            x = self.target_embedding_norm(x)
        return x

    def _run_decoder(
        self, inputs, encoder_outputs, source_mask, training, head_mask, cross_head_mask,
        return_attention_scores, multiplier=None, cross_multiplier=None, block_inputs=None,
    ):
        token_embeddings, target_mask, _ = self._token_inputs(
            inputs,
            "target_ids",
            "target_token_embeddings",
            "target_padding_mask",
            self.target_token_embedding,
        )
        head_masks = split_head_mask("decoder_head_mask", head_mask, self.decoder_head_counts)
        cross_head_masks = split_head_mask(
            "cross_attention_head_mask", cross_head_mask, self.cross_attention_head_counts
        )
        multipliers = split_attention_multiplier(
            "decoder_attention_multiplier", multiplier, self.decoder_head_counts
        )
        cross_multipliers = split_attention_multiplier(
            "cross_attention_multiplier", cross_multiplier, self.cross_attention_head_counts
        )
        x = self.embed_target(token_embeddings)
        x = self.embedding_dropout(x, training=training)
        self_scores, cross_scores = [], []
        for block, block_head_mask, block_cross_mask, block_multiplier, block_cross_multiplier in (
            zip(self.decoder_blocks, head_masks, cross_head_masks, multipliers, cross_multipliers)
        ):
            if block_inputs is not None:
                block_inputs.append(x)
            extra = {}
            if block_multiplier is not None:
                extra["attention_multiplier"] = block_multiplier
            if block_cross_multiplier is not None:
                extra["cross_attention_multiplier"] = block_cross_multiplier
            x = block(
                x,
                encoder_sequence=encoder_outputs,
                decoder_padding_mask=target_mask,
                encoder_padding_mask=source_mask,
                head_mask=block_head_mask,
                cross_head_mask=block_cross_mask,
                return_attention_scores=return_attention_scores,
                training=training,
                **extra,
            )
            if return_attention_scores:
                x, block_scores = x
                self_scores.append(block_scores["self_attention"])
                cross_scores.append(block_scores["cross_attention"])
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        return x, self_scores, cross_scores

    def decode(self, target, encoder_outputs, source_mask, training=None):
        """Decoder hidden states `(batch, target_time, hidden_dim)` (after the
        final norm) for every target position, attending to the encoder.

        `target` is int target ids `(batch, target_time)` or a dict holding
        `"target_ids"` or `"target_token_embeddings"` and optionally
        `"target_padding_mask"`."""
        if not isinstance(target, dict):
            target = {"target_ids": target}
        x, _, _ = self._run_decoder(
            target, encoder_outputs, source_mask, training, None, None, False
        )
        return x

    def call(
        self,
        inputs,
        training=None,
        return_attention_scores=False,
        encoder_head_mask=None,
        decoder_head_mask=None,
        cross_attention_head_mask=None,
        encoder_attention_multiplier=None,
        decoder_attention_multiplier=None,
        cross_attention_multiplier=None,
        return_block_inputs=False,
    ):
        if not isinstance(inputs, dict):
            raise ValueError(
                "`inputs` must be a dict with `source_ids` (or `source_token_embeddings`) and "
                f"`target_ids` (or `target_token_embeddings`). Received: {type(inputs).__name__}"
            )
        # Unknown keys are reported by the side they were routed to.
        source = {k: v for k, v in inputs.items() if k.startswith("source_")}
        target = {k: v for k, v in inputs.items() if not k.startswith("source_")}
        # The two sides meet in cross-attention: one batch size for all inputs.
        check_same_batch([
            (name, None if value is None else np.shape(value)) for name, value in inputs.items()
        ])
        encoder_inputs = [] if return_block_inputs else None
        decoder_inputs = [] if return_block_inputs else None
        encoder_outputs, source_mask, encoder_scores = self._run_encoder(
            source, training, encoder_head_mask, return_attention_scores,
            multiplier=encoder_attention_multiplier, block_inputs=encoder_inputs,
        )
        decoder_outputs, self_scores, cross_scores = self._run_decoder(
            target,
            encoder_outputs,
            source_mask,
            training,
            decoder_head_mask,
            cross_attention_head_mask,
            return_attention_scores,
            multiplier=decoder_attention_multiplier,
            cross_multiplier=cross_attention_multiplier,
            block_inputs=decoder_inputs,
        )
        outputs = {
            "encoder_sequence_output": encoder_outputs,
            "decoder_sequence_output": decoder_outputs,
        }
        if return_block_inputs:
            outputs["encoder_block_inputs"] = ops.stack(encoder_inputs, axis=0)
            outputs["decoder_block_inputs"] = ops.stack(decoder_inputs, axis=0)
        if return_attention_scores:
            outputs["encoder_attention_scores"] = stack_attention_scores(
                encoder_scores, max(self.encoder_head_counts)
            )
            outputs["decoder_attention_scores"] = stack_attention_scores(
                self_scores, max(self.decoder_head_counts)
            )
            outputs["cross_attention_scores"] = stack_attention_scores(
                cross_scores, max(self.cross_attention_head_counts)
            )
        return outputs

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
            target_ids: int `(batch, new_tokens)`; `pad_token_id` queries attend to
                nothing (padding).
            caches: self-attention caches (from `empty_caches` or a previous
                call).
            cross_caches: from `cross_attention_caches`.
            source_mask: bool `(batch, source_time)`, from `encode`.
            index: int or scalar int tensor, position of `target_ids[:, 0]`.

        Returns:
            `(hidden (batch, new_tokens, hidden_dim), updated caches)`; the
            hidden states are after the final norm, as
            `decoder_sequence_output`.
        """
        check_rank("target_ids", target_ids.shape, 2, "(batch, new_tokens)")
        check_ids_in_range("target_ids", target_ids, self.target_vocabulary_size)
        x = self.embed_target(self.target_token_embedding(target_ids), start_index=index)
        query_mask = self.query_mask(target_ids)
        updated = []
        for block, cache, cross_cache in zip(self.decoder_blocks, caches, cross_caches):
            x, cache, _ = block(
                x,
                encoder_padding_mask=source_mask,
                self_attention_cache=cache,
                self_attention_cache_update_index=index,
                cross_attention_cache=cross_cache,
                mask=query_mask,
            )
            updated.append(cache)
        if self.decoder_norm is not None:
            x = self.decoder_norm(x)
        return x, tuple(updated)
