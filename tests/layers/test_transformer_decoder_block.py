import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.layers.transformer_decoder_block import TransformerDecoderBlock
from tests.harness import run_layer_checks

B, T, S, D = 2, 5, 6, 16
RNG = np.random.default_rng(0)
X = RNG.normal(size=(B, T, D)).astype("float32")
ENC = RNG.normal(size=(B, S, D)).astype("float32")
ENC_LENGTHS = (4, 6)
ENC_MASK = np.arange(S)[None, :] < np.array(ENC_LENGTHS)[:, None]  # (B, S)

CONFIGS = {
    "pre_layer_norm_relu": {"num_heads": 2, "intermediate_dim": 32},
    "cross_post_rms_gelu": {
        "num_heads": 4,
        "intermediate_dim": 24,
        "use_cross_attention": True,
        "norm_first": False,
        "normalization": "rms_norm",
        "activation": "gelu",
    },
    "cross_pre_swiglu_gqa_rope": {
        "num_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_dim": 24,
        "use_cross_attention": True,
        "activation": "swiglu",
        "rope_max_wavelength": 100,
    },
}


def _numpy(x):
    return ops.convert_to_numpy(x)


def _cross_inputs(config):
    return {"encoder_sequence": ENC} if config.get("use_cross_attention") else {}


def _num_weights(config):
    # Each attention: 4 projections x (kernel, bias), with its norm. Feed-forward:
    # 2 Dense (3 for SwiGLU) x (kernel, bias), with its norm. LayerNorm has gamma
    # and beta, RMSNorm a scale only.
    norm = 1 if config.get("normalization") == "rms_norm" else 2
    attentions = 2 if config.get("use_cross_attention") else 1
    feed_forward = 6 if config.get("activation") == "swiglu" else 4
    return attentions * (8 + norm) + feed_forward + norm


@pytest.mark.parametrize(
    "name, input_data, call_kwargs",
    [
        ("pre_layer_norm_relu", {"decoder_sequence": X}, None),
        (
            "cross_post_rms_gelu",
            {"decoder_sequence": X, "encoder_sequence": ENC, "encoder_padding_mask": ENC_MASK},
            {"return_attention_scores": True},
        ),
        (
            # One cached decoding step, the cache being a model input.
            "cross_pre_swiglu_gqa_rope",
            {
                "decoder_sequence": X[:, :1],
                "encoder_sequence": ENC,
                "self_attention_cache": np.zeros((B, 2, T, 2, 4), "float32"),
            },
            {"self_attention_cache_update_index": 0},
        ),
    ],
    ids=["self_only", "cross_scores", "cached_step"],
)
def test_layer_checks(name, input_data, call_kwargs, tmp_path):
    config = dict(CONFIGS[name], dropout=0.1, attention_dropout=0.1, seed=3)
    run_layer_checks(
        TransformerDecoderBlock,
        config,
        input_data,
        tmp_path,
        call_kwargs=call_kwargs,
        expected_output_shape=input_data["decoder_sequence"].shape,
        expected_num_trainable_weights=_num_weights(config),
        # The cache write (`ops.slice_update`) has no gradient on TensorFlow;
        # training never goes through the cached path.
        run_training="self_attention_cache" not in input_data,
    )


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("return_scores", [False, True], ids=["fused", "scores"])
def test_future_tokens_do_not_change_earlier_outputs(name, return_scores):
    block = TransformerDecoderBlock(**CONFIGS[name])
    changed = X.copy()
    changed[:, 3] = RNG.normal(size=(B, D))

    def run(x):
        out = block(x, return_attention_scores=return_scores, **_cross_inputs(CONFIGS[name]))
        return _numpy(out[0] if return_scores else out)

    before, after = run(X), run(changed)
    np.testing.assert_allclose(before[:, :3], after[:, :3], atol=1e-6)
    assert not np.allclose(before[:, 3:], after[:, 3:])


@pytest.mark.parametrize("name", ["pre_layer_norm_relu", "cross_post_rms_gelu"])
def test_future_tokens_do_not_change_earlier_outputs_with_dropout(name):
    config = dict(CONFIGS[name], dropout=0.3, attention_dropout=0.3, seed=11)
    reference = TransformerDecoderBlock(**config)
    inference = _numpy(reference(X, **_cross_inputs(config)))
    first, second = TransformerDecoderBlock(**config), TransformerDecoderBlock(**config)
    for block in (first, second):
        block.build(X.shape, ENC.shape)
        block.set_weights(reference.get_weights())
    changed = X.copy()
    changed[:, 3] = RNG.normal(size=(B, D))
    out_a = _numpy(first(X, training=True, **_cross_inputs(config)))
    out_b = _numpy(second(changed, training=True, **_cross_inputs(config)))
    assert not np.allclose(out_a, inference), "dropout was not active"
    np.testing.assert_allclose(out_a[:, :3], out_b[:, :3], atol=1e-6)
    assert not np.allclose(out_a[:, 3:], out_b[:, 3:])


