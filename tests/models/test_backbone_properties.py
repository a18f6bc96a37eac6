"""Backbone invariants as properties over generated token ids, padding,
head counts (grouped-query included), position encodings and chunkings.

The backbones come from a small space of tiny configurations, each built once
(`_decoder`, `_seq2seq`) and shared by every example; the examples draw the
inputs. Inputs have fixed shapes (two rows of full length) so that each
backbone's call is traced once (`tf.function`) and reused. Every property runs
200 examples by default and 1,000 under `pytest -m slow`.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from keras_attn.models import DecoderBackbone, Seq2SeqBackbone

DEFAULT = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
SLOW = settings(
    max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

VOCABULARY = 40
SEQUENCE_LENGTH = 10
SOURCE_LENGTH = 9
TARGET_LENGTH = 8
# Every property feeds two rows (one example and its changed copy, or two
# examples) of the full length; what varies is the ids, the padding, where the
# future starts and how decoding is chunked. Fixed shapes let each backbone's
# call be traced once and reused by every example.
BATCH = 2
ATOL = 1e-5

# (num_heads, num_key_value_heads, position_encoding) of a two-block decoder:
# multi-head, grouped-query, multi-query and per-block (pruned) head counts.
DECODER_CONFIGS = [
    (4, None, "learned"),
    (4, 2, "rotary"),
    ((1, 3), 1, "sinusoidal"),
    ((2, 4), 2, "rotary"),
]
# (num_heads, position_encoding, norm_first) of a two-by-two-block seq2seq.
SEQ2SEQ_CONFIGS = [(2, "sinusoidal", True), (4, "learned", False), (1, "learned", True)]
# Chunk lengths of cached decoding (each one a traced step).
CHUNK_LENGTHS = (1, 2, 4)


@functools.cache
def _decoder(num_heads, num_key_value_heads, position_encoding, dtype="float32"):
    keras.utils.set_random_seed(11)
    return DecoderBackbone(
        vocabulary_size=VOCABULARY, sequence_length=SEQUENCE_LENGTH, num_layers=2,
        num_heads=list(num_heads) if isinstance(num_heads, tuple) else num_heads,
        hidden_dim=16, intermediate_dim=32, head_dim=4,
        num_key_value_heads=num_key_value_heads, position_encoding=position_encoding,
        dtype=dtype,
    )


@functools.cache
def _seq2seq(num_heads, position_encoding, norm_first):
    keras.utils.set_random_seed(12)
    return Seq2SeqBackbone(
        source_vocabulary_size=VOCABULARY, target_vocabulary_size=VOCABULARY,
        source_length=SOURCE_LENGTH, target_length=TARGET_LENGTH,
        num_encoder_layers=2, num_decoder_layers=2, num_heads=num_heads, hidden_dim=16,
        intermediate_dim=32, head_dim=4, position_encoding=position_encoding,
        norm_first=norm_first,
    )


def _compiled(function):
    return tf.function(function, reduce_retracing=False, autograph=False)


@functools.cache
def _decoder_call(config):
    backbone = _decoder(*config)
    return _compiled(
        lambda ids, mask: backbone({"token_ids": ids, "padding_mask": mask})["sequence_output"]
    )


@functools.cache
def _decoder_step(config):
    """`call_with_cache`, traced once per chunk length."""
    backbone = _decoder(*config)
    return _compiled(lambda ids, caches, index: backbone.call_with_cache(ids, caches, index))


@functools.cache
def _seq2seq_call(config):
    backbone = _seq2seq(*config)

    def call(source, source_mask, target):
        outputs = backbone(
            {"source_ids": source, "source_padding_mask": source_mask, "target_ids": target}
        )
        return outputs["encoder_sequence_output"], outputs["decoder_sequence_output"]

    return _compiled(call)


@functools.cache
def _seq2seq_prepare(config):
    """The encoder's outputs, source mask and cross-attention caches."""
    backbone = _seq2seq(*config)

    def prepare(source):
        encoded, source_mask = backbone.encode(source)
        return source_mask, backbone.cross_attention_caches(encoded)

    return _compiled(prepare)


@functools.cache
def _seq2seq_step(config):
    backbone = _seq2seq(*config)
    return _compiled(
        lambda ids, caches, cross_caches, source_mask, index: backbone.decode_with_cache(
            ids, caches, cross_caches, source_mask, index
        )
    )


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")))


def token_ids(shape, low=0):
    """Ids in [low, VOCABULARY); 0 is padding."""
    return hnp.arrays(np.int32, shape, elements=st.integers(low, VOCABULARY - 1))


def masks(shape):
    return hnp.arrays(np.bool_, shape)


DECODERS = st.sampled_from(DECODER_CONFIGS)
SEQ2SEQS = st.sampled_from(SEQ2SEQ_CONFIGS)


