import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attn.tokenizers import (
    SPECIAL_TOKENS,
    ByteTokenizer,
    Tokenizer,
    WordPieceTokenizer,
)

# Repeated so that whole words pass the learner's frequency threshold (10).
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A lazy dog sleeps in the sun, the fox runs.",
    "Quick foxes and lazy dogs: jumping, sleeping, running!",
    "Le café est très bon.",
] * 12
IN_VOCABULARY = ["the quick brown fox", "a lazy dog sleeps in the sun", "le café est très bon"]


@pytest.fixture(scope="module")
def tokenizer():
    return WordPieceTokenizer.train(CORPUS, vocabulary_size=120)


def strings(tensor):
    return [text.decode("utf-8") for text in np.asarray(tensor).reshape(-1)]


def rows(ragged):
    return ragged.to_list()


def test_special_tokens_take_ids_0_to_6(tokenizer):
    assert tuple(tokenizer.get_vocabulary()[:7]) == SPECIAL_TOKENS
    ids = (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id)
    ids += (tokenizer.sep_id, tokenizer.cls_id, tokenizer.mask_id)
    assert ids == (0, 1, 2, 3, 4, 5, 6)
    assert tokenizer.special_ids == tuple(range(7))
    for index, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == index
        assert tokenizer.id_to_token(index) == token


# 84: keras-hub cuts the learned vocabulary at the size, losing rare "##x"
# suffix characters, which the tokenizer puts back in place of frequent words.
@pytest.mark.parametrize("vocabulary_size", [72, 84, 120])
def test_vocabulary_size_is_respected_and_spells_every_seen_word(vocabulary_size):
    tokenizer = WordPieceTokenizer.train(CORPUS, vocabulary_size=vocabulary_size)
    vocabulary = tokenizer.get_vocabulary()
    assert tokenizer.vocabulary_size == len(vocabulary) <= vocabulary_size
    assert len(set(vocabulary)) == len(vocabulary)
    characters = [token for token in vocabulary[7:] if len(token) == 1]
    assert all("##" + character in vocabulary for character in characters)
    ids = tokenizer.tokenize([text.lower() for text in CORPUS[:4]])
    assert tokenizer.unk_id not in ids.flat_values.numpy()


def test_vocabulary_size_too_small_for_the_alphabet():
    # 7 specials + 32 characters, each also as a "##" suffix.
    with pytest.raises(ValueError, match=r"`vocabulary_size` must be at least 71.*=40"):
        WordPieceTokenizer.train(CORPUS, vocabulary_size=40)


def test_learns_whole_words_and_suffix_pieces(tokenizer):
    vocabulary = tokenizer.get_vocabulary()
    assert "the" in vocabulary and "lazy" in vocabulary
    assert any(token.startswith("##") for token in vocabulary)


def test_round_trip_of_in_vocabulary_text(tokenizer):
    ids = tokenizer.tokenize([text.upper() for text in IN_VOCABULARY])
    assert isinstance(ids, tf.RaggedTensor) and ids.dtype == tf.int32
    assert tokenizer.unk_id not in ids.flat_values.numpy()
    assert strings(tokenizer.detokenize(ids)) == IN_VOCABULARY


def test_a_single_string_gives_a_dense_sequence(tokenizer):
    ids = tokenizer.tokenize("the lazy dog")
    assert isinstance(ids, tf.Tensor) and ids.shape.rank == 1
    assert ids.numpy().tolist() == rows(tokenizer.tokenize(["the lazy dog"]))[0]
    assert tokenizer.detokenize(ids).numpy().decode() == "the lazy dog"
    assert rows(tokenizer(["the lazy dog"])) == [ids.numpy().tolist()]


def test_detokenize_spaces_punctuation_as_words(tokenizer):
    ids = tokenizer.tokenize(["The dog, the fox."])
    assert strings(tokenizer.detokenize(ids)) == ["the dog , the fox ."]