@pytest.mark.parametrize("name", list(CONFIGS))
def test_right_padding_does_not_change_real_positions(name):
    config = CONFIGS[name]
    block = TransformerDecoderBlock(**config)
    lengths = (3, 5)
    dec_mask = np.arange(T)[None, :] < np.array(lengths)[:, None]
    cross = config.get("use_cross_attention")

    def run(garbage):
        x = np.where(dec_mask[..., None], X, garbage).astype("float32")
        kwargs = {}
        if cross:
            enc = np.where(ENC_MASK[..., None], ENC, -garbage).astype("float32")
            kwargs = {"encoder_sequence": enc, "encoder_padding_mask": ENC_MASK}
        return _numpy(block(x, decoder_padding_mask=dec_mask, **kwargs))

    out_a, out_b = run(50.0), run(-7.0)
    for row, length in enumerate(lengths):
        np.testing.assert_allclose(out_a[row, :length], out_b[row, :length], atol=1e-5)
        kwargs = {"encoder_sequence": ENC[row : row + 1, : ENC_LENGTHS[row]]} if cross else {}
        alone = _numpy(block(X[row : row + 1, :length], **kwargs))
        np.testing.assert_allclose(out_a[row, :length], alone[0], atol=1e-5)


def test_left_padding_does_not_change_real_positions():
    # No positional information inside the block (no rotary), so a
    # left-padded sequence must give the same outputs as the bare one.
    block = TransformerDecoderBlock(**CONFIGS["cross_post_rms_gelu"])
    pad = 2
    dec_mask = np.arange(T)[None, :] >= np.array([pad, 0])[:, None]
    x = np.where(dec_mask[..., None], X, 30.0).astype("float32")
    out = _numpy(block(x, ENC, decoder_padding_mask=dec_mask, encoder_padding_mask=ENC_MASK))
    alone = _numpy(block(X[:1, pad:], ENC[:1, : ENC_LENGTHS[0]]))
    np.testing.assert_allclose(out[0, pad:], alone[0], atol=1e-5)


def _decode_step_by_step(block, x, cache_length, cross, return_scores, padding_mask=None):
    cache = block.empty_self_attention_cache(B, cache_length)
    cross_cache = block.empty_cross_attention_cache(B, S) if cross else None
    outputs, steps = [], []
    for t in range(x.shape[1]):
        kwargs = {}
        if cross:
            kwargs = {"cross_attention_cache": cross_cache, "encoder_padding_mask": ENC_MASK}
            if t == 0:  # Fill the cross-attention cache once.
                kwargs.update(encoder_sequence=ENC, cross_attention_cache_update_index=0)
        if padding_mask is not None:
            kwargs["decoder_padding_mask"] = padding_mask
        results = list(
            block(
                x[:, t : t + 1],
                self_attention_cache=cache,
                self_attention_cache_update_index=t,
                return_attention_scores=return_scores,
                **kwargs,
            )
        )
        outputs.append(_numpy(results.pop(0)))
        if return_scores:
            steps.append({k: _numpy(v) for k, v in results.pop(0).items()})
        cache = results.pop(0)
        if cross:
            cross_cache = results.pop(0)
        assert not results
    return np.concatenate(outputs, axis=1), steps


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("return_scores", [False, True], ids=["fused", "scores"])
def test_cached_decoding_matches_full_pass(name, return_scores):
    config = CONFIGS[name]
    cross = bool(config.get("use_cross_attention"))
    block = TransformerDecoderBlock(**config)
    cross_kwargs = {"encoder_sequence": ENC, "encoder_padding_mask": ENC_MASK} if cross else {}
    full, full_scores = block(X, return_attention_scores=True, **cross_kwargs)
    cache_length = T + 2  # Unwritten slots must stay invisible.
    cached, steps = _decode_step_by_step(block, X, cache_length, cross, return_scores)
    np.testing.assert_allclose(cached, _numpy(full), atol=1e-5)
    if not return_scores:
        return
    full_self = _numpy(full_scores["self_attention"])
    assert sorted(steps[0]) == (
        ["cross_attention", "self_attention"] if cross else ["self_attention"]
    )
    for t, step in enumerate(steps):
        assert step["self_attention"].shape == (B, config["num_heads"], 1, cache_length)
        np.testing.assert_allclose(
            step["self_attention"][:, :, 0, :T], full_self[:, :, t], atol=1e-5
        )
        np.testing.assert_array_equal(step["self_attention"][:, :, 0, T:], 0.0)
        if cross:
            np.testing.assert_allclose(
                step["cross_attention"][:, :, 0],
                _numpy(full_scores["cross_attention"])[:, :, t],
                atol=1e-5,
            )


