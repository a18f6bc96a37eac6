"""SavedModel export: the exported graphs serve strings end to end, in a
process that has TensorFlow only, with the Python API's outputs."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attn.data import alphabet_runs, number_words, sentiment_with_negation
from keras_attn.export import METADATA_FILE, export
from keras_attn.export.serve_check import run_in_fresh_process
from keras_attn.models import Classifier, Generator, MaskedLanguageModel, Translator
from keras_attn.tokenizers import WordPieceTokenizer
from tests.models.conftest import compile_for_tokens


def serve_in_fresh_process(path, calls, needs_text=False):
    """Calls the export in a new process (TensorFlow only); asserts that
    neither Keras nor keras-attn was imported there."""
    answer = run_in_fresh_process(path, calls)
    assert answer["leaked"] == [], f"the serving process imported {answer['leaked']}"
    return [call["outputs"] for call in answer["results"]]




# ------------------------------------------------------------------ models

# Tiny models trained for a few steps, so outputs are not noise.

LENGTH = 32  # the generator's sequence_length


@pytest.fixture(scope="module")
def generator():
    keras.utils.set_random_seed(0)
    model = compile_for_tokens(Generator.from_preset("tiny", sequence_length=LENGTH))
    model.fit(model.make_dataset(alphabet_runs(1280, seed=0), batch_size=64), epochs=3, verbose=0)
    return model


@pytest.fixture(scope="module")
def translator():
    keras.utils.set_random_seed(0)
    model = compile_for_tokens(
        Translator.from_preset(
            "tiny",
            source_length=32,
            target_length=8,
            num_encoder_layers=1,
            num_decoder_layers=1,
            hidden_dim=32,
        )
    )
    sources, targets = number_words(640, seed=0)
    model.fit(model.make_dataset(sources, targets, batch_size=64), epochs=2, verbose=0)
    return model


@pytest.fixture(scope="module")
def classifier():
    keras.utils.set_random_seed(0)
    texts, labels = sentiment_with_negation(1280, seed=0)
    tokenizer = WordPieceTokenizer.train(texts, vocabulary_size=100)
    model = Classifier.from_preset(
        "tiny",
        tokenizer=tokenizer,
        num_classes=2,
        sequence_length=12,
        num_layers=1,
        hidden_dim=32,
        label_names=["negative", "positive"],
    )
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(model.make_dataset(texts, labels, batch_size=64), epochs=3, verbose=0)
    return model


# One export per model, each set up only when a test asks for it: a module
# that a memory-bound worker hands on mid-way rebuilds only what is left.


# The generator and the translator decode before they are exported, as a
# user's model would have: the compiled functions decoding caches on the
# model (keyed by search and beam width) must stay out of what the export
# tracks (test_a_model_that_has_decoded_still_exports).


def _exported(tmp_path_factory, model, name, **options):
    path = str(tmp_path_factory.mktemp("exports") / name)
    export(model, path, **options)
    return path


@pytest.fixture(scope="module")
def generator_export(tmp_path_factory, generator):
    generator.generate(["ab"], max_new_tokens=2)
    return _exported(tmp_path_factory, generator, "generator", max_new_tokens=6)


@pytest.fixture(scope="module")
def translator_export(tmp_path_factory, translator):
    translator.translate(["seven"], beam_width=2)
    return _exported(tmp_path_factory, translator, "translator", beam_width=3)


@pytest.fixture(scope="module")
def classifier_export(tmp_path_factory, classifier):
    return _exported(tmp_path_factory, classifier, "classifier")


# The last prompt is cut to fit; the others decode in shorter buffers in
# Python (`generate` rounds its buffer up to a multiple of 16 tokens) than
# in the export (always `sequence_length`).
PROMPTS = ["abc", "mnop", "", "x", "bcdefghijklmnopqrstuvwxyz" * 2]
# Prompts whose alphabet-run continuation repeats their own start.
LOOPING_PROMPTS = ["defabc", "mnopjkl", "xyzuvw"]


def _python_logits(model, inputs):
    return keras.ops.convert_to_numpy(model(inputs, training=False))


# ------------------------------------------------------- fresh-process serving


def test_generator_serves_python_generate_outputs(generator, generator_export):
    ids = np.zeros((2, LENGTH), "int32")
    ids[0, :4], ids[1, :2] = [2, 10, 11, 12], [2, 30]
    sampling = dict(temperature=0.9, top_k=5, top_p=0.9, seed=7)
    controls = dict(no_repeat_ngram_size=2, repetition_penalty=1.3)
    with pytest.warns(UserWarning, match="dropped"):
        expected = {
            "default": generator.generate(PROMPTS, max_new_tokens=6),
            "short": generator.generate(PROMPTS, max_new_tokens=3),
            "long": generator.generate(PROMPTS, max_new_tokens=12),
            "sampled": generator.generate(PROMPTS, max_new_tokens=5, **sampling),
        }
    expected["looping"] = generator.generate(LOOPING_PROMPTS, max_new_tokens=8)
    expected["controlled"] = generator.generate(LOOPING_PROMPTS, max_new_tokens=8, **controls)
    expected["controlled_sampled"] = generator.generate(
        LOOPING_PROMPTS, max_new_tokens=8, **sampling, **controls
    )
    off = dict(no_repeat_ngram_size=0, repetition_penalty=1.0)
    options = dict(temperature=0.0, top_k=0, top_p=1.0, seed=0, **off)
    (
        default, short, long, sampled, looping, controlled, controlled_sampled, logits, empty
    ) = serve_in_fresh_process(
        generator_export,
        [
            ("serving_default", {"inputs": PROMPTS}),
            ("generate", {"inputs": PROMPTS, "max_new_tokens": 3, **options}),
            ("generate", {"inputs": PROMPTS, "max_new_tokens": 12, **options}),
            ("generate", {"inputs": PROMPTS, "max_new_tokens": 5, **sampling, **off}),
            ("generate", {"inputs": LOOPING_PROMPTS, "max_new_tokens": 8, **options}),
            ("generate",
             {"inputs": LOOPING_PROMPTS, "max_new_tokens": 8, **options, **controls}),
            ("generate",
             {"inputs": LOOPING_PROMPTS, "max_new_tokens": 8, **sampling, **controls}),
            ("logits", {"token_ids": ids.tolist()}),
            ("serving_default", {"inputs": []}),
        ],
    )
    assert any(len(text) >= 3 for text in expected["default"])  # non-trivial outputs
    assert default["texts"] == expected["default"]
    assert short["texts"] == expected["short"]
    assert long["texts"] == expected["long"]
    assert sampled["texts"] == expected["sampled"]
    assert sampled["texts"] != long["texts"]
    # The alphabet run repeats the prompt's start; the controls turn it
    # away, in the export as in Python.
    assert looping["texts"] == expected["looping"]
    assert controlled["texts"] == expected["controlled"]
    assert controlled["texts"] != looping["texts"]
    assert controlled_sampled["texts"] == expected["controlled_sampled"]
    np.testing.assert_allclose(logits["logits"], _python_logits(generator, ids), atol=1e-5)
    assert empty["texts"] == []


def test_translator_serves_python_translate_outputs(translator, translator_export):
    sources, _ = number_words(6, seed=1)
    source_ids, _ = translator.encode_sources(sources)
    target_ids = np.full((6, 8), 2, "int32")
    target_ids[:, 1:3] = [10, 11]
    controls = dict(no_repeat_ngram_size=1, repetition_penalty=1.5)
    off = dict(no_repeat_ngram_size=0, repetition_penalty=1.0)
    greedy, beam, controlled, logits = serve_in_fresh_process(
        translator_export,
        [
            ("serving_default", {"inputs": sources}),
            ("translate", {"inputs": sources, "length_penalty": 0.6, **off}),
            ("translate", {"inputs": sources, "length_penalty": 0.6, **controls}),
            ("logits", {"source_ids": source_ids.tolist(), "target_ids": target_ids.tolist()}),
        ],
    )
    expected_greedy = translator.translate(sources)
    assert any(expected_greedy)
    assert greedy["translations"] == expected_greedy
    assert beam["translations"] == translator.translate(sources, beam_width=3, length_penalty=0.6)
    expected_controlled = translator.translate(sources, beam_width=3, length_penalty=0.6,
                                               **controls)
    assert controlled["translations"] == expected_controlled
    # n = 1: no character twice in a translation (the byte tokenizer's tokens).
    assert all(len(set(text)) == len(text) for text in expected_controlled)
    inputs = {"source_ids": source_ids, "target_ids": target_ids}
    np.testing.assert_allclose(logits["logits"], _python_logits(translator, inputs), atol=1e-5)


def test_classifier_serves_python_classify_outputs(classifier, classifier_export):
    texts, _ = sentiment_with_negation(8, seed=1)
    texts.append("the movie was not really good, and the plot was not dull at all")  # truncated
    pairs, _ = sentiment_with_negation(9, seed=2)
    inputs, _ = classifier.preprocess(texts)
    single, paired, logits = serve_in_fresh_process(
        classifier_export,
        [
            ("serving_default", {"inputs": texts}),
            ("classify_pairs", {"inputs": texts, "text_pairs": pairs}),
            ("logits", {k: v.tolist() for k, v in inputs.items()}),
        ],
        needs_text=True,
    )
    for served, (labels, probabilities) in (
        (single, classifier.classify(texts)),
        (paired, classifier.classify(texts, pairs)),
    ):
        assert served["labels"] == labels
        assert served["label_ids"] == probabilities.argmax(-1).tolist()
        np.testing.assert_allclose(served["probabilities"], probabilities, atol=1e-5)
    assert len(set(single["labels"])) == 2  # the trained model tells the classes apart
    np.testing.assert_allclose(logits["logits"], _python_logits(classifier, inputs), atol=1e-5)


# ------------------------------------------------------ signatures and layers


CLI_MODULE = "tensorflow.python.tools.saved_model_cli"


def _saved_model_cli(path):
    # The script TensorFlow installs, or the module it runs.
    binary = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    binary = shutil.which("saved_model_cli") or binary
    command = [binary] if os.path.exists(binary) else [sys.executable, "-m", CLI_MODULE]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    process = subprocess.run(
        [*command, "show", "--dir", path, "--all"], capture_output=True, text=True, env=env
    )
    assert process.returncode == 0, process.stderr[-3000:]
    return process.stdout


@pytest.mark.parametrize(
    "task, signatures",
    [
        (
            "generator",
            {
                "serving_default": ["inputs"],
                "generate": [
                    "inputs", "max_new_tokens", "temperature", "top_k", "top_p", "seed",
                    "no_repeat_ngram_size", "repetition_penalty",
                ],
                "logits": ["token_ids"],
            },
        ),
        (
            "translator",
            {
                "serving_default": ["inputs"],
                "translate": [
                    "inputs", "length_penalty", "no_repeat_ngram_size", "repetition_penalty",
                ],
                "logits": ["source_ids", "target_ids"],
            },
        ),
        (
            "classifier",
            {
                "serving_default": ["inputs"],
                "classify_pairs": ["inputs", "text_pairs"],
                "logits": ["token_ids", "segment_ids", "padding_mask"],
            },
        ),
    ],
)
def test_saved_model_cli_lists_the_documented_signatures(request, task, signatures):
    shown = _saved_model_cli(request.getfixturevalue(f"{task}_export"))
    blocks = {}
    for block in shown.split("signature_def['")[1:]:
        name, body = block.split("']", 1)
        blocks[name] = body
    assert set(signatures) <= set(blocks)
    for name, inputs in signatures.items():
        inputs_part = blocks[name].split("outputs:")[0]
        for input_name in inputs:
            assert f"inputs['{input_name}']" in inputs_part, (name, input_name)
    outputs = {"generator": "texts", "translator": "translations", "classifier": "probabilities"}
    assert f"outputs['{outputs[task]}']" in blocks["serving_default"]
    assert "outputs['logits']" in blocks["logits"]


def test_tfsm_layer_wraps_the_ids_level_endpoint(
    generator, classifier, generator_export, classifier_export
):
    ids = np.zeros((3, LENGTH), "int32")
    ids[:, 0], ids[:, 1:5] = 2, np.arange(10, 22).reshape(3, 4)
    layer = keras.layers.TFSMLayer(generator_export, call_endpoint="logits")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(ids)["logits"]),
        _python_logits(generator, ids),
        atol=1e-5,
    )
    inputs, _ = classifier.preprocess(["the film was not bad", "the plot was dull"])
    layer = keras.layers.TFSMLayer(classifier_export, call_endpoint="logits")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(inputs)["logits"]),
        _python_logits(classifier, inputs),
        atol=1e-5,
    )
    # ... and it composes with Keras layers in a model of its own.
    token_ids = keras.Input((LENGTH,), dtype="int32")
    probabilities = keras.layers.Softmax()(
        keras.layers.TFSMLayer(generator_export, call_endpoint="logits")(token_ids)["logits"]
    )
    served = keras.Model(token_ids, probabilities).predict(ids, verbose=0)
    np.testing.assert_allclose(served.sum(-1), 1.0, atol=1e-5)


def test_export_without_xla_serves_the_same_labels(classifier, tmp_path):
    path = str(tmp_path / "no_xla")
    export(classifier, path, jit_compile=False)
    texts = ["the film was not good", "the acting was superb"]
    served = tf.saved_model.load(path)
    outputs = served.serving_default(tf.constant(texts))
    labels, probabilities = classifier.classify(texts)
    assert [label.decode() for label in outputs["labels"].numpy()] == labels
    np.testing.assert_allclose(outputs["probabilities"].numpy(), probabilities, atol=1e-5)
    metadata = json.loads(_read(path, METADATA_FILE))
    assert metadata["task"] == "keras_attn>Classifier" and metadata["jit_compile"] is False


# ---------------------------------------------------------------- safe writes


def test_failed_export_keeps_the_earlier_one(tmp_path, monkeypatch):
    # A classifier: the quickest export (no decoding loop to trace).
    keras.utils.set_random_seed(0)
    model = Classifier.from_preset("tiny", num_classes=2, sequence_length=8, num_layers=1,
                                   hidden_dim=16)
    path = str(tmp_path / "served")
    export(model, path, jit_compile=False)  # no XLA: quicker to call
    before = {name: _read(path, name) for name in ("saved_model.pb", METADATA_FILE)}
    served = tf.saved_model.load(path)
    expected = served.serving_default(tf.constant(["ab"]))["probabilities"].numpy()

    with pytest.raises(ValueError, match="`path` already exists"):
        export(model, path)

    real_save = tf.saved_model.save

    def save_then_fail(*args, **kwargs):
        real_save(*args, **kwargs)  # a half-written export on disk
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        export(model, path, overwrite=True)
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == ["served"]  # no staging directory left
    assert {name: _read(path, name) for name in before} == before
    served = tf.saved_model.load(path)
    np.testing.assert_array_equal(
        served.serving_default(tf.constant(["ab"]))["probabilities"].numpy(), expected)

    export(model, path, overwrite=True)
    assert json.loads(_read(path, METADATA_FILE))["jit_compile"] is True
    assert sorted(os.listdir(tmp_path)) == ["served"]


def _read(directory, name):
    with open(os.path.join(directory, name), "rb") as file:
        return file.read()


def test_a_model_that_has_decoded_still_exports(generator, translator, generator_export,
                                                translator_export):
    # The fixtures decoded first: the models hold compiled decoding functions.
    assert generator._untracked.functions and translator._untracked.functions
    for path in (generator_export, translator_export):
        assert os.path.isfile(os.path.join(path, "saved_model.pb"))


def test_export_arguments_are_checked(tmp_path):
    model = Generator.from_preset("tiny", sequence_length=8, num_layers=1, hidden_dim=16)
    with pytest.raises(ValueError, match="max_new_tokens"):
        export(model, str(tmp_path / "a"), max_new_tokens=8)
    with pytest.raises(ValueError, match="beam_width"):
        export(model, str(tmp_path / "b"), beam_width=2)
    with pytest.raises(ValueError, match="must be a keras_attn.models task"):
        export(Generator.backbone_cls(10, 8, 1, 2, 16, 32), str(tmp_path / "c"))
    assert os.listdir(tmp_path) == []


def test_masked_lm_serves_python_fill_mask_outputs(tmp_path):
    keras.utils.set_random_seed(0)
    texts, _ = sentiment_with_negation(1280, seed=0)
    tokenizer = WordPieceTokenizer.train(texts, vocabulary_size=100)
    model = MaskedLanguageModel.from_preset(
        "tiny", tokenizer=tokenizer, sequence_length=12, num_layers=1, hidden_dim=32
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(model.make_dataset(texts, batch_size=64), epochs=2, verbose=0)
    path = str(tmp_path / "masked_lm")
    export(model, path)
    queries = ["the plot was [MASK]", "[MASK] film", "no mask here", "a [MASK] [MASK] story"]
    (served,) = serve_in_fresh_process(path, [("fill_mask", {"inputs": queries})])
    filled, _ = model.fill_mask(queries)
    assert served["texts"] == filled
    inputs = model.preprocessor.fill_mask_inputs(tf.constant(queries))
    mask_positions = inputs["token_ids"].numpy() == tokenizer.mask_id
    assert served["mask_positions"] == mask_positions.tolist()
    assert mask_positions.sum() == 4
