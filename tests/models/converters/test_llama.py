"""keras-hub's LLaMA converted to keras-attn: the same logits, the same greedy
generation, the same token ids; then fine-tuning, presets and export on the
converted model. Small random keras-hub models, no download."""

import io

import keras
import keras_hub
import numpy as np
import pytest
import sentencepiece
import tensorflow as tf

from keras_attn.export import export
from keras_attn.export.serve_check import run_in_fresh_process
from keras_attn.models import DecoderBackbone, Generator, enable_lora
from keras_attn.models.converters import (
    LLAMA_SPECIAL_TOKENS,
    convert_llama_backbone,
    convert_llama_tokenizer,
)
from keras_attn.tokenizers import SentencePieceTokenizer, Tokenizer

TRAINING_TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you today?",
    "Numbers 12345 and punctuation: ;-) ... (done)",
    "Café naïve — déjà vu, señor.",
    "东京 is in 日本; 北京 is in 中国.",
] * 8
PROBE_TEXTS = [
    "The quick brown fox!",
    "  leading, trailing  and   repeated spaces ",
    "Ünïcödé 😀 emoji\ttabs\nand newlines",
    "unseen characters: ☃ ∑ ß",
    "",
    "digits 2024-06-01, 3.14159",
]
SEQUENCE_LENGTH = 32


def llama_proto():
    """A SentencePiece model trained as LLaMA's was: BPE, byte fallback,
    `<unk>`/`<s>`/`</s>` at 0/1/2, no padding piece, a dummy prefix space,
    split digits."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(TRAINING_TEXTS),
        model_writer=model,
        vocab_size=340,
        model_type="bpe",
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        add_dummy_prefix=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        split_digits=True,
        allow_whitespace_only_pieces=True,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    return model.getvalue()


def randomize(hub_backbone, seed=0):
    """Weights large enough that a wrong mapping shows in the logits (the
    keras-hub initializers give logits of ~0.1), norm scales not all ones.
    Output column 0 (`<unk>`, also keras-hub's padding id) is zeroed so that
    greedy decoding never picks it: until the backbones take a padding id,
    keras-attn's decoding reads a generated id 0 as padding."""
    rng = np.random.default_rng(seed)
    for weight in hub_backbone.weights:
        if weight.path.endswith("scale"):
            value = rng.uniform(0.5, 1.5, weight.shape)
        else:
            value = rng.normal(0.0, 0.3, weight.shape)
        if weight.path.endswith("reverse_embeddings"):
            value[:, 0] = 0.0
        weight.assign(value.astype("float32"))


@pytest.fixture(scope="module")
def hub_parts():
    keras.utils.set_random_seed(0)
    hub_tokenizer = keras_hub.models.LlamaTokenizer(proto=llama_proto())
    hub_backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=hub_tokenizer.vocabulary_size(),
        num_layers=2,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=32,
        intermediate_dim=48,
        rope_max_wavelength=500,
        layer_norm_epsilon=1e-5,
        dtype="float32",
    )
    randomize(hub_backbone)
    return hub_backbone, hub_tokenizer


@pytest.fixture(scope="module")
def converted(hub_parts):
    return Generator.from_keras_hub(
        hub_parts[0], tokenizer=hub_parts[1], sequence_length=SEQUENCE_LENGTH
    )


def padded_batch(vocabulary_size, lengths, width, seed=1):
    """Right-padded ids (padding 0, keras-hub's) and their padding mask;
    real ids avoid 0 (`<unk>`)."""
    rng = np.random.default_rng(seed)
    token_ids = np.zeros((len(lengths), width), "int32")
    padding_mask = np.zeros((len(lengths), width), "int32")
    for row, length in enumerate(lengths):
        token_ids[row, :length] = rng.integers(3, vocabulary_size, length)
        padding_mask[row, :length] = 1
    return token_ids, padding_mask


# ------------------------------------------------------------- sameness


def test_config_maps_every_llama_setting(hub_parts, converted):
    hub_backbone, _ = hub_parts
    backbone = converted.backbone
    assert isinstance(backbone, DecoderBackbone)
    assert (backbone.num_layers, backbone.hidden_dim, backbone.intermediate_dim) == (2, 32, 48)
    assert backbone.head_counts == [4, 4] and backbone.num_key_value_heads == 2
    assert (backbone.position_encoding, backbone.normalization, backbone.activation) == (
        "rotary", "rms_norm", "swiglu"
    )
    assert backbone.rope_max_wavelength == 500 and backbone.norm_epsilon == 1e-5
    assert not backbone.use_bias and not backbone.tie_embeddings
    assert backbone.count_params() == hub_backbone.count_params()


