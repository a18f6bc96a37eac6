"""BART from keras-hub: a small random checkpoint built offline, converted,
and compared number for number, token for token."""

import keras
import keras_hub
import numpy as np
import pytest
from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

from keras_attn.models import Translator
from keras_attn.models.converters.bart import convert_bart_backbone, convert_bart_tokenizer
from keras_attn.tokenizers import BytePairTokenizer

TEXTS = [
    "The cat's hat isn't in the  cat.",
    "Héllo wörld! 123 — ça va?\n\nnew   line",
    "don't stop the cat",
    "",
    "日本語 😀!!",
]
PAIRS = [
    ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("'", "s"), ("'", "t"), ("Ġ", "Ġ"),
    ("i", "n"), ("Ġ", "c"), ("Ġc", "a"), ("Ġca", "t"), ("Ġ", "d"), ("o", "n"), ("Ġd", "on"),
]


def vocabulary_and_merges():
    """BART's four special tokens first, every byte symbol, one token per
    merge, then `<mask>` last (as in the released vocabulary)."""
    vocabulary = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for symbol in bytes_to_unicode()[1]:
        vocabulary[symbol] = len(vocabulary)
    merges = []
    for left, right in PAIRS:
        merges.append(f"{left} {right}")
        vocabulary.setdefault(left + right, len(vocabulary))
    vocabulary["<mask>"] = len(vocabulary)
    return vocabulary, merges


@pytest.fixture(scope="module")
def hub():
    """A keras-hub BART seq2seq LM with random weights larger than its
    initializer's (norms and biases included), so logits differ clearly."""
    keras.utils.set_random_seed(5)
    vocabulary, merges = vocabulary_and_merges()
    tokenizer = keras_hub.models.BartTokenizer(vocabulary=vocabulary, merges=merges)
    backbone = keras_hub.models.BartBackbone(
        vocabulary_size=len(vocabulary), num_layers=2, num_heads=4, hidden_dim=32,
        intermediate_dim=64, dropout=0.0, max_sequence_length=24,
    )
    rng = np.random.default_rng(0)
    for weight in backbone.weights:
        center = 1.0 if weight.path.endswith("gamma") else 0.0
        weight.assign((center + rng.normal(0, 0.3, weight.shape)).astype("float32"))
    preprocessor = keras_hub.models.BartSeq2SeqLMPreprocessor(
        tokenizer, encoder_sequence_length=16, decoder_sequence_length=10
    )
    seq2seq_lm = keras_hub.models.BartSeq2SeqLM(backbone, preprocessor=preprocessor)
    seq2seq_lm.compile(sampler="greedy")
    return seq2seq_lm


@pytest.fixture(scope="module")
def translator(hub):
    return Translator.from_keras_hub(hub, source_length=16, target_length=10)


def padded(rows, width, pad=1):
    ids = np.full((len(rows), width), pad, "int32")
    for row, values in enumerate(rows):
        ids[row, : len(values)] = values
    return ids, ids != pad


def test_logits_equal_keras_hub_on_a_padded_batch(hub, translator):
    rng = np.random.default_rng(1)
    vocabulary_size = hub.backbone.vocabulary_size
    source, source_mask = padded(
        [[0, *rng.integers(4, vocabulary_size, n), 2] for n in (14, 6, 1)], 16
    )
    # Decoder inputs as keras-hub's BART preprocessor makes them: `</s> <s> ...`.
    target, target_mask = padded(
        [[2, 0, *rng.integers(4, vocabulary_size, n)] for n in (8, 2, 5)], 10
    )
    expected = keras.ops.convert_to_numpy(hub({
        "encoder_token_ids": source, "encoder_padding_mask": source_mask,
        "decoder_token_ids": target, "decoder_padding_mask": target_mask,
    }))
    # The default masks (ids != <pad>) are keras-hub's explicit ones.
    logits = keras.ops.convert_to_numpy(translator({"source_ids": source, "target_ids": target}))
    difference = np.max(np.abs(logits - expected)[target_mask])
    print(f"BART (2+2 layers, 4 heads, width 32) largest logit difference: {difference:.2e}")
    assert difference < 1e-4
    assert np.std(expected[target_mask]) > 0.5  # the comparison is not between near-constants


