"""What each task exports: its endpoints, as functions with input signatures.

Every text endpoint runs the whole pipeline in one TensorFlow graph:
tokenize -> pack to the model's static length -> the model (for the
generator and translator, the cached decoding loop of `keras_attn.generation`
over fixed-size caches) -> cut at the stop token -> detokenize. The numeric
core (decoding loop or forward pass) is a nested `tf.function` compiled with
XLA (`jit_compile=True`), as in the Python API; the string ops around it run
as ordinary graph ops.
"""

import dataclasses

import numpy as np

# An export is a TensorFlow SavedModel: endpoints are TensorFlow graphs.
import tensorflow as tf

from keras_attn.export import text_graph
from keras_attn.tokenizers import pack, pack_pair
from keras_attn.utils.arguments import check_positive_int

SERVING_DEFAULT = "serving_default"
GENERATE = "generate"
TRANSLATE = "translate"
CLASSIFY_PAIRS = "classify_pairs"
LOGITS = "logits"

DEFAULT_MAX_NEW_TOKENS = 32
DEFAULT_BEAM_WIDTH = 4


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """One exported function.

    Attributes:
        name: the signature key and the attribute of the loaded object.
        function: the Python function, traced with `input_signature`.
        input_signature: one `tf.TensorSpec` (or dict of them) per argument.
    """

    name: str
    function: object
    input_signature: list


def _texts(name="inputs"):
    return tf.TensorSpec([None], tf.string, name=name)


def _scalar(dtype, name):
    return tf.TensorSpec([], dtype, name=name)


def _ids(length, name, dtype=tf.int32):
    return tf.TensorSpec([None, length], dtype, name=name)


def _compiled(function, jit_compile):
    """`function` as a nested XLA-compiled `tf.function`, or inline."""
    if not jit_compile:
        return function
    return tf.function(function, jit_compile=True, autograph=False)


# ----------------------------------------------------------------- generator


