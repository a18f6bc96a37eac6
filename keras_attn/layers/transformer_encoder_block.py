"""Transformer encoder block: self-attention and a feed-forward network, each
wrapped in a residual connection with pre- or post-normalization."""


import keras
from keras import ops

from keras_attn.layers.feed_forward import ACTIVATIONS, FeedForward
from keras_attn.layers.multi_head_attention import MultiHeadAttention
from keras_attn.layers.normalization import NORMALIZATIONS, make_normalization
from keras_attn.utils.arguments import (
    check_choice,
    check_non_negative_int,
    check_positive_int,
    check_positive_number,
    check_rank,
    check_rate,
)
from keras_attn.utils.initializers import clone_initializer
from keras_attn.utils.keras_compat import keras_mask_of

# Offsets added to `seed` so that no two dropout layers of a block draw the
# same mask.
_SELF_ATTENTION_SEED = 0
_SELF_ATTENTION_DROPOUT_SEED = 1
_CROSS_ATTENTION_SEED = 2
_CROSS_ATTENTION_DROPOUT_SEED = 3
_FEED_FORWARD_SEED = 4
_FEED_FORWARD_DROPOUT_SEED = 5


def check_padding_mask(name, mask, length, description):
    """Casts a `(batch, length)` padding mask to bool, checking its shape."""
    if mask is None:
        return None
    mask = ops.convert_to_tensor(mask)
    check_rank(name, mask.shape, 2, "(batch, time)")
    if mask.shape[1] is not None and length is not None and mask.shape[1] != length:
        raise ValueError(
            f"`{name}` must have shape (batch, {length}) ({description}). "
            f"Received: {name} with shape {tuple(mask.shape)}"
        )
    return ops.cast(mask, "bool")


