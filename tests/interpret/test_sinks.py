import numpy as np
import pytest

from keras_attn.interpret import AttentionMaps, attention_maps, attention_sinks, sinks_from_maps
from keras_attn.models import Generator, Translator


def self_maps(attention, head_counts, kind):
    attention = np.asarray(attention, dtype="float32")
    tokens = [f"t{i}" for i in range(attention.shape[-1])]
    return AttentionMaps(
        tokens={"tokens": tokens},
        attention={kind: attention},
        sequences={kind: ("tokens", "tokens")},
        head_counts={kind: list(head_counts)},
    )


ALL_ON_FIRST = [[1, 0, 0], [1, 0, 0], [1, 0, 0]]
UNIFORM_CAUSAL = [[1, 0, 0], [1 / 2, 1 / 2, 0], [1 / 3, 1 / 3, 1 / 3]]
ZERO = np.zeros((3, 3))


def test_causal_shares_against_the_uniform_baseline_by_hand():
    # Layer 0: head 0 puts everything on the first token (share 1 at every
    # query); head 1 attends uniformly to what it sees, 1, 1/2, 1/3 on the
    # first token: share (1 + 1/2 + 1/3) / 3 = 11/18, which is the causal
    # baseline itself, so its ratio is 1 and head 0's is 18/11.
    # Layer 1 has one head (the second is padding), all on the first token.
    maps = self_maps(
        [[ALL_ON_FIRST, UNIFORM_CAUSAL], [ALL_ON_FIRST, ZERO]], head_counts=[2, 1],
        kind="decoder",
    )
    sinks = sinks_from_maps(maps)
    assert sinks.kind == "decoder" and sinks.queries == 3
    assert sinks.baseline == pytest.approx(11 / 18)
    np.testing.assert_allclose(sinks.share[0], [1, 11 / 18], atol=1e-6)
    np.testing.assert_allclose(sinks.ratio[0], [18 / 11, 1], atol=1e-6)
    assert sinks.share[1, 0] == pytest.approx(1) and np.isnan(sinks.share[1, 1])
    np.testing.assert_allclose(sinks.layer_share, [(1 + 11 / 18) / 2, 1], atol=1e-6)


def test_bidirectional_shares_pool_every_query_of_every_text():
    # Text A, 2 tokens attending uniformly: 1/2 on the first at both queries.
    # Text B, 4 tokens all on the first: 1 at all four queries.
    # Pooled over the 6 queries: share (2·1/2 + 4·1) / 6 = 5/6; baseline
    # (2·1/2 + 4·1/4) / 6 = 1/3 (uniform over all keys); ratio 5/2.
    short = self_maps(np.full((1, 1, 2, 2), 0.5), [1], kind="encoder")
    long = self_maps(np.tile([1.0, 0, 0, 0], (1, 1, 4, 1)), [1], kind="encoder")
    sinks = sinks_from_maps([short, long])
    assert sinks.queries == 6
    assert sinks.baseline == pytest.approx(1 / 3)
    np.testing.assert_allclose(sinks.share, [[5 / 6]], atol=1e-6)
    np.testing.assert_allclose(sinks.ratio, [[2.5]], atol=1e-6)


def test_generator_and_translator_end_to_end():
    generator = Generator.from_preset("tiny", sequence_length=16, num_layers=2)
    sinks = attention_sinks(generator, ["abc", "hello"])
    # Queries of 4 and 6 tokens ([BOS] + characters), causal baseline pooled.
    harmonic = sum(1 / (i + 1) for i in range(4)) + sum(1 / (i + 1) for i in range(6))
    assert sinks.queries == 10 and sinks.baseline == pytest.approx(harmonic / 10)
    maps = attention_maps(generator, ["abc", "hello"])
    first_key = np.concatenate([m.attention["decoder"][..., 0] for m in maps], axis=-1)
    np.testing.assert_allclose(sinks.share, first_key.mean(-1), atol=1e-6)
    assert np.all((sinks.share > 0) & (sinks.share <= 1))

    translator = Translator.from_preset(
        "tiny", source_length=16, target_length=8, num_encoder_layers=1, num_decoder_layers=1
    )
    cross = attention_sinks(translator, ["one two"], kind="cross", targets=["eins"])
    source_length = len(attention_maps(translator, ["one two"], ["eins"])[0].tokens["source"])
    assert cross.kind == "cross" and cross.baseline == pytest.approx(1 / source_length)
    with pytest.raises(ValueError, match="kind"):
        attention_sinks(translator, ["one"], targets=["eins"])  # three kinds: name one


def test_maps_of_different_models_are_refused():
    one_layer = self_maps([[UNIFORM_CAUSAL]], [1], kind="decoder")
    two_layers = self_maps([[UNIFORM_CAUSAL], [UNIFORM_CAUSAL]], [1, 1], kind="decoder")
    with pytest.raises(ValueError, match="one model"):
        sinks_from_maps([one_layer, two_layers])
    encoder = self_maps([[np.full((3, 3), 1 / 3)]], [1], kind="encoder")
    with pytest.raises(ValueError, match="one kind of model"):
        sinks_from_maps([one_layer, encoder])