def test_the_conversion_keeps_the_bart_settings(hub, translator):
    backbone = translator.backbone
    assert backbone.pad_token_id == 1 and translator.source_tokenizer.pad_id == 1
    assert backbone.activation == "gelu" and backbone.norm_epsilon == 1e-5
    assert not backbone.norm_first
    assert backbone.share_embeddings and backbone.tie_embeddings
    assert not backbone.scale_embeddings and backbone.embedding_norm
    assert backbone.target_position_embedding is not None
    with pytest.raises(ValueError, match="target_length"):
        convert_bart_backbone(hub.backbone, target_length=25)
    small = dict(vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8,
                 intermediate_dim=16, max_sequence_length=8)
    pre_norm = keras_hub.models.BartBackbone(**small)
    pre_norm.decoder_transformer_layers[0].normalize_first = True
    with pytest.raises(ValueError, match="normalize_first"):
        convert_bart_backbone(pre_norm)
    gpt2 = keras_hub.models.GPT2Backbone(**small)
    with pytest.raises(ValueError, match="Translator.from_keras_hub converts BartBackbone"):
        Translator.from_keras_hub(gpt2)
    with pytest.raises(ValueError, match="tokenizer"):
        Translator.from_keras_hub(hub.backbone)


def test_greedy_translation_equals_keras_hub_generate_token_for_token(hub, translator):
    texts = ["the cat", "don't stop the cat's hat", "Héllo"]
    inputs = hub.preprocessor.generate_preprocess(texts)
    source = keras.ops.convert_to_numpy(inputs["encoder_token_ids"])
    # keras-hub packs sources as `<s> text </s>`; so does the converted model.
    np.testing.assert_array_equal(
        source, keras.ops.convert_to_numpy(translator.encode_sources(texts)[0])
    )
    # keras-hub's default decoder prompt is `</s> <s>`; so are our start ids.
    prompt = keras.ops.convert_to_numpy(inputs["decoder_token_ids"])
    assert translator.target_start_ids == (2, 0)
    np.testing.assert_array_equal(prompt[:, :2], 2 * [[2, 0]] + [[2, 0]])
    on_ids = keras_hub.models.BartSeq2SeqLM(hub.backbone, preprocessor=None)
    on_ids.compile(sampler="greedy")
    theirs = np.asarray(on_ids.generate(inputs, stop_token_ids=None)["decoder_token_ids"])
    ours = keras.ops.convert_to_numpy(translator.translate_ids(source))
    assert theirs.shape == ours.shape == (3, 10)
    # keras-hub runs to the end of the buffer; ours pads after its first </s>.
    for their_row, our_row in zip(theirs, ours):
        ends = np.flatnonzero(their_row[2:] == 2)
        length = 2 + (ends[0] + 1 if len(ends) else 8)
        np.testing.assert_array_equal(our_row[:length], their_row[:length])
        assert np.all(our_row[length:] == 1)
    assert len({tuple(row) for row in ours}) > 1  # the sources steer the decoding
    # keras-hub's own `generate` on strings (default prompt, stop at </s>).
    assert translator.translate(texts) == list(hub.generate(texts))
    assert translator.translate(texts[0]) == hub.generate(texts[0])


def test_beam_search_decodes_from_the_two_start_ids(translator):
    texts = ["the cat", "don't stop the cat's hat", "Héllo"]
    source, _ = translator.encode_sources(texts)
    beams = keras.ops.convert_to_numpy(translator.translate_ids(source, beam_width=3))
    assert beams.shape == (3, 10) and np.all(beams[:, :2] == [2, 0])
    # One beam is greedy decoding.
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(translator.translate_ids(source, beam_width=1, search="beam")),
        keras.ops.convert_to_numpy(translator.translate_ids(source)),
    )
    outputs = translator.translate(texts, beam_width=3, length_penalty=1.0)
    assert len(outputs) == 3 and all(isinstance(text, str) for text in outputs)
    with pytest.raises(ValueError, match="max_length"):
        translator.translate_ids(source, max_length=9)  # 2 start ids + 9 > target_length 10


