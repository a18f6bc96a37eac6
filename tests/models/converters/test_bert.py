"""BERT and DistilBERT converted from keras-hub: the same ids, the same
numbers, and the keras-attn workflow (fit, LoRA, presets, export) on them.

Every keras-hub model here is built from a small config with random weights
(no download)."""

import keras
import keras_hub
import numpy as np
import pytest
import tensorflow as tf

from keras_attn.export import export
from keras_attn.export.serve_check import run_in_fresh_process
from keras_attn.models import Classifier, MaskedLanguageModel
from keras_attn.models.converters import (
    convert_bert_backbone,
    convert_bert_tokenizer,
    convert_distil_bert_backbone,
)
from keras_attn.models.encoder_backbone import EncoderBackbone
from keras_attn.models.fine_tuning import enable_lora
from keras_attn.tokenizers import Tokenizer, WordPieceTokenizer

TOLERANCE = 1e-4
MAX_LENGTH = 32
LETTERS = "abcdefghijklmnopqrstuvwxyz"

# BERT's layout: [PAD]=0, unused slots, then [UNK]=100 [CLS]=101 [SEP]=102
# [MASK]=103, then characters, suffix pieces and a few whole words.
VOCABULARY = (
    ["[PAD]"]
    + [f"[unused{i}]" for i in range(99)]
    + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list(LETTERS + LETTERS.upper() + "0123456789.,!?'-()")
    + ["##" + c for c in LETTERS + LETTERS.upper()]
    + ["the", "cat", "dog", "sat", "##s", "##ed", "caf", "é", "##é", "ü", "中", "文", "café"]
)
VOCABULARY = list(dict.fromkeys(VOCABULARY))  # "##s" is also a suffix letter

TEXTS = [
    "The cats sat, didn't they?",
    "Café au lait -- naïve (über) 中文!",
    "  dogs\tsat\n ",
    "Ωmega 3 cats",
]
PAIRS = ["a dog sat.", "中 x", "the end", "?"]

FAMILIES = ("bert", "distil_bert")


def hub_tokenizer(family, **kwargs):
    cls = {"bert": keras_hub.models.BertTokenizer,
           "distil_bert": keras_hub.models.DistilBertTokenizer}[family]
    return cls(vocabulary=VOCABULARY, **kwargs)


def as_lists(ids):
    """keras-hub's eager output (lists) or a ragged tensor, as lists."""
    ids = ids.to_list() if hasattr(ids, "to_list") else ids
    return [[int(i) for i in row] for row in ids]


def randomize(model, seed):
    """Random weights everywhere, norms around 1, so that no weight copied
    to the wrong place goes unnoticed."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        value = rng.normal(0.0, 0.2, weight.shape)
        if weight.path.endswith("gamma"):
            value += 1.0
        weight.assign(value.astype("float32"))


def hub_backbone(family):
    config = dict(
        vocabulary_size=len(VOCABULARY), num_layers=2, num_heads=4, hidden_dim=32,
        intermediate_dim=64, max_sequence_length=MAX_LENGTH,
    )
    if family == "bert":
        return keras_hub.models.BertBackbone(**config)
    return keras_hub.models.DistilBertBackbone(**config)


def hub_classifier(family, num_classes=3):
    backbone = hub_backbone(family)
    if family == "bert":
        model = keras_hub.models.BertTextClassifier(
            backbone, num_classes, preprocessor=keras_hub.models.BertTextClassifierPreprocessor(
                hub_tokenizer(family, lowercase=True), sequence_length=MAX_LENGTH
            ),
        )
    else:
        model = keras_hub.models.DistilBertTextClassifier(
            backbone, num_classes,
            preprocessor=keras_hub.models.DistilBertTextClassifierPreprocessor(
                hub_tokenizer(family, lowercase=True), sequence_length=MAX_LENGTH
            ),
        )
    randomize(model, seed=len(family))
    return model


def hub_masked_lm(family):
    backbone = hub_backbone(family)
    tokenizer = hub_tokenizer(family, lowercase=True)
    if family == "bert":
        model = keras_hub.models.BertMaskedLM(
            backbone, keras_hub.models.BertMaskedLMPreprocessor(tokenizer, MAX_LENGTH)
        )
    else:
        model = keras_hub.models.DistilBertMaskedLM(
            backbone, keras_hub.models.DistilBertMaskedLMPreprocessor(tokenizer, MAX_LENGTH)
        )
    randomize(model, seed=10 + len(family))
    return model


def hub_inputs(family, inputs):
    """Our packed inputs as keras-hub's backbone takes them."""
    hub = {
        "token_ids": inputs["token_ids"].astype("int32"),
        "padding_mask": inputs["padding_mask"].astype("int32"),
    }
    if family == "bert":
        hub["segment_ids"] = inputs["segment_ids"].astype("int32")
    return hub


