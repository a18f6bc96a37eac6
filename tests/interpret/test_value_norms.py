"""Value-norm-weighted attention (Kobayashi et al. 2020)."""

import numpy as np
import pytest

from keras_attn.interpret import transformed_values, value_norms
from keras_attn.layers.multi_head_attention import MultiHeadAttention
from keras_attn.models import Generator, Translator


def test_weighted_values_add_up_to_the_attention_output():
    # The attention output at query i is Σ_h Σ_j α_hij f_h(x_j) + b_O, with
    # f_h(x) = (x W_V^h + b_V^h) W_O^h: the vectors whose norms are reported
    # must rebuild it exactly (also with grouped key/value heads).
    layer = MultiHeadAttention(num_heads=4, key_dim=4, num_key_value_heads=2,
                               bias_initializer="random_normal")
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype("float32")
    output, weights = layer(x, x, use_causal_mask=True, return_attention_scores=True)
    transformed = transformed_values(layer, x)  # (B, heads, keys, features)
    rebuilt = np.einsum("bnts,bnso->bto", np.asarray(weights), transformed)
    rebuilt += np.asarray(layer.output_dense.bias)
    np.testing.assert_allclose(rebuilt, np.asarray(output), atol=1e-5)


def test_value_norms_of_a_generator_by_the_definition():
    model = Generator.from_preset("tiny", sequence_length=16, num_layers=2)
    (maps,) = value_norms(model, ["abc"])
    batch = model.texts_to_inputs(["abc"])
    outputs = model.backbone(batch.inputs, return_attention_scores=True,
                             return_block_inputs=True)
    block = model.backbone.blocks[1]
    values = block.self_attention_norm(outputs["block_inputs"][1])  # pre-norm blocks
    # By hand from the raw kernels: v = x W_V + b_V, f = v W_O^h, norm·α.
    attention = block.self_attention
    v = np.einsum("bsd,dnh->bsnh", np.asarray(values), np.asarray(attention.value_dense.kernel))
    v += np.asarray(attention.value_dense.bias)
    f = np.einsum("bsnh,nho->bnso", v, np.asarray(attention.output_dense.kernel))
    alpha = np.asarray(outputs["attention_scores"][1])
    expected = alpha * np.linalg.norm(f, axis=-1)[:, :, None, :]
    np.testing.assert_allclose(maps.attention["decoder"][1], expected[0], rtol=1e-4, atol=1e-6)
    assert maps.attention["decoder"].shape == (2, 4, 4, 4)


def test_heads_summed_and_a_translator():
    model = Translator.from_preset(
        "tiny", source_length=16, target_length=8, num_encoder_layers=1, num_decoder_layers=2,
        num_heads={"encoder": [4], "decoder": [4, 4], "cross_attention": [4, 2]},
    )
    (each,) = value_norms(model, ["abc"], targets=["xy"])
    (summed,) = value_norms(model, ["abc"], targets=["xy"], heads="sum")
    assert each.attention["cross"].shape == (2, 4, 3, 4)
    np.testing.assert_array_equal(each.attention["cross"][1, 2:], 0.0)  # heads it lacks
    assert summed.attention["cross"].shape == (2, 1, 3, 4)
    assert summed.head_counts["cross"] == [1, 1]
    # Triangle inequality: ‖Σ_h α f_h‖ <= Σ_h ‖α f_h‖.
    for kind in ("encoder", "decoder", "cross"):
        assert (summed.attention[kind][:, 0] <= each.attention[kind].sum(1) + 1e-5).all()
    with pytest.raises(ValueError, match="heads"):
        value_norms(model, ["abc"], heads="mean")