def test_teacher_forced_batch_and_logits_equal_keras_hub_preprocessing(hub, translator):
    sources = ["the cat", "don't stop the cat's hat", ""]
    targets = ["Héllo the cat", "", "don't stop the cat's hat isn't in the cat, the cat"]
    (x, y, weights) = hub.preprocessor({"encoder_text": sources, "decoder_text": targets})
    x = {key: keras.ops.convert_to_numpy(value) for key, value in x.items()}
    inputs, labels, our_weights = translator.preprocessor(sources, targets)
    np.testing.assert_array_equal(inputs["source_ids"].numpy(), x["encoder_token_ids"])
    np.testing.assert_array_equal(inputs["target_ids"].numpy(), x["decoder_token_ids"])
    np.testing.assert_array_equal(labels.numpy(), keras.ops.convert_to_numpy(y))
    np.testing.assert_array_equal(our_weights.numpy(), keras.ops.convert_to_numpy(weights))
    assert x["decoder_token_ids"][1].tolist()[:4] == [2, 0, 2, 1]  # an empty target
    assert x["decoder_token_ids"][2][-1] != 1  # a target cut to fit
    expected = keras.ops.convert_to_numpy(hub(x))
    logits = keras.ops.convert_to_numpy(translator(inputs))
    mask = x["decoder_padding_mask"]
    assert np.max(np.abs(logits - expected)[mask]) < 1e-4
    # texts_to_inputs reads targets as keras-hub's decoder prompts: `</s> <s> tokens`.
    batch = translator.texts_to_inputs(sources, targets=targets)
    assert all(row[:2] == ["</s>", "<s>"] for row in batch.tokens["target"])
    prompts = hub.preprocessor.generate_preprocess(
        {"encoder_text": sources, "decoder_text": targets}
    )["decoder_token_ids"]
    target_ids = batch.inputs["target_ids"]
    np.testing.assert_array_equal(
        target_ids, keras.ops.convert_to_numpy(prompts)[:, : target_ids.shape[1]]
    )
    greedy = translator.texts_to_inputs(sources)
    assert all(row[:2] == ["</s>", "<s>"] for row in greedy.tokens["target"])


def test_tokenizer_ids_equal_keras_hub(hub, translator):
    hub_tokenizer = hub.preprocessor.tokenizer
    graph_path = keras_hub.models.BartTokenizer(
        vocabulary=hub_tokenizer.vocabulary, merges=hub_tokenizer.merges,
        _allow_python_workflow=False,
    )
    tokenizer = translator.source_tokenizer
    assert isinstance(tokenizer, BytePairTokenizer) and translator.target_tokenizer is tokenizer
    texts = TEXTS + ["a<s>b</s>c<pad>"]
    ours = tokenizer.tokenize(texts).to_list()
    assert ours == [[int(i) for i in row] for row in graph_path(texts)]
    assert any(len(row) < len(text.encode()) for row, text in zip(ours, texts))  # merges ran
    vocabulary = hub_tokenizer.vocabulary
    assert tokenizer.special_token_ids == {
        "bos": 0, "cls": 0, "pad": 1, "eos": 2, "sep": 2, "unk": 3,
        "mask": vocabulary["<mask>"],
    }
    with pytest.raises(ValueError, match="BartTokenizer"):
        convert_bart_tokenizer(object())


def test_save_to_preset_and_from_preset_give_equal_outputs(translator, tmp_path):
    translator.save_to_preset(str(tmp_path / "bart"))
    loaded = Translator.from_preset(str(tmp_path / "bart"))
    assert loaded.source_bos and loaded.backbone.get_config() == translator.backbone.get_config()
    assert loaded.target_start_ids == (2, 0)
    source, _ = padded([[0, 40, 41, 2], [0, 2]], 16)
    target, _ = padded([[2, 0, 50, 51], [2, 0]], 10)
    inputs = {"source_ids": source, "target_ids": target}
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loaded(inputs)), keras.ops.convert_to_numpy(translator(inputs))
    )
    texts = ["the cat", "Héllo"]
    assert loaded.translate(texts) == translator.translate(texts)


def test_the_export_serves_translations_from_the_two_start_ids(translator, tmp_path):
    from keras_attn.export import export
    from keras_attn.export.serve_check import run_in_fresh_process

    texts = ["the cat", "don't stop the cat's hat", "Héllo"]
    path = str(tmp_path / "bart_export")
    export(translator, path, beam_width=2)
    answer = run_in_fresh_process(path, [
        ("serving_default", {"inputs": texts}),
        ("translate", {"inputs": texts, "length_penalty": 0.6, "no_repeat_ngram_size": 0,
                       "repetition_penalty": 1.0}),
    ])
    assert answer["leaked"] == []
    greedy, beam = (call["outputs"]["translations"] for call in answer["results"])
    assert greedy == translator.translate(texts)
    assert beam == translator.translate(texts, beam_width=2, length_penalty=0.6)
