"""Initializer helpers shared by layers that build several sublayers."""

import keras


def clone_initializer(initializer):
    """A fresh instance of a Keras initializer with the same config.

    An unseeded Keras 3 initializer draws its seed once, at construction: one
    instance shared by several sublayers would give equally shaped kernels
    identical values.
    """
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())
