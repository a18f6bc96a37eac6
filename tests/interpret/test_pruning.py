import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_attn.data import ClassificationData, TextData
from keras_attn.export import export
from keras_attn.interpret import (
    HeadImportance,
    head_importance,
    prune_heads,
    prune_least_important,
    pruning_curve,
)
from keras_attn.models import Classifier, Generator, MaskedLanguageModel, Translator


def _translator():
    return Translator.from_preset(
        "tiny", source_length=16, target_length=8, num_encoder_layers=2, num_decoder_layers=2,
    )


MODELS = {
    "generator": lambda: Generator.from_preset("tiny", sequence_length=16, num_layers=2),
    "classifier": lambda: Classifier.from_preset("tiny", num_classes=2, num_layers=2),
    "masked_lm": lambda: MaskedLanguageModel.from_preset("tiny", num_layers=2),
    "translator": _translator,
}
REMOVALS = {
    "generator": {"decoder": {0: [1, 3], 1: [0]}},
    "classifier": {"encoder": {0: [0], 1: [1, 2, 3]}},
    "masked_lm": {"encoder": {1: [2]}},
    "translator": {"encoder": {0: [0], 1: [1, 2]}, "decoder": {1: [3]}, "cross": {0: [0, 2]}},
}
TEXTS = {"source": ["one two three", "four"], "target": ["123", "4"]}


def _inputs(model):
    if isinstance(model, Translator):
        return model.texts_to_inputs(TEXTS["source"], targets=TEXTS["target"]).inputs
    return model.texts_to_inputs(["a short text", "longer text"]).inputs


def _masks(model, removed):
    """The backbone's head-mask arguments with 0 on the `removed` heads."""
    arguments = {}
    for kind, spec in model.attention_kinds.items():
        counts = getattr(model.backbone, spec.head_counts)
        mask = np.ones((len(counts), max(counts)), "float32")
        for layer, heads in removed.get(kind, {}).items():
            mask[layer, heads] = 0.0
        arguments[spec.head_mask_argument] = mask
    return arguments


def _logits(model, inputs, **masks):
    return np.asarray(model.logits_from_backbone(model.backbone(inputs, **masks), inputs))


@pytest.mark.parametrize("task", sorted(MODELS))
def test_pruned_model_equals_the_model_with_those_heads_masked(task):
    # A head whose mask is 0 adds nothing to its layer's output projection, so
    # dropping its weights must leave every logit as it was (up to the order
    # of float32 sums); the masked heads must matter, or this would prove
    # nothing.
    model = MODELS[task]()
    removed = REMOVALS[task]
    inputs = _inputs(model)
    masked = _logits(model, inputs, **_masks(model, removed))
    assert np.abs(masked - _logits(model, inputs)).max() > 1e-3
    pruned = prune_heads(model, removed)
    assert type(pruned) is type(model)
    np.testing.assert_allclose(np.asarray(pruned(inputs)), masked, atol=1e-5)
    # The pruned backbone's head counts are the originals minus the removed.
    for kind, spec in model.attention_kinds.items():
        before = getattr(model.backbone, spec.head_counts)
        after = getattr(pruned.backbone, spec.head_counts)
        assert after == [count - len(removed.get(kind, {}).get(layer, []))
                         for layer, count in enumerate(before)]
    assert sum(w.shape.num_elements() for w in pruned.weights) < sum(
        w.shape.num_elements() for w in model.weights)


def test_grouped_query_heads_are_pruned_group_by_group():
    # 4 query heads over 2 key/value heads: heads {0, 1} read key/value head
    # 0, heads {2, 3} head 1. Removing one head of each group keeps both
    # key/value heads and the layer still equals the masked model.
    model = Generator.from_preset("tiny", sequence_length=16, num_layers=1,
                                  num_key_value_heads=2)
    inputs = _inputs(model)
    removed = {"decoder": {0: [0, 3]}}
    pruned = prune_heads(model, removed)
    assert pruned.backbone.head_counts == [2] and pruned.backbone.num_key_value_heads == 2
    np.testing.assert_allclose(
        np.asarray(pruned(inputs)), _logits(model, inputs, **_masks(model, removed)), atol=1e-5
    )
    with pytest.raises(ValueError, match="num_key_value_heads=2.*same number of heads"):
        prune_heads(model, {"decoder": {0: [0, 1]}})


