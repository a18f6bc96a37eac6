"""Transformer decoder block: causal self-attention, optional cross-attention
to an encoder, and a feed-forward network, with key/value caches for
incremental decoding."""

import keras
from keras import ops

from keras_attn.layers.transformer_encoder_block import (
    _CROSS_ATTENTION_DROPOUT_SEED,
    _CROSS_ATTENTION_SEED,
    _SELF_ATTENTION_DROPOUT_SEED,
    _SELF_ATTENTION_SEED,
    TransformerBlockBase,
    check_padding_mask,
)
from keras_attn.utils.arguments import check_positive_int, check_rank
from keras_attn.utils.keras_compat import keras_mask_of


@keras.saving.register_keras_serializable(package="keras_attn")
class TransformerDecoderBlock(TransformerBlockBase):
    """Transformer decoder block (Vaswani et al. 2017): causal self-attention,
    optional cross-attention to an encoder sequence, and a feed-forward
    network, each in a residual connection (pre- or post-norm).

    Incremental decoding uses fixed-size key/value caches of shape
    `(B, 2, S_max, num_key_value_heads, key_dim)`, made by
    `block.empty_self_attention_cache(batch, max_length)` and
    `block.empty_cross_attention_cache(batch, encoder_length)` (or the
    attention sublayers' `empty_cache`):

    - self-attention: pass `self_attention_cache` and
      `self_attention_cache_update_index=i`; the new tokens are written at
      slot `i` and query `t` sees slots `<= i + t`.
    - cross-attention: fill the cache once, on the first step, with
      `encoder_sequence`, the empty cache and
      `cross_attention_cache_update_index=0`; on later steps pass the filled
      cache with `cross_attention_cache_update_index=None` (and
      `encoder_sequence=None`): keys and values are read, not recomputed.
      Make the cache exactly as long as the encoder sequence, or mask the
      unused slots with `encoder_padding_mask` of shape `(B, S_max)`.

    Args:
        num_heads, intermediate_dim, key_dim, num_key_value_heads, dropout,
        attention_dropout, activation, normalization, norm_first,
        norm_epsilon, use_bias, rope_max_wavelength, rope_scaling_factor,
        kernel_initializer, bias_initializer, seed: as for `TransformerEncoderBlock`. The rotary
            embedding (if any) applies to self-attention only.
        use_cross_attention: whether the block attends to an encoder.
        cross_attention_num_heads: heads of the cross-attention; defaults
            to `num_heads` (a pruned model may keep different counts). With
            `key_dim=None` the hidden dimension must be divisible by it, and
            `num_key_value_heads` (if set) must divide it.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        decoder_sequence: `(B, T, D)`.
        encoder_sequence: `(B, S, D_enc)`; required with cross-attention
            unless a filled cross-attention cache is read.
        decoder_padding_mask: bool/int, True for real tokens. `(B, T)`
            without a cache; with a self-attention cache `(B, S_max)` over
            the cache slots (e.g. left-padded prompts). Defaults to the Keras
            mask of `decoder_sequence` (without a cache).
        encoder_padding_mask: `(B, S)` (or `(B, S_max)` with a cross cache);
            defaults to the Keras mask of `encoder_sequence`.
        self_attention_cache, self_attention_cache_update_index: see above.
        cross_attention_cache, cross_attention_cache_update_index: see above.
        attention_bias: float, broadcastable to `(B, num_heads, T, S)`, added
            to the self-attention logits.
        head_mask: `(num_heads,)` or `(B, num_heads)` multiplier of the
            self-attention heads' outputs.
        cross_head_mask: `(cross_attention_num_heads,)` or
            `(B, cross_attention_num_heads)`, the same for cross-attention.
        attention_multiplier, cross_attention_multiplier: float,
            broadcastable to `(B, heads, T, S)`, multiply the post-softmax
            self- / cross-attention weights (see `MultiHeadAttention`); ones
            change nothing.
        use_causal_mask: causal self-attention (default True).
        return_attention_scores: also return the attention weights.
        training: enables dropout.

    Returns:
        `output` `(B, T, D)`, followed, only when applicable and in this
        order, by: a dict of post-softmax attention weights
        `{"self_attention": (B, N, T, S_self), "cross_attention":
        (B, N_cross, T, S_enc)}` (cross only with cross-attention) when
        `return_attention_scores`; the updated self-attention cache when one
        was given; the cross-attention cache when one was given.

    Sublayers (after build): `self_attention`, `self_attention_norm`,
    `cross_attention`, `cross_attention_norm` (with cross-attention),
    `feed_forward`, `feed_forward_norm`.

    Example:
    >>> block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
    >>> x = keras.random.normal((2, 4, 16))
    >>> full = block(x)
    >>> cache = block.empty_self_attention_cache(batch_size=2, max_length=4)
    >>> step, cache = block(x[:, :1], self_attention_cache=cache,
    ...                     self_attention_cache_update_index=0)
    """

    def __init__(
        self, *args, use_cross_attention=False, cross_attention_num_heads=None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.use_cross_attention = bool(use_cross_attention)
        self.cross_attention_num_heads = check_positive_int(
            "cross_attention_num_heads", cross_attention_num_heads, allow_none=True
        ) or self.num_heads
        if (
            self.num_key_value_heads is not None
            and self.cross_attention_num_heads % self.num_key_value_heads
        ):
            raise ValueError(
                "`cross_attention_num_heads` must be divisible by `num_key_value_heads`. "
                f"Received: cross_attention_num_heads={cross_attention_num_heads}, "
                f"num_key_value_heads={self.num_key_value_heads}"
            )

    def build(self, decoder_sequence_shape, encoder_sequence_shape=None, **unused_shapes):
        # Caches, masks and biases have no weights; their shapes are ignored.
        check_rank("decoder_sequence", decoder_sequence_shape, 3, "(batch, time, features)")
        hidden_dim = decoder_sequence_shape[-1]
        self.self_attention = self._make_attention(
            hidden_dim, "self_attention", _SELF_ATTENTION_SEED, rotary=True
        )
        self.self_attention.build(decoder_sequence_shape, decoder_sequence_shape)
        self.self_attention_norm = self._make_norm("self_attention_norm")
        self.self_attention_norm.build(decoder_sequence_shape)
        self.self_attention_dropout = self._make_dropout(
            "self_attention_dropout", _SELF_ATTENTION_DROPOUT_SEED
        )
        if self.use_cross_attention:
            # Built before any encoder output is seen (e.g. only a filled
            # cache), the encoder width is assumed to be the decoder's.
            if encoder_sequence_shape is None:
                encoder_sequence_shape = decoder_sequence_shape
            check_rank("encoder_sequence", encoder_sequence_shape, 3, "(batch, time, features)")
            self.cross_attention = self._make_attention(
                hidden_dim,
                "cross_attention",
                _CROSS_ATTENTION_SEED,
                rotary=False,
                num_heads=self.cross_attention_num_heads,
                heads_name="cross_attention_num_heads",
            )
            self.cross_attention.build(decoder_sequence_shape, encoder_sequence_shape)
            self.cross_attention_norm = self._make_norm("cross_attention_norm")
            self.cross_attention_norm.build(decoder_sequence_shape)
            self.cross_attention_dropout = self._make_dropout(
                "cross_attention_dropout", _CROSS_ATTENTION_DROPOUT_SEED
            )
        self._build_feed_forward(decoder_sequence_shape)
        self.built = True

    def empty_self_attention_cache(self, batch_size, max_length, dtype=None):
        """Zeros `(batch_size, 2, max_length, K, key_dim)`; the block must be built."""
        self._check_built("empty_self_attention_cache")
        return self.self_attention.empty_cache(batch_size, max_length, dtype=dtype)

    def empty_cross_attention_cache(self, batch_size, max_length, dtype=None):
        """Zeros `(batch_size, 2, max_length, K, key_dim)`; `max_length` is
        usually the encoder length. The block must be built."""
        self._check_built("empty_cross_attention_cache")
        if not self.use_cross_attention:
            raise ValueError(
                "This block has no cross-attention: construct it with "
                "`use_cross_attention=True`. Received: use_cross_attention=False"
            )
        return self.cross_attention.empty_cache(batch_size, max_length, dtype=dtype)

    def _check_built(self, method):
        if not self.built:
            raise ValueError(
                f"`{method}` needs a built block: call it once or call "
                "`block.build(decoder_sequence_shape)` first."
            )

    def _check_cross_arguments(
        self, encoder_sequence, cross_attention_cache, cross_attention_cache_update_index
    ):
        if not self.use_cross_attention:
            for name, value in (
                ("encoder_sequence", encoder_sequence),
                ("cross_attention_cache", cross_attention_cache),
            ):
                if value is not None:
                    raise ValueError(
                        f"`{name}` was given but the block has no cross-attention: "
                        "construct it with `use_cross_attention=True`. "
                        "Received: use_cross_attention=False"
                    )
            return
        if encoder_sequence is None and cross_attention_cache is None:
            raise ValueError(
                "`encoder_sequence` is required: the block has cross-attention "
                "(`use_cross_attention=True`) and no filled `cross_attention_cache` was "
                "given. Received: encoder_sequence=None"
            )
        if cross_attention_cache is None and cross_attention_cache_update_index is not None:
            raise ValueError(
                "`cross_attention_cache_update_index` needs a `cross_attention_cache`. "
                "Received: cross_attention_cache=None"
            )
        if encoder_sequence is None and cross_attention_cache_update_index is not None:
            raise ValueError(
                "`encoder_sequence` is required to fill the cross-attention cache "
                "(`cross_attention_cache_update_index` is set). Received: encoder_sequence=None"
            )

    def call(
        self,
        decoder_sequence,
        encoder_sequence=None,
        decoder_padding_mask=None,
        encoder_padding_mask=None,
        self_attention_cache=None,
        self_attention_cache_update_index=None,
        cross_attention_cache=None,
        cross_attention_cache_update_index=None,
        attention_bias=None,
        head_mask=None,
        cross_head_mask=None,
        use_causal_mask=True,
        return_attention_scores=False,
        training=None,
        mask=None,
        attention_multiplier=None,
        cross_attention_multiplier=None,
    ):
        check_rank("decoder_sequence", decoder_sequence.shape, 3, "(batch, time, features)")
        self._check_cross_arguments(
            encoder_sequence, cross_attention_cache, cross_attention_cache_update_index
        )
        if self_attention_cache is not None and self_attention_cache_update_index is None:
            raise ValueError(
                "`self_attention_cache_update_index` is required with a "
                "`self_attention_cache` (the slot where the new tokens are written). "
                "Received: self_attention_cache_update_index=None"
            )
        # Keras fills `mask` only when `decoder_sequence` is the sole tensor
        # argument.
        if mask is None:
            mask = keras_mask_of(decoder_sequence)
        length = decoder_sequence.shape[1]
        if self_attention_cache is None:
            if decoder_padding_mask is None:
                decoder_padding_mask = mask
            key_mask = query_mask = check_padding_mask(
                "decoder_padding_mask",
                decoder_padding_mask,
                length,
                "one entry per decoder position",
            )
        elif decoder_padding_mask is not None:
            key_mask = check_padding_mask(
                "decoder_padding_mask",
                decoder_padding_mask,
                self_attention_cache.shape[2],
                "one entry per self-attention cache slot when decoding with a cache",
            )
            positions = ops.arange(length, dtype="int32") + ops.cast(
                self_attention_cache_update_index, "int32"
            )
            query_mask = ops.take(key_mask, positions, axis=1)
        else:
            query_mask = None if mask is None else ops.cast(mask, "bool")
            # A Keras mask on the new tokens says nothing about the cache
            # slots; an explicit all-True key mask stops the attention layer
            # from taking the `(B, T)` Keras mask as one.
            key_mask = (
                None
                if mask is None
                else ops.ones(
                    (ops.shape(decoder_sequence)[0], self_attention_cache.shape[2]), "bool"
                )
            )

        scores = {}
        new_caches = []

        def self_attend(x):
            outputs = self.self_attention(
                x,
                x,
                query_mask=query_mask,
                value_mask=key_mask,
                attention_bias=attention_bias,
                head_mask=head_mask,
                attention_multiplier=attention_multiplier,
                use_causal_mask=use_causal_mask,
                cache=self_attention_cache,
                cache_update_index=self_attention_cache_update_index,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            return self._unpack(
                outputs,
                "self_attention",
                return_attention_scores,
                self_attention_cache is not None,
                scores,
                new_caches,
            )

        x, _ = self._residual(
            decoder_sequence,
            self.self_attention_norm,
            self.self_attention_dropout,
            self_attend,
            training,
        )

        if self.use_cross_attention:
            reading_cache = (
                cross_attention_cache is not None and cross_attention_cache_update_index is None
            )
            if encoder_padding_mask is None and not reading_cache:
                encoder_padding_mask = keras_mask_of(encoder_sequence)
            if cross_attention_cache is not None:
                encoder_length = cross_attention_cache.shape[2]
                description = "one entry per cross-attention cache slot"
            else:
                encoder_length = encoder_sequence.shape[1]
                description = "one entry per encoder position"
            encoder_padding_mask = check_padding_mask(
                "encoder_padding_mask", encoder_padding_mask, encoder_length, description
            )

            def cross_attend(x):
                outputs = self.cross_attention(
                    x,
                    None if reading_cache else encoder_sequence,
                    query_mask=query_mask,
                    value_mask=encoder_padding_mask,
                    head_mask=cross_head_mask,
                    attention_multiplier=cross_attention_multiplier,
                    cache=cross_attention_cache,
                    cache_update_index=cross_attention_cache_update_index,
                    return_attention_scores=return_attention_scores,
                    training=training,
                )
                return self._unpack(
                    outputs,
                    "cross_attention",
                    return_attention_scores,
                    cross_attention_cache is not None,
                    scores,
                    new_caches,
                )

            x, _ = self._residual(
                x, self.cross_attention_norm, self.cross_attention_dropout, cross_attend, training
            )

        x = self._feed_forward_residual(x, training)

        results = [x]
        if return_attention_scores:
            results.append(scores)
        results.extend(new_caches)
        return results[0] if len(results) == 1 else tuple(results)

    @staticmethod
    def _unpack(outputs, name, has_scores, has_cache, scores, new_caches):
        """Splits an attention layer's `output[, scores][, cache]`, recording
        the extras; returns `(output, None)` for `_residual`."""
        if not (has_scores or has_cache):
            return outputs, None
        output, *extras = outputs
        if has_scores:
            scores[name] = extras.pop(0)
        if has_cache:
            new_caches.append(extras.pop(0))
        return output, None

    def get_config(self):
        config = super().get_config()
        config["use_cross_attention"] = self.use_cross_attention
        config["cross_attention_num_heads"] = self.cross_attention_num_heads
        return config