class TransformerBlockBase(keras.layers.Layer):
    """Arguments, sublayer factories and residual wiring shared by the
    encoder and decoder blocks. Not meant to be used directly."""

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        key_dim=None,
        num_key_value_heads=None,
        dropout=0.0,
        attention_dropout=0.0,
        activation="relu",
        normalization="layer_norm",
        norm_first=True,
        norm_epsilon=1e-5,
        use_bias=True,
        rope_max_wavelength=None,
        rope_scaling_factor=1.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.key_dim = check_positive_int("key_dim", key_dim, allow_none=True)
        self.num_key_value_heads = check_positive_int(
            "num_key_value_heads", num_key_value_heads, allow_none=True
        )
        if self.num_key_value_heads is not None and self.num_heads % self.num_key_value_heads:
            raise ValueError(
                "`num_heads` must be divisible by `num_key_value_heads`. Received: "
                f"num_heads={num_heads}, num_key_value_heads={num_key_value_heads}"
            )
        self.dropout = check_rate("dropout", dropout)
        self.attention_dropout = check_rate("attention_dropout", attention_dropout)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.normalization = check_choice("normalization", normalization, NORMALIZATIONS)
        self.norm_first = bool(check_choice("norm_first", norm_first, (True, False)))
        self.norm_epsilon = float(check_positive_number("norm_epsilon", norm_epsilon))
        self.use_bias = bool(use_bias)
        self.rope_max_wavelength = check_positive_number(
            "rope_max_wavelength", rope_max_wavelength, allow_none=True
        )
        self.rope_scaling_factor = float(
            check_positive_number("rope_scaling_factor", rope_scaling_factor)
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = None if seed is None else check_non_negative_int("seed", seed)
        self.supports_masking = True

    # ------------------------------------------------------------ factories

    def _seed(self, offset):
        return None if self.seed is None else self.seed + offset

    def _head_size(self, hidden_dim, num_heads, heads_name="num_heads"):
        if self.key_dim is not None:
            return self.key_dim
        if hidden_dim % num_heads:
            raise ValueError(
                f"The hidden dimension must be divisible by `{heads_name}` when `key_dim` is "
                f"None. Received: {heads_name}={num_heads}, hidden dimension "
                f"{hidden_dim}. Pass `key_dim` or change `{heads_name}`."
            )
        return hidden_dim // num_heads

    def _make_attention(
        self, hidden_dim, name, seed_offset, rotary, num_heads=None, heads_name="num_heads"
    ):
        num_heads = num_heads or self.num_heads
        return MultiHeadAttention(
            num_heads=num_heads,
            key_dim=self._head_size(hidden_dim, num_heads, heads_name),
            num_key_value_heads=self.num_key_value_heads,
            dropout=self.attention_dropout,
            use_bias=self.use_bias,
            output_shape=hidden_dim,
            rope_max_wavelength=self.rope_max_wavelength if rotary else None,
            rope_scaling_factor=self.rope_scaling_factor,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            seed=self._seed(seed_offset),
            dtype=self.dtype_policy,
            name=name,
        )

    def _make_norm(self, name):
        return make_normalization(
            self.normalization, self.norm_epsilon, dtype=self.dtype_policy, name=name
        )

    def _make_dropout(self, name, seed_offset):
        return keras.layers.Dropout(
            self.dropout, seed=self._seed(seed_offset), dtype=self.dtype_policy, name=name
        )

    def _make_feed_forward(self):
        # Dropout sits on the residual branch (Vaswani et al.), not inside
        # the MLP, so the MLP gets rate 0.
        return FeedForward(
            intermediate_dim=self.intermediate_dim,
            activation=self.activation,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            seed=self._seed(_FEED_FORWARD_SEED),
            dtype=self.dtype_policy,
            name="feed_forward",
        )

    def _build_feed_forward(self, inputs_shape):
        self.feed_forward_norm = self._make_norm("feed_forward_norm")
        self.feed_forward_norm.build(inputs_shape)
        self.feed_forward = self._make_feed_forward()
        self.feed_forward.build(inputs_shape)
        self.feed_forward_dropout = self._make_dropout(
            "feed_forward_dropout", _FEED_FORWARD_DROPOUT_SEED
        )

    # --------------------------------------------------------------- wiring

    def _residual(self, x, norm, dropout, sublayer, training):
        """`x + dropout(sublayer(norm(x)))` (pre-norm) or
        `norm(x + dropout(sublayer(x)))` (post-norm).

        `sublayer` returns `(output, extras)`; `extras` is passed through.
        """
        residual = x
        if self.norm_first:
            x = norm(x)
        x, extras = sublayer(x)
        x = residual + dropout(x, training=training)
        if not self.norm_first:
            x = norm(x)
        return x, extras

    def _feed_forward_residual(self, x, training):
        x, _ = self._residual(
            x,
            self.feed_forward_norm,
            self.feed_forward_dropout,
            lambda y: (self.feed_forward(y, training=training), None),
            training,
        )
        return x

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "key_dim": self.key_dim,
                "num_key_value_heads": self.num_key_value_heads,
                "dropout": self.dropout,
                "attention_dropout": self.attention_dropout,
                "activation": self.activation,
                "normalization": self.normalization,
                "norm_first": self.norm_first,
                "norm_epsilon": self.norm_epsilon,
                "use_bias": self.use_bias,
                "rope_max_wavelength": self.rope_max_wavelength,
                "rope_scaling_factor": self.rope_scaling_factor,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_attn")
class TransformerEncoderBlock(TransformerBlockBase):
    """Transformer encoder block (Vaswani et al. 2017): bidirectional
    self-attention and a feed-forward network, each in a residual connection.

    `norm_first=True` (default) is the pre-norm block used by most modern
    models, `x + f(norm(x))`; `norm_first=False` is the original post-norm
    block, `norm(x + f(x))`. The block applies no final normalization.

    Padded positions (`padding_mask` False) are masked as keys and as queries:
    real positions never see them, and padded positions attend to nothing
    (their attention output is the output projection's bias).

    Args:
        num_heads: number of attention heads.
        intermediate_dim: width of the feed-forward hidden layer.
        key_dim: size of each attention head; defaults to
            `hidden_dim // num_heads` (then `num_heads` must divide it).
        num_key_value_heads: key/value heads for grouped-query attention;
            defaults to `num_heads`.
        dropout: dropout rate on both residual branches.
        attention_dropout: dropout rate on the attention weights.
        activation: feed-forward activation, `"relu"`, `"gelu"`,
            `"gelu_approximate"` or `"swiglu"`.
        normalization: `"layer_norm"` or `"rms_norm"`.
        norm_first: pre-norm (True) or post-norm (False).
        norm_epsilon: epsilon of the normalization layers.
        use_bias: whether dense projections have biases.
        rope_max_wavelength: if set, rotary position embedding of queries and
            keys with this base.
        rope_scaling_factor: positive number, the rotary embedding divides
            positions by it (linear position interpolation); 1 changes
            nothing.
        kernel_initializer, bias_initializer: for every dense projection.
        seed: base seed of the dropout layers (reproducible training).
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(B, T, D)`.
        padding_mask: `(B, T)` bool or int, True/1 for real tokens. Defaults to
            the Keras mask carried by `inputs`.
        attention_mask: `(B, T, T)` bool, True = may attend; combined with the
            padding mask.
        attention_bias: float, broadcastable to `(B, num_heads, T, T)`, added
            to the attention logits.
        head_mask: `(num_heads,)` or `(B, num_heads)`, multiplies each head's
            output.
        attention_multiplier: float, broadcastable to `(B, num_heads, T, T)`,
            multiplies the post-softmax attention weights (see
            `MultiHeadAttention`); ones change nothing.
        return_attention_scores: also return the attention weights.
        training: enables dropout.

    Returns:
        `(B, T, D)`, or `(output, scores)` with post-softmax `scores` of shape
        `(B, num_heads, T, T)`. The padding mask is passed on as the output's
        Keras mask.

    Sublayers (after build): `self_attention`, `self_attention_norm`,
    `feed_forward`, `feed_forward_norm`.

    Example:
    >>> block = TransformerEncoderBlock(num_heads=2, intermediate_dim=32)
    >>> x = keras.random.normal((2, 5, 16))
    >>> y, scores = block(x, padding_mask=[[1, 1, 1, 0, 0]] * 2,
    ...                   return_attention_scores=True)
    >>> tuple(y.shape), tuple(scores.shape)
    ((2, 5, 16), (2, 2, 5, 5))
    """

    def build(self, inputs_shape, **unused_shapes):
        # Other tensor arguments (attention_bias, ...) have no weights.
        check_rank("inputs", inputs_shape, 3, "(batch, time, features)")
        hidden_dim = inputs_shape[-1]
        self.self_attention = self._make_attention(
            hidden_dim, "self_attention", _SELF_ATTENTION_SEED, rotary=True
        )
        self.self_attention.build(inputs_shape, inputs_shape)
        self.self_attention_norm = self._make_norm("self_attention_norm")
        self.self_attention_norm.build(inputs_shape)
        self.self_attention_dropout = self._make_dropout(
            "self_attention_dropout", _SELF_ATTENTION_DROPOUT_SEED
        )
        self._build_feed_forward(inputs_shape)
        self.built = True

    def call(
        self,
        inputs,
        padding_mask=None,
        attention_mask=None,
        attention_bias=None,
        head_mask=None,
        return_attention_scores=False,
        training=None,
        mask=None,
        attention_multiplier=None,
    ):
        check_rank("inputs", inputs.shape, 3, "(batch, time, features)")
        if padding_mask is None:
            # Keras fills `mask` only when `inputs` is the sole tensor argument.
            padding_mask = mask if mask is not None else keras_mask_of(inputs)
        padding_mask = check_padding_mask(
            "padding_mask", padding_mask, inputs.shape[1], "one entry per input position"
        )

        def attend(x):
            outputs = self.self_attention(
                x,
                x,
                query_mask=padding_mask,
                value_mask=padding_mask,
                attention_mask=attention_mask,
                attention_bias=attention_bias,
                head_mask=head_mask,
                attention_multiplier=attention_multiplier,
                return_attention_scores=return_attention_scores,
                training=training,
            )
            return outputs if return_attention_scores else (outputs, None)

        x, scores = self._residual(
            inputs, self.self_attention_norm, self.self_attention_dropout, attend, training
        )
        x = self._feed_forward_residual(x, training)
        return (x, scores) if return_attention_scores else x
