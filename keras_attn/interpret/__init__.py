"""Looking inside the models: attention maps, and the methods built on them."""

from keras_attn.interpret.attention_maps import AttentionMaps, attention_maps, maps_from_outputs
from keras_attn.interpret.flow import attention_flow
from keras_attn.interpret.rollout import attention_rollout, residual_adjusted_attention
from keras_attn.interpret.sinks import AttentionSinks, attention_sinks, sinks_from_maps

__all__ = [
    "AttentionMaps",
    "AttentionSinks",
    "attention_flow",
    "attention_maps",
    "attention_rollout",
    "attention_sinks",
    "maps_from_outputs",
    "residual_adjusted_attention",
    "sinks_from_maps",
]
