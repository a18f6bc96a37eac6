"""Looking inside the models: attention maps, and the methods built on them."""

from keras_attn.interpret.attention_maps import AttentionMaps, attention_maps, maps_from_outputs

__all__ = ["AttentionMaps", "attention_maps", "maps_from_outputs"]
