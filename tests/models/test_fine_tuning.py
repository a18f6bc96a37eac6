import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attn.data import alphabet_runs, sentiment_with_negation
from keras_attn.export import export
from keras_attn.models import Classifier, Generator, enable_lora, freeze, merge_lora
from keras_attn.models.fine_tuning import backbone_blocks, has_lora, lora_target_layers
from keras_attn.tokenizers import WordPieceTokenizer
from tests.models.conftest import compile_for_tokens, logits_of


def _compile(classifier):
    classifier.compile(
        optimizer=keras.optimizers.Adam(5e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return classifier


@pytest.fixture(scope="module")
def data():
    texts, labels = sentiment_with_negation(256, seed=0)
    return texts, labels, WordPieceTokenizer.train(texts, vocabulary_size=100)


def _classifier(tokenizer, num_classes=2):
    keras.utils.set_random_seed(0)
    return Classifier.from_preset("tiny", tokenizer=tokenizer, num_classes=num_classes,
                                  sequence_length=16, dropout=0.0)


def _weights(layer):
    return [np.array(w) for w in layer.get_weights()]


def _changed(before, after):
    return any(not np.allclose(b, a) for b, a in zip(before, after))


def test_with_head_keeps_the_encoder_and_replaces_the_head(data):
    texts, labels, tokenizer = data
    classifier = _classifier(tokenizer)
    three_way = classifier.with_head(3, ["negative", "neutral", "positive"], pooling="mean")
    assert three_way.head.kernel.shape == (classifier.backbone.hidden_dim, 3)
    assert three_way.backbone is not classifier.backbone
    for a, b in zip(_weights(three_way.backbone), _weights(classifier.backbone)):
        np.testing.assert_array_equal(a, b)
    before = _weights(classifier.backbone)
    _compile(three_way).fit(three_way.make_dataset(texts, labels * 2 % 3, batch_size=32),
                            epochs=1, verbose=0)
    for a, b in zip(_weights(classifier.backbone), before):
        np.testing.assert_array_equal(a, b)  # the original is untouched


def test_freeze_backbone_trains_only_the_head(data):
    texts, labels, tokenizer = data
    classifier = freeze(_classifier(tokenizer), backbone=True)
    backbone, head = _weights(classifier.backbone), _weights(classifier.head)
    _compile(classifier).fit(classifier.make_dataset(texts, labels, batch_size=32), epochs=1,
                             verbose=0)
    for a, b in zip(_weights(classifier.backbone), backbone):
        np.testing.assert_array_equal(a, b)
    assert _changed(head, _weights(classifier.head))


def test_freeze_chosen_blocks_and_embeddings(data):
    texts, labels, tokenizer = data
    classifier = freeze(_classifier(tokenizer), embeddings=True, blocks=[0])
    blocks = backbone_blocks(classifier)
    first, last = _weights(blocks[0]), _weights(blocks[-1])
    embedding = _weights(classifier.backbone.embedding)
    _compile(classifier).fit(classifier.make_dataset(texts, labels, batch_size=32), epochs=1,
                             verbose=0)
    for a, b in zip(_weights(blocks[0]), first):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_weights(classifier.backbone.embedding), embedding):
        np.testing.assert_array_equal(a, b)
    assert _changed(last, _weights(blocks[-1]))
    with pytest.raises(ValueError, match="blocks"):
        freeze(classifier, blocks=[5])


def test_lora_trains_adapters_only_and_merges_into_an_equal_plain_model(data, tmp_path):
    texts, labels, tokenizer = data
    classifier = _classifier(tokenizer)
    layers = enable_lora(classifier, rank=2)
    assert has_lora(classifier) and len(layers) == len(lora_target_layers(classifier))
    trainable = {id(w) for w in classifier.trainable_weights}
    adapters = {id(w) for layer in layers for w in (layer.lora_kernel_a, layer.lora_kernel_b)}
    head = {id(w) for w in classifier.head.trainable_weights}
    assert trainable == adapters | head  # kernels, biases, norms, embeddings frozen
    kernels = [np.array(layer._kernel) for layer in layers]
    inputs, _ = classifier.preprocess(texts[:8])
    before = logits_of(classifier, inputs)
    _compile(classifier).fit(classifier.make_dataset(texts, labels, batch_size=32), epochs=2,
                             verbose=0)
    for layer, kernel in zip(layers, kernels):
        np.testing.assert_array_equal(np.array(layer._kernel), kernel)
    adapted = logits_of(classifier, inputs)
    assert not np.allclose(adapted, before)

    merged = merge_lora(classifier)
    assert not has_lora(merged)
    np.testing.assert_allclose(logits_of(merged, inputs), adapted, atol=1e-5)

    # export folds the adapters in as well.
    export(classifier, str(tmp_path / "served"))
    served = tf.saved_model.load(str(tmp_path / "served"))
    probabilities = served.signatures["serving_default"](inputs=tf.constant(texts[:8]))
    expected = tf.nn.softmax(adapted).numpy()
    np.testing.assert_allclose(probabilities["probabilities"].numpy(), expected, atol=1e-5)


def test_lora_on_a_generator_continues_training(tmp_path):
    generator = compile_for_tokens(Generator.from_preset("tiny", sequence_length=16))
    dataset = generator.make_dataset(alphabet_runs(256), batch_size=32)
    enable_lora(generator, rank=4, targets=("attention",))
    history = compile_for_tokens(generator).fit(dataset, epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    merged = merge_lora(generator)
    ids = np.array([[2, 10, 11, 12] + [0] * 12], "int32")
    np.testing.assert_allclose(logits_of(merged, ids), logits_of(generator, ids), atol=1e-5)


def test_bad_fine_tuning_arguments(data):
    _, _, tokenizer = data
    classifier = _classifier(tokenizer)
    with pytest.raises(ValueError, match="targets"):
        enable_lora(classifier, rank=2, targets=("embeddings",))
    with pytest.raises(ValueError, match="rank"):
        enable_lora(classifier, rank=0)
    with pytest.raises(ValueError, match="model"):
        freeze(keras.Sequential(), backbone=True)
    enable_lora(classifier, rank=2)
    with pytest.raises(ValueError, match="already enabled"):
        enable_lora(classifier, rank=2)
