"""Integrated gradients on token embeddings: completeness, baselines, the
quadrature rules."""

import numpy as np
import pytest

from keras_attn.interpret import integrated_gradients
from keras_attn.interpret.gradients import quadrature
from keras_attn.models import Classifier, Generator, Translator


def test_quadrature_rules_by_hand():
    # Two Gauss-Legendre nodes integrate cubics exactly: ∫₀¹ α³ dα = 1/4.
    nodes, weights = quadrature("gauss_legendre", 2)
    assert np.isclose((weights * nodes**3).sum(), 0.25)
    # Trapezoid with 2 intervals on α²: (0 + 2 * 0.25 + 1) / 4 = 0.375 (exact: 1/3).
    nodes, weights = quadrature("trapezoid", 2)
    np.testing.assert_allclose(nodes, [0, 0.5, 1])
    assert np.isclose((weights * nodes**2).sum(), 0.375)


@pytest.mark.parametrize("task", ["generator", "classifier", "translator"])
def test_completeness_within_one_percent(task):
    # Completeness: the attributions sum to f(x) - f(baseline). 50
    # Gauss-Legendre nodes integrate these smooth (GELU) paths far below 1%.
    if task == "generator":
        model = Generator.from_preset("tiny", sequence_length=16, num_layers=2)
        kwargs = {}
    elif task == "classifier":
        model = Classifier.from_preset("tiny", num_classes=2, num_layers=2)
        kwargs = {"target": 1}
    else:
        model = Translator.from_preset(
            "tiny", source_length=16, target_length=8, num_encoder_layers=1,
            num_decoder_layers=1, activation="gelu",
        )
        kwargs = {"targets": ["xyz", "q"]}
    results = integrated_gradients(model, ["hello", "ab"], steps=50, batch_size=64, **kwargs)
    for result in results:
        difference = result.explained.score - result.baseline_score
        assert abs(difference) > 1e-4  # the check below is not vacuous
        assert abs(result.total - difference) <= 0.01 * abs(difference)
        assert result.relative_gap < 0.01
        for sequence, scores in result.scores.items():
            assert scores.shape == (len(result.tokens[sequence]),)
    if task == "translator":
        assert set(results[0].scores) == {"source", "target"}
        assert results[1].tokens["target"] == ["[BOS]", "q"]


def test_baselines():
    model = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    batch = model.texts_to_inputs(["abc"])
    embeddings = np.asarray(model.backbone.token_embedding(batch.inputs["token_ids"]))
    # The input as its own baseline: nothing changes, so every attribution
    # is exactly 0 and so is f(x) - f(x').
    (same,) = integrated_gradients(model, ["abc"], baseline=embeddings, steps=4)
    np.testing.assert_array_equal(same.scores["tokens"], 0.0)
    assert same.baseline_score == pytest.approx(same.explained.score, abs=1e-6)
    # "zeros" and "pad" differ (the pad embedding is not zero).
    (zeros,) = integrated_gradients(model, ["abc"], baseline="zeros", steps=8)
    (pad,) = integrated_gradients(model, ["abc"], baseline="pad", steps=8)
    assert zeros.baseline_score != pad.baseline_score
    with pytest.raises(ValueError, match="baseline"):
        integrated_gradients(model, ["abc"], baseline=np.zeros((3, 5)), steps=2)
    with pytest.raises(ValueError, match="baseline"):
        integrated_gradients(model, ["abc"], baseline="mean", steps=2)
    with pytest.raises(ValueError, match="steps"):
        integrated_gradients(model, ["abc"], steps=0)
