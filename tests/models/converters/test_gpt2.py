"""GPT-2 from keras-hub: a small random checkpoint built offline, converted,
and compared number for number, token for token."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

from keras_attn.export import export
from keras_attn.export.serve_check import run_in_fresh_process
from keras_attn.models import Generator
from keras_attn.models.converters import convert_gpt2_backbone, convert_gpt2_tokenizer
from keras_attn.models.fine_tuning import enable_lora
from keras_attn.tokenizers import BytePairTokenizer, Tokenizer

SEQUENCE_LENGTH = 32
TEXTS = [
    "The cat's hat isn't in the  cat.",
    "Héllo wörld! 123456 — ça va?\n\nnew   line\t tab",
    "don't stop the cat",
    "",
    "  ",
    "日本語 テキスト 😀!!",
]
PAIRS = [
    ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ġ", "a"), ("'", "s"), ("'", "t"), ("Ġ", "Ġ"),
    ("i", "n"), ("Ġ", "c"), ("Ġc", "a"), ("Ġca", "t"), ("é", "t"), ("Ċ", "Ċ"), ("Ġ", "d"),
    ("o", "n"), ("Ġd", "on"), ("Ġ", "s"), ("t", "o"), ("Ġs", "to"), ("Ġsto", "p"),
]


def vocabulary_and_merges():
    """Every byte symbol, then one token per merge, then `<|endoftext|>`."""
    vocabulary = {symbol: index for index, symbol in enumerate(bytes_to_unicode()[1])}
    merges = []
    for left, right in PAIRS:
        merges.append(f"{left} {right}")
        vocabulary.setdefault(left + right, len(vocabulary))
    vocabulary["<|endoftext|>"] = len(vocabulary)
    return vocabulary, merges


@pytest.fixture(scope="module")
def hub():
    """A keras-hub GPT-2 causal LM with random weights larger than its
    initializer's, so the logits differ clearly between tokens."""
    keras.utils.set_random_seed(3)
    vocabulary, merges = vocabulary_and_merges()
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=merges)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=len(vocabulary), num_layers=2, num_heads=4, hidden_dim=32,
        intermediate_dim=64, dropout=0.0, max_sequence_length=48,
    )
    rng = np.random.default_rng(0)
    for weight in backbone.weights:
        weight.assign(rng.normal(0, 0.3, weight.shape).astype("float32"))
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=16)
    causal_lm = keras_hub.models.GPT2CausalLM(backbone, preprocessor=preprocessor)
    causal_lm.compile(sampler="greedy")
    return causal_lm


@pytest.fixture(scope="module")
def generator(hub):
    return Generator.from_keras_hub(hub, sequence_length=SEQUENCE_LENGTH)


def rows(ids):
    """keras-hub's tokenizer output (ragged tensor or list of arrays) as lists."""
    if hasattr(ids, "to_list"):
        return ids.to_list()
    return [[int(i) for i in row] for row in ids]


def padded_batch(lengths, width, vocabulary_size, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocabulary_size, (len(lengths), width)).astype("int32")
    mask = np.arange(width)[None, :] < np.asarray(lengths)[:, None]
    return np.where(mask, ids, 0).astype("int32"), mask


def test_logits_equal_keras_hub_on_a_padded_batch(hub, generator):
    backbone = hub.backbone
    ids, mask = padded_batch([16, 9, 3], 16, backbone.vocabulary_size)
    hidden = backbone({"token_ids": ids, "padding_mask": mask.astype("int32")})
    expected = keras.ops.convert_to_numpy(backbone.token_embedding(hidden, reverse=True))
    logits = keras.ops.convert_to_numpy(generator({"token_ids": ids, "padding_mask": mask}))
    difference = np.max(np.abs(logits - expected)[mask])
    print(f"GPT-2 (2 layers, 4 heads, width 32) largest logit difference: {difference:.2e}")
    assert difference < 1e-4
    assert np.std(expected[mask]) > 0.5  # the comparison is not between near-constants
    # Without a mask, right padding changes no real position (causal attention).
    unmasked = keras.ops.convert_to_numpy(generator(ids))
    assert np.max(np.abs(unmasked - expected)[mask]) < 1e-4


