import io
import json
import os

import keras
import numpy as np
import pytest
import sentencepiece
import tensorflow as tf

from keras_attn.export import export, run_in_fresh_process
from keras_attn.models import Generator, Translator
from keras_attn.tokenizers import (
    CONFIG_FILENAME,
    MODEL_FILENAME,
    SPECIAL_TOKENS,
    SentencePieceTokenizer,
    Tokenizer,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Save the file (Ctrl+S) before you close it.",
    "Datei speichern  (Strg+S), dann schließen.",
    "Le café est très bon ; l'été aussi !",
    "    indented = code(line)  # comment",
    "东京是日本的首都。",
    "مرحبا بالعالم",
    "emoji 😀 and 🎉 too",
] * 8

# Text SentencePiece's defaults would change: space runs, leading / trailing
# spaces, compatibility characters NFKC folds ("ﬁ", full-width "Ａ", NBSP),
# decomposed accents, unseen scripts, control characters, the literal "▁"
# that SentencePiece uses for spaces, and the special token spellings.
HARD_TEXTS = [
    "  two  spaces  ",
    " ",
    "",
    "tab\there\nnewline\r\nand\x0bvertical\x0cfeed",
    "ﬁne Ａ\u00a0nbsp",
    "e\u0301te\u0301 vs été",
    "שלום עולם, مرحبا",
    "日本語のテキスト 😀👍🏽🇩🇪",
    "nul\x00bell\x07del\x7f\u200bzwsp",
    "x▁y ▁ ▁▁",
    "[MASK] [SEP] [CLS] [PAD] [UNK] [BOS] [EOS] <0x41> ⁇",
    "Datei speichern (Strg+S).",
]


@pytest.fixture(scope="module")
def unigram():
    return SentencePieceTokenizer.train(CORPUS, vocabulary_size=360)


@pytest.fixture(scope="module")
def bpe():
    return SentencePieceTokenizer.train(CORPUS, vocabulary_size=360, model_type="bpe")


@pytest.fixture(params=["unigram", "bpe"])
def tokenizer(request):
    return request.getfixturevalue(request.param)


def strings(tensor):
    return [text.decode("utf-8") for text in np.asarray(tensor).reshape(-1)]


def test_special_tokens_take_ids_0_to_6(tokenizer):
    assert tuple(tokenizer.get_vocabulary()[:7]) == SPECIAL_TOKENS
    ids = (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id)
    ids += (tokenizer.sep_id, tokenizer.cls_id, tokenizer.mask_id)
    assert ids == (0, 1, 2, 3, 4, 5, 6)
    for index, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == index
        assert tokenizer.id_to_token(index) == token
    # The same ids inside the SentencePiece model itself.
    processor = sentencepiece.SentencePieceProcessor(model_proto=tokenizer.proto)
    assert (processor.pad_id(), processor.unk_id(), processor.bos_id(), processor.eos_id()) == (
        0, 1, 2, 3,
    )
    assert [processor.is_control(i) for i in (4, 5)] == [True, True]
    assert not processor.is_control(6) and not processor.is_unknown(6)


def test_vocabulary_holds_bytes_and_learned_pieces(tokenizer):
    vocabulary = tokenizer.get_vocabulary()
    assert tokenizer.vocabulary_size == len(vocabulary) <= 360
    assert len(set(vocabulary)) == len(vocabulary)
    assert all(f"<0x{byte:02X}>" in vocabulary for byte in range(256))
    assert tokenizer.byte_fallback
    assert any(len(piece) > 2 and piece.startswith("▁") for piece in vocabulary)
    the = tokenizer.token_to_id(vocabulary[300])
    assert tokenizer.id_to_token(the) == vocabulary[300]


@pytest.mark.parametrize("text", HARD_TEXTS)
def test_detokenize_inverts_tokenize_exactly(tokenizer, text):
    ids = tokenizer.tokenize([text])
    assert tokenizer.unk_id not in ids.flat_values.numpy()
    assert strings(tokenizer.detokenize(ids)) == [text]


def test_seen_text_uses_learned_pieces_not_bytes(tokenizer):
    ids = tokenizer.tokenize(CORPUS[:8])
    flat = ids.flat_values.numpy()
    byte_ids = [tokenizer.token_to_id(f"<0x{byte:02X}>") for byte in range(256)]
    assert not np.isin(flat, byte_ids).any()  # every seen character has a piece
    assert len(flat) < 0.85 * sum(len(text) for text in CORPUS[:8])  # multi-character pieces
    assert strings(tokenizer.detokenize(ids)) == CORPUS[:8]