def test_unknown_characters_become_unk(tokenizer):
    ids = rows(tokenizer.tokenize(["the 😀 dog", "the zebra dog"]))
    the, dog = tokenizer.token_to_id("the"), tokenizer.token_to_id("dog")
    # A word with an unseen character is one [UNK]; unseen words of seen
    # characters are spelled with pieces.
    assert ids[0] == [the, tokenizer.unk_id, dog]
    assert tokenizer.unk_id not in ids[1] and len(ids[1]) > 3
    assert strings(tokenizer.detokenize(ids)) == ["the [UNK] dog", "the zebra dog"]


def test_training_is_deterministic(tokenizer):
    again = WordPieceTokenizer.train(list(CORPUS), vocabulary_size=120)
    from_dataset = WordPieceTokenizer.train(
        tf.data.Dataset.from_tensor_slices(CORPUS), vocabulary_size=120
    )
    assert again.get_vocabulary() == tokenizer.get_vocabulary()
    assert from_dataset.get_vocabulary() == tokenizer.get_vocabulary()


def test_tokenize_inside_dataset_map(tokenizer):
    eager = rows(tokenizer.tokenize(IN_VOCABULARY))
    one_by_one = tf.data.Dataset.from_tensor_slices(IN_VOCABULARY).map(tokenizer.tokenize)
    assert [ids.numpy().tolist() for ids in one_by_one] == eager
    batched = tf.data.Dataset.from_tensor_slices(IN_VOCABULARY).batch(2).map(tokenizer.tokenize)
    assert [row for batch in batched for row in rows(batch)] == eager


def test_tokenize_and_detokenize_inside_tf_function(tokenizer):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def round_trip(texts):
        ids = tokenizer.tokenize(texts)
        return ids, tokenizer.detokenize(ids)

    ids, texts = round_trip(tf.constant(IN_VOCABULARY))
    assert rows(ids) == rows(tokenizer.tokenize(IN_VOCABULARY))
    assert strings(texts) == IN_VOCABULARY


def test_detokenize_drops_structure_and_stops_at_first_eos(tokenizer):
    the, dog = tokenizer.token_to_id("the"), tokenizer.token_to_id("dog")
    bos, eos, sep, cls, pad, mask = 2, 3, 4, 5, 0, 6
    ids = [
        [bos, the, dog, eos, the, eos, dog],
        [cls, the, sep, dog, sep, pad, pad],
        [the, mask, dog, pad, pad, pad, pad],
        [eos, the, dog, pad, pad, pad, pad],
    ]
    assert strings(tokenizer.detokenize(np.array(ids))) == [
        "the dog",
        "the dog",
        "the [MASK] dog",
        "",
    ]


def test_detokenize_reads_out_of_range_ids_as_unk(tokenizer):
    # tf_text's detokenizer reads out of bounds on such ids; they must not reach it.
    ids = [[tokenizer.vocabulary_size, -1, tokenizer.token_to_id("dog")]]
    assert strings(tokenizer.detokenize(ids)) == ["[UNK] [UNK] dog"]


def test_special_tokens_in_strings():
    plain = WordPieceTokenizer.train(CORPUS, vocabulary_size=120)
    aware = WordPieceTokenizer.train(CORPUS, vocabulary_size=120, special_tokens_in_strings=True)
    the, dog = aware.token_to_id("the"), aware.token_to_id("dog")
    assert rows(aware.tokenize(["The [MASK] dog"])) == [[the, aware.mask_id, dog]]
    assert aware.mask_id not in rows(plain.tokenize(["The [MASK] dog"]))[0]