# ------------------------------------------------------ no future leakage


@st.composite
def leakage_cases(draw, length):
    """One row of ids and a copy whose tokens from `cut` on are redrawn."""
    ids = draw(token_ids((1, length)))
    cut = draw(st.integers(1, length - 1))
    perturbed = ids.copy()
    perturbed[:, cut:] = draw(token_ids((1, length - cut)))
    return np.concatenate([ids, perturbed]), cut


@st.composite
def decoder_leakage_cases(draw):
    ids, cut = draw(leakage_cases(SEQUENCE_LENGTH))
    return dict(config=draw(DECODERS), ids=ids, cut=cut)


def check_decoder_leakage(case):
    ids, cut = case["ids"], case["cut"]
    hidden = _np(_decoder_call(case["config"])(ids, ids != 0))
    np.testing.assert_allclose(hidden[1, :cut], hidden[0, :cut], atol=ATOL, rtol=1e-5)


@DEFAULT
@given(case=decoder_leakage_cases())
def test_decoder_backbone_never_sees_future_tokens(case):
    check_decoder_leakage(case)


@pytest.mark.slow
@SLOW
@given(case=decoder_leakage_cases())
def test_decoder_backbone_never_sees_future_tokens_many(case):
    check_decoder_leakage(case)


@st.composite
def seq2seq_leakage_cases(draw):
    target, cut = draw(leakage_cases(TARGET_LENGTH))
    source = np.repeat(draw(token_ids((1, SOURCE_LENGTH))), BATCH, axis=0)
    return dict(config=draw(SEQ2SEQS), target=target, cut=cut, source=source)


def check_seq2seq_leakage(case):
    target, cut, source = case["target"], case["cut"], case["source"]
    _, hidden = _seq2seq_call(case["config"])(source, source != 0, target)
    hidden = _np(hidden)
    np.testing.assert_allclose(hidden[1, :cut], hidden[0, :cut], atol=ATOL, rtol=1e-5)


@DEFAULT
@given(case=seq2seq_leakage_cases())
def test_seq2seq_decoder_never_sees_future_tokens(case):
    check_seq2seq_leakage(case)


@pytest.mark.slow
@SLOW
@given(case=seq2seq_leakage_cases())
def test_seq2seq_decoder_never_sees_future_tokens_many(case):
    check_seq2seq_leakage(case)


# --------------------------------------------------------- padding invariance


@st.composite
def padded(draw, length):
    """Two rows with one padding mask: the same ids at the real positions,
    independent ids at the padded ones (0 in the first row, anything in the
    second; a mask may also pad the whole row)."""
    mask = np.repeat(draw(masks((1, length))), BATCH, axis=0)
    ids = draw(token_ids((1, length), low=1))
    other = draw(token_ids((1, length)))
    return np.concatenate([np.where(mask[:1], ids, 0), np.where(mask[:1], ids, other)]), mask


@st.composite
def decoder_padding_cases(draw):
    ids, mask = draw(padded(SEQUENCE_LENGTH))
    return dict(config=draw(DECODERS), ids=ids, mask=mask)


def check_decoder_padding(case):
    mask = case["mask"]
    hidden = _np(_decoder_call(case["config"])(case["ids"], mask))
    np.testing.assert_allclose(hidden[1][mask[1]], hidden[0][mask[0]], atol=ATOL, rtol=1e-5)


@DEFAULT
@given(case=decoder_padding_cases())
def test_decoder_backbone_padding_does_not_change_real_positions(case):
    check_decoder_padding(case)


@pytest.mark.slow
@SLOW
@given(case=decoder_padding_cases())
def test_decoder_backbone_padding_does_not_change_real_positions_many(case):
    check_decoder_padding(case)


@st.composite
def seq2seq_padding_cases(draw):
    source, mask = draw(padded(SOURCE_LENGTH))
    target = np.repeat(draw(token_ids((1, TARGET_LENGTH))), BATCH, axis=0)
    return dict(config=draw(SEQ2SEQS), source=source, mask=mask, target=target)


def check_seq2seq_source_padding(case):
    """Source padding changes neither the encoder's real positions nor any
    decoder position."""
    mask = case["mask"]
    encoded, decoded = _seq2seq_call(case["config"])(case["source"], mask, case["target"])
    encoded, decoded = _np(encoded), _np(decoded)
    np.testing.assert_allclose(encoded[1][mask[1]], encoded[0][mask[0]], atol=ATOL, rtol=1e-5)
    np.testing.assert_allclose(decoded[1], decoded[0], atol=ATOL, rtol=1e-5)


@DEFAULT
@given(case=seq2seq_padding_cases())
def test_seq2seq_source_padding_does_not_change_outputs(case):
    check_seq2seq_source_padding(case)


