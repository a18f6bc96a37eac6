"""Export for serving: a task as a TensorFlow SavedModel, strings in and out.

`export(model, path)` writes a SavedModel
whose signatures run tokenization, packing, the model (with the whole cached
decoding loop for generation and translation) and detokenization in one
graph, so it serves from `tf.saved_model.load`, TF Serving or
`keras.layers.TFSMLayer` without Keras or keras-attn installed.

Signatures: `serving_default` (strings in, defaults baked in), one with
every option as an input (`generate`, `translate`, `classify_pairs` or
`fill_mask`), and
`logits` (token ids in, logits out). See `export` for the table.
"""

from keras_attn.export.saved_model import METADATA_FILE, export, serving_endpoints
from keras_attn.export.serve_check import run_in_fresh_process
from keras_attn.models.serving import (
    CLASSIFY_PAIRS,
    FILL_MASK,
    GENERATE,
    LOGITS,
    SERVING_DEFAULT,
    TRANSLATE,
    Endpoint,
)

__all__ = [
    "CLASSIFY_PAIRS",
    "FILL_MASK",
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