def test_save_and_load_give_identical_ids(tokenizer, tmp_path):
    texts = IN_VOCABULARY + ["the 😀 dog, QUICKLY!"]
    tokenizer.save(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json", "vocabulary.txt"]
    lines = (tmp_path / "vocabulary.txt").read_text(encoding="utf-8").split("\n")
    assert lines[:-1] == tokenizer.get_vocabulary() and lines[-1] == ""

    for loader in (Tokenizer, WordPieceTokenizer):
        loaded = loader.from_directory(str(tmp_path))
        assert isinstance(loaded, WordPieceTokenizer)
        assert loaded.get_vocabulary() == tokenizer.get_vocabulary()
        assert loaded.get_config() == tokenizer.get_config()
        assert rows(loaded.tokenize(texts)) == rows(tokenizer.tokenize(texts))

    with pytest.raises(ValueError, match="ByteTokenizer"):
        ByteTokenizer.from_directory(str(tmp_path))
    with pytest.raises(ValueError, match="dir_path"):
        Tokenizer.from_directory(str(tmp_path / "missing"))


def test_config_round_trip_needs_the_assets(tokenizer, tmp_path):
    clone = WordPieceTokenizer.from_config(tokenizer.get_config())
    with pytest.raises(ValueError, match="no vocabulary"):
        clone.tokenize(["the dog"])
    tokenizer.save_assets(str(tmp_path))
    clone.load_assets(str(tmp_path))
    assert rows(clone.tokenize(IN_VOCABULARY)) == rows(tokenizer.tokenize(IN_VOCABULARY))


def test_vocabulary_travels_in_keras_files(tokenizer, tmp_path):
    @keras.saving.register_keras_serializable(package="keras_attn_tests")
    class WithTokenizer(keras.Model):
        def __init__(self, tokenizer, **kwargs):
            super().__init__(**kwargs)
            self.tokenizer = tokenizer
            self.dense = keras.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

        def get_config(self):
            config = super().get_config()
            config["tokenizer"] = keras.saving.serialize_keras_object(self.tokenizer)
            return config

        @classmethod
        def from_config(cls, config):
            config["tokenizer"] = keras.saving.deserialize_keras_object(config["tokenizer"])
            return cls(**config)

    model = WithTokenizer(tokenizer)
    model(np.zeros((1, 3), "float32"))
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    assert loaded.tokenizer.get_vocabulary() == tokenizer.get_vocabulary()


def test_bad_training_arguments():
    for size in (7, 0, 2.5, "100"):
        with pytest.raises(ValueError, match="vocabulary_size"):
            WordPieceTokenizer.train(CORPUS, vocabulary_size=size)
    for texts in ([], ["", "   "], "one string", [1, 2], None):
        with pytest.raises(ValueError, match="texts"):
            WordPieceTokenizer.train(texts, vocabulary_size=50)
    with pytest.raises(ValueError, match="texts"):
        WordPieceTokenizer.train(tf.data.Dataset.from_tensor_slices(["", " "]), 50)
    with pytest.raises(ValueError, match="texts"):
        WordPieceTokenizer.train(tf.data.Dataset.from_tensor_slices([1, 2]), 50)


def test_bad_vocabularies_and_calls(tokenizer):
    with pytest.raises(ValueError, match="vocabulary"):
        WordPieceTokenizer(vocabulary=["the", "dog"])
    with pytest.raises(ValueError, match="vocabulary"):
        WordPieceTokenizer(vocabulary=list(SPECIAL_TOKENS))
    with pytest.raises(ValueError, match="vocabulary"):
        WordPieceTokenizer(vocabulary=list(SPECIAL_TOKENS) + ["a", "a"])
    with pytest.raises(ValueError, match="texts"):
        tokenizer.tokenize([["the", "dog"]])
    with pytest.raises(ValueError, match="texts"):
        tokenizer.tokenize([1, 2])
    with pytest.raises(ValueError, match="ids"):
        tokenizer.detokenize([[1.5, 2.0]])
    with pytest.raises(ValueError, match="token"):
        tokenizer.token_to_id("not-a-token")
    with pytest.raises(ValueError, match="id"):
        tokenizer.id_to_token(tokenizer.vocabulary_size)
