import keras
import numpy as np
import pytest
import sacrebleu
from keras import ops

from keras_attn.training.losses import MaskedSparseCategoricalCrossentropy
from keras_attn.training.metrics import MaskedAccuracy, Perplexity, corpus_bleu

RNG = np.random.default_rng(0)
VOCAB = 6
# Two batches with very different amounts of padding (0 is padding): 11 and 2
# real tokens, so a mean of per-batch values differs from the token-weighted one.
TARGETS_A = np.array([[1, 2, 3, 4], [5, 1, 2, 3], [4, 5, 1, 0]], "int32")
TARGETS_B = np.array([[2, 0, 0, 0], [3, 0, 0, 0], [0, 0, 0, 0]], "int32")
LOGITS_A = RNG.normal(scale=2.0, size=(3, 4, VOCAB)).astype("float32")
LOGITS_B = RNG.normal(scale=2.0, size=(3, 4, VOCAB)).astype("float32")
BATCHES = [(TARGETS_A, LOGITS_A), (TARGETS_B, LOGITS_B)]


def _log_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _numpy_accuracy(batches):
    correct = sum(((y_pred.argmax(-1) == y) & (y != 0)).sum() for y, y_pred in batches)
    return correct / sum((y != 0).sum() for y, _ in batches)


def _numpy_perplexity(batches):
    total = 0.0
    for y, y_pred in batches:
        nll = -np.take_along_axis(_log_softmax(y_pred.astype("float64")), y[..., None], -1)[..., 0]
        total += nll[y != 0].sum()
    return np.exp(total / sum((y != 0).sum() for y, _ in batches))


def test_masked_accuracy_is_token_weighted_over_batches():
    metric = MaskedAccuracy()
    for y, y_pred in BATCHES:
        metric.update_state(y, y_pred)
    expected = _numpy_accuracy(BATCHES)
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)
    per_batch_mean = np.mean([_numpy_accuracy([batch]) for batch in BATCHES])
    assert not np.isclose(expected, per_batch_mean)


def test_perplexity_is_token_weighted_over_batches():
    metric = Perplexity()
    for y, y_pred in BATCHES:
        metric.update_state(y, y_pred)
    expected = _numpy_perplexity(BATCHES)
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-5)
    per_batch_mean = np.mean([_numpy_perplexity([batch]) for batch in BATCHES])
    assert not np.isclose(expected, per_batch_mean, rtol=1e-3)


def test_perplexity_from_probabilities_and_float16():
    metric = Perplexity(from_logits=False)
    for y, y_pred in BATCHES:
        metric.update_state(y, ops.softmax(y_pred, axis=-1))
    np.testing.assert_allclose(float(metric.result()), _numpy_perplexity(BATCHES), rtol=1e-5)

    metric = Perplexity()
    metric.update_state(TARGETS_A, LOGITS_A.astype("float16"))
    assert keras.backend.standardize_dtype(metric.result().dtype) == "float32"
    expected = _numpy_perplexity([(TARGETS_A, LOGITS_A.astype("float16").astype("float32"))])
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-4)


def test_padded_predictions_are_ignored():
    noisy = LOGITS_A.copy()
    noisy[TARGETS_A == 0] = 1e4
    for metric_cls in (MaskedAccuracy, Perplexity):
        clean, dirty = metric_cls(), metric_cls()
        clean.update_state(TARGETS_A, LOGITS_A)
        dirty.update_state(TARGETS_A, noisy)
        np.testing.assert_allclose(float(dirty.result()), float(clean.result()), rtol=1e-6)


def test_ignore_index_none_counts_every_position():
    metric = MaskedAccuracy(ignore_index=None)
    metric.update_state(TARGETS_A, LOGITS_A)
    expected = (LOGITS_A.argmax(-1) == TARGETS_A).mean()
    np.testing.assert_allclose(float(metric.result()), expected, rtol=1e-6)