@pytest.fixture(scope="module", params=FAMILIES)
def converted_classifier(request):
    hub = hub_classifier(request.param)
    return request.param, hub, Classifier.from_keras_hub(hub, num_classes=3)


@pytest.fixture(scope="module", params=FAMILIES)
def converted_masked_lm(request):
    hub = hub_masked_lm(request.param)
    return request.param, hub, MaskedLanguageModel.from_keras_hub(hub)


# --------------------------------------------------------------- tokenizer


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("options", [{"lowercase": True}, {"lowercase": False},
                                     {"lowercase": True, "strip_accents": True}])
def test_tokenizer_gives_keras_hub_ids(family, options, tmp_path):
    hub = hub_tokenizer(family, **options)
    ours = convert_bert_tokenizer(hub)
    texts = TEXTS + PAIRS + ["[MASK] is literal text here", "UPPER lower ÀÉÎ"]
    expected = as_lists(hub(texts))
    assert ours.tokenize(texts).to_list() == expected
    assert any(100 in row for row in expected)  # some words are [UNK]
    assert ours.special_token_ids == {
        "pad": 0, "unk": 100, "bos": 101, "eos": 102, "sep": 102, "cls": 101, "mask": 103,
    }
    assert (ours.pad_id, ours.cls_id, ours.sep_id, ours.mask_id) == (
        hub.pad_token_id, hub.cls_token_id, hub.sep_token_id, hub.mask_token_id,
    )
    # The special tokens travel in the config, the vocabulary as an asset.
    ours.save(str(tmp_path))
    loaded = Tokenizer.from_directory(str(tmp_path))
    assert loaded.special_token_ids == ours.special_token_ids
    assert loaded.tokenize(texts).to_list() == expected


def test_tokenizer_special_tokens_are_checked():
    roles = {"pad": "[PAD]", "unk": "[UNK]", "bos": "[CLS]", "eos": "[SEP]", "sep": "[SEP]",
             "cls": "[CLS]"}
    with pytest.raises(ValueError, match="special_tokens.*missing \\['mask'\\]"):
        WordPieceTokenizer(VOCABULARY, special_tokens=roles)
    with pytest.raises(ValueError, match="vocabulary.*without .*'mask': '<mask>'"):
        WordPieceTokenizer(VOCABULARY, special_tokens={**roles, "mask": "<mask>"})
    with pytest.raises(ValueError, match="must start with the special tokens"):
        WordPieceTokenizer(VOCABULARY)  # keras-attn's own layout needs ids 0-6


def test_classifier_inputs_equal_keras_hub_preprocessing(converted_classifier):
    family, hub, ours = converted_classifier
    for columns in ((TEXTS,), (TEXTS, PAIRS)):
        segments = tuple(tf.constant(column) for column in columns)
        expected = hub.preprocessor(x=segments if len(segments) > 1 else segments[0])
        got = ours.preprocess(*columns)[0]
        names = ["token_ids", "padding_mask"] + (["segment_ids"] if family == "bert" else [])
        for name in names:
            np.testing.assert_array_equal(got[name], np.asarray(expected[name]), err_msg=name)


# --------------------------------------------------------------- numbers


def test_classifier_computes_keras_hub_numbers(converted_classifier):
    family, hub, ours = converted_classifier
    inputs, _ = ours.preprocess(TEXTS, PAIRS)  # padded rows of different lengths, 2 segments
    real = inputs["padding_mask"]
    assert real.sum(1).min() < real.sum(1).max() < real.shape[1]
    assert family != "bert" or inputs["segment_ids"].max() == 1
    hub_x = hub_inputs(family, inputs)
    ours_out = ours.backbone(inputs)
    hub_sequence = hub.backbone(hub_x)
    if family == "bert":
        np.testing.assert_allclose(
            ours_out["pooled_output"], hub_sequence["pooled_output"], atol=TOLERANCE
        )
        hub_sequence = hub_sequence["sequence_output"]
    sequence_gap = np.abs(np.asarray(ours_out["sequence_output"]) - np.asarray(hub_sequence))
    logit_gap = np.abs(np.asarray(ours(inputs)) - np.asarray(hub(hub_x)))
    print(f"{family}: sequence {sequence_gap[real].max():.2e}, logits {logit_gap.max():.2e}")
    assert sequence_gap[real].max() < TOLERANCE
    assert logit_gap.max() < TOLERANCE
    assert np.abs(np.asarray(hub(hub_x))).max() > 0.1  # the logits are not all ~0


