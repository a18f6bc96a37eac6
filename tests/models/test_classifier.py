import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attn.data import sentiment_with_negation
from keras_attn.models import Classifier, MaskedLanguageModel
from keras_attn.tokenizers import WordPieceTokenizer
from tests.models.conftest import compile_for_tokens, logits_of


def _compile_classifier(classifier):
    classifier.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=True,
    )
    return classifier


@pytest.fixture(scope="module")
def tokenizer():
    texts, _ = sentiment_with_negation(300, seed=5)
    return WordPieceTokenizer.train(texts, vocabulary_size=100)


@pytest.fixture(scope="module")
def trained(tokenizer):
    keras.utils.set_random_seed(0)
    classifier = Classifier.from_preset(
        "tiny", tokenizer=tokenizer, num_classes=2, sequence_length=16,
        label_names=["negative", "positive"],
    )
    texts, labels = sentiment_with_negation(3000, seed=0)
    history = _compile_classifier(classifier).fit(
        classifier.make_dataset(texts, labels, batch_size=64), epochs=4, verbose=0
    )
    return classifier, history.history


def test_classifier_learns_sentiment_with_negation(trained):
    classifier, history = trained
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    texts, labels = sentiment_with_negation(400, seed=1)
    predicted, probabilities = classifier.classify(texts)
    accuracy = np.mean(np.array(predicted) == np.array(["negative", "positive"])[labels])
    assert accuracy > 0.9  # chance is 0.5, a bag of words cannot exceed ~0.5 either
    assert probabilities.shape == (400, 2)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


def test_classify_a_pair_of_texts_uses_segments(trained):
    classifier, _ = trained
    inputs, truncated = classifier.preprocess(["the film was good"], ["the plot was dull"])
    tokenizer = classifier.tokenizer
    ids, segments = inputs["token_ids"][0], inputs["segment_ids"][0]
    assert ids[0] == tokenizer.cls_id and (ids == tokenizer.sep_id).sum() == 2
    second = np.flatnonzero(ids == tokenizer.sep_id)[0] + 1
    assert segments[:second].max() == 0 and segments[second] == 1
    assert truncated.tolist() == [0]
    labels, probabilities = classifier.classify(["the film was good"], ["the plot was dull"])
    assert labels[0] in ("negative", "positive") and probabilities.shape == (1, 2)


def test_long_texts_are_truncated_and_counted(trained):
    classifier, _ = trained
    inputs, truncated = classifier.preprocess(["the movie was good " * 10])
    assert inputs["token_ids"].shape == (1, 16)
    assert inputs["token_ids"][0, -1] == classifier.tokenizer.sep_id
    assert truncated[0] > 0


def test_keras_file_and_preset_round_trips(trained, tmp_path):
    classifier, _ = trained
    inputs, _ = classifier.preprocess(["the acting was not bad", "this show was dull"])
    expected = logits_of(classifier, inputs)
    path = str(tmp_path / "classifier.keras")
    classifier.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(logits_of(restored, inputs), expected, atol=1e-6)
    assert restored.classify(["the film was great"])[0] == classifier.classify(
        ["the film was great"])[0]
    classifier.save_to_preset(str(tmp_path / "preset"))
    loaded = Classifier.from_preset(str(tmp_path / "preset"))
    np.testing.assert_allclose(logits_of(loaded, inputs), expected, atol=1e-6)
    assert loaded.label_names == ["negative", "positive"]
    with pytest.raises(ValueError, match="Generator"):
        from keras_attn.models import Generator

        Generator.from_preset(str(tmp_path / "preset"))


def test_masked_lm_pretraining_carries_over_to_a_classifier(tokenizer):
    keras.utils.set_random_seed(1)
    mlm = MaskedLanguageModel.from_preset("tiny", tokenizer=tokenizer, sequence_length=16)
    texts, labels = sentiment_with_negation(600, seed=2)
    history = compile_for_tokens(mlm).fit(
        mlm.make_dataset(texts, batch_size=32, num_maskings=2), epochs=3, verbose=0
    )
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]

    classifier = Classifier.from_masked_lm(mlm, num_classes=3, pooling="mean")
    for a, b in zip(classifier.backbone.get_weights(), mlm.backbone.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert classifier.backbone is not mlm.backbone
    assert classifier.head.kernel.shape == (mlm.backbone.hidden_dim, 3)
    history = _compile_classifier(classifier).fit(
        classifier.make_dataset(texts, labels, batch_size=32), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["loss"][0])


def test_masking_follows_the_80_10_10_rule(tokenizer):
    mlm = MaskedLanguageModel.from_preset("tiny", tokenizer=tokenizer, sequence_length=16)
    ids = np.random.default_rng(0).integers(7, tokenizer.vocabulary_size, (400, 50))
    ids[:, :1] = tokenizer.cls_id
    masked, labels = mlm.mask_tokens(ids, seed=3)
    selected = labels > 0
    assert abs(selected[:, 1:].mean() - 0.15) < 0.01
    assert not selected[:, 0].any()  # special tokens are never predicted
    np.testing.assert_array_equal(labels[selected], ids[selected])
    np.testing.assert_array_equal(masked[~selected], ids[~selected])
    as_mask = (masked[selected] == tokenizer.mask_id).mean()
    unchanged = (masked[selected] == ids[selected]).mean()
    assert abs(as_mask - 0.8) < 0.03 and abs(unchanged - 0.1) < 0.03


def test_trains_in_mixed_float16_and_in_a_distribution_strategy(tokenizer):
    texts, labels = sentiment_with_negation(128, seed=4)
    keras.config.set_dtype_policy("mixed_float16")
    classifier = Classifier.from_preset("tiny", tokenizer=tokenizer, num_classes=2,
                                        sequence_length=16)
    history = _compile_classifier(classifier).fit(
        classifier.make_dataset(texts, labels, batch_size=32), epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    keras.config.set_dtype_policy("float32")
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        classifier = _compile_classifier(
            Classifier.from_preset("tiny", tokenizer=tokenizer, num_classes=2,
                                   sequence_length=16))
    history = classifier.fit(classifier.make_dataset(texts, labels, batch_size=32), epochs=3,
                             verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_bad_arguments(trained, tokenizer):
    classifier, _ = trained
    with pytest.raises(ValueError, match="label_names"):
        Classifier.from_preset("tiny", num_classes=3, label_names=["a", "b"])
    with pytest.raises(ValueError, match="pooling"):
        Classifier.from_preset("tiny", pooling="max")
    with pytest.raises(ValueError, match="labels"):
        classifier.make_dataset(["the film was good"], ["great"])
    with pytest.raises(ValueError, match="labels"):
        classifier.make_dataset(["the film was good"], [2])
    with pytest.raises(ValueError, match="text_pairs"):
        classifier.preprocess(["a", "b"], ["c"])
    with pytest.raises(ValueError, match="texts"):
        classifier.classify("the film was good")


def test_make_dataset_shuffles_all_examples_and_keeps_static_batches(trained):
    classifier, _ = trained
    texts, _ = sentiment_with_negation(100, seed=9)
    labels = [0] * 50 + [1] * 50  # in order: a small shuffle buffer keeps 1s out of batch 1
    batches = list(classifier.make_dataset(texts, labels, batch_size=32, seed=0))
    assert len(batches) == 3  # 100 // 32, the remainder is dropped
    assert all(inputs["token_ids"].shape == (32, 16) for inputs, _ in batches)
    first_labels = batches[0][1].numpy()
    assert 0 < first_labels.sum() < 32