def test_special_token_spellings_in_text(tokenizer):
    ids = tokenizer.tokenize("[MASK] [SEP][CLS]").numpy().tolist()
    assert ids[0] == tokenizer.mask_id
    # Control symbols never come from text: "[SEP]" is spelled out.
    assert tokenizer.sep_id not in ids and tokenizer.cls_id not in ids


def test_a_single_string_gives_a_dense_sequence(tokenizer):
    ids = tokenizer.tokenize("the lazy dog")
    assert isinstance(ids, tf.Tensor) and ids.shape.rank == 1 and ids.dtype == tf.int32
    assert ids.numpy().tolist() == tokenizer.tokenize(["the lazy dog"]).to_list()[0]
    assert tokenizer.detokenize(ids).numpy().decode() == "the lazy dog"
    assert tokenizer(["the lazy dog"]).to_list() == [ids.numpy().tolist()]


def test_tokenize_inside_dataset_map_and_tf_function(tokenizer):
    eager = tokenizer.tokenize(HARD_TEXTS).to_list()
    one_by_one = tf.data.Dataset.from_tensor_slices(HARD_TEXTS).map(tokenizer.tokenize)
    assert [ids.numpy().tolist() for ids in one_by_one] == eager
    batched = tf.data.Dataset.from_tensor_slices(HARD_TEXTS).batch(5).map(tokenizer.tokenize)
    assert [row for batch in batched for row in batch.to_list()] == eager

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def round_trip(texts):
        ids = tokenizer.tokenize(texts)
        return ids, tokenizer.detokenize(ids)

    ids, texts = round_trip(tf.constant(HARD_TEXTS))
    assert ids.to_list() == eager
    assert strings(texts) == HARD_TEXTS
    assert tokenizer.tokenize([]).shape.as_list() == [0, None]


def test_detokenize_drops_structure_reads_bad_ids_as_unk(unigram):
    a, b = unigram.tokenize("a").numpy()[0], unigram.tokenize("b").numpy()[0]
    bos, eos, sep, cls, pad, mask = 2, 3, 4, 5, 0, 6
    ids = [
        [bos, a, b, eos, a, eos, b],
        [cls, a, sep, b, sep, pad, pad],
        [a, mask, b, unigram.unk_id, pad, pad, pad],
        [eos, a, b, pad, pad, pad, pad],
        [unigram.vocabulary_size, -1, a, 2**30, pad, pad, pad],
    ]
    assert strings(unigram.detokenize(np.array(ids))) == [
        "ab", "ab", "a[MASK]b[UNK]", "", "[UNK][UNK]a[UNK]",
    ]


def test_byte_pieces_that_are_not_utf8_detokenize_to_replacement_characters(unigram):
    lone = [unigram.token_to_id(piece) for piece in ("<0xE6>", "<0x97>")]  # 2 of 3 bytes
    a = unigram.token_to_id("a")
    assert strings(unigram.detokenize([lone + [a]])) == ["\ufffd\ufffda"]


def test_without_byte_fallback_unseen_characters_are_unk():
    tokenizer = SentencePieceTokenizer.train(
        CORPUS, vocabulary_size=200, byte_fallback=False, character_coverage=1.0
    )
    assert not tokenizer.byte_fallback
    assert "<0x41>" not in tokenizer.get_vocabulary()
    ids = tokenizer.tokenize(["ok ☃ ok"]).to_list()[0]
    assert tokenizer.unk_id in ids
    assert strings(tokenizer.detokenize([ids])) == ["ok [UNK] ok"]