def test_the_conversion_keeps_the_gpt2_settings(hub, generator):
    backbone = generator.backbone
    assert backbone.pad_token_id is None
    assert (backbone.activation, backbone.norm_epsilon) == ("gelu_approximate", 1e-5)
    assert backbone.tie_embeddings and backbone.sequence_length == SEQUENCE_LENGTH
    with pytest.raises(ValueError, match="sequence_length"):
        convert_gpt2_backbone(hub.backbone, sequence_length=49)
    post_norm = keras_hub.models.GPT2Backbone(
        vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )
    post_norm.transformer_layers[0].normalize_first = False
    with pytest.raises(ValueError, match="normalize_first"):
        convert_gpt2_backbone(post_norm)
    bert = keras_hub.models.BertBackbone(
        vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )
    with pytest.raises(ValueError, match="Generator.from_keras_hub converts .*BertBackbone"):
        Generator.from_keras_hub(bert)
    with pytest.raises(ValueError, match="tokenizer"):
        Generator.from_keras_hub(hub.backbone)


def test_greedy_generation_equals_keras_hub_token_for_token(hub, generator):
    eot = generator.tokenizer.eos_id
    prompts = [[eot, 266, 71], [eot, 51, 257, 266, 260, 220], [eot]]
    width = 16
    ids = np.zeros((len(prompts), width), "int32")
    mask = np.zeros((len(prompts), width), bool)
    for row, prompt in enumerate(prompts):
        ids[row, : len(prompt)] = prompt
        mask[row, : len(prompt)] = True
    on_ids = keras_hub.models.GPT2CausalLM(hub.backbone, preprocessor=None)
    on_ids.compile(sampler="greedy")
    theirs = on_ids.generate(
        {"token_ids": ids, "padding_mask": mask}, stop_token_ids=None
    )["token_ids"]
    ours = generator.generate_ids(np.where(mask, ids, eot), mask, stop_token_ids=())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours), np.asarray(theirs))
    # The text API: keras-hub's prompt + continuation, up to its max_length.
    prompt = "the cat"
    expected = hub.generate([prompt], max_length=16)[0]
    new_tokens = 16 - 1 - len(generator.tokenizer.tokenize(prompt).numpy())
    continuation = generator.generate([prompt], max_new_tokens=new_tokens)[0]
    assert prompt + continuation == expected


def test_tokenizer_ids_equal_keras_hub(hub, generator):
    hub_tokenizer = hub.preprocessor.tokenizer
    # keras-hub's graph path (as in tf.data): its eager path uses the HF
    # `tokenizers` library with Llama 3's split pattern, which reads a run
    # of spaces before a word differently from GPT-2.
    graph_path = keras_hub.models.GPT2Tokenizer(
        vocabulary=hub_tokenizer.vocabulary, merges=hub_tokenizer.merges,
        _allow_python_workflow=False,
    )
    tokenizer = generator.tokenizer
    assert isinstance(tokenizer, BytePairTokenizer)
    ours = tokenizer.tokenize(TEXTS).to_list()
    assert ours == rows(graph_path(TEXTS))
    for text, row in zip(TEXTS, ours):
        if "  " not in text:
            assert row == list(hub_tokenizer(text)), text
    assert any(len(row) < len(text.encode()) for row, text in zip(ours, TEXTS))  # merges ran
    texts = [t.encode() for t in TEXTS]
    assert tokenizer.detokenize(tokenizer.tokenize(TEXTS)).numpy().tolist() == texts
    eot = tokenizer.eos_id
    assert set(tokenizer.special_token_ids.values()) == {eot}
    assert tokenizer.tokenize("a<|endoftext|>b").numpy().tolist() == [
        tokenizer.token_to_id("a"), eot, tokenizer.token_to_id("b")
    ]
    # Inside tf.data: the same ids.
    dataset = tf.data.Dataset.from_tensor_slices(TEXTS).batch(3).map(tokenizer.tokenize)
    assert [row for batch in dataset for row in batch.to_list()] == ours


def test_tokenizer_round_trips_through_its_directory(generator, tmp_path):
    generator.tokenizer.save(str(tmp_path))
    loaded = Tokenizer.from_directory(str(tmp_path))
    assert loaded.special_token_ids == generator.tokenizer.special_token_ids
    assert loaded.get_merges() == generator.tokenizer.get_merges()
    assert loaded.tokenize(TEXTS).to_list() == generator.tokenizer.tokenize(TEXTS).to_list()
    with pytest.raises(ValueError, match="special_token_ids"):
        BytePairTokenizer({"a": 0}, [], special_token_ids={"pad": 0})
    with pytest.raises(ValueError, match="merges"):
        convert_gpt2_tokenizer(object())


