"""`pad_token_id`: which id the backbones' default padding mask drops, and
which label the task losses ignore."""

import keras
import numpy as np
import pytest

from keras_attn.models import Classifier, Generator
from keras_attn.models.decoder_backbone import DecoderBackbone
from keras_attn.models.encoder_backbone import EncoderBackbone
from keras_attn.models.seq2seq_backbone import Seq2SeqBackbone
from keras_attn.models.task import dedicated_pad_id
from keras_attn.tokenizers import ByteTokenizer


def decoder(pad_token_id):
    keras.utils.set_random_seed(0)
    return DecoderBackbone(50, 8, 1, 2, 16, 32, pad_token_id=pad_token_id)


def hidden(backbone, inputs):
    return keras.ops.convert_to_numpy(backbone(inputs)["sequence_output"])


def test_the_default_mask_drops_the_padding_id_and_none_drops_nothing():
    ids = np.array([[5, 6, 7, 9, 9, 9, 9, 9]], "int32")
    mask = ids != 9
    with_pad = decoder(9)
    np.testing.assert_allclose(
        hidden(with_pad, ids), hidden(with_pad, {"token_ids": ids, "padding_mask": mask}),
        atol=1e-6,
    )
    without = decoder(None)
    without.set_weights(with_pad.get_weights())
    all_real = hidden(without, {"token_ids": ids, "padding_mask": np.ones_like(mask)})
    np.testing.assert_allclose(hidden(without, ids), all_real, atol=1e-6)
    # Id 0 is a real token without a padding id: masking it changes the result.
    zeros = np.array([[5, 0, 7, 0, 1, 2, 3, 4]], "int32")
    assert not np.allclose(hidden(without, zeros), hidden(decoder(0), zeros), atol=1e-3)


def test_cached_decoding_masks_queries_by_the_padding_id():
    ids = np.array([[5, 6, 9, 9]], "int32")
    for pad_token_id in (9, None):
        backbone = decoder(pad_token_id)
        cached, _ = backbone.call_with_cache(ids, backbone.empty_caches(1, 4), 0)
        full = hidden(backbone, {"token_ids": ids, "padding_mask": np.ones_like(ids, bool)})
        # Real queries agree with the parallel pass either way.
        np.testing.assert_allclose(keras.ops.convert_to_numpy(cached)[:, :2], full[:, :2],
                                   atol=1e-5)


def test_pad_token_id_round_trips_and_is_checked():
    for backbone in (
        decoder(None),
        EncoderBackbone(50, 8, 1, 2, 16, 32, pad_token_id=3),
        Seq2SeqBackbone(50, 50, 8, 8, 1, 1, 2, 16, 32, pad_token_id=None),
    ):
        config = backbone.get_config()
        assert type(backbone).from_config(config).pad_token_id == backbone.pad_token_id
    assert DecoderBackbone(50, 8, 1, 2, 16, 32).pad_token_id == 0
    with pytest.raises(ValueError, match="pad_token_id"):
        DecoderBackbone(50, 8, 1, 2, 16, 32, pad_token_id=50)
    with pytest.raises(ValueError, match="pad_token_id"):
        EncoderBackbone(50, 8, 1, 2, 16, 32, pad_token_id=-1)


def test_classifier_pooling_follows_the_padding_id():
    keras.utils.set_random_seed(0)
    classifier = Classifier.from_preset("tiny", num_classes=2, num_layers=1)
    ids = np.array([[5, 40, 41, 0, 0, 0]], "int32")
    mask = ids != 0
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(classifier({"token_ids": ids, "padding_mask": mask,
                                               "segment_ids": np.zeros_like(ids)})),
        keras.ops.convert_to_numpy(classifier({"token_ids": ids,
                                               "segment_ids": np.zeros_like(ids)})),
        atol=1e-6,
    )


class SharedPadTokenizer(ByteTokenizer):
    """Byte tokens whose padding id is the end id, as GPT-2's."""

    @property
    def special_token_ids(self):
        return dict(super().special_token_ids, pad=3)


def test_losses_ignore_the_padding_label_only_when_it_is_its_own_token():
    assert dedicated_pad_id(ByteTokenizer()) == 0
    assert dedicated_pad_id(SharedPadTokenizer()) is None
    generator = Generator.from_preset("tiny", sequence_length=8, num_layers=1)
    generator.compile()
    assert generator.loss.ignore_index == 0
    shared = Generator(generator.backbone, SharedPadTokenizer())
    shared.compile()
    assert shared.loss.ignore_index is None
    # Its end token stays a target; the padding after it has weight 0.
    _, targets, weights = shared.preprocessor(["ab"])
    assert targets.numpy()[0].tolist()[:3] == [104, 105, 3]
    assert weights.numpy()[0].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