def test_training_is_in_memory_and_deterministic(unigram, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    again = SentencePieceTokenizer.train(list(CORPUS), vocabulary_size=360)
    batched = tf.data.Dataset.from_tensor_slices(CORPUS).batch(5)
    from_dataset = SentencePieceTokenizer.train(batched, vocabulary_size=360)
    assert again.proto == unigram.proto
    assert from_dataset.get_vocabulary() == unigram.get_vocabulary()
    assert os.listdir(tmp_path) == []


def test_model_types_differ(unigram, bpe):
    assert unigram.get_vocabulary()[300:] != bpe.get_vocabulary()[300:]


def test_character_coverage_spells_rare_characters_in_bytes():
    texts = ["aaaa bbbb cccc dddd"] * 50 + ["z"]
    full = SentencePieceTokenizer.train(texts, 280, character_coverage=1.0)
    partial = SentencePieceTokenizer.train(texts, 280, character_coverage=0.99)
    assert "z" in full.get_vocabulary() and "z" not in partial.get_vocabulary()
    assert strings(partial.detokenize(partial.tokenize(["zz"]))) == ["zz"]


def test_training_arguments_are_checked():
    with pytest.raises(ValueError, match=r"`vocabulary_size` must be greater than 263.*=263"):
        SentencePieceTokenizer.train(CORPUS, 263)
    with pytest.raises(ValueError, match=r"`vocabulary_size` must be greater than 7"):
        SentencePieceTokenizer.train(CORPUS, 7, byte_fallback=False)
    with pytest.raises(ValueError, match=r"`vocabulary_size` does not suit.*=270"):
        SentencePieceTokenizer.train(CORPUS, 270, character_coverage=1.0)
    with pytest.raises(ValueError, match="`model_type` must be one of"):
        SentencePieceTokenizer.train(CORPUS, 300, model_type="word")
    with pytest.raises(ValueError, match="`character_coverage`"):
        SentencePieceTokenizer.train(CORPUS, 300, character_coverage=0)
    with pytest.raises(ValueError, match="`texts` must be a list of strings"):
        SentencePieceTokenizer.train("just one string", 300)
    with pytest.raises(ValueError, match="at least one non-empty string"):
        SentencePieceTokenizer.train(["", ""], 300)
    with pytest.raises(ValueError, match="`texts` must be UTF-8"):
        SentencePieceTokenizer.train([b"\xff\xfe"], 300)


def test_constructor_checks_the_model(unigram, tmp_path):
    with pytest.raises(ValueError, match="cannot read"):
        SentencePieceTokenizer(proto=b"not a model")
    with pytest.raises(ValueError, match="not a file"):
        SentencePieceTokenizer(proto=str(tmp_path / "missing.model"))
    with pytest.raises(ValueError, match="`proto` must be SentencePiece model bytes"):
        SentencePieceTokenizer(proto=123)
    plain = io.BytesIO()  # SentencePiece's own special pieces: <unk>, <s>, </s>
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=plain, vocab_size=120, hard_vocab_limit=False,
        minloglevel=2,
    )
    with pytest.raises(ValueError, match=r"first pieces are the special tokens.*'<unk>'"):
        SentencePieceTokenizer(proto=plain.getvalue())
    path = tmp_path / "unigram.model"
    path.write_bytes(unigram.proto)
    assert SentencePieceTokenizer(proto=str(path)).get_vocabulary() == unigram.get_vocabulary()


def test_save_and_load_from_directory(unigram, tmp_path):
    unigram.save(str(tmp_path / "tok"))
    assert sorted(os.listdir(tmp_path / "tok")) == sorted([CONFIG_FILENAME, MODEL_FILENAME])
    with open(tmp_path / "tok" / CONFIG_FILENAME, encoding="utf-8") as file:
        config = json.load(file)
    assert "proto" not in json.dumps(config) and len(json.dumps(config)) < 2000
    restored = Tokenizer.from_directory(str(tmp_path / "tok"))
    assert isinstance(restored, SentencePieceTokenizer)
    assert restored.proto == unigram.proto
    assert restored.tokenize(HARD_TEXTS).to_list() == unigram.tokenize(HARD_TEXTS).to_list()


def test_from_config_waits_for_its_model(unigram):
    empty = SentencePieceTokenizer.from_config(unigram.get_config())
    assert not empty.has_vocabulary
    with pytest.raises(ValueError, match="has no model yet"):
        empty.tokenize(["abc"])
    with pytest.raises(ValueError, match="has no model yet"):
        _ = empty.vocabulary_size


# ------------------------------------------------- with models and exports


