"""Attention invariants as properties over generated shapes, masks, head
counts (grouped-query included), dtypes and inputs.

Each property draws inputs, not architectures: the layers come from a small
space of configurations and are built once per configuration (`_attention`,
`_decoder_block`), so a few hundred examples take seconds. Every property runs
200 examples by default and 2,000 under `pytest -m slow`.
"""

import functools

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_attn.layers.multi_head_attention import MultiHeadAttention
from keras_attn.layers.transformer_decoder_block import TransformerDecoderBlock

DEFAULT = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SLOW = settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

FEATURES = 8
KEY_DIM = 4
# (num_heads, num_key_value_heads): multi-head, grouped-query, multi-query.
HEAD_COUNTS = [(1, 1), (2, 1), (2, 2), (3, 1), (4, 2), (4, 4)]
# Float32 reference tolerance: the same computation on other inputs, so only
# the summation over more (masked, exactly zero) terms may differ.
ATOL = 1e-5


@functools.cache
def _attention(num_heads, num_key_value_heads, rotary=False, sliding_window=None,
               dtype="float32"):
    """One built layer per configuration, shared by every example."""
    layer = MultiHeadAttention(
        num_heads=num_heads,
        key_dim=KEY_DIM,
        num_key_value_heads=num_key_value_heads,
        rope_max_wavelength=10_000 if rotary else None,
        sliding_window=sliding_window,
        dtype=dtype,
        seed=num_heads * 10 + num_key_value_heads,
    )
    layer.build((None, None, FEATURES))
    return layer


@functools.cache
def _decoder_block(num_heads, num_key_value_heads, rotary, norm_first, cross):
    block = TransformerDecoderBlock(
        num_heads=num_heads,
        intermediate_dim=16,
        key_dim=KEY_DIM,
        num_key_value_heads=num_key_value_heads,
        rope_max_wavelength=10_000 if rotary else None,
        norm_first=norm_first,
        use_cross_attention=cross,
        seed=7,
    )
    block.build((None, None, FEATURES), (None, None, FEATURES) if cross else None)
    return block


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")))


def floats(shape, bound=3.0):
    return hnp.arrays(
        np.float32, shape, elements=st.floats(-bound, bound, width=32), fill=st.nothing()
    )


def masks(shape):
    return hnp.arrays(np.bool_, shape)


HEADS = st.sampled_from(HEAD_COUNTS)

# Keras warns about a softmax over one key; one key is a case worth drawing.
pytestmark = pytest.mark.filterwarnings("ignore:You are using a softmax over axis")


@st.composite
def sequences(draw, min_time=1, max_time=7, max_batch=3):
    batch = draw(st.integers(1, max_batch))
    time = draw(st.integers(min_time, max_time))
    return draw(floats((batch, time, FEATURES)))


# --------------------------------------------------------- padding invariance


@st.composite
def padding_cases(draw):
    heads = draw(HEADS)
    x = draw(sequences())
    batch, time, _ = x.shape
    mask = draw(masks((batch, time)))
    extra = draw(st.integers(0, 4))
    # Padded positions get other content, and `extra` padded positions are appended.
    garbage = draw(floats((batch, time + extra, FEATURES), bound=50.0))
    return dict(
        heads=heads, x=x, mask=mask, garbage=garbage,
        rotary=draw(st.booleans()), causal=draw(st.booleans()), scores=draw(st.booleans()),
    )


def check_padding_invariance(case):
    layer = _attention(*case["heads"], rotary=case["rotary"])
    x, mask, garbage = case["x"], case["mask"], case["garbage"]
    time = x.shape[1]
    padded_mask = np.concatenate(
        [mask, np.zeros((x.shape[0], garbage.shape[1] - time), bool)], axis=1
    )
    padded_x = np.where(padded_mask[..., None], np.pad(x, ((0, 0), (0, garbage.shape[1] - time),
                                                           (0, 0))), garbage)

    def run(inputs, input_mask):
        out = layer(
            inputs, inputs, query_mask=input_mask, value_mask=input_mask,
            use_causal_mask=case["causal"], return_attention_scores=case["scores"],
        )
        return _np(out[0] if case["scores"] else out)

    reference = run(x, mask)
    padded = run(padded_x, padded_mask)[:, :time]
    np.testing.assert_allclose(padded[mask], reference[mask], atol=ATOL, rtol=1e-5)


@DEFAULT
@given(case=padding_cases())
def test_padding_does_not_change_real_positions(case):
    check_padding_invariance(case)


@pytest.mark.slow
@SLOW
@given(case=padding_cases())
def test_padding_does_not_change_real_positions_many(case):
    check_padding_invariance(case)


# ------------------------------------------------------ no future leakage


@st.composite
def leakage_cases(draw):
    x = draw(sequences(min_time=2))
    batch, time, _ = x.shape
    cut = draw(st.integers(1, time - 1))
    future = draw(floats((batch, time - cut, FEATURES), bound=50.0))
    return dict(
        heads=draw(HEADS), x=x, cut=cut, future=future,
        key_mask=draw(masks((batch, time))),
        rotary=draw(st.booleans()),
        sliding_window=draw(st.sampled_from([None, 1, 2])),
        scores=draw(st.booleans()),
    )