def generator_endpoints(generator, max_new_tokens=None, jit_compile=True):
    """`serving_default`, `generate` and `logits` of a `Generator`.

    - `serving_default(inputs)`: greedy continuations of up to
      `max_new_tokens` tokens (baked in; default 32, at most half the
      model's `sequence_length`) -> `{"texts"}`.
    - `generate(inputs, max_new_tokens, temperature, top_k, top_p, seed)`:
      every option of `Generator.generate` as a scalar input -> `{"texts"}`.
    - `logits(token_ids)`: `(batch, sequence_length)` int32 -> `{"logits"}`.

    Inside the graph, as in `generate`: each prompt becomes `[BOS] tokens`,
    keeping its last `sequence_length - max_new_tokens` tokens, in a buffer of
    the model's static `sequence_length`; decoding stops a row at `[EOS]` or
    after `max_new_tokens` tokens (a row past its budget is handed `[EOS]`,
    so the loop ends as soon as every row is done), and only each row's
    window `[prompt_length, prompt_length + max_new_tokens)` is returned.
    `max_new_tokens` inputs are clamped to `[0, sequence_length - 1]`; other
    out-of-range options act as their nearest valid value (see
    `keras_attn.generation.sample`).
    """
    tokenizer = generator.tokenizer
    length = generator.backbone.sequence_length
    vocabulary_size = generator.backbone.vocabulary_size
    if max_new_tokens is None:
        # Leave at least half the buffer to the prompt.
        max_new_tokens = max(1, min(DEFAULT_MAX_NEW_TOKENS, length // 2))
    max_new_tokens = check_positive_int("max_new_tokens", max_new_tokens)
    if max_new_tokens >= length:
        raise ValueError(
            f"`max_new_tokens` must be smaller than the model's sequence_length ({length}). "
            f"Received: max_new_tokens={max_new_tokens}"
        )
    bos, eos, pad = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id

    def decode(token_ids, prompt_mask, ends, temperature, top_k, top_p, seed):
        only_eos = tf.where(tf.range(vocabulary_size) == eos, 0.0, -np.inf)[None, :]

        def end_at_budget(logits, index):
            # Position `index + 1` is past the row's budget: only [EOS] remains.
            return tf.where((index + 1 >= ends)[:, None], only_eos, logits)

        return generator._decode(
            token_ids,
            prompt_mask,
            temperature,
            top_k,
            top_p,
            seed,
            (eos,),
            logits_processor=end_at_budget,
        )

    decode = _compiled(decode, jit_compile)

    def continuations(texts, budget, temperature, top_k, top_p, seed):
        budget = tf.clip_by_value(tf.cast(budget, tf.int32), 0, length - 1)
        ids = text_graph.prepend(tokenizer.tokenize(texts), bos)
        ids = text_graph.keep_last(ids, length - budget)
        token_ids, prompt_mask, prompt_lengths = text_graph.right_padded(ids, length, pad)
        ends = prompt_lengths + budget
        output = decode(token_ids, prompt_mask, ends, temperature, top_k, top_p, seed)
        new_ids = text_graph.tokens_between(output, prompt_lengths, ends, (eos, pad))
        return tokenizer.detokenize(new_ids)

    def serve(inputs):
        # Python option values: a greedy-only graph, no sampling branch.
        return {"texts": continuations(inputs, max_new_tokens, 0.0, 0, 1.0, 0)}

    def generate(inputs, max_new_tokens, temperature, top_k, top_p, seed):
        return {"texts": continuations(inputs, max_new_tokens, temperature, top_k, top_p, seed)}

    forward = _compiled(lambda token_ids: generator(token_ids, training=False), jit_compile)

    def logits(token_ids):
        return {"logits": forward(token_ids)}

    return [
        Endpoint(SERVING_DEFAULT, serve, [_texts()]),
        Endpoint(
            GENERATE,
            generate,
            [
                _texts(),
                _scalar(tf.int32, "max_new_tokens"),
                _scalar(tf.float32, "temperature"),
                _scalar(tf.int32, "top_k"),
                _scalar(tf.float32, "top_p"),
                _scalar(tf.int32, "seed"),
            ],
        ),
        Endpoint(LOGITS, logits, [_ids(length, "token_ids")]),
    ]


# ---------------------------------------------------------------- translator


def translator_endpoints(translator, beam_width=DEFAULT_BEAM_WIDTH, jit_compile=True):
    """`serving_default`, `translate` and `logits` of a `Translator`.

    - `serving_default(inputs)`: greedy translations -> `{"translations"}`,
      as `translate(texts)`.
    - `translate(inputs, length_penalty)`: beam search with `beam_width`
      beams (fixed at export: the beams are a static axis of the graph) ->
      `{"translations"}`, as `translate(texts, beam_width, length_penalty)`.
      `beam_width=1` exports greedy decoding (`length_penalty` is unused).
    - `logits({"source_ids", "target_ids"})`: `(batch, source_length)` and
      `(batch, target_length)` int32 -> `{"logits"}`.

    Translations are at most `target_length - 1` tokens, as in `translate`.
    """
    beam_width = check_positive_int("beam_width", beam_width)
    source_tokenizer, target_tokenizer = translator.source_tokenizer, translator.target_tokenizer
    source_length = translator.backbone.source_length
    target_length = translator.backbone.target_length
    eos, pad = target_tokenizer.eos_id, target_tokenizer.pad_id
    search = "greedy" if beam_width == 1 else "beam"

    greedy = _compiled(
        lambda source_ids: translator._decode(source_ids, 0.0, "greedy", 1, target_length),
        jit_compile,
    )
    beam = _compiled(
        lambda source_ids, length_penalty: translator._decode(
            source_ids, length_penalty, search, beam_width, target_length
        ),
        jit_compile,
    )

    def source_ids(texts):
        ids, _, _ = pack(
            source_tokenizer.tokenize(texts),
            source_length,
            add_eos=True,
            eos_id=source_tokenizer.eos_id,
            pad_id=source_tokenizer.pad_id,
        )
        return ids

    def translations(output):
        # Position 0 holds [BOS]; the translation runs to [EOS] or padding.
        rows = tf.shape(output)[0]
        starts, ends = tf.ones([rows], tf.int32), tf.fill([rows], target_length)
        return target_tokenizer.detokenize(
            text_graph.tokens_between(output, starts, ends, (eos, pad))
        )

    def serve(inputs):
        return {"translations": translations(greedy(source_ids(inputs)))}

    def translate(inputs, length_penalty):
        return {"translations": translations(beam(source_ids(inputs), length_penalty))}

    forward = _compiled(lambda inputs: translator(inputs, training=False), jit_compile)

    def logits(inputs):
        return {"logits": forward(inputs)}

    ids_spec = {
        "source_ids": _ids(source_length, "source_ids"),
        "target_ids": _ids(target_length, "target_ids"),
    }
    return [
        Endpoint(SERVING_DEFAULT, serve, [_texts()]),
        Endpoint(TRANSLATE, translate, [_texts(), _scalar(tf.float32, "length_penalty")]),
        Endpoint(LOGITS, logits, [ids_spec]),
    ]


# ---------------------------------------------------------------- classifier


def classifier_endpoints(classifier, jit_compile=True):
    """`serving_default`, `classify_pairs` and `logits` of a `Classifier`.

    - `serving_default(inputs)` and `classify_pairs(inputs, text_pairs)`:
      as `classify(texts[, text_pairs])` -> `{"labels"}` (label names, or ids
      as strings), `{"label_ids"}` int32 `(batch,)` and
      `{"probabilities"}` float32 `(batch, num_classes)`.
    - `logits({"token_ids", "segment_ids", "padding_mask"})`: int32, int32
      and bool `(batch, sequence_length)`, as `preprocess` makes them ->
      `{"logits"}` `(batch, num_classes)`.
    """
    tokenizer = classifier.tokenizer
    length = classifier.backbone.sequence_length
    label_names = classifier.label_names
    forward = _compiled(lambda inputs: classifier(inputs, training=False), jit_compile)

    def predictions(inputs):
        probabilities = tf.nn.softmax(forward(inputs), axis=-1)
        label_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        if label_names:
            labels = tf.gather(tf.constant(label_names), label_ids)
        else:
            labels = tf.strings.as_string(label_ids)
        return {"labels": labels, "label_ids": label_ids, "probabilities": probabilities}

    def serve(inputs):
        # `[CLS] text [SEP]`, cut at the end with the [SEP] kept, as `preprocess`.
        token_ids, padding_mask, _ = pack(
            tokenizer.tokenize(inputs),
            length,
            add_bos=True,
            add_eos=True,
            bos_id=tokenizer.cls_id,
            eos_id=tokenizer.sep_id,
            pad_id=tokenizer.pad_id,
        )
        segment_ids = tf.zeros_like(token_ids)
        return predictions(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
        )

    def classify_pairs(inputs, text_pairs):
        token_ids, segment_ids, padding_mask, _ = pack_pair(
            tokenizer.tokenize(inputs),
            tokenizer.tokenize(text_pairs),
            length,
            cls_id=tokenizer.cls_id,
            sep_id=tokenizer.sep_id,
            pad_id=tokenizer.pad_id,
        )
        return predictions(
            {"token_ids": token_ids, "segment_ids": segment_ids, "padding_mask": padding_mask}
        )

    def logits(inputs):
        return {"logits": forward(inputs)}

    ids_spec = {
        "token_ids": _ids(length, "token_ids"),
        "segment_ids": _ids(length, "segment_ids"),
        "padding_mask": _ids(length, "padding_mask", tf.bool),
    }
    return [
        Endpoint(SERVING_DEFAULT, serve, [_texts()]),
        Endpoint(CLASSIFY_PAIRS, classify_pairs, [_texts(), _texts("text_pairs")]),
        Endpoint(LOGITS, logits, [ids_spec]),
    ]
