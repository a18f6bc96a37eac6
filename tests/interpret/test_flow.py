import time

import numpy as np
import pytest

from keras_attn.interpret import AttentionMaps, attention_flow, attention_maps, attention_rollout
from keras_attn.interpret.flow import _graph_flows, maximum_flows
from keras_attn.models import Classifier, Generator, Translator


def self_maps(layers, kind="encoder"):
    attention = np.asarray(layers, dtype="float32")[:, None]  # one head per layer
    tokens = [f"t{i}" for i in range(attention.shape[-1])]
    return AttentionMaps(
        tokens={"tokens": tokens},
        attention={kind: attention},
        sequences={kind: ("tokens", "tokens")},
        head_counts={kind: [1] * len(attention)},
    )


# Three layers (bottom first) over two tokens, used raw (residual=0) as the
# capacities of the edges (l, i) -> (l - 1, j).
A1 = [[1.0, 0.0], [0.5, 0.5]]
A2 = [[0.8, 0.2], [0.0, 1.0]]
A3 = [[0.5, 0.5], [1.0, 0.0]]


def test_flow_on_a_graph_solved_by_hand():
    # From (3,0): 0.5 to (2,0) and 0.5 to (2,1).
    #   to (0,0): (3,0)->(2,0)->(1,0)->(0,0) carries 0.5 (the first edge), and
    #     (3,0)->(2,1)->(1,1)->(0,0) carries 0.5 (the first and last edges):
    #     1.0, all the source has.
    #   to (0,1): the only edge into (0,1) is (1,1)->(0,1), capacity 0.5, and
    #     (2,1) alone can feed (1,1) 0.5: 0.5.
    # From (3,1): everything goes through (2,0), capacity 1.
    #   to (0,0): (2,0)->(1,0)->(0,0) 0.8 plus (2,0)->(1,1)->(0,0) 0.2: 1.0.
    #   to (0,1): (1,1) can only be reached over (2,0)->(1,1), capacity 0.2.
    # So the flows are [[1, .5], [1, .2]]: rows sum to more than one, as each
    # pair is its own max-flow problem; normalised, [[2/3, 1/3], [5/6, 1/6]].
    maps = self_maps([A1, A2, A3])
    raw = attention_flow(maps, residual=0.0, normalize=False)
    np.testing.assert_allclose(raw, [[1.0, 0.5], [1.0, 0.2]], atol=1e-6)
    normalized = attention_flow(maps, residual=0.0)
    np.testing.assert_allclose(normalized, [[2 / 3, 1 / 3], [5 / 6, 1 / 6]], atol=1e-6)
    # Rollout adds up every path instead: A3·A2·A1 = [[.7, .3], [.9, .1]].
    np.testing.assert_allclose(
        attention_rollout(maps, residual=0.0), [[0.7, 0.3], [0.9, 0.1]], atol=1e-6
    )


def test_closed_forms_for_one_and_two_layers_match_the_graph():
    # Two layers: flow[q, k] = Σ_j min(A2[q, j], A1[j, k]) as the paths
    # through different middle tokens share no edge. With A1 and A2 above:
    #   [0, 0]: min(.8, 1) + min(.2, .5) = 1.0   [0, 1]: min(.8, 0) + min(.2, .5) = .2
    #   [1, 0]: min(0, 1) + min(1, .5) = .5      [1, 1]: min(0, 0) + min(1, .5) = .5
    two = np.array([A1, A2])
    np.testing.assert_allclose(maximum_flows(two), [[1.0, 0.2], [0.5, 0.5]], atol=1e-9)
    # And both shortcuts agree with networkx's max flow on the real graph,
    # on random residual-adjusted attention.
    rng = np.random.default_rng(0)
    for num_layers in (1, 2):
        logits = rng.normal(size=(num_layers, 6, 6)) * 2
        attention = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        layers = 0.5 * attention + 0.5 * np.eye(6)
        np.testing.assert_allclose(maximum_flows(layers), _graph_flows(layers), atol=1e-6)


def test_rows_sum_to_one_on_all_three_model_types():
    classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=3)
    generator = Generator.from_preset("tiny", sequence_length=16, num_layers=3)
    translator = Translator.from_preset(
        "tiny", source_length=16, target_length=8, num_encoder_layers=3, num_decoder_layers=1
    )
    flows = attention_flow(attention_maps(classifier, ["hi", "hello"]))
    assert [f.shape for f in flows] == [(4, 4), (7, 7)]
    (generated,) = attention_maps(generator, ["abcd"])
    flow = attention_flow(generated)
    assert np.all(np.triu(flow, k=1) == 0)  # causal: no path to later tokens
    (translated,) = attention_maps(translator, ["one two"], targets=["eins"])
    encoder = attention_flow(translated, kind="encoder")
    decoder = attention_flow(translated, kind="decoder", normalize=False)
    # One decoder layer: the flow is that layer's residual-adjusted attention.
    np.testing.assert_allclose(
        decoder, attention_rollout(translated, kind="decoder"), atol=1e-6
    )
    for f in flows + [flow, encoder, decoder]:
        np.testing.assert_allclose(f.sum(-1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="self-attention only"):
        attention_flow(translated, kind="cross")


def test_long_inputs_fail_fast_with_the_cost_and_the_way_out():
    tokens = 40
    uniform = np.full((3, tokens, tokens), 1 / tokens)
    maps = self_maps(uniform)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"1600 max-flow problems.*max_tokens=40"):
        attention_flow(maps)
    assert time.perf_counter() - start < 1.0
    with pytest.raises(ValueError, match="max_tokens"):
        attention_flow(self_maps([A1, A2, A3]), max_tokens=1)
    with pytest.raises(ValueError, match="max_tokens"):
        attention_flow(self_maps([A1, A2, A3]), max_tokens=0)
    # Two layers have the closed form and no limit.
    assert attention_flow(self_maps(uniform[:2])).shape == (tokens, tokens)