def test_pruned_translator_trains_decodes_saves_and_exports(tmp_path):
    model = _translator()
    pruned = prune_heads(model, REMOVALS["translator"])
    assert pruned.backbone.num_heads == {
        "encoder": [3, 2], "decoder": [4, 3], "cross_attention": [2, 4]}
    inputs = _inputs(pruned)
    before = np.asarray(pruned(inputs))

    # Saved and loaded as a .keras file and as a preset directory: same outputs.
    pruned.save(tmp_path / "pruned.keras")
    loaded = keras.saving.load_model(tmp_path / "pruned.keras")
    np.testing.assert_allclose(np.asarray(loaded(inputs)), before, atol=1e-6)
    pruned.save_to_preset(tmp_path / "preset")
    from_preset = Translator.from_preset(tmp_path / "preset")
    assert from_preset.backbone.cross_attention_head_counts == [2, 4]
    np.testing.assert_allclose(np.asarray(from_preset(inputs)), before, atol=1e-6)

    # Decodes, then exports (after decoding, which once broke exports) with
    # the same translations.
    greedy = pruned.translate(TEXTS["source"])
    assert len(greedy) == 2 and all(isinstance(text, str) for text in greedy)
    export(pruned, tmp_path / "export", jit_compile=False, beam_width=1)
    served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
    translations = served(inputs=tf.constant(TEXTS["source"]))["translations"].numpy()
    assert [t.decode("utf-8") for t in translations] == greedy

    # Trains: one step changes the weights and gives a finite loss.
    pruned.compile(jit_compile=False)
    dataset = pruned.make_dataset(TEXTS["source"], TEXTS["target"], batch_size=2)
    history = pruned.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert np.abs(np.asarray(pruned(inputs)) - before).max() > 0


@pytest.mark.parametrize("task", ["generator", "classifier"])
def test_pruned_generator_and_classifier_train_decode_and_round_trip(task, tmp_path):
    model = MODELS[task]()
    pruned = prune_heads(model, REMOVALS[task])
    inputs = _inputs(pruned)
    before = np.asarray(pruned(inputs))
    pruned.save(tmp_path / "pruned.keras")
    np.testing.assert_allclose(
        np.asarray(keras.saving.load_model(tmp_path / "pruned.keras")(inputs)), before, atol=1e-6)
    pruned.save_to_preset(tmp_path / "preset")
    np.testing.assert_allclose(
        np.asarray(type(model).from_preset(tmp_path / "preset")(inputs)), before, atol=1e-6)
    pruned.compile(jit_compile=False)
    if task == "generator":
        assert isinstance(pruned.generate("ab", max_new_tokens=3), str)
        dataset = pruned.make_dataset(["abcdef", "ghij"], batch_size=2)
    else:
        labels, probabilities = pruned.classify(["a good film"])
        assert probabilities.shape == (1, 2)
        dataset = pruned.make_dataset(["a good film", "a dull film"], [1, 0], batch_size=2)
    history = pruned.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def _importance(scores, counts):
    """A HeadImportance with the given per-kind score rows (NaN past counts)."""
    return HeadImportance(
        {kind: np.asarray(rows, "float64") for kind, rows in scores.items()},
        counts, normalized=True, num_batches=1,
    )


