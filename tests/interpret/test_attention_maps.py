import numpy as np
import pytest

from keras_attn.interpret import attention_maps
from keras_attn.models import Classifier, Generator, Translator


@pytest.fixture(scope="module")
def translator():
    return Translator.from_preset(
        "tiny", source_length=16, target_length=10, num_encoder_layers=2,
        num_decoder_layers=1, num_heads={"encoder": [2, 4], "decoder": [4], "cross_attention": [4]},
    )


def test_rows_sum_to_one_and_padding_is_removed():
    model = Classifier.from_preset("tiny", num_classes=2, num_layers=2)
    texts = ["a much longer sentence, with punctuation!", "hi"]
    long, short = attention_maps(model, texts)
    assert long.attention["encoder"].shape[-1] == len(long.tokens["tokens"])
    assert short.tokens["tokens"] == ["[CLS]", "h", "i", "[SEP]"]
    assert short.attention["encoder"].shape == (2, 4, 4, 4)
    # Padding removed: the short row's real keys still carry all the mass.
    np.testing.assert_allclose(short.attention["encoder"].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(long.attention["encoder"].sum(-1), 1.0, atol=1e-5)


def test_translator_maps_over_its_translation(translator):
    (maps,) = attention_maps(translator, ["one two"])
    assert maps.kinds == ("encoder", "decoder", "cross")
    assert maps.key_tokens("cross") == maps.tokens["source"]
    assert maps.query_tokens("cross") == maps.tokens["target"]
    assert maps.head_counts["encoder"] == [2, 4]
    encoder = maps.attention["encoder"]
    # Layer 0 has two heads: the other two are zero, the real ones rows of one.
    assert np.all(encoder[0, 2:] == 0)
    np.testing.assert_allclose(encoder[0, :2].sum(-1), 1.0, atol=1e-5)
    decoder = maps.attention["decoder"]
    assert np.all(np.triu(decoder[0, 0], k=1) == 0)  # causal


def test_generator_over_a_generated_continuation():
    model = Generator.from_preset("tiny", sequence_length=32, num_layers=1)
    (maps,) = attention_maps(model, ["ab"], max_new_tokens=5)
    assert len(maps.tokens["tokens"]) == 3 + 5
    continuation = model.generate(["ab"], max_new_tokens=5, stop_token_ids=None, return_ids=True)
    ids = [model.tokenizer.id_to_token(i) for i in continuation[0]]
    assert maps.tokens["tokens"][3:] == ids
    with pytest.raises(ValueError, match="max_new_tokens"):
        attention_maps(Classifier.from_preset("tiny", num_classes=2, num_layers=1), ["a"],
                       max_new_tokens=2)


def test_unknown_kind_is_named(translator):
    (maps,) = attention_maps(translator, ["one"], targets=["eins"])
    with pytest.raises(ValueError, match="kind"):
        maps.query_tokens("self")
