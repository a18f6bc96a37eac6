"""Load an export the way a server would: in a new Python process that has
TensorFlow only, then call its signatures and time them."""

import json
import os
import subprocess
import sys

# Runs in a fresh interpreter. Keras and keras-attn are made unimportable
# first (TensorFlow itself imports Keras when it is installed), so a
# successful run shows the export needs neither. WordPiece exports use the
# kernels of tensorflow-text, loaded without its Python package (which
# imports Keras).
_SERVE_SCRIPT = r"""
import glob, importlib.util, json, os, sys, time
HIDDEN = ("keras", "keras_attn", "keras_hub", "keras_nlp", "tf_keras")
for name in HIDDEN:
    sys.modules[name] = None
import tensorflow as tf
path, calls, repeats = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
spec = importlib.util.find_spec("tensorflow_text")
if spec is not None:
    package = spec.submodule_search_locations[0]
    for library in sorted(glob.glob(os.path.join(package, "python", "ops", "_*.so"))):
        tf.load_op_library(library)
started = time.perf_counter()
loaded = tf.saved_model.load(path)
load_seconds = time.perf_counter() - started
results = []
for name, inputs in calls:
    if name not in loaded.signatures:
        raise SystemExit(f"no signature {name!r}; the export has {sorted(loaded.signatures)}")
    function = loaded.signatures[name]
    specs = function.structured_input_signature[1]
    args = {k: tf.constant(v, specs[k].dtype) for k, v in inputs.items()}
    seconds = []
    for _ in range(1 + repeats):
        started = time.perf_counter()
        outputs = function(**args)
        seconds.append(time.perf_counter() - started)
    result = {}
    for key, value in outputs.items():
        value = value.numpy()
        if value.dtype == object:
            result[key] = [text.decode("utf-8", "replace") for text in value.tolist()]
        else:
            result[key] = value.tolist()
    later = sorted(seconds[1:]) or seconds
    results.append({"outputs": result, "first_call_seconds": seconds[0],
                    "median_seconds": later[len(later) // 2]})
leaked = sorted(
    name for name, module in sys.modules.items()
    if module is not None and name.split(".")[0] in HIDDEN
)
print(json.dumps({"results": results, "leaked": leaked, "load_seconds": load_seconds}))
"""


def run_in_fresh_process(path, calls, repeats=0, timeout=600):
    """Calls signatures of the SavedModel at `path` in a new Python process.

    Args:
        path: an export directory.
        calls: list of `(signature_name, {input_name: value})`, values as
            JSON-able Python data (lists of strings, numbers).
        repeats: extra timed calls after the first (which may compile).
        timeout: seconds before the process is stopped.

    Returns:
        dict with `results` (per call: `outputs`, `first_call_seconds`,
        `median_seconds` of the repeats), `load_seconds`, and `leaked`: the
        Keras / keras-attn modules the process imported (should be empty).

    Example (any SavedModel; `keras_attn.export.export` writes a model's):
    >>> module = tf.Module()
    >>> module.shout = tf.function(lambda inputs: {"texts": tf.strings.upper(inputs)},
    ...                            input_signature=[tf.TensorSpec([None], tf.string)])
    >>> tf.saved_model.save(module, "shout", signatures={"serving_default": module.shout})
    >>> report = run_in_fresh_process("shout", [("serving_default", {"inputs": ["hi", "yo"]})])
    >>> report["results"][0]["outputs"], report["leaked"]
    ({'texts': ['HI', 'YO']}, [])
    """
    path = os.path.abspath(path)
    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise ValueError(f"`path` is not a SavedModel directory (no saved_model.pb): {path!r}")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    process = subprocess.run(
        [sys.executable, "-c", _SERVE_SCRIPT, path, json.dumps(calls), str(repeats)],
        capture_output=True,
        text=True,
        env=env,
        cwd=os.path.dirname(path),  # not a source tree: keras_attn must not be importable
        timeout=timeout,
    )
    if process.returncode != 0:
        last = (process.stderr.strip().splitlines() or ["no output"])[-1]
        raise OSError(f"the serving process failed: {last}")
    return json.loads(process.stdout.strip().splitlines()[-1])
