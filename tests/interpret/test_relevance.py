"""Gradient-weighted relevance (Chefer et al. 2021) and explained outputs."""

import numpy as np
import pytest

from keras_attn.interpret import Target, propagate_relevance, relevance, select_outputs
from keras_attn.models import Classifier, Generator, Translator
from keras_attn.models.classifier import MaskedLanguageModel


def _stochastic(rng, layers, heads, size, causal=False):
    weights = rng.random((layers, heads, size, size)) + 0.05
    if causal:
        weights = np.tril(weights)
    return weights / weights.sum(-1, keepdims=True)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_of_one_reduce_relevance_to_rollout(causal):
    # With ∇A = 1, Ā_l = mean_h A_l and each layer does R <- R + Ā_l R =
    # (I + Ā_l) R, so R = (I + Ā_L)...(I + Ā_1). Rollout with the residual
    # as 0.5 A + 0.5 I is the same product with every factor halved: R =
    # 2^L * rollout. Rollout rows sum to one, so R's rows sum to 2^L.
    rng = np.random.default_rng(0)
    attention = _stochastic(rng, 3, 4, 5, causal)
    result = propagate_relevance({"decoder" if causal else "encoder": attention})
    matrix = result["decoder" if causal else "encoder"]
    rollout = np.eye(5)
    for layer in attention:
        rollout = (0.5 * layer.mean(0) + 0.5 * np.eye(5)) @ rollout
    np.testing.assert_allclose(matrix, 2**3 * rollout, rtol=1e-5)
    np.testing.assert_allclose(matrix.sum(-1), 8.0, rtol=1e-5)


def test_two_layers_three_tokens_by_hand():
    # One head, both layers A = [[1,0,0],[.5,.5,0],[0,.5,.5]], gradients one.
    # I + A = [[2,0,0],[.5,1.5,0],[0,.5,1.5]]; R = (I + A)^2:
    # row 0: [2*2, 0, 0] = [4, 0, 0]
    # row 1: [.5*2 + 1.5*.5, 1.5*1.5, 0] = [1.75, 2.25, 0]
    # row 2: [.5*.5, .5*1.5 + 1.5*.5, 1.5*1.5] = [.25, 1.5, 2.25]
    a = np.array([[1, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0.5]])
    attention = np.stack([a[None], a[None]])
    expected = [[4, 0, 0], [1.75, 2.25, 0], [0.25, 1.5, 2.25]]
    np.testing.assert_allclose(propagate_relevance({"encoder": attention})["encoder"], expected)


def test_negative_contributions_are_clipped_and_padded_heads_ignored():
    # (∇A ⊙ A)^+ keeps only positive entries: all negative leaves R = I.
    negative = -np.ones((2, 2, 3, 3))
    np.testing.assert_allclose(propagate_relevance({"encoder": negative})["encoder"], np.eye(3))
    # Layer with one real head of two: the mean is over that one head, so
    # R = I + A with A the real head's weights (not A / 2).
    a = np.array([[0.25, 0.75], [1.0, 0.0]])
    weighted = np.stack([a, np.zeros((2, 2))])[None]  # (1 layer, 2 heads, 2, 2)
    result = propagate_relevance({"encoder": weighted}, {"encoder": [1]})["encoder"]
    np.testing.assert_allclose(result, np.eye(2) + a)


def test_cross_attention_rule_by_hand():
    # Encoder (1 layer) A_s = all 0.5 -> R_ss = I + A_s = [[1.5,.5],[.5,1.5]];
    # R̂_ss = A_s has rows summing to 1, so R̄_ss = A_s + I = R_ss.
    # Decoder self-attention (causal) A_t = [[1,0],[.5,.5]] -> R_tt =
    # [[2,0],[.5,1.5]], R̂_tt = A_t (rows sum to 1) so R̄_tt = R_tt; R_ts
    # is still 0 after the self-attention rule (Ā·0). Cross A_x = I:
    # R_ts = R̄_ttᵀ A_x R̄_ss = [[2,.5],[0,1.5]] @ [[1.5,.5],[.5,1.5]]
    #      = [[2*1.5 + .5*.5, 2*.5 + .5*1.5], [1.5*.5, 1.5*1.5]]
    #      = [[3.25, 1.75], [.75, 2.25]].
    weighted = {
        "encoder": np.full((1, 1, 2, 2), 0.5),
        "decoder": np.array([[[[1.0, 0.0], [0.5, 0.5]]]]),
        "cross": np.eye(2)[None, None],
    }
    result = propagate_relevance(weighted)
    np.testing.assert_allclose(result["encoder"], [[1.5, 0.5], [0.5, 1.5]])
    np.testing.assert_allclose(result["decoder"], [[2, 0], [0.5, 1.5]])
    np.testing.assert_allclose(result["cross"], [[3.25, 1.75], [0.75, 2.25]])


