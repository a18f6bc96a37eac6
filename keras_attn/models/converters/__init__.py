"""Converting pretrained keras-hub checkpoints into keras-attn models with
the same numbers: each family's backbone weights and tokenizer."""

from keras_attn.models.converters.keras_hub_checkpoints import (
    check_backbone_class,
    keras_hub_parts,
)
from keras_attn.models.converters.llama import (
    LLAMA_SPECIAL_TOKENS,
    convert_llama_backbone,
    convert_llama_tokenizer,
    llama_backbone_config,
    llama_generator_parts,
)

__all__ = [
    "LLAMA_SPECIAL_TOKENS",
    "check_backbone_class",
    "convert_llama_backbone",
    "convert_llama_tokenizer",
    "keras_hub_parts",
    "llama_backbone_config",
    "llama_generator_parts",
]
