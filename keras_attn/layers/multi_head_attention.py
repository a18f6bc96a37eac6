"""Multi-head attention: a drop-in for `keras.layers.MultiHeadAttention`, with
grouped-query heads, a key/value cache, additive biases, rotary positions and
per-head masks on sequences."""

import math
import numbers
import string

import keras
from keras import ops

from keras_attn.layers.attention_mask import (
    causal_mask,
    merge_masks,
    sliding_window_mask,
)
from keras_attn.layers.chunked_attention import chunked_attention
from keras_attn.layers.rotary_embedding import RotaryEmbedding
from keras_attn.utils.arguments import check_positive_int, check_rank, check_rate
from keras_attn.utils.initializers import clone_initializer
from keras_attn.utils.keras_compat import set_keras_mask

# Softmax runs in float32; a finite "minus infinity" keeps fully masked rows
# free of NaN (they are zeroed explicitly afterwards).
_MASKED_LOGIT = -1e9

# Where the chunked path takes over: a score matrix of at least this many
# rows times this many columns. Measured on an idle 2-core CPU, causal,
# forward+backward, 4 heads of 64, batch 1 (benchmarks/RESULTS.md): the
# chunked path is 1.1-1.4x slower than the fused one from 1024 to 8192
# tokens, so it is worth its time only where the fused path's memory is the
# wall: at 8192 tokens the fused path peaks at 3.9 GiB, the chunked one at
# 1.7 GiB; at 16384 the fused path would need about 16 GiB, the chunked one
# 1.8 GiB.
DEFAULT_CHUNKED_ATTENTION_THRESHOLD = 8192

# The projections, in the order Keras builds (and so lists the weights of) them.
_PROJECTION_NAMES = ("query", "key", "gate", "value", "attention_output")


def _letters(start, count):
    return string.ascii_lowercase[start : start + count]


def _static(length):
    """A length as a Python int, or None when it is only known at run time."""
    return length if isinstance(length, int) else None


def _length(x, axis):
    """`x`'s size along `axis`: the static int when known, else a scalar
    tensor (a batch of variable length traced with a `None` time axis)."""
    static = x.shape[axis]
    return static if static is not None else ops.shape(x)[axis]


