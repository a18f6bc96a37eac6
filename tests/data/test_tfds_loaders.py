"""The TFDS loaders, offline.

`tfds.testing.mock_data` patches `tfds.load`: `download_and_prepare` becomes a
no-op, GCS lookups fail, and `as_dataset` yields random examples built from
the dataset's *features*. With `MockPolicy.USE_CODE` the features come from
the builder class shipped inside tensorflow-datasets (ted_hrlr_translate,
imdb_reviews and tiny_shakespeare all declare theirs in code), so no metadata
file and no network is needed; the default `AUTO` policy falls back to the
same path when no metadata directory exists. Where a test needs chosen
content (line chunking, split forwarding) it passes `as_dataset_fn`, which
replaces the mocked `_as_dataset(self, split, ...)`.
"""

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_attn.data import (
    ClassificationData,
    TextData,
    TranslationData,
    chunk_lines,
    load_dataset,
    load_tfds_classification,
    load_tfds_text,
    load_tfds_translation,
)

USE_CODE = tfds.testing.MockPolicy.USE_CODE

PLAY = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n"
)


def _mocked(num_examples=6):
    return tfds.testing.mock_data(num_examples=num_examples, policy=USE_CODE)


def test_translation_from_mocked_ted_hrlr():
    with _mocked(6):
        data = load_tfds_translation()
        few = load_tfds_translation(split="validation", max_examples=4)
    assert isinstance(data, TranslationData) and len(data) == 6 and len(few) == 4
    assert all(isinstance(t, str) and t for t in data.sources + data.targets)
    assert data.sources != data.targets  # pt and en come from different features


def test_classification_from_mocked_imdb_has_class_names():
    with _mocked(8):
        data = load_tfds_classification()
    assert isinstance(data, ClassificationData) and len(data) == 8
    assert data.label_names == ["neg", "pos"]
    assert all(type(label) is int and label in (0, 1) for label in data.labels)
    assert all(isinstance(text, str) for text in data.texts)


def test_text_from_mocked_tiny_shakespeare_chunks_each_string():
    with _mocked(5):
        data = load_tfds_text(chunk_characters=8)
        one = load_tfds_text(chunk_characters=8, max_examples=1)
    assert isinstance(data, TextData) and len(data) >= 5  # 10-20 chars each -> 2-3 chunks
    assert all(isinstance(t, str) and 0 < len(t) <= 8 for t in data.texts)
    assert one.texts == data.texts[:1]


def test_text_is_cut_at_line_boundaries_and_split_is_forwarded():
    seen = []

    def as_dataset(self, split, **kwargs):
        seen.append(split)
        return tf.data.Dataset.from_tensor_slices({"text": [PLAY]})

    with tfds.testing.mock_data(policy=USE_CODE, as_dataset_fn=as_dataset):
        data = load_tfds_text(split="validation", chunk_characters=64)
    assert seen == ["validation"]
    lines = set(PLAY.split("\n"))
    for chunk in data.texts:
        assert len(chunk) <= 64
        assert all(line in lines for line in chunk.split("\n"))  # whole lines only
    assert "".join("".join(data.texts).split()) == "".join(PLAY.split())


def test_chunk_lines():
    assert chunk_lines("ab\ncd\nef", 5) == ["ab\ncd", "ef"]
    assert chunk_lines("abcdefghijkl\n\n\nxy\n", 5) == ["abcde", "fghij", "kl", "xy"]
    assert chunk_lines("\n \n", 5) == []
    chunks = chunk_lines(PLAY * 3, 40)
    assert max(map(len, chunks)) <= 40
    assert "".join("".join(chunks).split()) == "".join((PLAY * 3).split())
    with pytest.raises(ValueError, match="chunk_characters"):
        chunk_lines("abc", 0)


def test_unknown_feature_key_lists_the_features():
    with _mocked(2), pytest.raises(ValueError, match=r"`source_key`.*\['pt', 'en'\].*'de'"):
        load_tfds_translation(source_key="de")
    with _mocked(2), pytest.raises(ValueError, match="`label_key`"):
        load_tfds_classification(label_key="stars")


def test_unknown_dataset_is_a_value_error():
    with pytest.raises(ValueError, match="`name`.*no_such_dataset_xyz"):
        load_tfds_text("no_such_dataset_xyz")


def test_missing_prepared_copy_says_what_to_do(tmp_path):
    # Not mocked: the real tfds.load looks into an empty data_dir and,
    # with download=False, touches no network.
    with pytest.raises(OSError) as error:
        load_tfds_text(data_dir=str(tmp_path))
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path) in message and "data_dir" in message and "download=True" in message


def test_load_dataset_dispatches_to_tfds():
    with _mocked(3):
        data = load_dataset({"source": "tfds", "task": "classification", "num_examples": 2})
        text = load_dataset({"source": "tfds", "chunk_characters": 100}, task="generation")
    assert isinstance(data, ClassificationData) and len(data) == 2
    assert isinstance(text, TextData) and len(text) == 3
    with pytest.raises(ValueError, match="Allowed keys.*source_key"):
        load_dataset({"source": "tfds", "task": "translation", "text_key": "x"})
