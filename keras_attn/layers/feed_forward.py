"""Position-wise feed-forward network of a Transformer block."""

import keras
from keras import ops

from keras_attn.utils.arguments import check_choice, check_positive_int, check_rate
from keras_attn.utils.initializers import clone_initializer

ACTIVATIONS = ("relu", "gelu", "gelu_approximate", "swiglu")



@keras.saving.register_keras_serializable(package="keras_attn")
class FeedForward(keras.layers.Layer):
    """Two-layer position-wise MLP: dense up, activation, dropout, dense down.

    With `activation="swiglu"` the up projection is gated (Shazeer 2020,
    "GLU Variants Improve Transformer"): `silu(x @ W_gate) * (x @ W_up)`,
    with two separate projections of width `intermediate_dim`. `"gelu"` is the
    exact (erf) GELU, `"gelu_approximate"` its tanh approximation (BERT's and
    GPT-2's, Hendrycks and Gimpel 2016).

    Args:
        intermediate_dim: width of the hidden layer.
        activation: `"relu"`, `"gelu"`, `"gelu_approximate"` or `"swiglu"`.
        dropout: dropout rate applied to the hidden activations.
        use_bias: whether the dense layers have biases.
        kernel_initializer, bias_initializer: for every dense layer.
        output_dim: output width; defaults to the input's last dimension.
        seed: seed of the dropout.
        **kwargs: standard layer arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `(..., dim)` tensor, usually `(batch, time, dim)`.
        training: enables dropout.

    Returns:
        `(..., output_dim)` tensor. A Keras mask on the inputs is passed on.

    Example:
    >>> ffn = FeedForward(intermediate_dim=64, activation="swiglu")
    >>> tuple(ffn(keras.random.normal((2, 5, 16))).shape)
    (2, 5, 16)
    """

    def __init__(
        self,
        intermediate_dim,
        activation="relu",
        dropout=0.0,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        output_dim=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.dropout = check_rate("dropout", dropout)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.output_dim = check_positive_int("output_dim", output_dim, allow_none=True)
        self.seed = seed
        self.supports_masking = True
        self.dropout_layer = keras.layers.Dropout(
            self.dropout, seed=seed, dtype=self.dtype_policy, name="dropout"
        )

    def _dense(self, units, name):
        return keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=clone_initializer(self.kernel_initializer),
            bias_initializer=clone_initializer(self.bias_initializer),
            dtype=self.dtype_policy,
            name=name,
        )

    def build(self, inputs_shape):
        if len(inputs_shape) < 2 or inputs_shape[-1] is None:
            raise ValueError(
                "`inputs` must have rank >= 2 with a known last dimension. "
                f"Received: inputs with shape {tuple(inputs_shape)}"
            )
        output_dim = self.output_dim or inputs_shape[-1]
        self.intermediate_dense = self._dense(self.intermediate_dim, "intermediate_dense")
        self.intermediate_dense.build(inputs_shape)
        if self.activation == "swiglu":
            self.gate_dense = self._dense(self.intermediate_dim, "gate_dense")
            self.gate_dense.build(inputs_shape)
        self.output_dense = self._dense(output_dim, "output_dense")
        self.output_dense.build(tuple(inputs_shape[:-1]) + (self.intermediate_dim,))
        self.built = True

    def call(self, inputs, training=None):
        hidden = self.intermediate_dense(inputs)
        if self.activation == "swiglu":
            hidden = ops.silu(self.gate_dense(inputs)) * hidden
        elif self.activation == "gelu":
            hidden = ops.gelu(hidden, approximate=False)
        elif self.activation == "gelu_approximate":
            # GPT-2's GELU: the tanh approximation.
            hidden = ops.gelu(hidden, approximate=True)
        else:
            hidden = ops.relu(hidden)
        hidden = self.dropout_layer(hidden, training=training)
        return self.output_dense(hidden)

    def compute_output_shape(self, inputs_shape):
        return tuple(inputs_shape[:-1]) + (self.output_dim or inputs_shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": self.activation,
                "dropout": self.dropout,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "output_dim": self.output_dim,
                "seed": self.seed,
            }
        )
        return config
