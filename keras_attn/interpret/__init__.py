"""Looking inside the models: attention maps, and the methods built on them."""

from keras_attn.interpret.attention_maps import AttentionMaps, attention_maps, maps_from_outputs
from keras_attn.interpret.head_importance import (
    HeadImportance,
    head_importance,
    head_mask_loss_and_gradients,
)
from keras_attn.interpret.pruning import prune_heads, prune_least_important, pruning_curve

__all__ = [
    "AttentionMaps",
    "HeadImportance",
    "attention_maps",
    "head_importance",
    "head_mask_loss_and_gradients",
    "maps_from_outputs",
    "prune_heads",
    "prune_least_important",
    "pruning_curve",
]