def test_least_important_heads_go_first_but_never_a_layers_last():
    # 8 heads; a share of 0.5 removes floor(0.5 * 8) = 4. Layer 0's heads are
    # the four lowest, but one must stay, so the fourth removal is layer 1's
    # lowest (0.5, head 2).
    model = MODELS["classifier"]()
    importance = _importance(
        {"encoder": [[0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.5, 0.7]]}, {"encoder": [4, 4]}
    )
    pruned, removed = prune_least_important(model, importance, 0.5)
    assert removed == {"encoder": {0: [0, 1, 2], 1: [2]}}
    assert pruned.backbone.head_counts == [1, 3]
    # share 0.3 -> floor(2.4) = 2 heads.
    assert prune_least_important(model, importance, 0.3)[1] == {"encoder": {0: [0, 1]}}
    assert prune_least_important(model, importance, 0.0)[1] == {}
    # Six can go (one stays per layer): 0.8 -> 6 is allowed, 0.9 -> 7 is not.
    assert prune_least_important(model, importance, 0.8)[0].backbone.head_counts == [1, 1]
    with pytest.raises(ValueError, match="at most 6 of the 8 heads"):
        prune_least_important(model, importance, 0.9)
    with pytest.raises(ValueError, match="share"):
        prune_least_important(model, importance, 1.0)
    other = _importance({"encoder": [[0.1, 0.2]]}, {"encoder": [2]})
    with pytest.raises(ValueError, match="computed on this model"):
        prune_least_important(model, other, 0.2)


def test_pruning_curve_reports_the_task_metric_per_share():
    model = MODELS["classifier"]()
    data = ClassificationData(["a good film", "a dull film", "fine", "bad"], [1, 0, 1, 0],
                              ["negative", "positive"])
    importance = head_importance(model, data, batch_size=2)
    curve = pruning_curve(model, data, shares=(0.0, 0.25, 0.5), importance=importance)
    assert [share for share, _ in curve] == [0.0, 0.25, 0.5]
    accuracies = [value for _, value in curve]
    assert all(0.0 <= value <= 1.0 for value in accuracies)
    # Share 0 is the model itself; share 0.5 the model prune_least_important gives.
    assert accuracies[0] == model.evaluate_data(data)[0]["accuracy"]
    half = prune_least_important(model, importance, 0.5)[0]
    assert accuracies[2] == half.evaluate_data(data)[0]["accuracy"]
    with pytest.raises(ValueError, match="increasing"):
        pruning_curve(model, data, shares=(0.5, 0.25), importance=importance)
    with pytest.raises(ValueError, match="metric.*accuracy"):
        pruning_curve(model, data, shares=(0.0,), metric="bleu", importance=importance)


def test_pruning_curve_of_a_generator_defaults_to_perplexity():
    model = MODELS["generator"]()
    data = TextData(["abcdef", "bcdefg", "cdefgh", "defghi"])
    curve = pruning_curve(model, data, shares=(0.0, 0.5),
                          evaluation_options={"samples": 0})
    assert len(curve) == 2
    perplexity = model.evaluate_data(data, {"samples": 0})[0]["perplexity"]
    np.testing.assert_allclose(curve[0][1], perplexity, rtol=1e-6)


@pytest.mark.parametrize("removal, message", [
    ({"cross": {0: [0]}}, r"attention kinds of this classifier, among \['encoder'\]"),
    ({"encoder": {2: [0]}}, r"layers must be ints in \[0, 2\)"),
    ({"encoder": {0: [4]}}, r"heads must be ints in \[0, 4\)"),
    ({"encoder": {0: [-1]}}, r"heads must be ints in \[0, 4\)"),
    ({"encoder": {1: [0, 1, 2, 3]}}, "removes all 4 heads of the layer"),
    ({"encoder": [0]}, r"must be a dict \{layer: \[heads\]\}"),
    ([("encoder", 0, 1)], "must be a dict"),
])
def test_bad_removals_are_named(removal, message):
    model = MODELS["classifier"]()
    with pytest.raises(ValueError, match=message):
        prune_heads(model, removal)