def test_compiled_cached_decoding_with_left_padding_matches_full_pass():
    # The step runs under XLA with a traced cache index; the padding mask
    # covers the cache slots (a left-padded prompt in row 0).
    block = TransformerDecoderBlock(**CONFIGS["cross_post_rms_gelu"])
    dec_mask = np.arange(T)[None, :] >= np.array([2, 0])[:, None]
    full = _numpy(block(X, ENC, decoder_padding_mask=dec_mask, encoder_padding_mask=ENC_MASK))
    _, cross_cache = block(
        X[:, :0],
        ENC,
        encoder_padding_mask=ENC_MASK,
        cross_attention_cache=block.empty_cross_attention_cache(B, S),
        cross_attention_cache_update_index=0,
    )

    @tf.function(jit_compile=True)
    def step(token, cache, index):
        output, cache, _ = block(
            token,
            decoder_padding_mask=dec_mask,
            encoder_padding_mask=ENC_MASK,
            self_attention_cache=cache,
            self_attention_cache_update_index=index,
            cross_attention_cache=cross_cache,
        )
        return output, cache

    cache = block.empty_self_attention_cache(B, T)
    outputs = []
    for t in range(T):
        output, cache = step(X[:, t : t + 1], cache, tf.constant(t))
        outputs.append(_numpy(output))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, atol=1e-5)


def test_cross_head_mask():
    block = TransformerDecoderBlock(**CONFIGS["cross_post_rms_gelu"])
    off = np.zeros(4, "float32")
    out_a = _numpy(block(X, ENC, cross_head_mask=off))
    out_b = _numpy(block(X, -ENC, cross_head_mask=off))
    np.testing.assert_allclose(out_a, out_b, atol=1e-6)
    assert not np.allclose(_numpy(block(X, ENC)), _numpy(block(X, -ENC)))
    self_off = _numpy(block(X, ENC, head_mask=off))
    assert not np.allclose(self_off, _numpy(block(X, ENC)))


def test_keras_mask_is_used_and_passed_on():
    tokens = np.array([[3, 1, 4, 0, 0], [5, 9, 2, 6, 0]])
    embedding = keras.layers.Embedding(10, D, mask_zero=True)
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=32)
    inputs = keras.Input((T,), dtype="int32")
    model = keras.Model(inputs, block(embedding(inputs)))
    result = model(tokens)
    np.testing.assert_array_equal(_numpy(result._keras_mask), tokens != 0)
    explicit = block(embedding(tokens), decoder_padding_mask=tokens != 0)
    np.testing.assert_allclose(_numpy(result), _numpy(explicit), atol=1e-6)


def test_missing_encoder_input():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=8, use_cross_attention=True)
    with pytest.raises(ValueError, match="`encoder_sequence`"):
        block(X)
    block(X, ENC)
    cache = block.empty_cross_attention_cache(B, S)
    with pytest.raises(ValueError, match="`encoder_sequence`"):
        block(X, cross_attention_cache=cache, cross_attention_cache_update_index=0)


@pytest.mark.parametrize("argument", ["encoder_sequence", "cross_attention_cache"])
def test_encoder_input_without_cross_attention(argument):
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=8)
    value = ENC if argument == "encoder_sequence" else np.zeros((B, 2, S, 2, 8), "float32")
    with pytest.raises(ValueError, match=f"`{argument}`.*use_cross_attention"):
        block(X, **{argument: value})
    block(X)
    with pytest.raises(ValueError, match="use_cross_attention"):
        block.empty_cross_attention_cache(B, S)


