"""The few pieces of Keras' private API that keras-attn relies on, in one place.

Each helper says why the public API does not suffice. When Keras changes one of
these, this module is the only one to fix.
"""

# Keras attaches padding masks to tensors as `_keras_mask`; public API reads
# them only inside `Layer.__call__` (as the `mask=` argument). Layers that take
# several tensors, and losses, need to read (and clear) them directly.
from keras.src.backend import get_keras_mask, set_keras_mask

# Keras' own `Loss.__call__` divides by the number of replicas with this
# helper; a loss that reduces itself (the masked token losses) must do the same
# under `tf.distribute`, and Keras exports no public equivalent.
from keras.src.losses.loss import scale_loss_for_distribution


def without_keras_mask(tensor):
    """`tensor` with its padding mask removed (in place), for a layer that does
    not support masking and would warn that it drops the mask."""
    set_keras_mask(tensor, None)
    return tensor


def keras_mask_of(tensor):
    """The padding mask a masking layer attached to `tensor`, or `None`."""
    return get_keras_mask(tensor)


__all__ = [
    "keras_mask_of",
    "scale_loss_for_distribution",
    "set_keras_mask",
    "without_keras_mask",
]
