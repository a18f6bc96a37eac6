"""Preprocessors: the one path between strings and each task's tensors.

Each task has a preprocessor layer of TensorFlow graph ops (tokenize, add
special tokens, pack or truncate to the model's static lengths, segment ids
for pairs). `make_dataset` maps it inside `tf.data`; `generate`,
`translate`, `classify` and `fill_mask` call it eagerly; the exported
SavedModels run it in their graphs.

- `GeneratorPreprocessor`: causal LM examples, prompts, continuations.
- `ClassifierPreprocessor`: `[CLS] a [SEP] (b [SEP])` with segment ids.
- `MaskedLMPreprocessor`: BERT's 80/10/10 masking, fill-mask inputs.
- `TranslatorPreprocessor`: source ids, teacher-forcing targets, translations.
"""

from keras_attn.preprocessors.classifier_preprocessor import ClassifierPreprocessor
from keras_attn.preprocessors.generator_preprocessor import GeneratorPreprocessor
from keras_attn.preprocessors.masked_lm_preprocessor import MaskedLMPreprocessor
from keras_attn.preprocessors.preprocessor import (
    Preprocessor,
    report_truncation,
    text_column,
    text_dataset,
)
from keras_attn.preprocessors.translator_preprocessor import TranslatorPreprocessor

__all__ = [
    "ClassifierPreprocessor",
    "GeneratorPreprocessor",
    "MaskedLMPreprocessor",
    "Preprocessor",
    "TranslatorPreprocessor",
    "report_truncation",
    "text_column",
    "text_dataset",
]
