"""The package's shape: data flows one way, with no import cycles.

Imports are read from the source (module level, as Python runs them). An
edge `a -> b` means module `a` imports module `b`; `from package import name`
counts as importing `package.name` when that is a module, else `package`; a
submodule import also imports its parent packages, as Python does.
"""

import ast
import importlib.util
import os

import keras_attn

ROOT = os.path.dirname(keras_attn.__file__)

# Each layer may import the layers to its left, never those to its right
# (utils and version are below everything).
LAYERS = [
    ("keras_attn.utils", "keras_attn.version"),
    ("keras_attn.layers",),
    ("keras_attn.tokenizers", "keras_attn.generation", "keras_attn.training", "keras_attn.data"),
    ("keras_attn.preprocessors",),
    ("keras_attn.models",),
    ("keras_attn.export", "keras_attn.recipes", "keras_attn.interpret"),
    ("keras_attn.quickstart", "keras_attn.cli"),
]


def _module_files():
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                relative = os.path.relpath(path, os.path.dirname(ROOT))[:-3]
                module = relative.replace(os.sep, ".")
                yield module.removesuffix(".__init__"), path


MODULES = dict(_module_files())


def _is_module(name):
    return name in MODULES


def _imports(module, path):
    """Modules imported at module level (not inside functions)."""
    tree = ast.parse(open(path, encoding="utf-8").read())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:
                package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
                base = importlib.util.resolve_name("." * node.level + node.module, package)
            names = [
                f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name.startswith("keras_attn"):
                found.add(name)
                found.update(_outer_packages(module, name))
    return found


def _outer_packages(module, target):
    """The packages Python initialises before `target` (its parents), except
    those `module` is itself inside (already being initialised)."""
    parts = target.split(".")
    for end in range(2, len(parts)):
        package = ".".join(parts[:end])
        if package in MODULES and not module.startswith(package + "."):
            yield package


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def _layer(module):
    for index, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return index
    return None


def test_no_import_cycles():
    # Tarjan-free check: depth-first search with colours.
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "active"
        stack.append(node)
        for target in sorted(GRAPH.get(node, ())):
            # A package's __init__ importing its own submodules is how a
            # package exposes its API; a submodule reaching back up to the
            # package it lives in is what would close a cycle.
            if node.startswith(target + ".") or target == node:
                continue
            if state.get(target) == "active":
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[node] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [])
    assert cycles == []


def test_data_flows_one_way():
    backwards = []
    for module, targets in GRAPH.items():
        source_layer = _layer(module)
        for target in targets:
            target_layer = _layer(target)
            if None not in (source_layer, target_layer) and target_layer > source_layer:
                backwards.append(f"{module} -> {target}")
    assert backwards == []


def test_the_checker_sees_real_imports():
    # The graph is read from the source: a known edge must be in it, so the
    # two tests above cannot pass by reading nothing.
    assert "keras_attn.models.task" in GRAPH["keras_attn.models.generator"]
    assert "keras_attn.preprocessors" in GRAPH["keras_attn.models.generator"]
    assert all(_layer(module) is not None for module in GRAPH if module != "keras_attn")


def test_top_level_names_and_version_import():
    import keras_attn
    from keras_attn.version import __version__

    assert keras_attn.__version__ == __version__
    namespace = {}
    exec("from keras_attn import *", namespace)  # every name in __all__ exists
    assert namespace["__version__"] == __version__
    assert namespace["MultiHeadAttention"] is keras_attn.layers.MultiHeadAttention