@keras.saving.register_keras_serializable(package="keras_attn")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017).

    Same constructor, call signature, mask semantics and weight layout as
    `keras.layers.MultiHeadAttention`: `ours.set_weights(keras_mha.get_weights())`
    reproduces its outputs and scores, for `(batch, time, features)` inputs and
    for inputs of any rank `(batch, d_1, ..., d_k, features)` attending over
    `attention_axes`. On top of it, for `(batch, time, features)` inputs:

    - `num_key_value_heads < num_heads` gives grouped-query attention
      (Ainslie et al. 2023); `num_key_value_heads=1` is multi-query attention.
      (This one also works with any rank.)
    - A fixed-size key/value `cache` for incremental decoding; the causal mask
      is offset by `cache_update_index`, so every step sees exactly the tokens
      before it.
    - `attention_bias`: an additive float bias on the logits (ALiBi, relative
      positions). Any rank.
    - `rope_max_wavelength`: rotary position embedding of queries and keys.
    - `head_mask`: multiplies each head's output (head importance, pruning).
      Any rank.
    - `attention_multiplier`: multiplies the post-softmax weights, so
      gradients with respect to the attention weights are gradients with
      respect to it (gradient-weighted relevance, attention attribution).
      Any rank.
    - When nothing needs the weights, attention runs through the fused
      `keras.ops.dot_product_attention`; when scores are requested (or
      attention dropout is active, or an `attention_multiplier` is given)
      it is computed explicitly and the post-softmax weights are returned.
    - For long `(batch, time, features)` inputs whose weights nothing needs,
      attention runs in tiles (`keras_attn.layers.chunked_attention`, a
      flash-style online softmax with a recomputing gradient): memory linear
      in the length, and key tiles that the causal or sliding-window mask
      removes are skipped. It is taken when `T * S >=
      chunked_attention_threshold ** 2`, both lengths are known statically,
      `T > 1` (not a one-token decoding step), `flash_attention` is not True
      and no `attention_bias` is given (an additive bias such as ALiBi keeps
      the fused path: it is a full `T x S` tensor already, and its gradient
      would be one too). Same masks and outputs as the other paths.
    - Query rows whose keys are all masked attend to nothing: their weights
      are zero, so their output is the output projection's bias (the gate,
      if any, multiplies a zero). This holds in float32, float16 and
      bfloat16, on both paths. (Keras' fused path averages all values there
      instead; its explicit path also gives zeros.)

    The extras that are defined along one time axis (cache, rotary positions,
    causal offsets) raise a `ValueError` naming the argument when the inputs
    are not `(batch, time, features)`; `use_causal_mask` and `sliding_window`
    work with one attention axis of any rank, and raise with several.

    Args:
        num_heads: number of query heads `N`.
        key_dim: size of each query/key head `H`.
        value_dim: size of each value head; defaults to `key_dim`.
        dropout: dropout rate on the attention weights.
        use_bias: whether the projections have biases.
        output_shape: output feature size(s); defaults to the query's last
            dimension.
        attention_axes: the axes attended over, an int or a tuple of ints
            (negative values count from the end of the input's shape, as in
            Keras). `None` means every axis but the batch and feature axes.
        sliding_window: if set, query `i` only sees keys less than this many
            positions away (combine with `use_causal_mask` for local causal
            attention). Needs a single attention axis.
        flash_attention: passed to `keras.ops.dot_product_attention`.
            `True` also keeps long inputs off the chunked path.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, activity_regularizer, kernel_constraint,
        bias_constraint: as for `keras.layers.EinsumDense`, applied to all the
            projections.
        use_gate: if True, the attention output is multiplied by
            `sigmoid(gate(query))` before the output projection (gated
            attention, Qiu et al. 2025), with Keras' `gate` projection.
        seed: seed for attention dropout.
        num_key_value_heads: number of key/value heads `K`; must divide
            `num_heads`. Defaults to `num_heads`.
        rope_max_wavelength: if set, rotary embedding with this base is
            applied to queries and keys. `(batch, time, features)` inputs only.
        rope_scaling_factor: position scaling for the rotary embedding.
        chunked_attention_threshold: the chunked path is used when the
            query length times the key length is at least this squared
            (default 8192: from 8192 x 8192 tokens on); `None` never uses it.
            On a GPU whose `keras.ops.dot_product_attention` has a fused
            flash kernel, pass `flash_attention=True` instead (it keeps
            that kernel for every length).
        chunked_attention_block_size: rows and columns of one tile of the
            chunked path.

    Call arguments:
        query: `(B, T, dim)`, or `(B, *T_dims, dim)`.
        value: `(B, S, dim)`, or `(B, *S_dims, dim)` (same rank as `query`);
            defaults to `query` (self-attention).
        key: like `value`; defaults to `value`.
        query_mask, value_mask, key_mask: boolean padding masks `(B, T)`,
            `(B, S)`, `(B, S)` (the inputs' shapes without the feature axis);
            taken from the inputs' Keras masks when absent. With a cache,
            `value_mask` covers the cache slots `(B, S_max)`.
        attention_mask: boolean, `True` = may attend; `(B, T, S)` or any shape
            Keras broadcasts to the scores: `(T, S)`, `(1, T, S)`, `(B, 1, S)`,
            `(B, N, T, S)`, ... With several attention axes, the dims of the
            query's then the key's attention axes, e.g. `(B, h, w, h, w)`.
        return_attention_scores: also return the weights `(B, N, T, S)`, in
            general `(B, *non_attention_dims, N, *T_attention_dims,
            *S_attention_dims)`, Keras' layout.
        training: enables attention dropout.
        use_causal_mask: query `i` only sees keys at positions `<= i`
            (offset by `cache_update_index` when decoding with a cache).
        attention_bias: float, broadcastable to the scores, added to the
            scaled logits.
        head_mask: `(N,)` or `(B, N)` multiplier of each head's output.
        attention_multiplier: float, broadcastable to the scores
            `(B, N, T, S)` (in general Keras' scores layout): multiplies the
            post-softmax weights before they weight the values (and before
            attention dropout). Ones leave the outputs unchanged; zeros on a
            head remove it, as `head_mask` does. The returned scores are the
            softmax weights before the multiplier. With `m` all ones,
            `d loss / d m = A * d loss / d A`.
        cache: `(B, 2, S_max, K, key_dim)`, keys then values.
        cache_update_index: int or scalar int tensor. If given, the new keys
            and values (from `key`/`value`) are written at this slot and the
            updated cache is returned. If `None` with a cache, the cache is
            read as is (a cross-attention cache filled earlier) and
            `value`/`key` are ignored.
        positions: optional `(T,)` or `(B, T)` absolute positions for the
            rotary embedding (default: `cache_update_index` + arange(T)).

    Returns:
        `output` of shape `(B, T, output_dim)` (`query.shape[:-1] +
        output_shape`), followed by the attention weights when
        `return_attention_scores`, followed by the updated cache when a cache
        was given.

    Quantization and LoRA work as with Keras' layer, through the projection
    sublayers: `model.quantize("int8")` quantizes them, and so does
    `layer.quantize("int8")`; `layer.enable_lora(rank)` adds adapters to them.

    Example:
    >>> mha = MultiHeadAttention(num_heads=4, key_dim=8, num_key_value_heads=2)
    >>> x = keras.random.normal((2, 5, 32))
    >>> y, scores = mha(x, x, use_causal_mask=True, return_attention_scores=True)
    >>> tuple(y.shape), tuple(scores.shape)
    ((2, 5, 32), (2, 4, 5, 5))
    >>> cache = mha.empty_cache(batch_size=2, max_length=5)
    >>> y0, cache = mha(x[:, :1], x[:, :1], cache=cache, cache_update_index=0,
    ...                 use_causal_mask=True)
    >>> image = keras.random.normal((2, 3, 4, 32))  # (batch, h, w, features)
    >>> tuple(MultiHeadAttention(num_heads=2, key_dim=8, attention_axes=(1, 2))(image, image).shape)
    (2, 3, 4, 32)
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
        sliding_window=None,
        flash_attention=None,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        use_gate=False,
        seed=None,
        num_key_value_heads=None,
        rope_max_wavelength=None,
        rope_scaling_factor=1.0,
        chunked_attention_threshold=DEFAULT_CHUNKED_ATTENTION_THRESHOLD,
        chunked_attention_block_size=512,
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
        self.use_gate = bool(use_gate)
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
        self.attention_axes = self._check_attention_axes(attention_axes)
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
        if self.sliding_window is not None and len(self.attention_axes or (1,)) > 1:
            raise ValueError(
                "`sliding_window` needs a single attention axis (a band along one "
                f"sequence). Received: sliding_window={sliding_window}, "
                f"attention_axes={attention_axes!r}"
            )
        if rope_max_wavelength is not None and self.attention_axes not in (None, (1,), (-2,)):
            raise ValueError(
                "`rope_max_wavelength` (rotary positions) needs `(batch, time, features)` "
                "inputs attending over the time axis: `attention_axes` must be None, 1 or "
                f"-2. Received: rope_max_wavelength={rope_max_wavelength}, "
                f"attention_axes={attention_axes!r}"
            )
        self.chunked_attention_threshold = check_positive_int(
            "chunked_attention_threshold", chunked_attention_threshold, allow_none=True
        )
        self.chunked_attention_block_size = check_positive_int(
            "chunked_attention_block_size", chunked_attention_block_size
        )
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
        self._gate_dense = None
        self._resolved_axes = None

    @staticmethod
    def _check_attention_axes(attention_axes):
        if attention_axes is None:
            return None
        axes = (attention_axes,) if isinstance(attention_axes, numbers.Integral) else attention_axes
        if (
            not isinstance(axes, (tuple, list))
            or not axes
            or any(not isinstance(a, numbers.Integral) or isinstance(a, bool) for a in axes)
            or 0 in axes
        ):
            raise ValueError(
                "`attention_axes` must be None, an int or a non-empty tuple of ints, none "
                f"of them the batch axis 0. Received: attention_axes={attention_axes!r}"
            )
        return tuple(int(a) for a in axes)

    def _resolve_attention_axes(self, rank):
        """The attended axes of a rank-`rank` input, as non-negative indices in
        the order given (Keras' convention: negative axes count from the end
        of the input's shape)."""
        if self.attention_axes is None:
            return tuple(range(1, rank - 1))
        axes = tuple(a if a >= 0 else rank + a for a in self.attention_axes)
        if any(not 1 <= a <= rank - 2 for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(
                "`attention_axes` must name distinct axes between the batch and feature "
                f"axes of the rank-{rank} inputs (1 .. {rank - 2}, or {2 - rank} .. -2). "
                f"Received: attention_axes={self.attention_axes!r}"
            )
        return axes

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

    def _head_projection(self, rank, heads, head_size, name, activation=None):
        # (B, *dims, dim) x (dim, heads, head_size) -> (B, *dims, heads, head_size),
        # the layout of keras.layers.MultiHeadAttention.
        free = _letters(0, rank - 1)
        bound, out = _letters(rank - 1, 1), _letters(rank, 2)
        return keras.layers.EinsumDense(
            f"{free}{bound},{bound}{out}->{free}{out}",
            output_shape=(None,) * (rank - 2) + (heads, head_size),
            bias_axes=out if self.use_bias else None,
            activation=activation,
            name=name,
            **self._sublayer_kwargs(),
        )

    def _check_input_shapes(self, query_shape, value_shape, key_shape):
        rank = len(query_shape)
        if rank < 3:
            check_rank("query", query_shape, 3, "(batch, time, features) or higher")
        for name, shape in (("value", value_shape), ("key", key_shape)):
            if shape is not None and len(shape) != rank:
                check_rank(name, shape, rank, "(the rank of `query`)")
        if value_shape is not None and key_shape is not None:
            if any(
                v is not None and k is not None and v != k
                for v, k in zip(value_shape[1:-1], key_shape[1:-1])
            ):
                raise ValueError(
                    "`value` and `key` must have the same shape except the last axis. "
                    f"Received: value with shape {tuple(value_shape)}, key with shape "
                    f"{tuple(key_shape)}"
                )

    def _check_feature_widths(self, query, value, key):
        """Raises unless each input has the feature width the layer was built
        with (a different width would be contracted with kernels of another
        size: an einsum error, or a silently wrong shape)."""
        widths = getattr(self, "_built_widths", None)
        if not widths:
            return
        for name, tensor in (("query", query), ("value", value), ("key", key)):
            if tensor is None or widths[name] is None:
                continue
            got = tensor.shape[-1]
            if got is not None and got != widths[name]:
                raise ValueError(
                    f"`{name}` must have {widths[name]} features (its last axis), the width "
                    f"this layer was built with. Received: {name} with shape "
                    f"{tuple(tensor.shape)} ({got} features). Build a new layer for inputs "
                    "of another width."
                )

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        self._check_input_shapes(query_shape, value_shape, key_shape)
        # The projections' kernels fix each input's feature width.
        self._built_widths = {
            "query": query_shape[-1], "value": value_shape[-1], "key": key_shape[-1]
        }
        rank = len(query_shape)
        self._resolved_axes = self._resolve_attention_axes(rank)
        if self.sliding_window is not None and len(self._resolved_axes) > 1:
            raise ValueError(
                "`sliding_window` needs a single attention axis (a band along one "
                f"sequence). Received: sliding_window={self.sliding_window} with rank-{rank} "
                f"inputs attending over axes {self._resolved_axes}"
            )
        if self._rotary is not None and rank != 3:
            raise ValueError(
                "`rope_max_wavelength` (rotary positions) needs `(batch, time, features)` "
                f"inputs. Received: query with shape {tuple(query_shape)}"
            )
        self._query_dense = self._head_projection(rank, self.num_heads, self.key_dim, "query")
        self._query_dense.build(query_shape)
        self._key_dense = self._head_projection(
            rank, self.num_key_value_heads, self.key_dim, "key"
        )
        self._key_dense.build(key_shape)
        if self.use_gate:
            self._gate_dense = self._head_projection(
                rank, self.num_heads, self.value_dim, "gate", activation="sigmoid"
            )
            self._gate_dense.build(query_shape)
        self._value_dense = self._head_projection(
            rank, self.num_key_value_heads, self.value_dim, "value"
        )
        self._value_dense.build(value_shape)
        output_dims = self._output_shape or (query_shape[-1],)
        free = _letters(0, rank - 1)
        bound = _letters(rank - 1, 2)
        out = _letters(rank + 1, len(output_dims))
        self._output_dense = keras.layers.EinsumDense(
            f"{free}{bound},{bound}{out}->{free}{out}",
            output_shape=(None,) * (rank - 2) + tuple(output_dims),
            bias_axes=out if self.use_bias else None,
            name="attention_output",
            **self._sublayer_kwargs(),
        )
        self._output_dense.build(tuple(query_shape[:-1]) + (self.num_heads, self.value_dim))
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

    @property
    def gate_dense(self):
        """The sigmoid gate projection (`None` unless `use_gate`)."""
        return self._gate_dense

    def _projections(self):
        layers = {
            "query": self._query_dense,
            "key": self._key_dense,
            "gate": self._gate_dense,
            "value": self._value_dense,
            "attention_output": self._output_dense,
        }
        return {name: layers[name] for name in _PROJECTION_NAMES if layers[name] is not None}

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

    # ------------------------------------------------- quantization and LoRA

    def quantize(self, mode=None, type_check=True, config=None):
        """Quantizes the projections (`"int8"`, `"int4"`, `"float8"`), as
        `model.quantize(mode)` does for `keras.layers.MultiHeadAttention`:
        the attention itself keeps running in the compute dtype."""
        for layer in self._projections().values():
            layer.quantize(mode, type_check=type_check, config=config)

    def enable_lora(
        self,
        rank,
        lora_alpha=None,
        a_initializer="he_uniform",
        b_initializer="zeros",
        target_names=None,
    ):
        """Adds rank-`rank` LoRA adapters (Hu et al. 2021) to projections.

        Each target's `EinsumDense.enable_lora` freezes its kernel and adds
        two trainable float32 matrices, as when enabled on the sublayers of
        `keras.layers.MultiHeadAttention`; biases stay trainable, as there.
        Saving merges the adapters into the kernels.

        Args:
            rank: adapter rank.
            lora_alpha: scaling numerator (default `rank`).
            a_initializer, b_initializer: adapter initializers.
            target_names: projections to adapt, among "query", "key",
                "value", "gate" and "attention_output"; default all of them.
        """
        if not self.built:
            raise ValueError(
                f"Cannot enable LoRA on layer {self.name!r} before it is built: call it "
                "once (or `build`) first."
            )
        rank = check_positive_int("rank", rank)
        projections = self._projections()
        target_names = tuple(projections) if target_names is None else tuple(target_names)
        for name in target_names:
            if name not in projections:
                raise ValueError(
                    f"`target_names` must name projections of this layer, among "
                    f"{', '.join(map(repr, projections))}. Received: {name!r}"
                )
        for name in target_names:
            projections[name].enable_lora(
                rank,
                lora_alpha=lora_alpha,
                a_initializer=a_initializer,
                b_initializer=b_initializer,
            )

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
        attention_multiplier=None,
    ):
        reading_cache = cache is not None and cache_update_index is None
        if value is None and not reading_cache:
            value = query
        if key is None:
            key = value
        self._check_input_shapes(
            query.shape,
            None if reading_cache else value.shape,
            None if reading_cache else key.shape,
        )
        self._check_feature_widths(query, None if reading_cache else value,
                                   None if reading_cache else key)
        for tensor in {id(t): t for t in (query, value, key) if t is not None}.values():
            # The masks were consumed above; the projections must not apply them again.
            set_keras_mask(tensor, None)

        gate = self._gate_dense(query) if self._gate_dense is not None else None
        if len(query.shape) == 3:
            context, scores, cache = self._sequence_attention(
                query, value, key, query_mask, value_mask, key_mask, attention_mask,
                return_attention_scores, training, use_causal_mask, attention_bias,
                cache, cache_update_index, positions, attention_multiplier,
            )
        else:
            for name, given in (
                ("cache", cache),
                ("cache_update_index", cache_update_index),
                ("positions", positions),
            ):
                if given is not None:
                    raise ValueError(
                        f"`{name}` needs `(batch, time, features)` inputs; it has no meaning "
                        f"for rank-{len(query.shape)} inputs attending over axes "
                        f"{self._resolve_attention_axes(len(query.shape))}. Received: "
                        f"query with shape {tuple(query.shape)}"
                    )
            context, scores = self._multi_axis_attention(
                query, value, key, query_mask, value_mask, key_mask, attention_mask,
                training, use_causal_mask, attention_bias, attention_multiplier,
            )

        if head_mask is not None:
            context = context * self._head_mask_weights(head_mask, context.dtype, context.shape)
        if gate is not None:
            context = context * gate
        output = self._output_dense(context)

        results = [output]
        if return_attention_scores:
            results.append(scores)
        if cache is not None:
            results.append(cache)
        return results[0] if len(results) == 1 else tuple(results)

    # ------------------------------------------- (batch, time, features)

    def _sequence_attention(
        self, query, value, key, query_mask, value_mask, key_mask, attention_mask,
        return_attention_scores, training, use_causal_mask, attention_bias,
        cache, cache_update_index, positions, attention_multiplier=None,
    ):
        reading_cache = cache is not None and cache_update_index is None
        query_length = _length(query, 1)
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
                # Self-attention (the same tensor) or lengths known equal;
                # unknown lengths of different tensors count as different.
                same_length = key is query or (
                    key.shape[1] is not None and key.shape[1] == query.shape[1]
                )
                k = self._rotary(
                    k,
                    start_index=start_index if same_length else 0,
                    positions=positions if same_length else None,
                )
        elif positions is not None:
            raise ValueError(
                "`positions` only feeds the rotary embedding; set `rope_max_wavelength` to "
                "use it. Received: positions with rope_max_wavelength=None"
            )

        if cache is not None and not reading_cache:
            update = ops.cast(ops.stack([k, v], axis=1), cache.dtype)
            cache = ops.slice_update(cache, [0, 0, start_index, 0, 0], update)
            k, v = cache[:, 0], cache[:, 1]

        key_length = _length(k, 1)
        mask_arguments = (
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
        if return_attention_scores or dropout_active or attention_multiplier is not None:
            context, scores = self._explicit_attention(
                q, k, v, self._sequence_mask(*mask_arguments), attention_bias, training,
                attention_multiplier,
            )
        elif self._takes_chunked_path(query_length, key_length, attention_mask, attention_bias):
            self._check_sequence_masks(*mask_arguments[:2], *mask_arguments[3:7])
            context = chunked_attention(
                q,
                k,
                v,
                scale=self._inverse_sqrt_key_dim,
                query_mask=query_mask,
                key_mask=merge_masks(value_mask, key_mask),
                attention_mask=self._expand_mask(attention_mask, 4, 2),
                causal=bool(use_causal_mask),
                sliding_window=self.sliding_window,
                start_index=start_index,
                block_size=self.chunked_attention_block_size,
            )
            scores = None
        else:
            context = self._fused_attention(
                q, k, v, self._sequence_mask(*mask_arguments), attention_bias
            )
            scores = None
        return context, scores, cache

    def _takes_chunked_path(self, query_length, key_length, attention_mask, attention_bias):
        """Whether the chunked path computes this call (see the class doc)."""
        query_length, key_length = _static(query_length), _static(key_length)
        if (
            self.chunked_attention_threshold is None
            or self.flash_attention
            or attention_bias is not None
            or query_length is None
            or key_length is None
            or query_length < 2
        ):
            return False
        if attention_mask is not None and any(d is None for d in attention_mask.shape[-2:]):
            return False
        return query_length * key_length >= self.chunked_attention_threshold**2

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
            mask=mask,
            scale=self._inverse_sqrt_key_dim,
            flash_attention=self.flash_attention,
        )
        if mask is not None:
            # The fused kernel averages over all keys in rows with no visible
            # key; those rows must attend to nothing.
            has_key = ops.any(mask, axis=-1)  # (B|1, N|1, T|1)
            has_key = ops.transpose(has_key, (0, 2, 1))[..., None]
            context = context * ops.cast(has_key, context.dtype)
        return context

    def _explicit_attention(self, q, k, v, mask, bias, training, multiplier=None):
        batch, query_length, key_length = ops.shape(q)[0], _length(q, 1), _length(k, 1)
        groups = self.num_heads // self.num_key_value_heads
        q = q * ops.cast(self._inverse_sqrt_key_dim, q.dtype)
        # Query heads are grouped over the key/value head they share:
        # head n uses key/value head n // groups.
        q = ops.reshape(q, (batch, query_length, self.num_key_value_heads, groups, self.key_dim))
        logits = ops.einsum("btkgh,bskh->bkgts", q, k)
        logits = ops.reshape(logits, (batch, self.num_heads, query_length, key_length))
        weights = self._masked_softmax(logits, mask, bias, axes=(-1,))
        dropped = self._dropout_layer(
            self._multiplied(weights, multiplier), training=training
        )
        dropped = ops.reshape(
            dropped, (batch, self.num_key_value_heads, groups, query_length, key_length)
        )
        context = ops.einsum("bkgts,bskh->btkgh", dropped, v)
        context = ops.reshape(context, (batch, query_length, self.num_heads, self.value_dim))
        return context, weights

    @staticmethod
    def _multiplied(weights, multiplier):
        """The weights times `attention_multiplier` (broadcast to them)."""
        if multiplier is None:
            return weights
        multiplier = ops.convert_to_tensor(multiplier)
        if len(multiplier.shape) > len(weights.shape) or any(
            got is not None and want is not None and got not in (1, want)
            for got, want in zip(multiplier.shape[::-1], weights.shape[::-1])
        ):
            raise ValueError(
                "`attention_multiplier` must be broadcastable to the attention weights "
                f"{tuple(weights.shape)} (batch, heads, queries, keys). Received: "
                f"attention_multiplier with shape {tuple(multiplier.shape)}"
            )
        return weights * ops.cast(multiplier, weights.dtype)

    def _masked_softmax(self, logits, mask, bias, axes):
        """Softmax of the logits over `axes` in float32; masked keys get zero
        weight, and so do all keys of a row with no visible key."""
        logits = ops.cast(logits, "float32")
        if bias is not None:
            logits = logits + ops.cast(bias, "float32")
        if mask is not None:
            logits = ops.where(mask, logits, _MASKED_LOGIT)
        if len(axes) == 1:
            weights = ops.softmax(logits, axis=axes[0])
        else:
            weights = ops.exp(logits - ops.logsumexp(logits, axis=axes, keepdims=True))
        if mask is not None:
            weights = ops.where(mask, weights, 0.0)
        return ops.cast(weights, self.compute_dtype)

    def _sequence_mask(
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
        """The merged boolean mask, `(B|1, N|1, T|1, S|1)`, or None."""
        self._check_sequence_masks(
            query_length, key_length, query_mask, value_mask, key_mask, attention_mask
        )

        def padding(mask, axis):
            return None if mask is None else ops.expand_dims(ops.cast(mask, "bool"), (1, axis))

        return merge_masks(
            padding(query_mask, 3),
            padding(value_mask, 2),
            padding(key_mask, 2),
            self._expand_mask(attention_mask, 4, 2),
            causal_mask(query_length, key_length, start_index)[:, None]
            if use_causal_mask
            else None,
            sliding_window_mask(query_length, key_length, self.sliding_window, start_index)[
                :, None
            ]
            if self.sliding_window
            else None,
        )

    def _check_sequence_masks(
        self, query_length, key_length, query_mask, value_mask, key_mask, attention_mask
    ):
        # Shapes are checked where the lengths are known statically.
        known_query, known_key = _static(query_length), _static(key_length)
        self._check_padding_mask("query_mask", query_mask, (known_query,))
        self._check_padding_mask("value_mask", value_mask, (known_key,))
        self._check_padding_mask("key_mask", key_mask, (known_key,))
        scores_shape = (None, self.num_heads, known_query, known_key)
        self._check_attention_mask(attention_mask, scores_shape, 2, "(T, S) .. (B, N, T, S)")

    # ------------------------------------------------- any rank, any axes

    def _multi_axis_attention(
        self, query, value, key, query_mask, value_mask, key_mask, attention_mask,
        training, use_causal_mask, attention_bias, attention_multiplier=None,
    ):
        rank = len(query.shape)
        axes = self._resolve_attention_axes(rank)
        other_axes = tuple(a for a in range(1, rank - 1) if a not in axes)
        # Projected tensors are (B, *dims, heads, size): letters 0 .. rank.
        # The query keeps its letters; the key's attended axes get new ones.
        query_letters = _letters(0, rank + 1)
        key_letters = list(query_letters)
        for i, axis in enumerate(axes):
            key_letters[axis] = _letters(rank + 1 + i, 1)
        key_letters = "".join(key_letters)
        batch_like = (0, *other_axes, rank - 1)  # with the head axis
        scores_letters = (
            "".join(query_letters[a] for a in batch_like)
            + "".join(query_letters[a] for a in axes)
            + "".join(key_letters[a] for a in axes)
        )

        q = self._query_dense(query)
        k = self._key_dense(key)
        v = self._value_dense(value)
        groups = self.num_heads // self.num_key_value_heads
        if groups > 1:
            k = ops.repeat(k, groups, axis=-2)
            v = ops.repeat(v, groups, axis=-2)
        q = q * ops.cast(self._inverse_sqrt_key_dim, q.dtype)
        logits = ops.einsum(f"{key_letters},{query_letters}->{scores_letters}", k, q)

        scores_shape = tuple(logits.shape)
        mask = self._multi_axis_mask(
            query, key, axes, other_axes, scores_shape,
            query_mask, value_mask, key_mask, attention_mask, use_causal_mask,
        )
        normalized = tuple(range(-len(axes), 0))
        weights = self._masked_softmax(logits, mask, attention_bias, axes=normalized)
        dropped = self._dropout_layer(
            self._multiplied(weights, attention_multiplier), training=training
        )
        context = ops.einsum(f"{scores_letters},{key_letters}->{query_letters}", dropped, v)
        return context, weights

    def _multi_axis_mask(
        self, query, key, axes, other_axes, scores_shape,
        query_mask, value_mask, key_mask, attention_mask, use_causal_mask,
    ):
        """The merged boolean mask, broadcastable to the scores
        `(B, *other_dims, N, *query_attended_dims, *key_attended_dims)`."""
        query_shape, key_shape = query.shape, key.shape
        rank = len(query_shape)
        self._check_padding_mask("query_mask", query_mask, tuple(query_shape[1:-1]))
        self._check_padding_mask("value_mask", value_mask, tuple(key_shape[1:-1]))
        self._check_padding_mask("key_mask", key_mask, tuple(key_shape[1:-1]))
        self._check_attention_mask(
            attention_mask, scores_shape, 2 * len(axes), "(*T_attended, *S_attended)"
        )
        order = (0, *other_axes, *axes)
        head_axis = 1 + len(other_axes)

        def padding(mask, is_query):
            if mask is None:
                return None
            mask = ops.transpose(ops.cast(mask, "bool"), order)
            new_axes = [head_axis]
            first = head_axis + 1 + (len(axes) if is_query else 0)
            new_axes += list(range(first, first + len(axes)))
            return ops.expand_dims(mask, tuple(new_axes))

        masks = [
            padding(query_mask, True),
            padding(value_mask, False),
            padding(key_mask, False),
            self._expand_mask(attention_mask, len(scores_shape), 2 * len(axes)),
        ]
        if use_causal_mask:
            if len(axes) > 1:
                raise ValueError(
                    "`use_causal_mask` needs a single attention axis (an order along one "
                    f"sequence). Received: attention_axes={axes} on rank-{rank} inputs"
                )
            query_length, key_length = ops.shape(query)[axes[0]], ops.shape(key)[axes[0]]
            masks.append(
                self._expand_mask(causal_mask(query_length, key_length)[0], len(scores_shape), 2)
            )
        if self.sliding_window:
            # build() made sure there is one attention axis.
            query_length, key_length = ops.shape(query)[axes[0]], ops.shape(key)[axes[0]]
            window = sliding_window_mask(query_length, key_length, self.sliding_window)[0]
            masks.append(self._expand_mask(window, len(scores_shape), 2))
        return merge_masks(*masks)

    # ------------------------------------------------------------- helpers

    @staticmethod
    def _expand_mask(mask, scores_rank, attended_rank):
        """Keras' broadcast of an attention mask to the scores: size-1 axes
        are inserted before the attended axes (at the head axis, then the
        leading ones) until the ranks match."""
        if mask is None:
            return None
        mask = ops.cast(mask, "bool")
        missing = scores_rank - len(mask.shape)
        if missing:
            position = len(mask.shape) - attended_rank
            mask = ops.expand_dims(mask, tuple(range(position, position + missing)))
        return mask

    @staticmethod
    def _check_attention_mask(mask, scores_shape, attended_rank, layout):
        if mask is None:
            return
        rank = len(mask.shape)
        if not attended_rank <= rank <= len(scores_shape):
            raise ValueError(
                f"`attention_mask` must have shape {layout}, of rank {attended_rank} to "
                f"{len(scores_shape)}, broadcastable to the scores {tuple(scores_shape)}. "
                f"Received: attention_mask with shape {tuple(mask.shape)}"
            )
        # Axes are inserted before the attended ones; the others align from the left.
        # Keras inserts the missing axes just before the attended ones: the
        # mask's leading axes line up with the scores' leading axes.
        leading = rank - attended_rank
        target = list(scores_shape[:leading]) + list(scores_shape[-attended_rank:])
        for got, want in zip(mask.shape, target):
            if got is not None and want is not None and got not in (1, want):
                raise ValueError(
                    f"`attention_mask` must have shape {layout} broadcastable to the "
                    f"scores {tuple(scores_shape)} (each axis 1 or equal). Received: "
                    f"attention_mask with shape {tuple(mask.shape)}"
                )

    @staticmethod
    def _check_padding_mask(name, mask, trailing_dims):
        if mask is None:
            return
        expected_rank = len(trailing_dims) + 1
        layout = "(batch, time)" if expected_rank == 2 else (
            f"(batch, {', '.join('d' + str(i + 1) for i in range(len(trailing_dims)))})"
        )
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

    def _head_mask_weights(self, head_mask, dtype, context_shape):
        head_mask = ops.cast(head_mask, dtype)
        if len(head_mask.shape) not in (1, 2) or head_mask.shape[-1] != self.num_heads:
            raise ValueError(
                f"`head_mask` must have shape (num_heads={self.num_heads},) or "
                f"(batch, {self.num_heads}). Received: head_mask with shape "
                f"{tuple(head_mask.shape)}"
            )
        # context is (B, *dims, N, value_dim)
        middle = len(context_shape) - 3
        if len(head_mask.shape) == 1:
            return ops.reshape(head_mask, (self.num_heads, 1))
        return ops.expand_dims(head_mask, tuple(range(1, 1 + middle)) + (1 + middle + 1,))

    # ------------------------------------------------------ shapes, config

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        query_shape = tuple(query_shape)
        value_shape = query_shape if value_shape is None else tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        self._check_input_shapes(query_shape, value_shape, key_shape)
        return query_shape[:-1] + (self._output_shape or query_shape[-1:])

    def _scores_shape(self, query_shape, key_shape):
        rank = len(query_shape)
        if rank == 3:
            return (query_shape[0], self.num_heads, query_shape[1], key_shape[1])
        axes = self._resolve_attention_axes(rank)
        others = tuple(query_shape[a] for a in range(1, rank - 1) if a not in axes)
        return (
            (query_shape[0], *others, self.num_heads)
            + tuple(query_shape[a] for a in axes)
            + tuple(key_shape[a] for a in axes)
        )

    def compute_output_spec(
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
        attention_multiplier=None,
    ):
        reading_cache = cache is not None and cache_update_index is None
        if value is None and not reading_cache:
            value = query
        if key is None:
            key = value
        output_shape = self.compute_output_shape(
            query.shape,
            None if reading_cache else value.shape,
            None if reading_cache else key.shape,
        )
        results = [keras.KerasTensor(output_shape, dtype=self.compute_dtype)]
        if return_attention_scores:
            if cache is not None:
                key_shape = (None, cache.shape[2])
            else:
                key_shape = tuple(key.shape)
            results.append(
                keras.KerasTensor(
                    self._scores_shape(tuple(query.shape), key_shape), dtype=self.compute_dtype
                )
            )
        if cache is not None:
            results.append(keras.KerasTensor(cache.shape, dtype=cache.dtype))
        return results[0] if len(results) == 1 else tuple(results)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "use_gate": self.use_gate,
                "output_shape": self._output_shape,
                "attention_axes": self.attention_axes,
                "sliding_window": self.sliding_window,
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
                "chunked_attention_threshold": self.chunked_attention_threshold,
                "chunked_attention_block_size": self.chunked_attention_block_size,
            }
        )
        return config