def test_logits_equal_keras_hub_on_a_padded_batch(hub_parts, converted):
    hub_backbone, _ = hub_parts
    token_ids, padding_mask = padded_batch(hub_backbone.vocabulary_size, [12, 7, 3], 12)
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    hub_hidden = hub_backbone(inputs)
    expected = keras.ops.convert_to_numpy(hub_backbone.token_embedding(hub_hidden, reverse=True))
    got = keras.ops.convert_to_numpy(
        converted.logits_from_backbone(converted.backbone(inputs), inputs)
    )
    real = padding_mask.astype(bool)
    difference = np.abs(expected - got)[real].max()
    print(f"largest logit difference: {difference:.2e} (logits up to {np.abs(expected).max():.1f})")
    assert np.abs(expected).max() > 1.0  # logits large enough to show a wrong weight
    assert difference < 1e-4


def test_greedy_generation_equals_keras_hub_generate(hub_parts, converted):
    hub_backbone, _ = hub_parts
    causal_lm = keras_hub.models.LlamaCausalLM(backbone=hub_backbone, preprocessor=None)
    causal_lm.compile(sampler="greedy")
    token_ids, padding_mask = padded_batch(hub_backbone.vocabulary_size, [5, 2, 8], 20, seed=3)
    expected = causal_lm.generate(
        {"token_ids": token_ids, "padding_mask": padding_mask}, stop_token_ids=None
    )["token_ids"]
    got = converted.generate_ids(token_ids, padding_mask.astype(bool), stop_token_ids=())
    got = keras.ops.convert_to_numpy(got)
    np.testing.assert_array_equal(got, np.asarray(expected))
    # Every row continued past its prompt, with more than one distinct token.
    assert all(len(set(row[8:])) > 1 for row in got)


def test_tokenizer_gives_keras_hub_ids(hub_parts, converted):
    _, hub_tokenizer = hub_parts
    tokenizer = converted.tokenizer
    expected = [list(ids) for ids in hub_tokenizer(PROBE_TEXTS)]
    assert tokenizer.tokenize(PROBE_TEXTS).to_list() == expected
    assert any(ids.count(0) == 0 and len(ids) > 10 for ids in expected)
    # The same ids in a tf.data pipeline (a graph).
    dataset = tf.data.Dataset.from_tensor_slices(PROBE_TEXTS).batch(3).map(tokenizer.tokenize)
    assert [row for batch in dataset for row in batch.to_list()] == expected
    # Byte fallback makes the text come back, as SentencePiece decodes it
    # (tensorflow-text, here and in keras-hub's graphs, also drops leading
    # spaces, which SentencePiece's Python decoder keeps).
    processor = sentencepiece.SentencePieceProcessor(model_proto=hub_tokenizer.proto)
    texts = tokenizer.detokenize(tokenizer.tokenize(PROBE_TEXTS)).numpy().tolist()
    for text, ids, detokenized in zip(PROBE_TEXTS, expected, texts):
        assert detokenized.decode("utf-8") == processor.decode(ids).lstrip(" ")
        assert detokenized.decode("utf-8") == text.lstrip(" ")


def test_tokenizer_keeps_llama_special_ids(hub_parts, converted, tmp_path):
    _, hub_tokenizer = hub_parts
    tokenizer = converted.tokenizer
    assert tokenizer.special_token_ids == {
        "pad": 0, "unk": 0, "bos": 1, "eos": 2, "sep": 2, "cls": 1, "mask": 0
    }
    assert (tokenizer.bos_id, tokenizer.eos_id) == (
        hub_tokenizer.start_token_id, hub_tokenizer.end_token_id
    )
    assert tokenizer.special_tokens == ("<unk>", "<s>", "</s>")
    tokenizer.save(str(tmp_path))
    restored = Tokenizer.from_directory(str(tmp_path))
    assert restored.special_token_ids == tokenizer.special_token_ids
    assert restored.get_config()["special_tokens"] == LLAMA_SPECIAL_TOKENS
    assert restored.tokenize(PROBE_TEXTS).to_list() == tokenizer.tokenize(PROBE_TEXTS).to_list()


def test_text_generation_starts_with_the_checkpoints_bos(hub_parts, converted):
    batch = converted.texts_to_inputs(["The quick"])
    hub_ids = list(hub_parts[1](["The quick"])[0])
    assert batch.inputs["token_ids"][0].tolist() == [1] + hub_ids
    assert isinstance(converted.generate("The quick", max_new_tokens=4), str)


