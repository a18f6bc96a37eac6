"""`export(model, path)`: a task as a TensorFlow SavedModel that serves text."""

import inspect
import os

import keras

from keras_attn.models.fine_tuning import has_lora, merge_lora
from keras_attn.models.task import Task
from keras_attn.utils.atomic_files import write_directory_atomically, write_json_atomically
from keras_attn.version import __version__

# Written next to the SavedModel (TF Serving ignores `assets.extra`): which
# task, which signatures, and the options baked into them.
METADATA_FILE = os.path.join("assets.extra", "keras_attn_export.json")


def serving_endpoints(model, jit_compile=True, **options):
    """The `Endpoint`s that `export` writes for `model`: its own
    `serving_endpoints(...)`, with the options checked first.

    Example:
    >>> from keras_attn.models import Classifier
    >>> classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    >>> [endpoint.name for endpoint in serving_endpoints(classifier, jit_compile=False)]
    ['serving_default', 'classify_pairs', 'logits']
    >>> serving_endpoints(classifier, temperature=0.5)
    Traceback (most recent call last):
    ...
    ValueError: Unknown export option(s) for a Classifier: ['temperature']. Expected ...
    """
    if not isinstance(model, Task):
        raise ValueError(
            "`model` must be a keras_attn.models task (Generator, Translator, Classifier, "
            f"MaskedLanguageModel) to export for serving. Received: model of type "
            f"{type(model).__name__}"
        )
    allowed = set(inspect.signature(model.serving_endpoints).parameters) - {"jit_compile"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"Unknown export option(s) for a {type(model).__name__}: {unknown}. "
            f"Expected some of: {sorted(allowed) + ['jit_compile']}"
        )
    return model.serving_endpoints(jit_compile=bool(jit_compile), **options)


