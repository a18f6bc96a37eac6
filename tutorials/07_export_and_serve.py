"""Tutorial 7: export and serve.

A keras-attn model exports as a TensorFlow SavedModel that takes strings and
returns strings: tokenization, the model (with the whole cached decoding
loop) and detokenization all run inside the graph. This script trains a
tiny translator, exports it, lists its signatures, serves it from a fresh
process that has TensorFlow only, wraps it in a Keras layer, and says what
to hand to TF Serving.

Run: python tutorials/07_export_and_serve.py --out tutorial_output/07
"""

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf
from common import parse_args, save
from matplotlib import pyplot as plt

from keras_attn.data import number_words
from keras_attn.export import export, run_in_fresh_process
from keras_attn.models import Translator

args = parse_args(__doc__.splitlines()[0], "tutorial_output/07")
keras.utils.set_random_seed(0)

# --- 1. A model worth serving ------------------------------------------------
# Spelled-out numbers to digits ("forty two" -> "42"), byte-level tokens.
translator = Translator.from_preset("tiny", source_length=32, target_length=8)
translator.compile()
sources, targets = number_words(800 if args.quick else 4000, seed=0)
translator.fit(translator.make_dataset(sources, targets, batch_size=64),
               epochs=2 if args.quick else 6, verbose=0)
questions = ["three hundred forty two", "seventeen", "nine hundred ninety nine"]
python_answers = translator.translate(questions)
print("from Python:", dict(zip(questions, python_answers)))

# --- 2. Export -------------------------------------------------------------------
# `export` writes the SavedModel atomically (a failed export leaves an
# earlier one intact) and refuses to replace one unless asked.
path = os.path.join(args.out, "number_translator")
export(translator, path, overwrite=True, beam_width=4)
loaded = tf.saved_model.load(path)
for name, function in sorted(loaded.signatures.items()):
    inputs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    print(f"signature {name!r}: inputs {sorted(inputs)} -> outputs {sorted(outputs)}")

# --- 3. Serve from a process with TensorFlow only ----------------------------
# The export must not need Keras or keras-attn. `run_in_fresh_process` starts
# a new interpreter where importing them fails, loads the SavedModel there
# and calls its signatures -- exactly what a server does.
served = run_in_fresh_process(path, [("serving_default", {"inputs": questions}),
                                     ("translate", {"inputs": questions,
                                                    "length_penalty": 0.6,
                                                    "no_repeat_ngram_size": 0,
                                                    "repetition_penalty": 1.0})],
                              repeats=5)
greedy = served["results"][0]["outputs"]["translations"]
print("served (greedy):", greedy)
print("same as Python:", greedy == python_answers)
print("modules leaked into the server:", served["leaked"])
beam = served["results"][1]["outputs"]["translations"]
print("served (beam 4):", beam, "same as Python:", beam == translator.translate(questions,
                                                                                  beam_width=4))

# --- 4. Inside another Keras model ---------------------------------------------
# keras.layers.TFSMLayer wraps one signature as a layer; the `logits`
# signature takes ids, for models that do their own tokenization.
layer = keras.layers.TFSMLayer(path, call_endpoint="logits")
source_ids, _ = translator.encode_sources(questions)
target_ids = np.zeros((len(questions), translator.backbone.target_length), "int32")
target_ids[:, 0] = translator.target_tokenizer.bos_id
logits = layer({"source_ids": source_ids, "target_ids": target_ids})
logits = logits["logits"] if isinstance(logits, dict) else logits
direct = translator({"source_ids": source_ids, "target_ids": target_ids})
print("TFSMLayer logits equal the model's:", np.allclose(np.asarray(logits), np.asarray(direct),
                                                          atol=1e-4))

# --- 5. Latency ----------------------------------------------------------------------
# The first call compiles; later calls are what users wait for.
timings = {name: result["median_seconds"] * 1000 for name, result in
           zip(["greedy", "beam 4"], served["results"])}
first = {name: result["first_call_seconds"] * 1000 for name, result in
         zip(["greedy", "beam 4"], served["results"])}
print("milliseconds per call of 3 texts (first call / median):",
      {name: f"{first[name]:.0f} / {timings[name]:.1f}" for name in timings})
figure, ax = plt.subplots(figsize=(5, 3.5))
ax.bar(list(timings), list(timings.values()), color=["tab:blue", "tab:orange"])
ax.set(title="served latency, 3 texts (median)", ylabel="milliseconds")
save(figure, args.out, "served_latency.png")

# --- 6. TF Serving ------------------------------------------------------------------
# TF Serving expects <model_base_path>/<version>/saved_model.pb. Copy the
# export into a numbered folder and start the server, e.g. with Docker:
#   docker run -p 8501:8501 -v $PWD/models/numbers:/models/numbers \
#       -e MODEL_NAME=numbers tensorflow/serving
# then POST {"instances": ["seventeen"]} to
#   http://localhost:8501/v1/models/numbers:predict
# WordPiece and SentencePiece models need tensorflow-text's ops in the
# server (the tensorflow/serving image with TF Text, or a custom build).
with open(os.path.join(args.out, "request.json"), "w") as request:
    json.dump({"instances": questions}, request)
print("wrote", os.path.join(args.out, "request.json"), f"({time.strftime('%H:%M:%S')})")
