"""What the three backbones share: a config made of their constructor arguments."""

import keras

from keras_attn.layers.feed_forward import ACTIVATIONS
from keras_attn.layers.normalization import NORMALIZATIONS
from keras_attn.utils.arguments import (
    check_choice,
    check_positive_int,
    check_positive_number,
    check_rate,
)


class Backbone(keras.Model):
    """Base of `DecoderBackbone`, `EncoderBackbone` and `Seq2SeqBackbone`.

    Subclasses list their constructor arguments in `config_keys` and keep
    each as an attribute of the same name; `get_config` returns them, so
    `from_config(get_config())` rebuilds the same architecture.
    """

    config_keys = ()

    def _set_block_arguments(
        self, num_heads, hidden_dim, intermediate_dim, dropout, activation, normalization,
        norm_epsilon,
    ):
        """Checks and stores the arguments every backbone hands to its blocks."""
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.dropout = check_rate("dropout", dropout)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.normalization = check_choice("normalization", normalization, NORMALIZATIONS)
        self.norm_epsilon = check_positive_number("norm_epsilon", norm_epsilon)

    def _block_kwargs(self, norm_first, **extra):
        """The arguments every block of this backbone is built with; dropout
        applies to residual branches and attention weights alike."""
        return dict(
            num_heads=self.num_heads,
            intermediate_dim=self.intermediate_dim,
            dropout=self.dropout,
            attention_dropout=self.dropout,
            activation=self.activation,
            normalization=self.normalization,
            norm_first=norm_first,
            norm_epsilon=self.norm_epsilon,
            dtype=self.dtype_policy,
            **extra,
        )

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        config.update({key: getattr(self, key) for key in self.config_keys})
        return config
