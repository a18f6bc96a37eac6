"""Choosing XLA for a training step: does `jit_compile` pay for this model here?

Every task compiles with static shapes, so XLA can always compile its train
step; whether that is faster depends on the device, the model's width and its
compute dtype. On GPUs and TPUs it is (fused kernels, fewer launches). On a
CPU, measured by `benchmarks/xla_training_step.py` (tables in
`benchmarks/RESULTS.md`), XLA makes the narrow models' steps faster, where
per-op overhead dominates, and the wide ones' slower, where TensorFlow's own
oneDNN kernels beat XLA's code; with bfloat16 compute the crossing comes
earlier. `XLA_CPU_MAX_HIDDEN_DIM` holds, per compute dtype, the widest model
for which it still paid.

XLA also costs compile time, once per input shape (a bucketed dataset has up
to four). On a CPU a short run never earns it back: `"auto"` keeps XLA for a
`fit` or `evaluate` of at least `XLA_CPU_MIN_STEPS` steps
(`xla_repays_compiling`); the same benchmark's "repaid after" column gives
the steps each model needs.

`Task.compile(jit_compile="auto")` (the default) and the recipes'
`training.jit_compile: auto` use `resolve_jit_compile`; `Task.fit` and
`Task.evaluate` then `xla_repays_compiling`.

Example:
>>> xla_pays(hidden_dim=64, accelerators=())
True
>>> xla_pays(hidden_dim=128, compute_dtype="bfloat16", accelerators=())
False
>>> xla_pays(hidden_dim=512, accelerators=("GPU",))
True
>>> resolve_jit_compile(False, hidden_dim=64)
False
>>> xla_repays_compiling(steps=20, accelerators=())
False
"""

from keras import tree

from keras_attn.training.precision import accelerator_types
from keras_attn.utils.arguments import ArgumentError

# The widest model (hidden_dim) whose CPU train step XLA made faster in the
# tasks measured, by compute dtype (float16 is taken to behave as bfloat16).
XLA_CPU_MAX_HIDDEN_DIM = {"float32": 128, "bfloat16": 64, "float16": 64}

# The shortest run (steps of one `fit` or `evaluate` call) for which a CPU
# keeps XLA under "auto": the tiny presets at widths 64 and 128 repaid XLA's
# extra compile time after 104-2,108 steps per input shape (RESULTS.md,
# "repaid after"), and a bucketed dataset compiles up to four shapes.
XLA_CPU_MIN_STEPS = 1000


def check_jit_compile(name, value):
    """Raises unless `value` is `"auto"`, `True` or `False` (not 0 / 1)."""
    if not (value == "auto" or isinstance(value, bool)):
        raise ArgumentError.of(name, "'auto', True or False", value)
    return value


def xla_pays(hidden_dim, compute_dtype="float32", accelerators=None):
    """Whether XLA makes a train step of a model `hidden_dim` wide faster here.

    True with a GPU or TPU; on a CPU, True up to
    `XLA_CPU_MAX_HIDDEN_DIM[compute_dtype]`.

    Args:
        hidden_dim: the model's width (its backbone's `hidden_dim`).
        compute_dtype: the dtype its layers compute in (`"float32"`, or
            `"bfloat16"` under `mixed_bfloat16`).
        accelerators: device types found (default: `accelerator_types()`).
    """
    if accelerators is None:
        accelerators = accelerator_types()
    if accelerators:
        return True
    widest = XLA_CPU_MAX_HIDDEN_DIM.get(compute_dtype, XLA_CPU_MAX_HIDDEN_DIM["float32"])
    return hidden_dim <= widest


def xla_repays_compiling(steps, accelerators=None):
    """Whether a run of `steps` steps is long enough to repay XLA's compile time.

    True with a GPU or TPU, or where the number of steps is not known
    (`None`); on a CPU, True from `XLA_CPU_MIN_STEPS`.
    """
    if accelerators is None:
        accelerators = accelerator_types()
    return bool(accelerators) or steps is None or steps >= XLA_CPU_MIN_STEPS


def steps_of_run(x, batch_size=None, steps=None, epochs=1):
    """How many steps a `fit` (`epochs` of them) or `evaluate` call will run,
    or None where that is not known before it starts.

    Args:
        x: the run's data: a `tf.data.Dataset` (its cardinality), arrays or a
            dict of arrays (batches of `batch_size`, Keras' default 32), or
            anything else (not known).
        batch_size: for arrays.
        steps: `steps_per_epoch` / `steps`, when given.
        epochs: epochs still to run.

    >>> import numpy as np
    >>> steps_of_run(np.zeros((100, 8)), batch_size=10, epochs=3)
    30
    """
    if steps is None:
        if hasattr(x, "cardinality"):
            steps = int(x.cardinality())
            if steps < 0:  # infinite or unknown
                return None
        else:
            leaves = [leaf for leaf in tree.flatten(x) if hasattr(leaf, "shape")]
            if not leaves or not leaves[0].shape:
                return None
            steps = -(-int(leaves[0].shape[0]) // (batch_size or 32))
    return steps * max(1, epochs)


def resolve_jit_compile(jit_compile, hidden_dim, compute_dtype="float32"):
    """`jit_compile` itself, or for `"auto"` whether
    `xla_pays(hidden_dim, compute_dtype)`."""
    jit_compile = check_jit_compile("jit_compile", jit_compile)
    if jit_compile != "auto":
        return jit_compile
    return xla_pays(hidden_dim, compute_dtype)
