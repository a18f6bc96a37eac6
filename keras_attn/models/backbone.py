"""What the three backbones share: a config made of their constructor arguments."""

import keras


class Backbone(keras.Model):
    """Base of `DecoderBackbone`, `EncoderBackbone` and `Seq2SeqBackbone`.

    Subclasses list their constructor arguments in `config_keys` and keep
    each as an attribute of the same name; `get_config` returns them, so
    `from_config(get_config())` rebuilds the same architecture.
    """

    config_keys = ()

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }
        config.update({key: getattr(self, key) for key in self.config_keys})
        return config
