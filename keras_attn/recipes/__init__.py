"""Recipes: one YAML file describes a whole training run (task, preset,
tokenizer, data, training and evaluation settings); `train_recipe` carries it
out and `evaluate_model` scores a saved model again.

```python
from keras_attn.recipes import apply_overrides, load_recipe, train_recipe

recipe = load_recipe("zoo/translator_tiny_number_words.yaml")
recipe = apply_overrides(recipe, {"training.epochs": 2})
record = train_recipe(recipe, "runs/number_words")   # preset/, metrics.json, ...
record["metrics"]["exact_match"]
```

The `keras-attn train / evaluate` commands are thin wrappers of these
functions; `zoo/` holds ready-made recipes. The schema is documented in
`keras_attn.recipes.schema`.
"""

from keras_attn.recipes.evaluation import evaluate_model, find_preset_dir, load_model
from keras_attn.recipes.schema import (
    RECIPE_SCHEMA,
    apply_overrides,
    load_recipe,
    parse_override,
    validate_recipe,
    with_defaults,
)
from keras_attn.recipes.train import load_recipe_data, machine_info, train_recipe

__all__ = [
    "RECIPE_SCHEMA",
    "apply_overrides",
    "evaluate_model",
    "find_preset_dir",
    "load_model",
    "load_recipe",
    "load_recipe_data",
    "machine_info",
    "parse_override",
    "train_recipe",
    "validate_recipe",
    "with_defaults",
]