def test_training_targets_keep_the_end_token_but_not_the_padding(generator):
    eot = generator.tokenizer.eos_id
    inputs, targets, weights = generator.preprocessor(["the cat"])
    real = int(np.sum(weights.numpy()))
    assert targets.numpy()[0, real - 1] == eot  # the text's end is learned
    assert np.all(targets.numpy()[0, real:] == eot)  # padding, weighted 0
    assert generator.ignored_label() is None


def test_a_preset_name_keras_hub_cannot_load_is_one_line(tmp_path):
    with pytest.raises(OSError, match="could not load .*internet") as error:
        Generator.from_keras_hub(str(tmp_path / "gpt2_base_en_missing"))
    assert "\n" not in str(error.value)


def test_fit_full_and_lora_then_preset_round_trip(hub, tmp_path):
    generator = Generator.from_keras_hub(hub, sequence_length=16)
    texts = ["the cat", "don't stop", "a hat isn't in"] * 4
    dataset = generator.make_dataset(texts, batch_size=4)
    generator.compile(optimizer=keras.optimizers.Adam(1e-2))
    before = generator.evaluate(dataset, verbose=0, return_dict=True)["loss"]
    generator.fit(dataset, epochs=2, verbose=0)
    after = generator.evaluate(dataset, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(after) and after < before

    enable_lora(generator, rank=2)
    frozen = keras.ops.convert_to_numpy(generator.backbone.token_embedding.embeddings)
    generator.compile(optimizer=keras.optimizers.Adam(1e-2))
    generator.fit(dataset, epochs=2, verbose=0)
    lora_loss = generator.evaluate(dataset, verbose=0, return_dict=True)["loss"]
    assert lora_loss < after
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(generator.backbone.token_embedding.embeddings), frozen
    )

    generator.save_to_preset(str(tmp_path / "preset"))
    loaded = Generator.from_preset(str(tmp_path / "preset"))
    ids, mask = padded_batch([16, 5], 16, generator.backbone.vocabulary_size, seed=1)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded({"token_ids": ids, "padding_mask": mask})),
        keras.ops.convert_to_numpy(generator({"token_ids": ids, "padding_mask": mask})),
        atol=1e-5,
    )
    assert loaded.backbone.pad_token_id is None
    assert loaded.tokenizer.special_token_ids == generator.tokenizer.special_token_ids
    assert loaded.generate(["the cat"], max_new_tokens=6) == generator.generate(
        ["the cat"], max_new_tokens=6
    )


def test_export_serves_what_generate_returns_in_a_fresh_process(generator, tmp_path):
    path = str(tmp_path / "served")
    export(generator, path, max_new_tokens=6, jit_compile=False)
    prompts = ["the cat", "Héllo 😀", "don't"]
    answer = run_in_fresh_process(path, [("serving_default", {"inputs": prompts})])
    assert answer["leaked"] == []
    served = answer["results"][0]["outputs"]["texts"]
    assert served == generator.generate(prompts, max_new_tokens=6)


def test_cli_convert_writes_a_keras_attn_preset(hub, generator, tmp_path, capsys):
    from keras_attn.cli import main

    hub_dir, out = str(tmp_path / "hub_preset"), str(tmp_path / "converted")
    hub.save_to_preset(hub_dir)
    assert main(["convert", hub_dir, out, "--sequence-length", str(SEQUENCE_LENGTH)]) == 0
    loaded = Generator.from_preset(out)
    ids, mask = padded_batch([16, 7], 16, generator.backbone.vocabulary_size, seed=2)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded({"token_ids": ids, "padding_mask": mask})),
        keras.ops.convert_to_numpy(generator({"token_ids": ids, "padding_mask": mask})),
        atol=1e-5,
    )
    assert loaded.tokenizer.tokenize(TEXTS).to_list() == generator.tokenizer.tokenize(
        TEXTS
    ).to_list()
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "missing"), str(tmp_path / "other")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "could not load" in error and "internet" in error
