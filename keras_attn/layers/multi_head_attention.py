"""Multi-head attention: a drop-in for `keras.layers.MultiHeadAttention` on
sequences, with grouped-query heads, a key/value cache, additive biases,
rotary positions and per-head masks."""

import math
import string

import keras
from keras import ops

from keras_attn.layers.attention_mask import (
    causal_mask,
    merge_masks,
    padding_attention_mask,
    sliding_window_mask,
)
from keras_attn.layers.rotary_embedding import RotaryEmbedding
from keras_attn.utils.arguments import check_positive_int, check_rank, check_rate
from keras_attn.utils.initializers import clone_initializer
from keras_attn.utils.keras_compat import set_keras_mask

# Softmax runs in float32; a finite "minus infinity" keeps fully masked rows
# free of NaN (they are zeroed explicitly afterwards).
_MASKED_LOGIT = -1e9


@keras.saving.register_keras_serializable(package="keras_attn")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017).

    Same constructor, call signature, mask semantics and weight layout as
    `keras.layers.MultiHeadAttention` for `(batch, time, features)` inputs:
    `ours.set_weights(keras_mha.get_weights())` reproduces its outputs and
    scores. On top of it:

    - `num_key_value_heads < num_heads` gives grouped-query attention
      (Ainslie et al. 2023); `num_key_value_heads=1` is multi-query attention.
    - A fixed-size key/value `cache` for incremental decoding; the causal mask
      is offset by `cache_update_index`, so every step sees exactly the tokens
      before it.
    - `attention_bias`: an additive float bias on the logits (ALiBi, relative
      positions).
    - `rope_max_wavelength`: rotary position embedding of queries and keys.
    - `head_mask`: multiplies each head's output (head importance, pruning).
    - When nothing needs the weights, attention runs through the fused
      `keras.ops.dot_product_attention`; when scores are requested (or
      attention dropout is active) it is computed explicitly and the
      post-softmax weights are returned.
    - Query rows whose keys are all masked attend to nothing: their weights
      are zero, so their output is the output projection's bias. (Keras gives
      such rows a uniform average instead.) This holds in float32, float16
      and bfloat16.

    Args:
        num_heads: number of query heads `N`.
        key_dim: size of each query/key head `H`.
        value_dim: size of each value head; defaults to `key_dim`.
        dropout: dropout rate on the attention weights.
        use_bias: whether the projections have biases.
        output_shape: output feature size(s); defaults to the query's last
            dimension.
        attention_axes: only `None` (attention over the time axis) is
            supported; kept for signature compatibility.
        flash_attention: passed to `keras.ops.dot_product_attention`.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint,
        bias_constraint: as for `keras.layers.EinsumDense`, applied to all four
            projections.
        seed: seed for attention dropout.
        num_key_value_heads: number of key/value heads `K`; must divide
            `num_heads`. Defaults to `num_heads`.
        rope_max_wavelength: if set, rotary embedding with this base is
            applied to queries and keys.
        rope_scaling_factor: position scaling for the rotary embedding.
        sliding_window: if set, query `i` only sees keys less than this many
            positions away (combine with `use_causal_mask` for local causal
            attention).

    Call arguments:
        query: `(B, T, dim)`.
        value: `(B, S, dim)`; defaults to `query` (self-attention).
        key: `(B, S, dim)`; defaults to `value`.
        query_mask, value_mask, key_mask: boolean padding masks `(B, T)`,
            `(B, S)`, `(B, S)`; taken from the inputs' Keras masks when absent.
            With a cache, `value_mask` covers the cache slots `(B, S_max)`.
        attention_mask: boolean `(B, T, S)`, `True` = may attend.
        return_attention_scores: also return the weights `(B, N, T, S)`.
        training: enables attention dropout.
        use_causal_mask: query `i` only sees keys at positions `<= i`
            (offset by `cache_update_index` when decoding with a cache).
        attention_bias: float, broadcastable to `(B, N, T, S)`, added to the
            scaled logits.
        head_mask: `(N,)` or `(B, N)` multiplier of each head's output.
        cache: `(B, 2, S_max, K, key_dim)`, keys then values.
        cache_update_index: int or scalar int tensor. If given, the new keys
            and values (from `key`/`value`) are written at this slot and the
            updated cache is returned. If `None` with a cache, the cache is
            read as is (a cross-attention cache filled earlier) and
            `value`/`key` are ignored.
        positions: optional `(T,)` or `(B, T)` absolute positions for the
            rotary embedding (default: `cache_update_index` + arange(T)).

    Returns:
        `output` of shape `(B, T, output_dim)`, followed by the attention
        weights when `return_attention_scores`, followed by the updated cache
        when a cache was given.

    Example:
    >>> mha = MultiHeadAttention(num_heads=4, key_dim=8, num_key_value_heads=2)
    >>> x = keras.random.normal((2, 5, 32))
    >>> y, scores = mha(x, x, use_causal_mask=True, return_attention_scores=True)
    >>> y.shape, scores.shape
    ((2, 5, 32), (2, 4, 5, 5))
    >>> cache = mha.empty_cache(batch_size=2, max_length=5)
    >>> y0, cache = mha(x[:, :1], x[:, :1], cache=cache, cache_update_index=0,
    ...                 use_causal_mask=True)
    """

    def __init__(
        self,
        num_heads,
        key_dim,
        value_dim=None,
        dropout=0.0,
        use_bias=True,
        output_shape=None,
        attention_axes=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        seed=None,
        num_key_value_heads=None,
        rope_max_wavelength=None,
        rope_scaling_factor=1.0,
        sliding_window=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.key_dim = check_positive_int("key_dim", key_dim)
        self.value_dim = check_positive_int("value_dim", value_dim, allow_none=True) or key_dim
        self.num_key_value_heads = check_positive_int(
            "num_key_value_heads", num_key_value_heads, allow_none=True
        ) or self.num_heads
        if self.num_heads % self.num_key_value_heads:
            raise ValueError(
                "`num_heads` must be divisible by `num_key_value_heads`. Received: "
                f"num_heads={num_heads}, num_key_value_heads={num_key_value_heads}"
            )
        self.dropout = check_rate("dropout", dropout)
        self.use_bias = bool(use_bias)
        if isinstance(output_shape, int):
            output_shape = (output_shape,)
        if output_shape is not None:
            if not isinstance(output_shape, (tuple, list)) or not output_shape:
                raise ValueError(
                    "`output_shape` must be an int, a non-empty tuple of ints or None. "
                    f"Received: output_shape={output_shape!r}"
                )
            output_shape = tuple(
                check_positive_int("output_shape", dim) for dim in output_shape
            )
        self._output_shape = output_shape
        if attention_axes not in (None, 1, (1,), [1]):
            raise ValueError(
                "keras_attn.layers.MultiHeadAttention attends over the time axis of "
                "`(batch, time, features)` inputs: `attention_axes` must be None (or 1). "
                f"Received: attention_axes={attention_axes!r}"
            )
        self.flash_attention = flash_attention
        if flash_attention and self.dropout > 0:
            raise ValueError(
                "`dropout` must be 0 when `flash_attention=True` (fused kernels have no "
                f"attention dropout). Received: dropout={dropout}"
            )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.projection_activity_regularizer = keras.regularizers.get(activity_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.seed = seed
        self.rope_max_wavelength = rope_max_wavelength
        self.rope_scaling_factor = rope_scaling_factor
        self.sliding_window = check_positive_int("sliding_window", sliding_window, allow_none=True)
        self.supports_masking = True

        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(self.key_dim))
        self._dropout_layer = keras.layers.Dropout(
            self.dropout, seed=seed, dtype=self.dtype_policy, name="attention_dropout"
        )
        self._rotary = None
        if rope_max_wavelength is not None:
            if self.key_dim % 2:
                raise ValueError(
                    "Rotary embedding needs an even head size: `key_dim` must be even when "
                    f"`rope_max_wavelength` is set. Received: key_dim={key_dim}"
                )
            self._rotary = RotaryEmbedding(
                max_wavelength=rope_max_wavelength,
                scaling_factor=rope_scaling_factor,
                dtype=self.dtype_policy,
                name="rotary_embedding",
            )

    # ------------------------------------------------------------------ build

    def _sublayer_kwargs(self):
        return dict(
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            activity_regularizer=self.projection_activity_regularizer,
            kernel_constraint=self.kernel_constraint,
            bias_constraint=self.bias_constraint,
            dtype=self.dtype_policy,
        )

    def _head_projection(self, heads, head_size, name):
        # (B, T, dim) x (dim, heads, head_size) -> (B, T, heads, head_size),
        # the layout of keras.layers.MultiHeadAttention.
        return keras.layers.EinsumDense(
            "abc,cde->abde",
            output_shape=(None, heads, head_size),
            bias_axes="de" if self.use_bias else None,
            name=name,
            **self._sublayer_kwargs(),
        )

    def build(self, query_shape, value_shape=None, key_shape=None):
        check_rank("query", query_shape, 3, "(batch, time, features)")
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        check_rank("value", value_shape, 3, "(batch, time, features)")
        check_rank("key", key_shape, 3, "(batch, time, features)")
        self._query_dense = self._head_projection(self.num_heads, self.key_dim, "query")
        self._query_dense.build(query_shape)
        self._key_dense = self._head_projection(self.num_key_value_heads, self.key_dim, "key")
        self._key_dense.build(key_shape)
        self._value_dense = self._head_projection(
            self.num_key_value_heads, self.value_dim, "value"
        )
        self._value_dense.build(value_shape)
        output_dims = self._output_shape or (query_shape[-1],)
        out_letters = string.ascii_lowercase[4 : 4 + len(output_dims)]
        self._output_dense = keras.layers.EinsumDense(
            f"abcd,cd{out_letters}->ab{out_letters}",
            output_shape=(None, *output_dims),
            bias_axes=out_letters if self.use_bias else None,
            name="attention_output",
            **self._sublayer_kwargs(),
        )
        self._output_dense.build((query_shape[0], query_shape[1], self.num_heads, self.value_dim))
        if self._rotary is not None:
            self._rotary.build((None, None, self.num_heads, self.key_dim))
        self.built = True

    @property
    def query_dense(self):
        return self._query_dense

    @property
    def key_dense(self):
        return self._key_dense

    @property
    def value_dense(self):
        return self._value_dense

    @property
    def output_dense(self):
        return self._output_dense

    def empty_cache(self, batch_size, max_length, dtype=None):
        """Zeros of shape `(batch_size, 2, max_length, K, key_dim)` for decoding.

        `batch_size` may be a scalar int tensor (a dynamic batch, e.g. in an
        exported serving graph); `max_length` is a Python int."""
        if not ops.is_tensor(batch_size):
            check_positive_int("batch_size", batch_size)
        check_positive_int("max_length", max_length)
        if self.value_dim != self.key_dim:
            raise ValueError(
                "A key/value cache needs `value_dim == key_dim`. Received: "
                f"key_dim={self.key_dim}, value_dim={self.value_dim}"
            )
        shape = (batch_size, 2, max_length, self.num_key_value_heads, self.key_dim)
        return ops.zeros(shape, dtype=dtype or self.compute_dtype)

    # ------------------------------------------------------------------- call

    def call(
        self,
        query,
        value=None,
        key=None,
        query_mask=None,
        value_mask=None,
        key_mask=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
        use_causal_mask=False,
        attention_bias=None,
        head_mask=None,
        cache=None,
        cache_update_index=None,
        positions=None,
    ):
        check_rank("query", query.shape, 3, "(batch, time, features)")
        reading_cache = cache is not None and cache_update_index is None
        if value is None and not reading_cache:
            value = query
        if key is None:
            key = value
        if not reading_cache:
            check_rank("value", value.shape, 3, "(batch, time, features)")
            check_rank("key", key.shape, 3, "(batch, time, features)")
        query_length = query.shape[1]
        for tensor in {id(t): t for t in (query, value, key) if t is not None}.values():
            # The masks were consumed above; the projections must not apply them again.
            set_keras_mask(tensor, None)

        # (B, T, N, key_dim)
        q = self._query_dense(query)
        start_index = 0
        if reading_cache:
            self._check_cache(cache)
            k, v = cache[:, 0], cache[:, 1]  # (B, S_max, K, key_dim)
        else:
            k = self._key_dense(key)  # (B, S, K, key_dim)
            v = self._value_dense(value)  # (B, S, K, value_dim)
            if cache is not None:
                self._check_cache(cache)
                start_index = self._check_cache_index(
                    cache_update_index, cache.shape[2], key.shape[1]
                )

        if self._rotary is not None:
            q = self._rotary(q, start_index=start_index, positions=positions)
            if not reading_cache:
                same_length = key.shape[1] == query_length
                k = self._rotary(
                    k,
                    start_index=start_index if same_length else 0,
                    positions=positions if same_length else None,
                )

        if cache is not None and not reading_cache:
            update = ops.cast(ops.stack([k, v], axis=1), cache.dtype)
            cache = ops.slice_update(cache, [0, 0, start_index, 0, 0], update)
            k, v = cache[:, 0], cache[:, 1]

        key_length = k.shape[1]
        mask = self._attention_mask(
            query_length,
            key_length,
            start_index,
            query_mask,
            value_mask,
            key_mask,
            attention_mask,
            use_causal_mask,
        )

        dropout_active = self.dropout > 0 and bool(training)
        if return_attention_scores or dropout_active:
            context, scores = self._explicit_attention(q, k, v, mask, attention_bias, training)
        else:
            context, scores = self._fused_attention(q, k, v, mask, attention_bias), None

        if head_mask is not None:
            context = context * self._head_mask_weights(head_mask, context.dtype)
        output = self._output_dense(context)

        results = [output]
        if return_attention_scores:
            results.append(scores)
        if cache is not None:
            results.append(cache)
        return results[0] if len(results) == 1 else tuple(results)

    # ------------------------------------------------------- attention paths

    def _fused_attention(self, q, k, v, mask, bias):
        groups = self.num_heads // self.num_key_value_heads
        if groups > 1:
            k = ops.repeat(k, groups, axis=2)
            v = ops.repeat(v, groups, axis=2)
        context = ops.dot_product_attention(
            q,
            k,
            v,
            bias=bias,
            mask=None if mask is None else mask[:, None, :, :],
            scale=self._inverse_sqrt_key_dim,
            flash_attention=self.flash_attention,
        )
        if mask is not None:
            # The fused kernel averages over all keys in rows with no visible
            # key; those rows must attend to nothing.
            has_key = ops.any(mask, axis=-1)  # (B|1, T)
            context = context * ops.cast(has_key, context.dtype)[:, :, None, None]
        return context

    def _explicit_attention(self, q, k, v, mask, bias, training):
        batch, query_length = ops.shape(q)[0], q.shape[1]
        groups = self.num_heads // self.num_key_value_heads
        q = q * ops.cast(self._inverse_sqrt_key_dim, q.dtype)
        # Query heads are grouped over the key/value head they share:
        # head n uses key/value head n // groups.
        q = ops.reshape(q, (batch, query_length, self.num_key_value_heads, groups, self.key_dim))
        logits = ops.einsum("btkgh,bskh->bkgts", q, k)
        logits = ops.reshape(logits, (batch, self.num_heads, query_length, k.shape[1]))
        logits = ops.cast(logits, "float32")
        if bias is not None:
            logits = logits + ops.cast(bias, "float32")
        if mask is not None:
            mask = mask[:, None, :, :]
            logits = ops.where(mask, logits, _MASKED_LOGIT)
        weights = ops.softmax(logits, axis=-1)
        if mask is not None:
            weights = ops.where(ops.any(mask, axis=-1, keepdims=True), weights, 0.0)
        weights = ops.cast(weights, self.compute_dtype)
        dropped = self._dropout_layer(weights, training=training)
        dropped = ops.reshape(
            dropped, (batch, self.num_key_value_heads, groups, query_length, k.shape[1])
        )
        context = ops.einsum("bkgts,bskh->btkgh", dropped, v)
        context = ops.reshape(context, (batch, query_length, self.num_heads, self.value_dim))
        return context, weights

    # ------------------------------------------------------------- helpers

    def _attention_mask(
        self,
        query_length,
        key_length,
        start_index,
        query_mask,
        value_mask,
        key_mask,
        attention_mask,
        use_causal_mask,
    ):
        self._check_mask("query_mask", query_mask, (query_length,))
        self._check_mask("value_mask", value_mask, (key_length,))
        self._check_mask("key_mask", key_mask, (key_length,))
        self._check_mask("attention_mask", attention_mask, (query_length, key_length))
        return merge_masks(
            padding_attention_mask(query_mask, value_mask),
            None if key_mask is None else ops.cast(key_mask, "bool")[:, None, :],
            attention_mask,
            causal_mask(query_length, key_length, start_index) if use_causal_mask else None,
            sliding_window_mask(query_length, key_length, self.sliding_window, start_index)
            if self.sliding_window
            else None,
        )

    @staticmethod
    def _check_mask(name, mask, trailing_dims):
        if mask is None:
            return
        expected_rank = len(trailing_dims) + 1
        layout = "(batch, time)" if expected_rank == 2 else "(batch, query_time, key_time)"
        check_rank(name, mask.shape, expected_rank, layout)
        for got, want in zip(mask.shape[1:], trailing_dims):
            if got is not None and want is not None and got != want and got != 1:
                raise ValueError(
                    f"`{name}` must have shape (batch, {', '.join(map(str, trailing_dims))}) "
                    f"to match the inputs. Received: {name} with shape {tuple(mask.shape)}"
                )

    def _check_cache(self, cache):
        expected = (2, None, self.num_key_value_heads, self.key_dim)
        if len(cache.shape) != 5 or any(
            want is not None and got is not None and got != want
            for got, want in zip(cache.shape[1:], expected)
        ):
            raise ValueError(
                "`cache` must have shape (batch, 2, max_length, num_key_value_heads="
                f"{self.num_key_value_heads}, key_dim={self.key_dim}). "
                f"Received: cache with shape {tuple(cache.shape)}"
            )
        if self.value_dim != self.key_dim:
            raise ValueError(
                "A key/value cache needs `value_dim == key_dim`. Received: "
                f"key_dim={self.key_dim}, value_dim={self.value_dim}"
            )

    @staticmethod
    def _check_cache_index(index, cache_length, new_length):
        try:
            concrete = int(index)
        except Exception:
            # A traced (symbolic) index cannot be checked here; inside a
            # compiled loop the caller bounds it.
            return index
        if concrete < 0 or (
            cache_length is not None and new_length is not None
            and concrete + new_length > cache_length
        ):
            raise ValueError(
                "`cache_update_index` must satisfy 0 <= index and index + new tokens "
                f"<= cache length. Received: cache_update_index={concrete} with "
                f"{new_length} new token(s) and a cache of length {cache_length}"
            )
        return index

    def _head_mask_weights(self, head_mask, dtype):
        head_mask = ops.cast(head_mask, dtype)
        if len(head_mask.shape) not in (1, 2) or head_mask.shape[-1] != self.num_heads:
            raise ValueError(
                f"`head_mask` must have shape (num_heads={self.num_heads},) or "
                f"(batch, {self.num_heads}). Received: head_mask with shape "
                f"{tuple(head_mask.shape)}"
            )
        if len(head_mask.shape) == 1:
            return head_mask[None, None, :, None]
        return head_mask[:, None, :, None]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "output_shape": self._output_shape,
                "flash_attention": self.flash_attention,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": keras.regularizers.serialize(
                    self.projection_activity_regularizer
                ),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
                "seed": self.seed,
                "num_key_value_heads": self.num_key_value_heads,
                "rope_max_wavelength": self.rope_max_wavelength,
                "rope_scaling_factor": self.rope_scaling_factor,
                "sliding_window": self.sliding_window,
            }
        )
        return config
