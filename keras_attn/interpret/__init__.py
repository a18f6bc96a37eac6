"""Looking inside the models: attention maps, and the methods built on them."""

from keras_attn.interpret.attention_attribution import attention_attribution
from keras_attn.interpret.attention_maps import AttentionMaps, attention_maps, maps_from_outputs
from keras_attn.interpret.integrated_gradients import Attributions, integrated_gradients
from keras_attn.interpret.relevance import Relevance, propagate_relevance, relevance
from keras_attn.interpret.targets import ExplainedOutput, OutputSelector, Target, select_outputs
from keras_attn.interpret.value_norms import transformed_values, value_norms

__all__ = [
    "AttentionMaps",
    "Attributions",
    "ExplainedOutput",
    "OutputSelector",
    "Relevance",
    "Target",
    "attention_attribution",
    "attention_maps",
    "integrated_gradients",
    "maps_from_outputs",
    "propagate_relevance",
    "relevance",
    "select_outputs",
    "transformed_values",
    "value_norms",
]
