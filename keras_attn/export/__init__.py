"""Export for serving: a task as a TensorFlow SavedModel, strings in and out.

`export(model, path)` (or `model.export_serving(path)`) writes a SavedModel
whose signatures run tokenization, packing, the model (with the whole cached
decoding loop for generation and translation) and detokenization in one
graph, so it serves from `tf.saved_model.load`, TF Serving or
`keras.layers.TFSMLayer` without Keras or keras-attn installed.

Signatures: `serving_default` (strings in, defaults baked in), one with
every option as an input (`generate`, `translate` or `classify_pairs`), and
`logits` (token ids in, logits out). See `export` for the table.
"""

from keras_attn.export.endpoints import (
    CLASSIFY_PAIRS,
    GENERATE,
    LOGITS,
    SERVING_DEFAULT,
    TRANSLATE,
    Endpoint,
)
from keras_attn.export.saved_model import METADATA_FILE, export, serving_endpoints
from keras_attn.export.serve_check import run_in_fresh_process

__all__ = [
    "CLASSIFY_PAIRS",
    "GENERATE",
    "LOGITS",
    "METADATA_FILE",
    "SERVING_DEFAULT",
    "TRANSLATE",
    "Endpoint",
    "export",
    "run_in_fresh_process",
    "serving_endpoints",
]
