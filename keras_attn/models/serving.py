"""The pieces a task's serving endpoints are made of: the `Endpoint` record,
signature names and input specs, and XLA compilation of the numeric core.

Each task builds its own endpoints (`Task.serving_endpoints`) from these;
`keras_attn.export.export` writes them into a SavedModel.
"""

import dataclasses

# An export is a TensorFlow SavedModel: endpoints are TensorFlow graphs.
import tensorflow as tf

SERVING_DEFAULT = "serving_default"
GENERATE = "generate"
TRANSLATE = "translate"
CLASSIFY_PAIRS = "classify_pairs"
FILL_MASK = "fill_mask"
LOGITS = "logits"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One exported function.

    Attributes:
        name: the signature key and the attribute of the loaded object.
        function: the Python function, traced with `input_signature`.
        input_signature: one `tf.TensorSpec` (or dict of them) per argument.

    Example:
    >>> endpoint = Endpoint("shout", lambda inputs: {"texts": tf.strings.upper(inputs)},
    ...                     [texts_spec()])
    >>> served = tf.function(endpoint.function, input_signature=endpoint.input_signature)
    >>> served(tf.constant(["hi"]))["texts"].numpy().tolist()
    [b'HI']
    """

    name: str
    function: object
    input_signature: list


def texts_spec(name="inputs"):
    """A batch of strings, `[None]`."""
    return tf.TensorSpec([None], tf.string, name=name)


def scalar_spec(dtype, name):
    """One option value."""
    return tf.TensorSpec([], dtype, name=name)


def repetition_control_specs():
    """`no_repeat_ngram_size` (int32) and `repetition_penalty` (float32)."""
    return [
        scalar_spec(tf.int32, "no_repeat_ngram_size"),
        scalar_spec(tf.float32, "repetition_penalty"),
    ]


def ids_spec(length, name, dtype=tf.int32):
    """A batch of `length` ids (or flags), `[None, length]`."""
    return tf.TensorSpec([None, length], dtype, name=name)


def compiled_core(function, jit_compile):
    """`function` as a nested XLA-compiled `tf.function`, or inline."""
    if not jit_compile:
        return function
    return tf.function(function, jit_compile=True, autograph=False)


def encoder_inputs_spec(length):
    """`token_ids`, `segment_ids` and `padding_mask`, each `[None, length]`,
    as the classifier and masked-LM preprocessors make them."""
    return {
        "token_ids": ids_spec(length, "token_ids"),
        "segment_ids": ids_spec(length, "segment_ids"),
        "padding_mask": ids_spec(length, "padding_mask", tf.bool),
    }


def logits_endpoint(model, input_spec, jit_compile):
    """The `logits` endpoint: the model's forward pass on ids -> `{"logits"}`."""
    forward = compiled_core(lambda inputs: model(inputs, training=False), jit_compile)

    def logits(inputs):
        return {"logits": forward(inputs)}

    return Endpoint(LOGITS, logits, [input_spec])
