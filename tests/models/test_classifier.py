import json
import warnings

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
    masked, labels = (x.numpy() for x in mlm.preprocessor.mask_ids(ids, seed=[3, 0]))
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
    # Three batches are too few for a second bucket: one shape, cut to the longest row.
    shapes = {tuple(inputs["token_ids"].shape) for inputs, _ in batches}
    assert len(shapes) == 1 and next(iter(shapes))[0] == 32 and next(iter(shapes))[1] <= 16
    plain = classifier.make_dataset(texts, labels, batch_size=32, seed=0, bucketing=False)
    assert all(inputs["token_ids"].shape == (32, 16) for inputs, _ in plain)
    first_labels = batches[0][1].numpy()
    assert 0 < first_labels.sum() < 32


def _masked_batches(dataset):
    return [(x["token_ids"].numpy(), y.numpy()) for x, y in dataset]


def test_masked_lm_masking_is_reproducible_and_new_each_epoch(tokenizer):
    mlm = MaskedLanguageModel.from_preset("tiny", tokenizer=tokenizer, sequence_length=16)
    texts, _ = sentiment_with_negation(64, seed=3)
    dataset = mlm.make_dataset(texts, batch_size=16, shuffle=False, seed=7)
    first_epoch, second_epoch = _masked_batches(dataset), _masked_batches(dataset)
    again = _masked_batches(mlm.make_dataset(texts, batch_size=16, shuffle=False, seed=7))
    other_seed = _masked_batches(mlm.make_dataset(texts, batch_size=16, shuffle=False, seed=8))
    for (ids, labels), (same_ids, same_labels) in zip(first_epoch, again):
        np.testing.assert_array_equal(ids, same_ids)
        np.testing.assert_array_equal(labels, same_labels)
    # Dynamic masking: another epoch or seed selects other tokens.
    assert any((a[1] != b[1]).any() for a, b in zip(first_epoch, second_epoch))
    assert any((a[1] != b[1]).any() for a, b in zip(first_epoch, other_seed))
    # Unmasked inputs are the classifier's packing of the same texts.
    packed = Classifier(mlm.backbone, tokenizer, 2).preprocess(texts[:16])[0]["token_ids"]
    ids, labels = first_epoch[0]
    selected = labels > 0
    np.testing.assert_array_equal(ids[~selected], packed[~selected])
    np.testing.assert_array_equal(labels[selected], packed[selected])


def test_fill_mask_reads_literal_mask_tokens_and_predicts_learned_words(tokenizer):
    keras.utils.set_random_seed(2)
    mlm = MaskedLanguageModel.from_preset("tiny", tokenizer=tokenizer, sequence_length=16)
    texts, _ = sentiment_with_negation(2000, seed=6)
    mlm.compile(optimizer=keras.optimizers.Adam(3e-3))
    mlm.fit(mlm.make_dataset(texts, batch_size=64, num_maskings=2), epochs=4, verbose=0)
    word = texts[0].split()[-1]
    masked = texts[0][: -len(word)] + "[MASK]"
    inputs = mlm.preprocessor.fill_mask_inputs([masked])
    ids = inputs["token_ids"].numpy()[0]
    assert (ids == tokenizer.mask_id).sum() == 1
    filled, candidates = mlm.fill_mask([masked, "[MASK] [MASK]"], top_k=3)
    assert len(candidates[0]) == 1 and len(candidates[1]) == 2
    tokens, probabilities = zip(*candidates[0][0])
    assert list(probabilities) == sorted(probabilities, reverse=True)
    assert not set(tokens) & set(tokenizer.special_tokens)
    assert filled[0].endswith(tokens[0])
    metrics, samples = mlm.evaluate_data(
        type("Texts", (), {"texts": sentiment_with_negation(200, seed=9)[0]})()
    )
    # Chance is about 1/100 (the vocabulary); a trained model does far better.
    assert metrics["masked_accuracy"] > 0.2 and metrics["examples"] == 200
    assert samples and "->" in samples[0]


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_classifier_takes_token_embeddings_in_place_of_ids(tokenizer, pooling):
    classifier = Classifier.from_preset("tiny", tokenizer=tokenizer, num_classes=3,
                                        sequence_length=16, num_layers=1, pooling=pooling)
    inputs, _ = classifier.preprocess(["the plot was not dull", "a fine film"])
    embedded = dict(inputs, token_embeddings=classifier.backbone.token_embedding(
        inputs["token_ids"]))
    del embedded["token_ids"]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(classifier(embedded)),
        keras.ops.convert_to_numpy(classifier(inputs)),
        atol=1e-6,
    )


