"""Ready-made models: backbones (the networks) and tasks (text in, text out).

| task | backbone | does |
| --- | --- | --- |
| `Translator` | `Seq2SeqBackbone` | encoder-decoder translation, greedy and beam search |
| `Classifier` | `EncoderBackbone` | BERT-style text / text-pair classification |
| `MaskedLanguageModel` | `EncoderBackbone` | masked-LM pretraining, `fill_mask` |
| `Generator` | `DecoderBackbone` | GPT-style generation: greedy, temperature, top-k, top-p |

Every task has `from_preset(name_or_directory)` and `save_to_preset(directory)`,
a `preprocessor` (`keras_attn.preprocessors`) between strings and its tensors,
and says its own `compile()` defaults, `dataset_from_data`, `evaluate_data`
and `serving_endpoints` (`keras_attn.models.serving`). Backbones return hidden
states (see each backbone's docstring for its inputs and output keys).
"""

from keras_attn.models.classifier import Classifier, MaskedLanguageModel
from keras_attn.models.decoder_backbone import DecoderBackbone
from keras_attn.models.encoder_backbone import EncoderBackbone
from keras_attn.models.fine_tuning import enable_lora, freeze, merge_lora
from keras_attn.models.generator import Generator
from keras_attn.models.seq2seq_backbone import Seq2SeqBackbone
from keras_attn.models.task import Task
from keras_attn.models.translator import Translator

__all__ = [
    "Classifier",
    "DecoderBackbone",
    "EncoderBackbone",
    "Generator",
    "MaskedLanguageModel",
    "Seq2SeqBackbone",
    "Task",
    "Translator",
    "enable_lora",
    "freeze",
    "merge_lora",
]