def test_masked_lm_computes_keras_hub_numbers(converted_masked_lm):
    family, hub, ours = converted_masked_lm
    inputs = {k: v.numpy() for k, v in ours.preprocessor.fill_mask_inputs(TEXTS).items()}
    lengths = inputs["padding_mask"].sum(1)
    mask_positions = np.stack([[1, n // 2, n - 2] for n in lengths]).astype("int32")
    expected = np.asarray(hub({**hub_inputs(family, inputs), "mask_positions": mask_positions}))
    logits = np.take_along_axis(np.asarray(ours(inputs)), mask_positions[..., None], axis=1)
    gap = np.abs(logits - expected).max()
    print(f"{family} masked LM: logits {gap:.2e}")
    assert gap < TOLERANCE
    assert ours.transform_norm.epsilon == hub.masked_lm_head.layer_norm_epsilon


def test_fill_mask_reads_literal_masks_as_the_checkpoint_mask_id(converted_masked_lm):
    _, _, ours = converted_masked_lm
    filled, candidates = ours.fill_mask(["the [MASK] sat", "[MASK] dogs"], top_k=3)
    inputs = ours.preprocessor.fill_mask_inputs(["the [MASK] sat"])["token_ids"].numpy()
    assert inputs[0, :5].tolist() == [101, VOCABULARY.index("the"), 103,
                                      VOCABULARY.index("sat"), 102]
    assert [len(per_text) for per_text in candidates] == [1, 1]
    specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    assert all(token not in specials for token, _ in candidates[0][0])
    assert "[MASK]" not in filled[0] and filled[0].startswith("the ")


def test_a_shorter_sequence_length_keeps_the_numbers():
    hub = hub_classifier("bert")
    full = Classifier.from_keras_hub(hub, num_classes=3)
    short = Classifier.from_keras_hub(hub, num_classes=3, sequence_length=16)
    assert short.backbone.sequence_length == 16
    inputs = short.preprocess(TEXTS, PAIRS)[0]
    hub_logits = np.asarray(hub(hub_inputs("bert", inputs)))
    np.testing.assert_allclose(short(inputs), hub_logits, atol=TOLERANCE)
    np.testing.assert_allclose(short(inputs), full(inputs), atol=TOLERANCE)
    with pytest.raises(ValueError, match="sequence_length.*max_sequence_length"):
        Classifier.from_keras_hub(hub, num_classes=3, sequence_length=MAX_LENGTH + 1)


# ------------------------------------------------------- what converts


def test_head_is_new_unless_the_checkpoint_has_one_for_these_classes():
    hub = hub_classifier("bert", num_classes=3)
    copied = Classifier.from_keras_hub(hub, num_classes=3, label_names=["a", "b", "c"])
    np.testing.assert_array_equal(copied.head.kernel, hub.output_dense.kernel)
    assert copied.dropout == hub.dropout
    fresh = Classifier.from_keras_hub(hub, num_classes=2)
    assert fresh.head.kernel.shape == (32, 2)
    # A bare backbone needs the tokenizer given; its head is new.
    with pytest.raises(ValueError, match="needs the checkpoint's tokenizer"):
        Classifier.from_keras_hub(hub.backbone, num_classes=2)
    bare = Classifier.from_keras_hub(
        hub.backbone, num_classes=2, tokenizer=hub.preprocessor.tokenizer
    )
    np.testing.assert_array_equal(bare.backbone.pooler.kernel, hub.backbone.pooled_dense.kernel)


def test_unsupported_checkpoints_raise_naming_the_setting():
    gpt2 = keras_hub.models.GPT2Backbone(
        vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )
    with pytest.raises(ValueError, match="converts BertBackbone, DistilBertBackbone.*GPT2"):
        Classifier.from_keras_hub(gpt2, num_classes=2)
    with pytest.raises(ValueError, match="converts BertBackbone, DistilBertBackbone.*GPT2"):
        MaskedLanguageModel.from_keras_hub(gpt2)
    bert = hub_backbone("bert")
    bert.transformer_layers[1].normalize_first = True
    with pytest.raises(ValueError, match="transformer_layer_1 with normalize_first=True"):
        convert_bert_backbone(bert)
    distil = hub_backbone("distil_bert")
    distil.transformer_layers[0].activation = keras.activations.get("silu")
    with pytest.raises(ValueError, match="transformer_layer_0 with activation"):
        convert_distil_bert_backbone(distil)
    with pytest.raises(ValueError, match="must be a keras-hub BertBackbone"):
        convert_bert_backbone(distil)
    with pytest.raises(ValueError, match="pooler_activation"):
        EncoderBackbone(10, 8, 1, 2, 8, 16, pooler_activation="gelu")


# -------------------------------------------------------------- workflow


def test_converted_classifier_fine_tunes_fully_and_with_lora():
    hub = hub_classifier("bert", num_classes=2)
    texts, labels = ["the cat sat", "the dog sat"] * 8, [0, 1] * 8
    for lora in (False, True):
        model = Classifier.from_keras_hub(hub, num_classes=2)
        if lora:
            enable_lora(model, rank=2)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        frozen = model.backbone.token_embedding.embeddings.numpy().copy()
        head = model.head.kernel.numpy().copy()
        dataset = model.make_dataset(texts, labels, batch_size=8, shuffle=False)
        before = model.evaluate(dataset, verbose=0, return_dict=True)["loss"]
        keras.utils.set_random_seed(0)
        model.fit(dataset, epochs=3, verbose=0)
        after = model.evaluate(dataset, verbose=0, return_dict=True)["loss"]
        assert np.isfinite(after) and after < before
        assert not np.allclose(model.head.kernel.numpy(), head)
        embeddings_moved = not np.allclose(model.backbone.token_embedding.embeddings, frozen)
        assert embeddings_moved != lora  # LoRA freezes the backbone's own weights


def test_converted_masked_lm_trains_on_checkpoint_ids():
    model = MaskedLanguageModel.from_keras_hub(hub_masked_lm("bert"), mask_rate=0.5)
    dataset = model.make_dataset(TEXTS * 4, batch_size=8)
    inputs, labels = next(iter(dataset))
    selected = labels.numpy() != model.tokenizer.pad_id
    assert selected.any()
    assert not np.isin(labels.numpy()[selected], model.tokenizer.special_ids).any()
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(dataset, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


def test_masked_lm_labels_use_the_tokenizers_pad_id():
    # A vocabulary whose [PAD] is not id 0: unselected labels are its id and
    # the loss skips them.
    vocabulary = ["[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[PAD]"] + list(LETTERS)
    roles = {"pad": "[PAD]", "unk": "[UNK]", "bos": "[CLS]", "eos": "[SEP]", "sep": "[SEP]",
             "cls": "[CLS]", "mask": "[MASK]"}
    tokenizer = WordPieceTokenizer(vocabulary, special_tokens=roles)
    model = MaskedLanguageModel.from_preset(
        "tiny", tokenizer=tokenizer, sequence_length=12, num_layers=1, mask_rate=0.5
    )
    inputs, labels = model.preprocessor(["a b c d e f g h", "a b c"], seed=[3, 4])
    labels = labels.numpy()
    selected = labels != 5
    assert selected.any() and (labels[~selected] == 5).all()
    logits = np.asarray(model(inputs))
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    manual = -np.take_along_axis(log_probs, labels[..., None], -1)[..., 0][selected].mean()
    np.testing.assert_allclose(model.default_loss()(labels, logits), manual, rtol=1e-5)


@pytest.mark.parametrize("task", ["classifier", "masked_lm"])
def test_converted_models_round_trip_through_presets(task, tmp_path):
    if task == "classifier":
        model = Classifier.from_keras_hub(hub_classifier("bert"), num_classes=3)
        inputs = model.preprocess(TEXTS, PAIRS)[0]
    else:
        model = MaskedLanguageModel.from_keras_hub(hub_masked_lm("distil_bert"))
        inputs = {k: v.numpy() for k, v in model.preprocessor.fill_mask_inputs(TEXTS).items()}
    model.save_to_preset(str(tmp_path / task))
    loaded = type(model).from_preset(str(tmp_path / task))
    assert loaded.tokenizer.special_token_ids == model.tokenizer.special_token_ids
    assert loaded.backbone.get_config() == model.backbone.get_config()
    np.testing.assert_allclose(loaded(inputs), model(inputs), atol=1e-6)


def test_converted_classifier_serves_python_outputs(tmp_path):
    model = Classifier.from_keras_hub(hub_classifier("bert"), num_classes=3,
                                      label_names=["x", "y", "z"])
    path = str(tmp_path / "bert_classifier")
    export(model, path)
    answer = run_in_fresh_process(path, [
        ("serving_default", {"inputs": TEXTS}),
        ("classify_pairs", {"inputs": TEXTS, "text_pairs": PAIRS}),
    ])
    assert answer["leaked"] == []
    single, paired = (call["outputs"] for call in answer["results"])
    for served, (labels, probabilities) in (
        (single, model.classify(TEXTS)), (paired, model.classify(TEXTS, PAIRS)),
    ):
        assert served["labels"] == labels
        np.testing.assert_allclose(served["probabilities"], probabilities, atol=1e-5)


def test_a_preset_name_that_cannot_load_says_why_in_one_line(tmp_path):
    missing = str(tmp_path / "no_such_preset")
    with pytest.raises(OSError, match="could not load the masked LM of preset .*internet") as error:
        MaskedLanguageModel.from_keras_hub(missing)
    assert "\n" not in str(error.value)
    with pytest.raises(OSError, match="could not load the backbone of preset"):
        Classifier.from_keras_hub(missing, num_classes=2)