def export(model, path, overwrite=False, jit_compile=True, **options):
    """Writes `model` as a TensorFlow SavedModel that serves strings end to end.

    Tokenization, packing to the model's static length, the model (for
    generation and translation, the whole cached decoding loop) and
    detokenization all run inside the graph: the SavedModel loads with
    `tf.saved_model.load`, in TF Serving, or in `keras.layers.TFSMLayer`,
    without keras-attn, keras-hub or Keras. A `WordPieceTokenizer` needs
    tensorflow-text's kernels too: `import tensorflow_text` (its Python
    package imports Keras) or `tf.load_op_library` on its `_*.so` files.
    (Keras' own `model.export(path)` writes the forward pass only: token ids
    in, logits out.)

    Signatures (inputs -> outputs). SavedModel signatures have no optional
    inputs: `serving_default` takes strings only and uses defaults baked in
    at export; the second signature takes every option as a scalar input.

    Generator (`L` = `sequence_length`, `V` = vocabulary size):
    - `serving_default`: `inputs` string `[None]` -> `texts` string `[None]`
      (greedy continuations, without the prompt).
    - `generate`: `inputs`, `max_new_tokens` int32, `temperature` float32,
      `top_k` int32, `top_p` float32, `seed` int32, `no_repeat_ngram_size`
      int32 (0: off), `repetition_penalty` float32 (1.0: off) (scalars) ->
      `texts`.
    - `logits`: `token_ids` int32 `[None, L]` -> `logits` float32
      `[None, L, V]`.

    Translator (`S`, `T` = source / target length):
    - `serving_default`: `inputs` -> `translations` string `[None]` (greedy).
    - `translate`: `inputs`, `length_penalty` float32,
      `no_repeat_ngram_size` int32 (0: off), `repetition_penalty` float32
      (1.0: off) -> `translations` (beam search with the `beam_width` given
      at export).
    - `logits`: `source_ids` int32 `[None, S]`, `target_ids` int32
      `[None, T]` -> `logits` float32 `[None, T, V]`.

    Classifier (`C` = `num_classes`):
    - `serving_default`: `inputs` -> `labels` string `[None]` (label names,
      or ids as strings), `label_ids` int32 `[None]`, `probabilities`
      float32 `[None, C]`.
    - `classify_pairs`: `inputs`, `text_pairs` -> as `serving_default`.
    - `logits`: `token_ids` int32, `segment_ids` int32, `padding_mask` bool,
      each `[None, L]` -> `logits` float32 `[None, C]`.

    MaskedLanguageModel:
    - `serving_default` and `fill_mask`: `inputs` (strings with literal
      `[MASK]`s) -> `texts` string `[None]` (filled in), `token_ids` int32
      `[None, L]`, `mask_positions` bool `[None, L]`.
    - `logits`: as the classifier's inputs -> `logits` float32
      `[None, L, V]`.

    Each signature is also an attribute of the loaded object:
    `tf.saved_model.load(path).generate(texts, 20, 0.8, 0, 0.9, 7, 3, 1.2)`, and
    `keras.layers.TFSMLayer(path, call_endpoint="logits")` wraps the ids
    level (a dict of ids for the translator and the classifier).

    Generator outputs equal `generate(texts, max_new_tokens, ...)` (greedy
    by default, stop at `[EOS]`), translator outputs `translate(texts)` and
    `translate(texts, beam_width, length_penalty)`, classifier outputs
    `classify(texts)`, each with the same options. See the tasks'
    `serving_endpoints` for how each option works inside the graph.

    A model with LoRA adapters (`keras_attn.models.fine_tuning.enable_lora`)
    is exported with the adapters merged into its kernels.

    Args:
        model: a `Generator`, `Translator`, `Classifier` or
            `MaskedLanguageModel`; its `serving_endpoints` say what is written.
        path: the SavedModel directory. It is written to a temporary sibling
            and renamed at the end: a failure leaves an earlier export at
            `path` intact.
        overwrite: replace an existing `path`; otherwise it raises
            `ValueError`.
        jit_compile: compile the numeric core of each signature (decoding
            loop, forward pass) with XLA, as the Python API does: faster,
            and sampling draws the same numbers as `generate` for a seed.
            XLA compiles once per new batch size at serving time. TF
            Serving on CPU runs it with `--xla_cpu_compilation_enabled=true`;
            pass `False` for runtimes without XLA (several times slower
            decoding, and sampling draws other numbers than `generate` for
            a seed).
        **options: task options baked in at export:
            - Generator: `max_new_tokens` of `serving_default` (default 32,
              at most half the model's `sequence_length`; any value below
              `sequence_length` may be given).
            - Translator: `beam_width` of the `translate` signature (default
              4; 1 exports greedy decoding).

    Example:
    >>> from keras_attn.models import Generator
    >>> generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    >>> keras_attn.export.export(generator, "served/generator", max_new_tokens=4)
    >>> served = tf.saved_model.load("served/generator")  # in any TF process
    >>> texts = served.signatures["serving_default"](inputs=tf.constant(["abc"]))["texts"]
    >>> texts.shape, texts.dtype.name
    (TensorShape([1]), 'string')
    """
    if isinstance(model, Task) and has_lora(model):
        # Serve plain kernels with the adapters folded in.
        model = merge_lora(model)
    endpoints = serving_endpoints(model, jit_compile=jit_compile, **options)
    metadata = {
        "task": keras.saving.get_registered_name(type(model)),
        "signatures": [endpoint.name for endpoint in endpoints],
        "jit_compile": bool(jit_compile),
        "options": {k: v for k, v in options.items() if v is not None},
        "keras_attn_version": __version__,
    }

    def write(directory):
        archive = keras.export.ExportArchive()
        archive.track(model)
        for endpoint in endpoints:
            archive.add_endpoint(endpoint.name, endpoint.function, endpoint.input_signature)
        archive.write_out(directory, verbose=False)
        metadata_path = os.path.join(directory, METADATA_FILE)
        os.makedirs(os.path.dirname(metadata_path), exist_ok=True)
        write_json_atomically(metadata_path, metadata)

    write_directory_atomically(path, write, overwrite=overwrite)