def check_attention_leakage(case):
    layer = _attention(*case["heads"], rotary=case["rotary"],
                       sliding_window=case["sliding_window"])
    x, cut = case["x"], case["cut"]
    perturbed = x.copy()
    perturbed[:, cut:] = case["future"]
    key_mask = case["key_mask"]

    # Both versions in one call (rows are independent): half the calls.
    both = np.concatenate([x, perturbed])
    out = layer(both, both, value_mask=np.concatenate([key_mask, key_mask]),
                use_causal_mask=True, return_attention_scores=case["scores"])
    original, changed = np.split(_np(out[0] if case["scores"] else out)[:, :cut], 2)
    np.testing.assert_allclose(changed, original, atol=ATOL, rtol=1e-5)


@DEFAULT
@given(case=leakage_cases())
def test_attention_output_never_sees_future_tokens(case):
    """Explicit-weights path (`return_attention_scores=True`) and fused path."""
    check_attention_leakage(case)


@pytest.mark.slow
@SLOW
@given(case=leakage_cases())
def test_attention_output_never_sees_future_tokens_many(case):
    check_attention_leakage(case)


@st.composite
def block_leakage_cases(draw):
    case = draw(leakage_cases())
    batch = case["x"].shape[0]
    cross = draw(st.booleans())
    encoder = draw(floats((batch, draw(st.integers(1, 5)), FEATURES))) if cross else None
    return dict(
        case, cross=cross, encoder=encoder,
        heads=draw(st.sampled_from([(1, 1), (2, 1), (2, 2), (4, 2)])),
        norm_first=draw(st.booleans()),
    )


def check_block_leakage(case):
    block = _decoder_block(*case["heads"], case["rotary"], case["norm_first"], case["cross"])
    x, cut = case["x"], case["cut"]
    perturbed = x.copy()
    perturbed[:, cut:] = case["future"]

    encoder = case["encoder"]
    out = block(
        np.concatenate([x, perturbed]),
        None if encoder is None else np.concatenate([encoder, encoder]),
        decoder_padding_mask=np.concatenate([case["key_mask"], case["key_mask"]]),
        return_attention_scores=case["scores"],
    )
    original, changed = np.split(_np(out[0] if case["scores"] else out)[:, :cut], 2)
    np.testing.assert_allclose(changed, original, atol=ATOL, rtol=1e-5)


@DEFAULT
@given(case=block_leakage_cases())
def test_decoder_block_never_sees_future_tokens(case):
    check_block_leakage(case)


@pytest.mark.slow
@SLOW
@given(case=block_leakage_cases())
def test_decoder_block_never_sees_future_tokens_many(case):
    check_block_leakage(case)


# ------------------------------------------------ cached equals uncached


@st.composite
def cache_cases(draw):
    x = draw(sequences())
    batch, time, _ = x.shape
    # Chunk lengths that add up to `time`: a prompt then steps of any size.
    cuts = sorted(draw(st.sets(st.integers(1, time - 1), max_size=time - 1))) if time > 1 else []
    return dict(
        heads=draw(HEADS), x=x, chunks=np.diff([0, *cuts, time]).tolist(),
        slack=draw(st.integers(0, 3)), key_mask=draw(masks((batch, time))),
        rotary=draw(st.booleans()), sliding_window=draw(st.sampled_from([None, 2])),
        scores=draw(st.booleans()),
    )


def check_cached_equals_uncached(case):
    layer = _attention(*case["heads"], rotary=case["rotary"],
                       sliding_window=case["sliding_window"])
    x, key_mask = case["x"], case["key_mask"]
    batch, time, _ = x.shape
    full = layer(x, x, value_mask=key_mask, use_causal_mask=True)
    cache_length = time + case["slack"]
    cache = layer.empty_cache(batch, cache_length)
    slot_mask = np.concatenate([key_mask, np.ones((batch, case["slack"]), bool)], axis=1)
    steps, start = [], 0
    for length in case["chunks"]:
        chunk = x[:, start : start + length]
        out = layer(chunk, chunk, value_mask=slot_mask, cache=cache, cache_update_index=start,
                    use_causal_mask=True, return_attention_scores=case["scores"])
        steps.append(out[0])
        cache = out[-1]
        start += length
    np.testing.assert_allclose(
        np.concatenate([_np(s) for s in steps], axis=1), _np(full), atol=ATOL, rtol=1e-5
    )


@DEFAULT
@given(case=cache_cases())
def test_cached_decoding_equals_full_attention(case):
    check_cached_equals_uncached(case)


@pytest.mark.slow
@SLOW
@given(case=cache_cases())
def test_cached_decoding_equals_full_attention_many(case):
    check_cached_equals_uncached(case)


# ----------------------------------------------- attention rows sum to one


@st.composite
def score_cases(draw):
    x = draw(sequences())
    batch, time, _ = x.shape
    source = draw(st.integers(1, 7))
    value = draw(floats((batch, source, FEATURES)))
    return dict(
        heads=draw(HEADS), x=x, value=value,
        attention_mask=draw(masks((batch, time, source))),
        causal=draw(st.booleans()), rotary=draw(st.booleans()),
    )


