"""Converting pretrained keras-hub checkpoints into keras-attn models with
the same numbers: each family's backbone weights and tokenizer."""

from keras_attn.models.converters.bart import (
    BART_SPECIAL_TOKENS,
    convert_bart_backbone,
    convert_bart_tokenizer,
)
from keras_attn.models.converters.bert import (
    convert_bert_backbone,
    convert_bert_tokenizer,
    convert_distil_bert_backbone,
    copy_classifier_head,
    copy_masked_lm_head,
)
from keras_attn.models.converters.gpt2 import convert_gpt2_backbone, convert_gpt2_tokenizer
from keras_attn.models.converters.keras_hub_checkpoints import (
    check_backbone_class,
    keras_hub_parts,
)
from keras_attn.models.converters.llama import (
    LLAMA_SPECIAL_TOKENS,
    convert_llama_backbone,
    convert_llama_tokenizer,
    llama_backbone_config,
)

__all__ = [
    "BART_SPECIAL_TOKENS",
    "convert_bart_backbone",
    "convert_bart_tokenizer",
    "LLAMA_SPECIAL_TOKENS",
    "check_backbone_class",
    "convert_bert_backbone",
    "convert_bert_tokenizer",
    "convert_distil_bert_backbone",
    "convert_gpt2_backbone",
    "convert_gpt2_tokenizer",
    "convert_llama_backbone",
    "convert_llama_tokenizer",
    "copy_classifier_head",
    "copy_masked_lm_head",
    "keras_hub_parts",
    "llama_backbone_config",
]
