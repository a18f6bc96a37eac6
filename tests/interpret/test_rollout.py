import numpy as np
import pytest

from keras_attn.interpret import (
    AttentionMaps,
    attention_maps,
    attention_rollout,
    residual_adjusted_attention,
)
from keras_attn.models import Classifier, Generator, Translator


def self_maps(layers, head_counts, kind="encoder"):
    """AttentionMaps for one self-attention stack given as nested lists
    `(layers, heads, tokens, tokens)`."""
    attention = np.asarray(layers, dtype="float32")
    tokens = [f"t{i}" for i in range(attention.shape[-1])]
    return AttentionMaps(
        tokens={"tokens": tokens},
        attention={kind: attention},
        sequences={kind: ("tokens", "tokens")},
        head_counts={kind: list(head_counts)},
    )


ZERO = [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
# Layer 1 has one real head (the second is the zero padding of a narrower
# layer); layer 2 has two.
LAYER_1 = [[[1, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0.5]], ZERO]
LAYER_2 = [
    [[1, 0, 0], [1, 0, 0], [1, 0, 0]],
    [[1, 0, 0], [0, 1, 0], [0, 1, 0]],
]


def test_two_layer_three_token_rollout_computed_on_paper():
    # Layer 1, its one real head with 0.5·A + 0.5·I:
    #   Â1 = [[1, 0, 0], [.25, .75, 0], [0, .25, .75]]
    # Layer 2, mean of its two heads [[1,0,0],[.5,.5,0],[.5,.5,0]], then
    #   Â2 = [[1, 0, 0], [.25, .75, 0], [.25, .25, .5]]
    # Rollout = Â2 · Â1, row by row:
    #   row 0: [1, 0, 0]
    #   row 1: .25·[1,0,0] + .75·[.25,.75,0]               = [.4375, .5625, 0]
    #   row 2: .25·[1,0,0] + .25·[.25,.75,0] + .5·[0,.25,.75] = [.3125, .3125, .375]
    # (The other order, Â1 · Â2, gives row 2 = [.25, .375, .375]; averaging
    # the zero head into layer 1 would halve A1 and change rows 1 and 2.)
    maps = self_maps([LAYER_1, LAYER_2], head_counts=[1, 2])
    rollout = attention_rollout(maps)
    expected = [[1, 0, 0], [0.4375, 0.5625, 0], [0.3125, 0.3125, 0.375]]
    np.testing.assert_allclose(rollout, expected, atol=1e-6)
    assert rollout.dtype == np.float32
    np.testing.assert_allclose(rollout.sum(-1), 1.0, atol=1e-6)


def test_residual_extremes_and_head_reductions():
    maps = self_maps([LAYER_1, LAYER_2], head_counts=[1, 2])
    # residual=1 keeps every position to itself; residual=0 multiplies the
    # raw head means: A2_mean · A1 row 2 = .5·[1,0,0] + .5·[.5,.5,0].
    np.testing.assert_allclose(attention_rollout(maps, residual=1.0), np.eye(3), atol=1e-6)
    np.testing.assert_allclose(
        attention_rollout(maps, residual=0.0)[2], [0.75, 0.25, 0], atol=1e-6
    )
    # Max over layer 2's heads is [[1,0,0],[1,1,0],[1,1,0]]; with 0.5·I
    # added the rows are [1,0,0], [.5,1,0], [.5,.5,.5], re-normalised to
    # [1,0,0], [1/3,2/3,0], [1/3,1/3,1/3].
    layers = residual_adjusted_attention(maps, head_reduction="max")
    np.testing.assert_allclose(
        layers[1], [[1, 0, 0], [1 / 3, 2 / 3, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6
    )
    # Min over layer 2's heads is [[1,0,0],[0,0,0],[0,0,0]]: rows 1 and 2
    # keep only the residual, so they become one-hot on themselves.
    layers = residual_adjusted_attention(maps, head_reduction="min")
    np.testing.assert_allclose(layers[1], np.eye(3), atol=1e-6)


def translator_maps():
    """A translator's maps built by hand: 2 source and 2 target tokens, one
    encoder layer and two decoder layers."""
    return AttentionMaps(
        tokens={"source": ["s0", "s1"], "target": ["t0", "t1"]},
        attention={
            "encoder": np.array([[[[0.5, 0.5], [0.5, 0.5]]]], "float32"),
            "decoder": np.array([[[[1, 0], [0.5, 0.5]]], [[[1, 0], [1, 0]]]], "float32"),
            "cross": np.array([[[[1, 0], [0, 1]]], [[[0, 1], [0, 1]]]], "float32"),
        },
        sequences={
            "encoder": ("source", "source"),
            "decoder": ("target", "target"),
            "cross": ("target", "source"),
        },
        head_counts={"encoder": [1], "decoder": [1, 1], "cross": [1, 1]},
    )


def test_cross_rollout_computed_on_paper():
    # Encoder rollout: 0.5·[[.5,.5],[.5,.5]] + 0.5·I = E = [[.75,.25],[.25,.75]].
    # Each target position is a mixture (T over targets | S over sources),
    # starting at (I | 0).
    # Decoder layer 1, self Â = [[1,0],[.25,.75]]:  T = Â, S = 0.
    #   cross [[1,0],[0,1]]: T = .5·T = [[.5,0],[.125,.375]],
    #   S = .5·S + .5·cross·E = [[.375,.125],[.125,.375]].
    # Decoder layer 2, self Â = [[1,0],[.5,.5]]:
    #   T = [[.5,0],[.3125,.1875]], S = [[.375,.125],[.25,.25]].
    #   cross [[0,1],[0,1]] (cross·E rows are [.25,.75]):
    #   T = [[.25,0],[.15625,.09375]],
    #   S = .5·S + .5·[.25,.75] = [[.3125,.4375],[.25,.5]].
    # Rows of (T | S) sum to one: the source block sums to 1 - T's rows, .75.
    maps = translator_maps()
    cross = attention_rollout(maps, kind="cross")
    np.testing.assert_allclose(cross, [[0.3125, 0.4375], [0.25, 0.5]], atol=1e-6)
    np.testing.assert_allclose(
        attention_rollout(maps, kind="encoder"), [[0.75, 0.25], [0.25, 0.75]], atol=1e-6
    )


@pytest.fixture(scope="module")
def translator():
    return Translator.from_preset(
        "tiny", source_length=16, target_length=8, num_encoder_layers=2, num_decoder_layers=2
    )


def test_rows_sum_to_one_on_all_three_model_types(translator):
    generator = Generator.from_preset("tiny", sequence_length=16, num_layers=2)
    classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=2)
    (generated,) = attention_maps(generator, ["abc"])
    rollout = attention_rollout(generated)
    np.testing.assert_allclose(rollout.sum(-1), 1.0, atol=1e-5)
    assert np.all(np.triu(rollout, k=1) == 0)  # causal: no path to the future
    classified = attention_maps(classifier, ["hi", "a longer one"])
    rollouts = attention_rollout(classified)  # a list in, a list out
    assert [r.shape for r in rollouts] == [(4, 4), (14, 14)]
    for r in rollouts:
        np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-5)
    (translated,) = attention_maps(translator, ["one two"], targets=["eins"])
    for kind in ("encoder", "decoder"):
        r = attention_rollout(translated, kind=kind)
        assert r.shape == (len(translated.query_tokens(kind)),) * 2
        np.testing.assert_allclose(r.sum(-1), 1.0, atol=1e-5)
    cross = attention_rollout(translated, kind="cross")
    assert cross.shape == (len(translated.tokens["target"]), len(translated.tokens["source"]))
    # Each cross-attention keeps the residual share 0.5 of a row on what it
    # had (self-attention moves mass among targets and sources, keeping row
    # sums), so after two decoder layers 0.5² of each row is on the targets
    # and exactly 1 - 0.25 on the source.
    assert np.all(cross >= 0)
    np.testing.assert_allclose(cross.sum(-1), 0.75, atol=1e-5)


def test_bad_input_is_named(translator):
    (translated,) = attention_maps(translator, ["one"], targets=["eins"])
    with pytest.raises(ValueError, match="kind.*no default"):
        attention_rollout(translated)  # a translator has two self-attention stacks
    with pytest.raises(ValueError, match="kind"):
        attention_rollout(translated, kind="self")
    with pytest.raises(ValueError, match="maps"):
        attention_rollout(np.eye(3))
    maps = self_maps([LAYER_1, LAYER_2], head_counts=[1, 2])
    with pytest.raises(ValueError, match="residual"):
        attention_rollout(maps, residual=1.5)
    with pytest.raises(ValueError, match="head_reduction"):
        attention_rollout(maps, head_reduction="median")
    # Maps whose parts disagree: a head count per layer missing, a token list
    # shorter than the attention, scores that are not probabilities.
    with pytest.raises(ValueError, match=r"head_counts\['encoder'\].*one count"):
        attention_rollout(self_maps([LAYER_1, LAYER_2], head_counts=[1]))
    short = self_maps([LAYER_1, LAYER_2], head_counts=[1, 2])
    short.tokens["tokens"] = ["t0", "t1"]
    with pytest.raises(ValueError, match=r"shape \(layers, heads, 2, 2\)"):
        attention_rollout(short)
    with pytest.raises(ValueError, match="sum to one"):
        attention_rollout(self_maps(np.multiply([LAYER_1, LAYER_2], 3.0), head_counts=[1, 2]))
    with pytest.raises(ValueError, match="kind"):  # no cross-attention in these maps
        attention_rollout(self_maps([LAYER_1, LAYER_2], [1, 2]), kind="cross")
