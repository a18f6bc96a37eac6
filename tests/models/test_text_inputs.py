"""`Task.texts_to_inputs` and `Task.logits_from_backbone`: the seam the
interpretability tools call the backbone through."""

import numpy as np
import pytest

from keras_attn.models import Classifier, Generator, MaskedLanguageModel, Translator


def tiny(task):
    if task is Translator:
        return Translator.from_preset(
            "tiny", source_length=16, target_length=10, num_encoder_layers=1,
            num_decoder_layers=1,
        )
    if task is Classifier:
        return Classifier.from_preset("tiny", num_classes=3, num_layers=1)
    if task is MaskedLanguageModel:
        return MaskedLanguageModel.from_preset("tiny", num_layers=1)
    return Generator.from_preset("tiny", sequence_length=24, num_layers=1)


TEXTS = ["Grüße, Welt!", "a", "«Ein längerer Satz.»"]


@pytest.mark.parametrize("task", [Generator, Translator, Classifier, MaskedLanguageModel])
def test_logits_from_backbone_equal_call(task):
    model = tiny(task)
    batch = model.texts_to_inputs(TEXTS)
    inputs = batch.inputs if task is not Generator else batch.inputs["token_ids"]
    outputs = model.backbone(batch.inputs, return_attention_scores=True)
    np.testing.assert_allclose(
        np.asarray(model.logits_from_backbone(outputs, batch.inputs)),
        np.asarray(model(inputs)),
        atol=1e-6,
    )
    for kind in model.attention_kinds.values():
        scores = np.asarray(outputs[kind.scores_output])
        rows = len(batch.inputs[next(iter(batch.inputs))][0])
        assert scores.shape[1] == len(TEXTS)
        assert scores.shape[0] == len(getattr(model.backbone, kind.head_counts))
        assert scores.shape[-2] <= rows


@pytest.mark.parametrize("task", [Generator, Translator, Classifier, MaskedLanguageModel])
def test_tokens_match_the_real_positions(task):
    model = tiny(task)
    batch = model.texts_to_inputs(TEXTS)
    for sequence, rows in batch.tokens.items():
        ids_key = {"tokens": "token_ids", "source": "source_ids", "target": "target_ids"}[sequence]
        ids = batch.inputs[ids_key]
        assert ids.shape[1] == max(len(row) for row in rows)  # trimmed to the longest row
        tokenizer = getattr(model, "tokenizer", None) or getattr(model, f"{sequence}_tokenizer")
        for row, tokens in zip(ids, rows):
            assert [tokenizer.id_to_token(int(i)) for i in row[: len(tokens)]] == tokens
            assert (row[len(tokens):] == tokenizer.pad_id).all()


def test_generator_appends_continuations():
    model = tiny(Generator)
    batch = model.texts_to_inputs(["ab", "x"], targets=["c", "yz"])
    assert batch.tokens["tokens"] == [["[BOS]", "a", "b", "c"], ["[BOS]", "x", "y", "z"]]


def test_generator_truncation_is_reported():
    model = tiny(Generator)
    with pytest.warns(UserWarning, match="truncated"):
        batch = model.texts_to_inputs(["x" * 40])
    assert batch.truncated["tokens"].tolist() == [41 - 24]
    assert len(batch.tokens["tokens"][0]) == 24


def test_translator_reads_given_targets_or_its_own_translation():
    model = tiny(Translator)
    given = model.texts_to_inputs(["one two"], targets=["eins zwei"])
    assert given.tokens["target"][0] == ["[BOS]"] + list("eins zwei")
    own = model.texts_to_inputs(["one two"])
    decoded = np.asarray(model.translate_ids(model.encode_sources(["one two"])[0]))[0]
    length = len(own.tokens["target"][0])
    np.testing.assert_array_equal(own.inputs["target_ids"][0][:length], decoded[:length])
    assert model.target_tokenizer.eos_id not in own.inputs["target_ids"][0]


def test_classifier_pairs_and_mismatched_targets():
    model = tiny(Classifier)
    batch = model.texts_to_inputs(["hi"], targets=["yo"])
    assert batch.tokens["tokens"][0] == ["[CLS]", "h", "i", "[SEP]", "y", "o", "[SEP]"]
    with pytest.raises(ValueError, match="text_pairs"):
        model.texts_to_inputs(["hi", "ho"], targets=["yo"])
    with pytest.raises(ValueError, match="targets"):
        tiny(Generator).texts_to_inputs(["hi", "ho"], targets=["yo"])
    with pytest.raises(ValueError, match="targets"):
        tiny(MaskedLanguageModel).texts_to_inputs(["hi"], targets=["yo"])


def test_masked_lm_reads_literal_masks():
    model = tiny(MaskedLanguageModel)
    batch = model.texts_to_inputs(["a [MASK] b"])
    assert batch.tokens["tokens"][0] == ["[CLS]", "a", " ", "[MASK]", " ", "b", "[SEP]"]