def test_a_causal_lm_brings_its_tokenizer_and_a_missing_preset_fails_in_one_line(
    hub_parts, converted, tmp_path
):
    hub_backbone, hub_tokenizer = hub_parts
    causal_lm = keras_hub.models.LlamaCausalLM(
        backbone=hub_backbone,
        preprocessor=keras_hub.models.LlamaCausalLMPreprocessor(hub_tokenizer),
    )
    model = Generator.from_keras_hub(causal_lm, sequence_length=SEQUENCE_LENGTH)
    assert model.tokenizer.get_vocabulary() == converted.tokenizer.get_vocabulary()
    with pytest.raises(OSError, match="could not load") as error:
        Generator.from_keras_hub(str(tmp_path / "no_such_preset"))
    assert "\n" not in str(error.value)


# ------------------------------------------------------ refused settings


@pytest.mark.parametrize(
    "setting, value",
    [
        ("rope_position_scaling_factor", 2.0),
        ("rope_frequency_adjustment_factor", 8.0),
    ],
)
def test_settings_keras_attn_cannot_express_are_refused_by_name(setting, value):
    kwargs = {setting: value}
    if setting == "rope_frequency_adjustment_factor":
        kwargs.update(
            rope_low_freq_factor=1.0, rope_high_freq_factor=4.0,
            rope_pretraining_sequence_length=64,
        )
    hub_backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=40, num_layers=1, num_query_heads=2, num_key_value_heads=1,
        hidden_dim=8, intermediate_dim=16, **kwargs,
    )
    with pytest.raises(ValueError, match=setting):
        convert_llama_backbone(hub_backbone)


def test_a_bare_backbone_needs_its_tokenizer_and_other_families_are_named(hub_parts):
    with pytest.raises(ValueError, match="tokenizer"):
        Generator.from_keras_hub(hub_parts[0])
    with pytest.raises(ValueError, match="LlamaBackbone"):
        convert_llama_backbone(
            keras_hub.models.GPT2Backbone(
                vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8,
                intermediate_dim=16, max_sequence_length=8,
            )
        )


def test_special_tokens_must_name_every_role_with_pieces_of_the_model(hub_parts):
    proto = hub_parts[1].proto
    with pytest.raises(ValueError, match="special_tokens"):
        SentencePieceTokenizer(proto=proto, special_tokens={"bos": "<s>"})
    with pytest.raises(ValueError, match="special_tokens.*<pad>"):
        SentencePieceTokenizer(proto=proto, special_tokens=dict(LLAMA_SPECIAL_TOKENS, pad="<pad>"))
    # Without `special_tokens` a checkpoint's model is refused: its first
    # pieces are not keras-attn's.
    with pytest.raises(ValueError, match="first pieces"):
        SentencePieceTokenizer(proto=proto)
    assert convert_llama_tokenizer(hub_parts[1]).vocabulary_size == 340


# ------------------------------------------------ workflow on the result


def _texts():
    return TRAINING_TEXTS[:5] * 4


def test_fine_tuning_full_and_lora_lowers_the_loss(hub_parts):
    for lora in (False, True):
        model = Generator.from_keras_hub(
            hub_parts[0], tokenizer=hub_parts[1], sequence_length=SEQUENCE_LENGTH
        )
        if lora:
            enable_lora(model, rank=2)
        model.compile(optimizer=keras.optimizers.Adam(3e-3))
        dataset = model.make_dataset(_texts(), batch_size=4, shuffle=False)
        history = model.fit(dataset, epochs=3, verbose=0)
        losses = history.history["loss"]
        assert losses[-1] < losses[0], (lora, losses)


def test_preset_directory_round_trip_keeps_outputs(converted, tmp_path):
    path = str(tmp_path / "llama_preset")
    converted.save_to_preset(path)
    restored = Generator.from_preset(path)
    assert restored.tokenizer.special_token_ids == converted.tokenizer.special_token_ids
    token_ids, padding_mask = padded_batch(converted.backbone.vocabulary_size, [9, 4], 9)
    inputs = {"token_ids": token_ids, "padding_mask": padding_mask}
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored.backbone(inputs)["sequence_output"]),
        keras.ops.convert_to_numpy(converted.backbone(inputs)["sequence_output"]),
        atol=1e-6,
    )
    prompts = ["The quick", "Hello, world"]
    assert restored.generate(prompts, max_new_tokens=5) == converted.generate(
        prompts, max_new_tokens=5
    )


def test_export_serves_the_python_generations(converted, tmp_path):
    path = str(tmp_path / "llama_export")
    export(converted, path, max_new_tokens=5)
    prompts = ["The quick", "Café naïve — 东京", "Hello"]
    expected = converted.generate(prompts, max_new_tokens=5)
    answer = run_in_fresh_process(path, [("serving_default", {"inputs": prompts})])
    assert answer["leaked"] == []
    assert answer["results"][0]["outputs"]["texts"] == expected
    assert any(expected)
