"""Runs the `>>>` examples in keras_attn's docstrings as doctests.

One test per module under `keras_attn` (found with `pkgutil`), so a wrong
example fails with doctest's report naming the module, the docstring and the
line. Examples see `keras`, `keras_attn`, `np`, `ops` and `tf` besides the
module's own names, run in a fresh temporary folder (files they write land
there) with the seed reset before each docstring, and compare output with
NORMALIZE_WHITESPACE | ELLIPSIS.

Writing examples: show shapes as `tuple(x.shape)` and values as Python or
NumPy objects (`ops.convert_to_numpy(x).tolist()`), not tensor reprs, which
differ between backends and versions. Round floats (`round(float(x), 4)`;
for float32 arrays `np.round(x.astype("float64"), 4).tolist()` or a NumPy
array `x.round(4)`), and print only values that do not depend on random
weights.
"""

import doctest
import importlib
import inspect
import pkgutil
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

import keras_attn

OPTIONFLAGS = doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS
EXAMPLE_GLOBALS = {"keras": keras, "keras_attn": keras_attn, "np": np, "ops": ops, "tf": tf}


def _module_names():
    # A package that fails to import is still listed (its own test then fails
    # with the error) instead of breaking the collection of this whole file.
    modules = pkgutil.walk_packages(
        keras_attn.__path__, prefix=keras_attn.__name__ + ".", onerror=lambda name: None
    )
    return sorted([keras_attn.__name__] + [info.name for info in modules])


MODULE_NAMES = _module_names()


def _doctests(module):
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = finder.find(module, module.__name__, extraglobs=EXAMPLE_GLOBALS)
    return sorted(tests, key=lambda test: test.name)


def _prompt_lines(module):
    """How many `>>>` prompts the module's source holds."""
    with open(module.__file__, encoding="utf-8") as source:
        return len(re.findall(r"^\s*>>>", source.read(), flags=re.MULTILINE))


# One module's examples share nothing with another's: an isolated run
# spreads them over the workers (models.* take half a minute each).
@pytest.mark.spread_across_workers
@pytest.mark.parametrize("module_name", MODULE_NAMES)
def test_docstring_examples(module_name, tmp_path, monkeypatch):
    module = importlib.import_module(module_name)
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=OPTIONFLAGS)
    reports = []
    failed = attempted = 0
    for test in _doctests(module):
        keras.utils.set_random_seed(0)
        result = runner.run(test, out=reports.append)
        failed += result.failed
        attempted += result.attempted
    assert failed == 0, "".join(reports)
    # A `>>>` the finder cannot see (e.g. on an object imported from elsewhere)
    # would never run; every prompt in the source must be an example that ran.
    assert attempted == _prompt_lines(module), (
        f"{module_name} has {_prompt_lines(module)} `>>>` lines but doctest ran "
        f"{attempted} examples"
    )


def test_examples_are_found():
    # The runner must not pass by finding nothing.
    checked = sum(
        len(test.examples)
        for name in MODULE_NAMES
        for test in _doctests(importlib.import_module(name))
    )
    assert checked > 100, f"only {checked} docstring examples found"


PUBLIC_PACKAGES = [
    "keras_attn",
    "keras_attn.data",
    "keras_attn.export",
    "keras_attn.generation",
    "keras_attn.interpret",
    "keras_attn.layers",
    "keras_attn.models",
    "keras_attn.preprocessors",
    "keras_attn.recipes",
    "keras_attn.tokenizers",
    "keras_attn.training",
]

# Public classes and functions whose docstrings have no `>>>` example yet:
# none now. A name may only go on here with a reason it cannot have one; the
# test fails when a name here gains an example (take it off) and when a public
# name outside it has none.
WITHOUT_EXAMPLE = set()


def _public_objects():
    """`{dotted public name: object}` for the classes and functions the
    packages export, each object once (under its first package)."""
    found, seen = {}, set()
    for package in PUBLIC_PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name, None)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if (obj.__module__, obj.__qualname__) not in seen:
                seen.add((obj.__module__, obj.__qualname__))
                found[f"{package}.{name}"] = obj
    return found


def test_public_names_have_examples():
    public = _public_objects()
    assert len(public) > 120
    without = {name for name, obj in public.items() if ">>>" not in (obj.__doc__ or "")}
    missing = sorted(without - WITHOUT_EXAMPLE)
    assert not missing, f"no docstring example: {missing}"
    assert not WITHOUT_EXAMPLE - without, (
        f"now have examples (or are gone), take them off WITHOUT_EXAMPLE: "
        f"{sorted(WITHOUT_EXAMPLE - without)}"
    )
