"""Runs the code in the docs pages and the README's API tour, and checks
what the pages claim about the API.

Each page's ```python blocks run in order in one namespace, in a fresh
temporary folder, as a reader would paste them. A block preceded by the line
`<!-- docs-test: skip (downloads) -->` is not run: only blocks that download
(a keras-hub checkpoint or a TensorFlow Datasets split) may carry it.
"""

import importlib
import os
import re

import keras
import pytest
import yaml

from keras_attn.recipes import RECIPE_SCHEMA, validate_recipe

# The pages' examples share nothing: an isolated run spreads them over the workers.
pytestmark = pytest.mark.spread_across_workers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
SKIP_MARK = "<!-- docs-test: skip (downloads) -->"
DOWNLOADS = ("from_keras_hub(", "download=True")

# The packages each page documents: every public name of them must appear.
PAGES = {
    "layers.md": ["keras_attn.layers"],
    "models.md": ["keras_attn.models", "keras_attn.preprocessors", "keras_attn.generation"],
    "data_and_recipes.md": [
        "keras_attn.data",
        "keras_attn.tokenizers",
        "keras_attn.training",
        "keras_attn.recipes",
    ],
}
BLOCK = re.compile(
    r"^(?P<mark>" + re.escape(SKIP_MARK) + r"\n)?```(?P<lang>\w+)\n(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)


def read(path):
    with open(path, encoding="utf-8") as file:
        return file.read()


def code_blocks(text, lang="python"):
    """`(code, skipped, line)` of every fenced block of `lang`, in order."""
    return [
        (match["code"], bool(match["mark"]), text.count("\n", 0, match.start("code")) + 1)
        for match in BLOCK.finditer(text)
        if match["lang"] == lang
    ]


def run_blocks(blocks, name, folder, monkeypatch):
    monkeypatch.chdir(folder)
    keras.utils.set_random_seed(0)
    namespace = {"__name__": "__docs__"}
    ran = 0
    for code, skipped, line in blocks:
        if skipped:
            continue
        # Line numbers in tracebacks are the page's own.
        exec(compile("\n" * (line - 1) + code, name, "exec"), namespace)  # noqa: S102
        ran += 1
    return ran


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_examples_run(page, tmp_path, monkeypatch):
    path = os.path.join(DOCS, page)
    blocks = code_blocks(read(path))
    for code, skipped, line in blocks:
        if skipped:
            assert any(call in code for call in DOWNLOADS), (
                f"{page}:{line}: a block marked 'skip (downloads)' that downloads nothing"
            )
    assert run_blocks(blocks, path, tmp_path, monkeypatch) >= 3


def test_skip_mark_only_before_code():
    # A mistyped mark would leave a downloading block running (and failing
    # offline); a mark anywhere but right before a block would skip nothing.
    for page in PAGES:
        text = read(os.path.join(DOCS, page))
        marks = text.count("docs-test:")
        assert marks == sum(skipped for _, skipped, _ in code_blocks(text)), page


def readme_section(title):
    text = read(os.path.join(ROOT, "README.md"))
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else None]


def test_readme_api_tour_runs(tmp_path, monkeypatch):
    blocks = code_blocks(readme_section("API tour"))
    assert len(blocks) == 1 and not blocks[0][1]
    code = blocks[0][0]
    # The tour goes layer -> backbone -> task -> fit -> decode -> export -> explain.
    for step in ("MultiHeadAttention(", "Backbone(", ".fit(", ".generate(", ".translate(",
                 ".classify(", "export(", "explain("):
        assert step in code, step
    run_blocks(blocks, "README.md (API tour)", tmp_path, monkeypatch)
    assert os.path.isfile(tmp_path / "exports" / "sentiment" / "saved_model.pb")
    assert os.path.getsize(tmp_path / "report.html") > 1000


def test_readme_starts_with_its_two_commands():
    text = read(os.path.join(ROOT, "README.md"))
    assert code_blocks(text, "bash")[:2] == [
        ("pip install . && keras-attn quickstart\n", False, 9),
        ('pip install ".[test]" && python -m pytest\n', False, 15),
    ]
    assert text.index("```bash") < text.index("```python")


def public_names(package):
    module = importlib.import_module(package)
    return [name for name in module.__all__ if not name.startswith("__")]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page_names_every_public_name(page):
    text = read(os.path.join(DOCS, page))
    missing = [
        f"{package}.{name}"
        for package in PAGES[page]
        for name in public_names(package)
        if not re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)
    ]
    assert not missing, f"{page} does not mention {missing}"


def schema_has(dotted):
    fields = RECIPE_SCHEMA
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        if fields is None or part not in fields:
            return False
        field = fields[part]
        if part == "model" and depth == 0:
            return True  # free mapping: the preset's own arguments
        if dotted.startswith("data.") and depth == 1:
            return True  # a load_dataset spec, checked by keras_attn.data
        fields = getattr(field.check, "fields", None)
    return True


def test_recipe_keys_on_the_page_exist():
    text = read(os.path.join(DOCS, "data_and_recipes.md"))
    sections = "|".join(RECIPE_SCHEMA)
    keys = set(re.findall(rf"`((?:{sections})(?:\.\w+)+)`", text))
    assert len(keys) > 20, keys
    assert not [key for key in sorted(keys) if not schema_has(key)]
    # The check itself must be able to fail.
    assert not schema_has("training.epoch") and not schema_has("evaluation.beam")


def test_recipes_on_the_page_are_valid():
    text = read(os.path.join(DOCS, "data_and_recipes.md"))
    recipes = [yaml.safe_load(code) for code, _, _ in code_blocks(text, "yaml")]
    assert recipes
    for recipe in recipes:
        validate_recipe(recipe, source="docs/data_and_recipes.md")


def test_docs_index_lists_every_page_in_order():
    index = read(os.path.join(DOCS, "README.md"))
    linked = re.findall(r"\]\((\w+\.md)\)", index)
    pages = sorted(
        name for name in os.listdir(DOCS) if name.endswith(".md") and name != "README.md"
    )
    assert sorted(linked) == pages
    assert linked[:3] == ["layers.md", "models.md", "data_and_recipes.md"]
    assert "(docs/README.md)" in read(os.path.join(ROOT, "README.md"))
