import keras_hub
import pytest

from keras_attn.models.converters import check_backbone_class, keras_hub_parts


def test_a_preset_name_that_cannot_load_says_why_in_one_line(tmp_path):
    missing = str(tmp_path / "no_such_preset")
    with pytest.raises(OSError, match="could not load the backbone of preset .*internet") as error:
        keras_hub_parts(missing)
    assert "\n" not in str(error.value)


def test_built_backbones_and_tasks_give_their_parts():
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=16,
        max_sequence_length=8,
    )
    assert keras_hub_parts(backbone) == (backbone, None)
    with pytest.raises(ValueError, match="preset_or_model"):
        keras_hub_parts(3)
    with pytest.raises(ValueError, match="converts BertBackbone.*GPT2Backbone"):
        check_backbone_class(backbone, {"BertBackbone": None}, "Classifier.from_keras_hub")