def test_bad_cache_arguments():
    block = TransformerDecoderBlock(num_heads=2, intermediate_dim=8)
    with pytest.raises(ValueError, match="`empty_self_attention_cache`"):
        block.empty_self_attention_cache(B, T)
    block(X)
    cache = block.empty_self_attention_cache(B, T + 1)
    with pytest.raises(ValueError, match="`self_attention_cache_update_index`"):
        block(X[:, :1], self_attention_cache=cache)
    with pytest.raises(ValueError, match="`decoder_padding_mask`"):
        block(
            X[:, :1],
            self_attention_cache=cache,
            self_attention_cache_update_index=0,
            decoder_padding_mask=np.ones((B, T), bool),
        )
    with pytest.raises(ValueError, match="`cross_attention_cache_update_index`"):
        TransformerDecoderBlock(num_heads=2, intermediate_dim=8, use_cross_attention=True)(
            X, ENC, cross_attention_cache_update_index=0
        )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"num_heads": 2, "intermediate_dim": 8, "activation": "swish"}, "activation"),
        ({"num_heads": 2, "intermediate_dim": 8, "normalization": "rms"}, "normalization"),
        ({"num_heads": 2, "intermediate_dim": -1}, "intermediate_dim"),
        ({"num_heads": 2, "intermediate_dim": 8, "rope_max_wavelength": 0}, "rope_max_wavelength"),
    ],
)
def test_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=f"`{name}`"):
        TransformerDecoderBlock(**kwargs)


def test_hidden_dim_not_divisible_by_num_heads():
    with pytest.raises(ValueError, match="`num_heads`"):
        TransformerDecoderBlock(num_heads=3, intermediate_dim=8)(X)


def test_cross_attention_num_heads_sets_the_cross_attention_heads(tmp_path):
    config = dict(CONFIGS["cross_post_rms_gelu"], cross_attention_num_heads=2, key_dim=4)
    block = TransformerDecoderBlock(**config)
    output, scores = block(X, ENC, return_attention_scores=True)
    assert scores["self_attention"].shape == (B, 4, T, T)
    assert scores["cross_attention"].shape == (B, 2, T, S)
    assert block.cross_attention.query_dense.kernel.shape == (D, 2, 4)
    assert block.get_config()["cross_attention_num_heads"] == 2
    assert TransformerDecoderBlock(**CONFIGS["cross_post_rms_gelu"]).get_config()[
        "cross_attention_num_heads"
    ] == 4
    run_layer_checks(
        TransformerDecoderBlock,
        config,
        {"decoder_sequence": X, "encoder_sequence": ENC},
        tmp_path,
        expected_output_shape=(B, T, D),
        # Fewer cross-attention heads change the kernels' shapes, not their number.
        expected_num_trainable_weights=_num_weights(config),
    )


def test_bad_cross_attention_num_heads():
    with pytest.raises(ValueError, match="`cross_attention_num_heads`.*num_key_value_heads"):
        TransformerDecoderBlock(
            num_heads=4, num_key_value_heads=2, cross_attention_num_heads=3, intermediate_dim=8,
            use_cross_attention=True,
        )
    with pytest.raises(ValueError, match="`cross_attention_num_heads`"):
        TransformerDecoderBlock(
            num_heads=2, cross_attention_num_heads=3, intermediate_dim=8, use_cross_attention=True
        )(X, ENC)


def test_rope_scaling_factor_reaches_the_rotary_embedding_and_round_trips(tmp_path):
    config = {"num_heads": 4, "num_key_value_heads": 2, "intermediate_dim": 24,
              "rope_max_wavelength": 100}
    plain = TransformerDecoderBlock(**config)
    scaled = TransformerDecoderBlock(**config, rope_scaling_factor=4.0)
    plain(X), scaled(X)
    scaled.set_weights(plain.get_weights())
    assert scaled.self_attention._rotary.scaling_factor == 4.0
    # Position 0 has angle 0 whatever the scaling; later positions differ.
    np.testing.assert_allclose(ops.convert_to_numpy(scaled(X))[:, 0],
                               ops.convert_to_numpy(plain(X))[:, 0], atol=1e-6)
    assert not np.allclose(ops.convert_to_numpy(scaled(X))[:, 1:],
                           ops.convert_to_numpy(plain(X))[:, 1:], atol=1e-4)
    clone = TransformerDecoderBlock.from_config(scaled.get_config())
    assert clone.get_config()["rope_scaling_factor"] == 4.0
    path = str(tmp_path / "block.keras")
    keras.Sequential([keras.Input((T, D)), scaled]).save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(ops.convert_to_numpy(restored(X)),
                               ops.convert_to_numpy(scaled(X)), atol=1e-6)
    with pytest.raises(ValueError, match="rope_scaling_factor"):
        TransformerDecoderBlock(**config, rope_scaling_factor=0)