# ----------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def small_classifier():
    return Classifier.from_preset("tiny", num_classes=2, num_layers=1, sequence_length=16)


def test_classify_warns_about_and_records_truncated_texts(small_classifier):
    # 20 bytes + [CLS] and [SEP] in 16 positions: 6 tokens cut.
    with pytest.warns(UserWarning, match=r"texts: 1 of 2 rows \(50.0%\) truncated, 6 tokens"):
        small_classifier.classify(["short", "x" * 20])
    report = small_classifier.last_truncation
    assert (report.rows, report.rows_truncated, report.tokens_dropped) == (2, 1, 6)
    with pytest.warns(UserWarning, match=r"texts: 1 of 2 rows .* 4 tokens dropped"):
        # 10 + 7 + 3 special tokens in 16 positions.
        small_classifier.classify(["x" * 10, "a"], text_pairs=["y" * 7, "b"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small_classifier.classify(["x" * 14, "a"])
    assert small_classifier.last_truncation.rows_truncated == 0


def test_fill_mask_warns_about_truncation_counting_a_mask_as_one_token():
    model = MaskedLanguageModel.from_preset("tiny", num_layers=1, sequence_length=16)
    # 13 bytes and one [MASK]: 14 tokens + [CLS] [SEP] fit exactly.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.fill_mask(["abcdef[MASK]ghijklm"], top_k=1)
    assert model.last_truncation.rows_truncated == 0
    with pytest.warns(UserWarning, match=r"texts: 1 of 1 rows .* 3 tokens dropped"):
        model.fill_mask(["abcdef[MASK]ghijklmnop"], top_k=1)
    assert model.last_truncation.tokens_dropped == 3
    batch = model.texts_to_inputs(["abcdef[MASK]ghijklmnop"])
    assert batch.truncated["tokens"].tolist() == [3]


@pytest.mark.parametrize("inputs, message", [
    (lambda ids: {"token_ids": ids, "segment_ids": np.zeros((3, 6), "int32"),
                  "padding_mask": ids != 0},
     r"`segment_ids` must have the batch size of `token_ids` \(2\)"),
    (lambda ids: {"token_ids": ids, "segment_ids": np.zeros_like(ids),
                  "padding_mask": np.ones((1, 6), bool)},
     r"`padding_mask` must have the batch size of `token_ids` \(2\)"),
    (lambda ids: {"token_ids": ids, "segment_ids": np.full_like(ids, 2),
                  "padding_mask": ids != 0},
     r"`segment_ids` must hold ids in \[0, 2\)"),
    (lambda ids: {"token_ids": ids + 1000, "segment_ids": np.zeros_like(ids),
                  "padding_mask": ids != 0},
     r"`token_ids` must hold ids in \[0, 263\)"),
])
def test_classifier_calls_refuse_mismatched_or_out_of_range_inputs(small_classifier, inputs,
                                                                   message):
    ids = np.full((2, 6), 70, "int32")
    with pytest.raises(ValueError, match=message):
        small_classifier(inputs(ids))


def test_a_preset_whose_config_changes_sequence_length_is_refused(small_classifier, tmp_path):
    path = tmp_path / "preset"
    small_classifier.save_to_preset(str(path))
    config = json.loads((path / "config.json").read_text())
    config["config"]["backbone"]["config"]["sequence_length"] = 24
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"config.json does not describe the model whose weights "
                                         r"are in .*`sequence_length`: 24 in the config, 16"):
        Classifier.from_preset(str(path))