@pytest.fixture(scope="module")
def generator(unigram):
    keras.utils.set_random_seed(0)
    model = Generator.from_preset(
        "tiny", tokenizer=unigram, sequence_length=32, num_layers=1, hidden_dim=32,
        intermediate_dim=64,
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    model.fit(model.make_dataset(CORPUS, batch_size=16), epochs=3, verbose=0)
    return model


PROMPTS = ["Save the", "Datei", "", "东京", "  le café"]


def test_generator_keras_file_and_preset_round_trips(generator, tmp_path):
    expected = generator.generate(PROMPTS, max_new_tokens=6)
    path = str(tmp_path / "generator.keras")
    generator.save(path)
    restored = keras.models.load_model(path)
    assert restored.tokenizer.proto == generator.tokenizer.proto
    assert restored.generate(PROMPTS, max_new_tokens=6) == expected

    preset = str(tmp_path / "preset")
    generator.save_to_preset(preset)
    assert os.listdir(os.path.join(preset, "tokenizer", "tokenizer")) != []
    loaded = Generator.from_preset(preset)
    assert isinstance(loaded.tokenizer, SentencePieceTokenizer)
    assert loaded.generate(PROMPTS, max_new_tokens=6) == expected


def test_translator_preset_round_trip(unigram, bpe, tmp_path):
    translator = Translator.from_preset(
        "tiny", source_tokenizer=unigram, target_tokenizer=bpe, source_length=16,
        target_length=8, num_encoder_layers=1, num_decoder_layers=1, hidden_dim=32,
    )
    expected = translator.translate(PROMPTS)
    translator.save_to_preset(str(tmp_path / "preset"))
    loaded = Translator.from_preset(str(tmp_path / "preset"))
    assert loaded.source_tokenizer.proto == unigram.proto
    assert loaded.target_tokenizer.proto == bpe.proto
    assert loaded.translate(PROMPTS) == expected


def test_exported_generator_serves_python_outputs_in_a_fresh_process(generator, tmp_path):
    path = str(tmp_path / "served")
    export(generator, path, max_new_tokens=6)
    expected = generator.generate(PROMPTS, max_new_tokens=6)
    assert any(len(text) >= 3 for text in expected)
    answer = run_in_fresh_process(path, [("serving_default", {"inputs": PROMPTS})])
    assert answer["leaked"] == []
    assert answer["results"][0]["outputs"]["texts"] == expected


def _checkpoint_proto():
    """A model laid out as LLaMA's: `<unk>`, `<s>`, `</s>` at 0, 1, 2, no
    padding piece, a dummy prefix space."""
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=model, vocab_size=400, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        hard_vocab_limit=False, num_threads=1, minloglevel=2,
    )
    return model.getvalue()


CHECKPOINT_ROLES = {
    "pad": "<unk>", "unk": "<unk>", "bos": "<s>", "eos": "</s>", "sep": "</s>", "cls": "<s>",
    "mask": "<unk>",
}


def test_a_checkpoint_model_keeps_its_own_pieces_and_special_ids(tmp_path):
    proto = _checkpoint_proto()
    tokenizer = SentencePieceTokenizer(proto=proto, special_tokens=CHECKPOINT_ROLES)
    processor = sentencepiece.SentencePieceProcessor(model_proto=proto)
    texts = CORPUS[:8] + ["a▁b", "  spaced  out  "]
    # SentencePiece's own ids, the literal "▁" read as a space as the
    # checkpoint was trained to.
    assert tokenizer.tokenize(texts).to_list() == [processor.encode(text) for text in texts]
    assert tokenizer.special_token_ids == {
        "pad": 0, "unk": 0, "bos": 1, "eos": 2, "sep": 2, "cls": 1, "mask": 0
    }
    assert tokenizer.structural_ids == (0, 1, 2) and tokenizer.byte_fallback
    ids = tf.ragged.constant([[1, *processor.encode("Save the file"), 2, 5, 6]])
    assert tokenizer.detokenize(ids).numpy().tolist() == [b"Save the file"]
    assert tokenizer.get_config()["special_tokens"] == CHECKPOINT_ROLES
    tokenizer.save(str(tmp_path))
    restored = Tokenizer.from_directory(str(tmp_path))
    assert restored.special_token_ids == tokenizer.special_token_ids
    assert restored.tokenize(texts).to_list() == tokenizer.tokenize(texts).to_list()
    # Tokenizers trained here keep the keras-attn ids and say so.
    trained = SentencePieceTokenizer.train(CORPUS, vocabulary_size=400)
    assert trained.get_config()["special_tokens"] is None
    assert trained.special_token_ids["pad"] == 0 and trained.special_token_ids["mask"] == 6


@pytest.mark.parametrize(
    "special_tokens, match",
    [
        ({"bos": "<s>"}, "special_tokens.*roles"),
        (["<s>"], "special_tokens"),
        (dict(CHECKPOINT_ROLES, mask=""), r"special_tokens\['mask'\]"),
        (dict(CHECKPOINT_ROLES, pad="<pad>"), "special_tokens.*<pad>"),
    ],
)
def test_bad_special_tokens_are_refused_by_name(special_tokens, match):
    with pytest.raises(ValueError, match=match):
        SentencePieceTokenizer(proto=_checkpoint_proto(), special_tokens=special_tokens)