def test_reset_state():
    for metric, numpy_fn, empty in (
        (MaskedAccuracy(), _numpy_accuracy, 0.0),
        (Perplexity(), _numpy_perplexity, 1.0),
    ):
        for y, y_pred in BATCHES:
            metric.update_state(y, y_pred)
        metric.reset_state()
        assert float(metric.result()) == empty
        metric.update_state(TARGETS_B, LOGITS_B)
        np.testing.assert_allclose(
            float(metric.result()), numpy_fn([(TARGETS_B, LOGITS_B)]), rtol=1e-5
        )


@pytest.mark.parametrize(
    "metric",
    [MaskedAccuracy(ignore_index=-1, name="acc"), Perplexity(from_logits=False, ignore_index=None)],
    ids=["accuracy", "perplexity"],
)
def test_config_round_trip(metric):
    config = metric.get_config()
    assert metric.__class__.from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert type(restored) is type(metric)
    assert restored.get_config() == config


def test_compiled_fit_and_evaluate_report_the_metrics():
    model = keras.Sequential(
        [
            keras.Input((4,), dtype="int32"),
            keras.layers.Embedding(VOCAB, 8),
            keras.layers.Dense(VOCAB),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-2),
        loss=MaskedSparseCategoricalCrossentropy(),
        metrics=[MaskedAccuracy(), Perplexity()],
        jit_compile=True,
    )
    x = np.concatenate([TARGETS_A, TARGETS_B])
    history = model.fit(x, x, batch_size=3, epochs=2, shuffle=False, verbose=0)
    for name in ("masked_accuracy", "perplexity"):
        assert np.all(np.isfinite(history.history[name]))

    # Two batches of different padding amounts: evaluate must weight by tokens.
    results = model.evaluate(x, x, batch_size=3, verbose=0, return_dict=True)
    logits = ops.convert_to_numpy(model.predict(x, verbose=0))
    batches = [(TARGETS_A, logits[:3]), (TARGETS_B, logits[3:])]
    np.testing.assert_allclose(results["masked_accuracy"], _numpy_accuracy(batches), rtol=1e-6)
    np.testing.assert_allclose(results["perplexity"], _numpy_perplexity(batches), rtol=1e-4)


def test_monitor_direction_is_known_to_callbacks():
    assert MaskedAccuracy()._direction == "up"
    assert Perplexity()._direction == "down"


HYPOTHESES = ["the cat sat on the mat", "a quick brown fox jumps", "hello world"]
REFERENCES = ["the cat is on the mat", "the quick brown fox jumps over", "hello world"]


def test_corpus_bleu_identical_text_is_100():
    np.testing.assert_allclose(corpus_bleu(REFERENCES, REFERENCES), 100.0)


@pytest.mark.parametrize("tokenize", ["13a", "char"])
def test_corpus_bleu_matches_sacrebleu(tokenize):
    expected = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES], tokenize=tokenize).score
    value = corpus_bleu(HYPOTHESES, REFERENCES, tokenize=tokenize)
    assert isinstance(value, float)
    assert 0.0 < value < 100.0
    assert value == pytest.approx(expected, abs=1e-9)


def test_corpus_bleu_accepts_bytes_and_arrays():
    encoded = np.array([h.encode("utf-8") for h in HYPOTHESES], dtype=object)
    assert corpus_bleu(encoded, tuple(REFERENCES)) == pytest.approx(
        corpus_bleu(HYPOTHESES, REFERENCES)
    )


def test_corpus_bleu_validates_arguments():
    with pytest.raises(ValueError, match=r"len\(hypotheses\)=3, len\(references\)=2"):
        corpus_bleu(HYPOTHESES, REFERENCES[:2])
    with pytest.raises(ValueError, match="references"):
        corpus_bleu(["hello world"], "hello world")
    with pytest.raises(ValueError, match=r"hypotheses\[1\]"):
        corpus_bleu(["a", 3], ["a", "b"])
    with pytest.raises(ValueError, match="tokenize"):
        corpus_bleu(HYPOTHESES, REFERENCES, tokenize="moses")
    with pytest.raises(ValueError, match="hypotheses"):
        corpus_bleu([], [])
