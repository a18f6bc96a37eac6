"""docs/bad_inputs.md lists each bad-input case with the test that checks it:
every test it names must exist, so the catalogue cannot drift from the suite."""

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CATALOGUE = os.path.join(ROOT, "docs", "bad_inputs.md")


def _rows():
    rows = []
    for line in open(CATALOGUE, encoding="utf-8"):
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 4 and not set(cells[0]) <= {"-", " "}:
            if cells[0] != "entry point":
                rows.append(cells)
    return rows


def _test_names(path):
    tree = ast.parse(open(os.path.join(ROOT, path), encoding="utf-8").read())
    return {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}


def _references(cell):
    """`(file, test or None)` of each backquoted reference in a test cell; a
    bare `::name` refers to the file named before it."""
    references, current = [], None
    for reference in re.findall(r"`([^`]+)`", cell):
        path, _, name = reference.partition("::")
        if path:
            current = path
        references.append((current, name.split(" ")[0] or None))
    return references


def test_the_catalogue_has_at_least_sixty_cases():
    assert len(_rows()) >= 60


def test_every_named_test_exists():
    missing = []
    for entry, bad_input, _behaviour, tests in _rows():
        references = _references(tests)
        assert references, f"row without a test: {entry} | {bad_input}"
        for path, name in references:
            target = os.path.join(ROOT, path)
            if not os.path.exists(target):
                missing.append(path)
            elif name is not None and os.path.isfile(target) and name not in _test_names(path):
                missing.append(f"{path}::{name}")
    assert not missing, missing
