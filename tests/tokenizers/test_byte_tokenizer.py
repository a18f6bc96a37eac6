import numpy as np
import pytest
import tensorflow as tf

from keras_attn.tokenizers import SPECIAL_TOKENS, ByteTokenizer, Tokenizer

TEXTS = [
    "Hello, world!",
    "Crème brûlée à Málaga, Straße, Ærø",
    "emoji 😀🎉 and 👩‍👩‍👧 family",
    "日本語のテキスト",
    "tab\tnew\nline NUL\x00 end",
    "",
]


def strings(tensor):
    return [text.decode("utf-8") for text in np.asarray(tensor).reshape(-1)]


@pytest.fixture(scope="module")
def tokenizer():
    return ByteTokenizer()


def test_round_trip_is_exact(tokenizer):
    ids = tokenizer.tokenize(TEXTS)
    assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32
    assert strings(tokenizer.detokenize(ids)) == TEXTS


def test_ids_are_utf8_bytes_offset_by_7(tokenizer):
    assert tokenizer.vocabulary_size == 263 == len(tokenizer.get_vocabulary())
    assert tokenizer.tokenize(["Aé😀"]).to_list() == [
        [byte + 7 for byte in "Aé😀".encode()]
    ]
    assert tokenizer.tokenize("A").numpy().tolist() == [72]
    assert tokenizer.token_to_id("A") == tokenizer.token_to_id(b"A") == 72
    assert tokenizer.id_to_token(72) == "A"
    assert tokenizer.id_to_token(7 + 0xC3) == "\xc3"
    for index, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == index == tokenizer.special_ids[index]
        assert tokenizer.id_to_token(index) == token


def test_detokenize_drops_structure_and_stops_at_first_eos(tokenizer):
    h, i = 104 + 7, 105 + 7
    bos, eos, sep, cls, pad, mask = 2, 3, 4, 5, 0, 6
    ids = [[bos, h, i, eos, h, eos], [cls, h, sep, i, sep, pad], [h, mask, i], []]
    assert strings(tokenizer.detokenize(ids)) == ["hi", "hi", "h[MASK]i", ""]
    assert tokenizer.detokenize([h, i, eos, h]).numpy().decode() == "hi"


def test_detokenize_repairs_broken_utf8_and_out_of_range_ids(tokenizer):
    euro = [byte + 7 for byte in "€".encode()]
    assert strings(tokenizer.detokenize([[97 + 7] + euro[:2]])) == ["a\ufffd"]
    assert strings(tokenizer.detokenize([[263, -5, 97 + 7]])) == ["[UNK][UNK]a"]


def test_works_inside_tf_function_and_dataset_map(tokenizer):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def round_trip(texts):
        ids = tokenizer.tokenize(texts)
        return ids, tokenizer.detokenize(ids)

    ids, texts = round_trip(tf.constant(TEXTS))
    assert ids.to_list() == tokenizer.tokenize(TEXTS).to_list()
    assert strings(texts) == TEXTS

    dataset = tf.data.Dataset.from_tensor_slices(TEXTS).map(tokenizer.tokenize)
    dataset = dataset.map(tokenizer.detokenize)
    assert [text.numpy().decode("utf-8") for text in dataset] == TEXTS


def test_save_and_load(tokenizer, tmp_path):
    tokenizer.save(str(tmp_path))
    loaded = Tokenizer.from_directory(str(tmp_path))
    assert isinstance(loaded, ByteTokenizer)
    assert loaded.get_config() == tokenizer.get_config()
    assert loaded.tokenize(TEXTS).to_list() == tokenizer.tokenize(TEXTS).to_list()
    assert ByteTokenizer.from_config(tokenizer.get_config()).vocabulary_size == 263


def test_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match="token"):
        tokenizer.token_to_id("€")
    with pytest.raises(ValueError, match="id"):
        tokenizer.id_to_token(263)
    with pytest.raises(ValueError, match="texts"):
        tokenizer.tokenize(np.zeros((2, 2), dtype=str))
    with pytest.raises(ValueError, match="ids"):
        tokenizer.detokenize(np.zeros((1, 2, 2), dtype="int32"))
