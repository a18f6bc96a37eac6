import pytest

from keras_attn.recipes import validate_recipe, with_defaults

RECIPE = {
    "task": "generator",
    "preset": "tiny",
    "data": {"train": {"source": "builtin", "name": "alphabet_runs", "num_examples": 64}},
}


def test_bucketing_and_auto_precision_keys():
    recipe = with_defaults(validate_recipe(RECIPE))
    assert recipe["training"]["bucketing"] is True
    off = with_defaults(
        validate_recipe({**RECIPE, "training": {"bucketing": False, "precision": "auto"}})
    )
    assert off["training"]["bucketing"] is False and off["training"]["precision"] == "auto"
    with pytest.raises(ValueError, match="training.bucketing"):
        validate_recipe({**RECIPE, "training": {"bucketing": "sometimes"}})


def test_jit_compile_key_takes_auto_or_a_boolean():
    assert with_defaults(validate_recipe(RECIPE))["training"]["jit_compile"] == "auto"
    for value in (True, False, "auto"):
        recipe = with_defaults(validate_recipe({**RECIPE, "training": {"jit_compile": value}}))
        assert recipe["training"]["jit_compile"] == value
    for value in (1, "yes", None):
        with pytest.raises(ValueError, match=r"training\.jit_compile.*'auto', True or False"):
            validate_recipe({**RECIPE, "training": {"jit_compile": value}})