@pytest.fixture(scope="module")
def models():
    return {
        "generator": Generator.from_preset("tiny", sequence_length=16, num_layers=2),
        "classifier": Classifier.from_preset(
            "tiny", num_classes=3, num_layers=2, label_names=["a", "b", "c"]
        ),
        "translator": Translator.from_preset(
            "tiny", source_length=16, target_length=8, num_encoder_layers=2,
            num_decoder_layers=2,
        ),
    }


def test_relevance_end_to_end_on_the_three_model_types(models):
    generator = models["generator"]
    first, second = relevance(generator, ["abcd", "ab"])
    assert second.tokens["tokens"] == ["[BOS]", "a", "b"]
    matrix = second.relevance["decoder"]
    assert matrix.shape == (3, 3)
    np.testing.assert_array_equal(np.triu(matrix, 1), 0)  # causal: no later token counts
    assert second.explained.position == 2
    np.testing.assert_array_equal(second.token_scores["tokens"], matrix[2])

    classifier = models["classifier"]
    (result,) = relevance(classifier, ["hello"], target="c")
    assert result.explained.token == 2 and result.explained.label == "c"
    np.testing.assert_array_equal(result.token_scores["tokens"], result.relevance["encoder"][0])

    translator = models["translator"]
    (result,) = relevance(translator, ["abc"], targets=["xy"], target={"position": 1})
    assert result.relevance["cross"].shape == (3, 4)  # target [BOS] x y, source a b c [EOS]
    assert result.relevance["encoder"].shape == (4, 4)
    np.testing.assert_array_equal(result.token_scores["source"], result.relevance["cross"][1])
    np.testing.assert_array_equal(result.token_scores["target"], result.relevance["decoder"][1])
    assert (result.relevance["cross"] >= 0).all() and result.relevance["cross"].sum() > 0


def test_explained_outputs_and_their_errors(models):
    generator, classifier = models["generator"], models["classifier"]
    batch = generator.texts_to_inputs(["abc"])
    logits = np.asarray(generator(batch.inputs))
    selector = select_outputs(generator, batch, Target(position=-2, token="x"))
    explained = selector.explained[0]
    assert explained.position == 2 and explained.label == "x"
    np.testing.assert_allclose(explained.score, logits[0, 2, explained.token], rtol=1e-5)
    log_prob = select_outputs(generator, batch, score="log_prob").explained[0]
    row = logits[0, 3]
    # The prediction's log-prob: max - logsumexp(row) = -log(sum(exp(row - max))).
    expected = -np.log(np.exp(row - row.max()).sum())
    np.testing.assert_allclose(log_prob.score, expected, rtol=1e-4)

    with pytest.raises(ValueError, match="position"):
        select_outputs(generator, batch, {"position": 4})  # 4 real tokens: 0 .. 3
    with pytest.raises(ValueError, match="token id"):
        select_outputs(generator, batch, 10**6)
    with pytest.raises(ValueError, match="one entry per text"):
        select_outputs(generator, batch, [None, None])
    cls_batch = classifier.texts_to_inputs(["abc"])
    with pytest.raises(ValueError, match="class index"):
        select_outputs(classifier, cls_batch, 3)
    with pytest.raises(ValueError, match="label name"):
        select_outputs(classifier, cls_batch, "d")
    with pytest.raises(ValueError, match="not a position"):
        select_outputs(classifier, cls_batch, {"position": 0})


def test_masked_lm_explains_the_first_mask():
    model = MaskedLanguageModel.from_preset("tiny", num_layers=1)
    batch = model.texts_to_inputs(["a [MASK] c"])
    (result,) = relevance(model, ["a [MASK] c"])
    assert batch.tokens["tokens"][0][result.explained.position] == "[MASK]"
    with pytest.raises(ValueError, match=r"\[MASK\]"):
        relevance(model, ["no mask here"])
