"""The task preprocessors: the same graph eagerly and in tf.data, packing
rules, truncation counts, fill-mask inputs and config round trips, on text
with punctuation, Unicode and one long row."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attn.preprocessors import (
    ClassifierPreprocessor,
    GeneratorPreprocessor,
    MaskedLMPreprocessor,
    TranslatorPreprocessor,
    text_dataset,
)
from keras_attn.tokenizers import ByteTokenizer, WordPieceTokenizer

TEXTS = [
    "Datei speichern (Strg+S).",
    "Ça va? Très bien — merci!",
    "東京は晴れ。",
    "a",
    "x" * 200,  # one long row
]


@pytest.fixture(scope="module")
def word_piece():
    return WordPieceTokenizer.train(TEXTS * 5, vocabulary_size=120)


def _numpy(structure):
    return tf.nest.map_structure(lambda t: t.numpy(), structure)


def _assert_equal(a, b):
    for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("kind", ["generator", "classifier", "translator", "masked_lm"])
def test_eager_and_tf_data_give_the_same_tensors(kind, word_piece):
    byte = ByteTokenizer()
    if kind == "generator":
        preprocessor, columns = GeneratorPreprocessor(byte, 16), (TEXTS,)
    elif kind == "classifier":
        preprocessor, columns = ClassifierPreprocessor(word_piece, 12), (TEXTS, TEXTS[::-1])
    elif kind == "translator":
        preprocessor = TranslatorPreprocessor(word_piece, byte, 10, 12)
        columns = (TEXTS, TEXTS[::-1])
    else:
        preprocessor, columns = MaskedLMPreprocessor(word_piece, 12), (TEXTS,)
    if kind == "masked_lm":
        eager = _numpy(preprocessor(tf.constant(TEXTS), seed=tf.constant([4, 5], tf.int64)))
        dataset = text_dataset(
            columns, lambda t: preprocessor(t, seed=[4, 5]), 5, shuffle=False
        )
    else:
        eager = _numpy(preprocessor(*[tf.constant(c) for c in columns]))
        dataset = text_dataset(columns, preprocessor, 5, shuffle=False)
    (batched,) = [_numpy(batch) for batch in dataset]
    _assert_equal(eager, batched)
    # Static shapes: the sequence axis is known inside the pipeline.
    for spec in tf.nest.flatten(dataset.element_spec):
        assert spec.shape[0] == 5 and all(d is not None for d in spec.shape)


def test_generator_packing_and_truncation_counts():
    preprocessor = GeneratorPreprocessor(ByteTokenizer(), 8)
    x, y, weights = _numpy(preprocessor(tf.constant(["hé", "x" * 20])))
    # "hé" is three UTF-8 bytes: [BOS] h 0xc3 0xa9 [EOS].
    assert x[0].tolist()[:5] == [2, ord("h") + 7, 0xC3 + 7, 0xA9 + 7, 3]
    assert y[0].tolist()[:4] == [ord("h") + 7, 0xC3 + 7, 0xA9 + 7, 3]
    assert weights[0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]
    # A cut row keeps [BOS] and ends with [EOS] at the last target.
    assert x[1][0] == 2 and y[1][-1] == 3
    # 20 bytes + [BOS] + [EOS] in 9 slots: 13 dropped.
    assert preprocessor.count_truncated(["hé", "x" * 20]).tolist() == [0, 13]
    assert preprocessor.count_truncated([]).tolist() == []


def test_prompt_packing_keeps_the_last_tokens_and_cuts_continuations():
    preprocessor = GeneratorPreprocessor(ByteTokenizer(), 16)
    prompts = preprocessor.prompt_ids(tf.constant(["abcdef", "z"]))
    ids, mask, lengths, truncated = _numpy(preprocessor.pack_prompts(prompts, 8, 4))
    # [BOS] a b c d e f keeps its last 4 ids; the short prompt is whole.
    assert ids[0].tolist() == [ord(c) + 7 for c in "cdef"] + [0] * 4
    assert ids[1].tolist() == [2, ord("z") + 7] + [0] * 6
    assert lengths.tolist() == [4, 2] and truncated.tolist() == [3, 0]
    assert mask.sum(axis=1).tolist() == [4, 2]
    output = tf.constant([[9, 9, 9, 9, 20, 21, 3, 22], [9, 9, 30, 31, 32, 0, 0, 0]])
    windows = preprocessor.continuation_ids(output, lengths, lengths + 3)
    assert windows.to_list() == [[20, 21], [30, 31, 32]]


def test_classifier_pairs_and_single_texts(word_piece):
    preprocessor = ClassifierPreprocessor(word_piece, 10)
    single = _numpy(preprocessor(tf.constant(TEXTS)))
    assert (single["token_ids"][:, 0] == word_piece.cls_id).all()
    # Every row, cut or not, closes with [SEP] before its padding.
    for ids, mask in zip(single["token_ids"], single["padding_mask"]):
        assert ids[mask.sum() - 1] == word_piece.sep_id
    pairs = _numpy(preprocessor(tf.constant(TEXTS), tf.constant(TEXTS[::-1])))
    assert (pairs["segment_ids"] * ~pairs["padding_mask"] == 0).all()
    counts = preprocessor.count_truncated(TEXTS, TEXTS[::-1])
    lengths = [len(row) for row in word_piece.tokenize(TEXTS).to_list()]
    expected = [max(0, a + b + 3 - 10) for a, b in zip(lengths, lengths[::-1])]
    assert counts.tolist() == expected


def test_translator_targets_are_shifted_and_counted():
    byte = ByteTokenizer()
    preprocessor = TranslatorPreprocessor(byte, byte, 6, 4)
    inputs, labels, weights = _numpy(preprocessor(tf.constant(["ab"]), tf.constant(["cd"])))
    assert inputs["source_ids"][0].tolist() == [104, 105, 3, 0, 0, 0]
    assert inputs["target_ids"][0].tolist() == [2, 106, 107, 3]
    assert labels[0].tolist() == [106, 107, 3, 0]
    assert weights[0].tolist() == [1, 1, 1, 0]
    sources, targets = preprocessor.count_truncated(["abcdefgh", "a"], ["abcdef", ""])
    assert sources.tolist() == [3, 0] and targets.tolist() == [3, 0]
    decoded = preprocessor.translations(tf.constant([[2, 104, 105, 3, 110], [2, 0, 0, 0, 0]]))
    assert [t.decode() for t in decoded.numpy()] == ["ab", ""]


def test_translator_targets_start_with_every_start_id():
    byte = ByteTokenizer()
    preprocessor = TranslatorPreprocessor(byte, byte, 6, 5, target_start_ids=(3, 2))
    inputs, labels, weights = _numpy(
        preprocessor(tf.constant(["ab", "x"]), tf.constant(["cde", "fghij"]))
    )
    assert inputs["target_ids"].tolist() == [[3, 2, 106, 107, 108], [3, 2, 109, 110, 111]]
    # The second start id is a label (weighted, as keras-hub's BART weights `<s>`).
    assert labels.tolist() == [[2, 106, 107, 108, 3], [2, 109, 110, 111, 3]]
    assert weights.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 1]]
    _, targets = preprocessor.count_truncated(["a", "a"], ["cde", "fghij"])
    assert targets.tolist() == [0, 2]  # 6 = 2 start ids + 3 tokens + [EOS]
    assert preprocessor.decoder_ids(tf.constant(["ab", ""])).to_list() == [[3, 2, 104, 105], [3, 2]]
    decoded = preprocessor.translations(tf.constant([[3, 2, 104, 105, 3, 110], [3, 2, 0, 0, 0, 0]]))
    assert [t.decode() for t in decoded.numpy()] == ["ab", ""]
    restored = TranslatorPreprocessor.from_config(preprocessor.get_config())
    assert restored.target_start_ids == (3, 2)
    for bad in ((), (1, 2, 3, 4, 5), (-1,), "ab", 2):
        with pytest.raises(ValueError, match="target_start_ids"):
            TranslatorPreprocessor(byte, byte, 6, 5, target_start_ids=bad)


def test_fill_mask_inputs_put_a_mask_id_at_each_literal_mask(word_piece):
    preprocessor = MaskedLMPreprocessor(word_piece, 16)
    texts = ["Ça va? [MASK] bien", "[MASK][MASK]", "no mask"]
    ids = preprocessor.fill_mask_inputs(tf.constant(texts))["token_ids"].numpy()
    assert [(row == word_piece.mask_id).sum() for row in ids] == [1, 2, 0]
    without = word_piece.tokenize("Ça va? bien").numpy().tolist()
    row = ids[0][ids[0] != word_piece.mask_id]
    assert row[1 : 1 + len(without)].tolist() == without


@pytest.mark.parametrize(
    "preprocessor",
    [
        GeneratorPreprocessor(ByteTokenizer(), 7),
        ClassifierPreprocessor(ByteTokenizer(), 9),
        MaskedLMPreprocessor(ByteTokenizer(), 9, mask_rate=0.3),
        TranslatorPreprocessor(ByteTokenizer(), ByteTokenizer(), 5, 6),
    ],
    ids=lambda p: type(p).__name__,
)
def test_config_round_trip(preprocessor):
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(preprocessor)
    )
    assert type(restored) is type(preprocessor)
    assert restored.get_config() == preprocessor.get_config()


def test_a_single_string_is_refused_where_a_list_is_expected():
    preprocessor = GeneratorPreprocessor(ByteTokenizer(), 8)
    with pytest.raises(ValueError, match="`texts` must be a list of strings"):
        preprocessor.count_truncated("one string")
