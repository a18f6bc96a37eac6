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

`Task.compile(jit_compile="auto")` (the default) and the recipes'
`training.jit_compile: auto` use `resolve_jit_compile`.

Example:
>>> xla_pays(hidden_dim=64, accelerators=())
True
>>> xla_pays(hidden_dim=128, compute_dtype="bfloat16", accelerators=())
False
>>> xla_pays(hidden_dim=512, accelerators=("GPU",))
True
>>> resolve_jit_compile(False, hidden_dim=64)
False
"""

from keras_attn.training.precision import accelerator_types
from keras_attn.utils.arguments import ArgumentError

# The widest model (hidden_dim) whose CPU train step XLA made faster in the
# tasks measured, by compute dtype (float16 is taken to behave as bfloat16).
XLA_CPU_MAX_HIDDEN_DIM = {"float32": 128, "bfloat16": 64, "float16": 64}


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


def resolve_jit_compile(jit_compile, hidden_dim, compute_dtype="float32"):
    """`jit_compile` itself, or for `"auto"` whether
    `xla_pays(hidden_dim, compute_dtype)`."""
    jit_compile = check_jit_compile("jit_compile", jit_compile)
    if jit_compile != "auto":
        return jit_compile
    return xla_pays(hidden_dim, compute_dtype)