@pytest.mark.slow
@SLOW
@given(case=seq2seq_padding_cases())
def test_seq2seq_source_padding_does_not_change_outputs_many(case):
    check_seq2seq_source_padding(case)


# ------------------------------------------------ cached equals uncached


@st.composite
def chunkings(draw, length):
    """Chunk lengths from CHUNK_LENGTHS adding up to `length`: a prompt, then
    steps."""
    chunks = []
    while sum(chunks) < length:
        left = length - sum(chunks)
        chunks.append(draw(st.sampled_from([c for c in CHUNK_LENGTHS if c <= left])))
    return chunks


def _run_chunks(step, ids, chunks, *arguments):
    steps, start = [], 0
    caches = arguments[0]
    for length in chunks:
        hidden, caches = step(
            ids[:, start : start + length], caches, *arguments[1:], tf.constant(start)
        )
        steps.append(_np(hidden))
        start += length
    return np.concatenate(steps, axis=1)


@st.composite
def decoder_cache_cases(draw):
    return dict(config=draw(DECODERS), ids=draw(token_ids((BATCH, SEQUENCE_LENGTH), low=1)),
                chunks=draw(chunkings(SEQUENCE_LENGTH)))


def check_decoder_cache(case):
    ids, config = case["ids"], case["config"]
    full = _np(_decoder_call(config)(ids, ids != 0))
    cached = _run_chunks(
        _decoder_step(config), ids, case["chunks"], _decoder(*config).empty_caches(BATCH)
    )
    np.testing.assert_allclose(cached, full, atol=ATOL, rtol=1e-5)


@DEFAULT
@given(case=decoder_cache_cases())
def test_decoder_backbone_cached_calls_equal_the_full_call(case):
    check_decoder_cache(case)


@pytest.mark.slow
@SLOW
@given(case=decoder_cache_cases())
def test_decoder_backbone_cached_calls_equal_the_full_call_many(case):
    check_decoder_cache(case)


@st.composite
def seq2seq_cache_cases(draw):
    return dict(
        config=draw(SEQ2SEQS), source=draw(token_ids((BATCH, SOURCE_LENGTH))),
        target=draw(token_ids((BATCH, TARGET_LENGTH), low=1)),
        chunks=draw(chunkings(TARGET_LENGTH)),
    )


def check_seq2seq_cache(case):
    config, source, target = case["config"], case["source"], case["target"]
    backbone = _seq2seq(*config)
    _, full = _seq2seq_call(config)(source, source != 0, target)
    source_mask, cross_caches = _seq2seq_prepare(config)(source)
    cached = _run_chunks(
        _seq2seq_step(config), target, case["chunks"], backbone.empty_caches(BATCH),
        cross_caches, source_mask,
    )
    np.testing.assert_allclose(cached, _np(full), atol=ATOL, rtol=1e-5)


@DEFAULT
@given(case=seq2seq_cache_cases())
def test_seq2seq_cached_decoding_equals_the_full_decode(case):
    check_seq2seq_cache(case)


@pytest.mark.slow
@SLOW
@given(case=seq2seq_cache_cases())
def test_seq2seq_cached_decoding_equals_the_full_decode_many(case):
    check_seq2seq_cache(case)


# ----------------------------------- finite under mixed precision, padded rows


@functools.cache
def _mixed_precision_call(config, dtype):
    backbone = _decoder(*config, dtype=dtype)
    return _compiled(lambda ids: backbone(ids, return_attention_scores=True))


@st.composite
def mixed_precision_cases(draw):
    ids = draw(token_ids((BATCH, SEQUENCE_LENGTH)))
    # At least one row that is padding only: its queries see no key at all.
    ids[draw(st.integers(0, BATCH - 1))] = 0
    return dict(
        dtype=draw(st.sampled_from(["mixed_float16", "mixed_bfloat16"])),
        # Grouped-query rotary and pruned multi-query: one trace per dtype each.
        config=draw(st.sampled_from(DECODER_CONFIGS[1:3])), ids=ids,
    )


def check_mixed_precision_finite(case):
    outputs = _mixed_precision_call(case["config"], case["dtype"])(case["ids"])
    for name, value in outputs.items():
        assert np.all(np.isfinite(_np(value))), f"non-finite {name}"


@DEFAULT
@given(case=mixed_precision_cases())
def test_decoder_backbone_is_finite_in_mixed_precision_with_padding_rows(case):
    check_mixed_precision_finite(case)


@pytest.mark.slow
@SLOW
@given(case=mixed_precision_cases())
def test_decoder_backbone_is_finite_in_mixed_precision_with_padding_rows_many(case):
    check_mixed_precision_finite(case)