def check_rows_sum_to_one(case):
    layer = _attention(*case["heads"], rotary=case["rotary"])
    x, value, attention_mask = case["x"], case["value"], case["attention_mask"]
    _, scores = layer(x, value, attention_mask=attention_mask, use_causal_mask=case["causal"],
                      return_attention_scores=True)
    scores = _np(scores)
    batch, time, source = attention_mask.shape
    assert scores.shape == (batch, case["heads"][0], time, source)
    visible = attention_mask.copy()
    if case["causal"]:
        visible &= np.tri(time, source, dtype=bool)
    visible = np.broadcast_to(visible[:, None], scores.shape)
    assert np.all(scores >= 0)
    assert np.all(scores[~visible] == 0)
    # Rows with a visible key are distributions; rows without attend to nothing.
    np.testing.assert_allclose(scores.sum(-1), visible.any(-1).astype("float32"), atol=1e-5)


@DEFAULT
@given(case=score_cases())
def test_attention_rows_sum_to_one(case):
    check_rows_sum_to_one(case)


@pytest.mark.slow
@SLOW
@given(case=score_cases())
def test_attention_rows_sum_to_one_many(case):
    check_rows_sum_to_one(case)


# ---------------------------------- finite in float16 and bfloat16, large logits

# Largest logit drawn per dtype: float16 overflows past 65504 (the query-key
# products must stay below it), bfloat16 has float32's range.
LARGEST_LOGIT = {"float16": 1e4, "mixed_float16": 1e4, "bfloat16": 1e8, "mixed_bfloat16": 1e8}


@st.composite
def low_precision_cases(draw):
    dtype = draw(st.sampled_from(sorted(LARGEST_LOGIT)))
    x = draw(sequences())
    batch, time, _ = x.shape
    source = draw(st.integers(1, 7))
    value = draw(floats((batch, source, FEATURES)))
    attention_mask = draw(masks((batch, time, source)))
    # At least one query row with every key masked.
    attention_mask[draw(st.integers(0, batch - 1)), draw(st.integers(0, time - 1))] = False
    return dict(
        dtype=dtype, heads=draw(HEADS), x=x, value=value, attention_mask=attention_mask,
        largest_logit=draw(st.floats(1.0, LARGEST_LOGIT[dtype])),
        scores=draw(st.booleans()),
    )


def _largest_logit_bound(layer, query, value):
    """An upper bound of |logit| over all heads and positions: |q||k|/sqrt(H)
    (rotations keep norms), from the layer's own weights."""
    q = np.einsum("btd,dnh->btnh", query, _np(layer.query_dense.kernel))
    k = np.einsum("bsd,dnh->bsnh", value, _np(layer.key_dense.kernel))
    q_norm = np.linalg.norm(q, axis=-1).max()
    k_norm = np.linalg.norm(k, axis=-1).max()
    return q_norm * k_norm / np.sqrt(KEY_DIM)


def check_finite_in_low_precision(case):
    layer = _attention(*case["heads"], dtype=case["dtype"])
    x, value, attention_mask = case["x"], case["value"], case["attention_mask"]
    bound = _largest_logit_bound(layer, x, value)
    # Scale the query (not the values) so the logits reach the drawn size.
    # Keys near zero bound every logit near zero whatever the query: then
    # the query is left as drawn, since scaling it by 1/bound would only
    # overflow the input itself (1e6 is inf in float16), which is not the
    # layer's to survive.
    scale = case["largest_logit"] / bound if bound > 1e-3 else 1.0
    largest_input = float(np.finfo("float16").max) / 4 if "float16" in case["dtype"] else 1e30
    scale = min(scale, largest_input / max(float(np.abs(x).max()), 1e-6))
    query = x * np.float32(scale)
    out = layer(query, value, attention_mask=attention_mask,
                return_attention_scores=case["scores"])
    output = _np(out[0] if case["scores"] else out)
    assert np.all(np.isfinite(output)), "non-finite attention output"
    no_key = ~attention_mask.any(-1)
    # A query row with no visible key attends to nothing: the output bias (zeros).
    np.testing.assert_array_equal(output[no_key], 0.0)
    if case["scores"]:
        scores = _np(out[1])
        assert np.all(np.isfinite(scores))
        np.testing.assert_array_equal(
            scores[np.broadcast_to(~attention_mask[:, None], scores.shape)], 0.0
        )
        # Weights are stored in the compute dtype: a float16 / bfloat16 row sum
        # is within a few units of its last place of 1.
        np.testing.assert_allclose(
            scores.sum(-1), np.broadcast_to(~no_key[:, None], scores.shape[:-1]).astype(float),
            atol=2e-2,
        )


@DEFAULT
@given(case=low_precision_cases())
def test_low_precision_outputs_are_finite_with_large_logits_and_masked_rows(case):
    check_finite_in_low_precision(case)


@pytest.mark.slow
@SLOW
@given(case=low_precision_cases())
def test_low_precision_outputs_are_finite_with_large_logits_and_masked_rows_many(case):
    check_finite_in_low_precision(case)
