import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attn.data import ClassificationData, TextData, TranslationData
from keras_attn.interpret import HeadImportance, head_importance, head_mask_loss_and_gradients
from keras_attn.models import Classifier, Generator, Translator


def _model_and_data(task):
    """A one-layer model of each type with two heads per attention, and data."""
    if task == "generator":
        model = Generator.from_preset("tiny", sequence_length=16, num_layers=1, num_heads=2)
        data = TextData(["abcdef", "xyz", "hello", "qrstu"])
    elif task == "classifier":
        model = Classifier.from_preset("tiny", num_classes=2, num_layers=1, num_heads=2,
                                       dropout=0.0)
        data = ClassificationData(["a good film", "a dull film", "fine", "bad"], [1, 0, 1, 0],
                                  ["negative", "positive"])
    else:
        model = Translator.from_preset("tiny", source_length=16, target_length=8,
                                       num_encoder_layers=1, num_decoder_layers=1, num_heads=2)
        data = TranslationData(["one two three", "four five", "six", "seven eight"],
                               ["123", "45", "6", "78"])
    return model, data


def _first_batch(model, data):
    return next(iter(model.dataset_from_data(data, batch_size=2, shuffle=False)))


@pytest.mark.parametrize("task", ["generator", "classifier", "translator"])
def test_head_mask_gradient_agrees_with_finite_differences(task):
    # The backbone runs in float64; the task's logits and loss stay float32
    # (as every task computes them), so a central difference with step
    # eps = 1e-2 is off by its truncation error eps^2 / 6 * L''' (< 1e-4
    # here: halving eps moves the differences by less) plus the loss's float32
    # rounding, about 1e-6 * |L| / eps < 3e-4 for a loss near 5. A gradient
    # that missed a path (cross-attention into the encoder, say) or the sign
    # would be off by the size of the gradient itself (~0.02 to 0.1).
    keras.config.set_dtype_policy("float64")
    model, data = _model_and_data(task)
    batch = _first_batch(model, data)
    loss, gradients = head_mask_loss_and_gradients(model, batch)
    assert np.isfinite(loss)
    assert set(gradients) == set(model.attention_kinds)
    eps = 1e-2
    for kind, gradient in gradients.items():
        assert gradient.shape == (1, 2)
        assert np.abs(gradient).max() > 1e-3  # every kind's heads matter
        differences = np.zeros_like(gradient)
        for index in np.ndindex(gradient.shape):
            step = np.zeros(gradient.shape)
            step[index] = eps
            plus, _ = head_mask_loss_and_gradients(model, batch, {kind: 1 + step})
            minus, _ = head_mask_loss_and_gradients(model, batch, {kind: 1 - step})
            differences[index] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(gradient, differences, atol=5e-4, rtol=1e-2)


def test_loss_is_the_compiled_training_loss():
    # With the masks at one the model is unchanged, so the loss must be what
    # Keras' evaluate reports for the same batch with the same compiled loss.
    model, data = _model_and_data("generator")
    batch = _first_batch(model, data)
    one_batch = tf.data.Dataset.from_tensors(batch)
    default = head_importance(model, one_batch, normalize=False)
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[], jit_compile=False)
    loss, gradients = head_mask_loss_and_gradients(model, batch)
    expected = model.evaluate(one_batch, verbose=0, return_dict=True)
    np.testing.assert_allclose(loss, expected["loss"], rtol=1e-5)
    # head_importance follows the new compiled loss (which, unlike the task's
    # default, also scores the padding), not the one it first ran with.
    compiled = head_importance(model, one_batch, normalize=False)
    np.testing.assert_allclose(compiled.scores["decoder"], np.abs(gradients["decoder"]),
                               rtol=1e-4)
    assert not np.allclose(compiled.scores["decoder"], default.scores["decoder"], rtol=1e-2)


def test_importance_is_the_mean_absolute_gradient_normalised_per_layer():
    # Michel et al.: I_h = mean over batches of |dL/dxi_h|, then each layer's
    # row divided by its L2 norm. Recomputed here batch by batch.
    model = Translator.from_preset(
        "tiny", source_length=16, target_length=8, num_encoder_layers=2,
        num_decoder_layers=1, num_heads={"encoder": [2, 4], "decoder": [4], "cross_attention": [3]},
    )
    data = TranslationData(["one two", "three", "four five six", "seven"], ["12", "3", "456", "7"])
    batches = list(model.dataset_from_data(data, batch_size=2, shuffle=False))
    expected = {kind: 0.0 for kind in model.attention_kinds}
    for batch in batches:
        _, gradients = head_mask_loss_and_gradients(model, batch)
        for kind in expected:
            expected[kind] = expected[kind] + np.abs(gradients[kind]) / len(batches)

    raw = head_importance(model, data, normalize=False, batch_size=2)
    assert isinstance(raw, HeadImportance) and raw.num_batches == 2
    assert raw.head_counts == {"encoder": [2, 4], "decoder": [4], "cross": [3]}
    encoder = raw.scores["encoder"]
    assert encoder.shape == (2, 4) and np.all(np.isnan(encoder[0, 2:]))  # heads layer 0 lacks
    for kind in expected:
        real = ~np.isnan(raw.scores[kind])
        np.testing.assert_allclose(raw.scores[kind][real], expected[kind][real], rtol=1e-4)

    normalized = head_importance(model, data, batch_size=2)
    for kind, scores in normalized.scores.items():
        norms = np.sqrt(np.nansum(scores**2, axis=1))
        np.testing.assert_allclose(norms, 1.0, rtol=1e-6)
        np.testing.assert_allclose(
            scores, raw.scores[kind] / np.sqrt(np.nansum(raw.scores[kind] ** 2, 1))[:, None]
        )
    # ranked(): every real head once, least important first.
    ranked = normalized.ranked()
    assert len(ranked) == 2 + 4 + 4 + 3
    assert [score for *_, score in ranked] == sorted(score for *_, score in ranked)


def test_a_dataset_and_its_examples_give_the_same_importance():
    model, data = _model_and_data("classifier")
    from_examples = head_importance(model, data, batch_size=2)
    dataset = model.dataset_from_data(data, batch_size=2, shuffle=False)
    from_dataset = head_importance(model, dataset)
    np.testing.assert_allclose(from_examples.scores["encoder"], from_dataset.scores["encoder"])
    first_only = head_importance(model, dataset, num_batches=1)
    assert first_only.num_batches == 1


def test_bad_input_is_named():
    model, data = _model_and_data("generator")
    batch = _first_batch(model, data)
    with pytest.raises(ValueError, match="attention kinds.*'cross'"):
        head_mask_loss_and_gradients(model, batch, {"cross": np.ones((1, 2))})
    with pytest.raises(ValueError, match=r"head_masks\['decoder'\].*\(1, 2\)"):
        head_mask_loss_and_gradients(model, batch, {"decoder": np.ones((2, 2))})
    with pytest.raises(ValueError, match="at least one batch"):
        head_importance(model, model.dataset_from_data(data, batch_size=2).take(0))
    with pytest.raises(ValueError, match="data_or_dataset"):
        head_importance(model, "abc")
    with pytest.raises(ValueError, match="num_batches"):
        head_importance(model, data, num_batches=0)
