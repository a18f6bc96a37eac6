"""Choosing XLA for a training step: does `jit_compile` pay for this model here?

Every task compiles with static shapes, so XLA can always compile its train
step; whether that is faster depends on the device and the model's width. On
GPUs and TPUs it is (fused kernels, fewer launches). On a CPU, measured by
`benchmarks/xla_training_step.py` (tables in `benchmarks/RESULTS.md`), XLA
makes the narrow models' steps faster, where per-op overhead dominates, and
the wide ones' slower, where TensorFlow's own oneDNN matmuls beat XLA's code:
`XLA_CPU_MAX_HIDDEN_DIM` is the widest model for which it still paid.

`Task.compile(jit_compile="auto")` (the default) and the recipes'
`training.jit_compile: auto` use `resolve_jit_compile`.

Example:
>>> xla_pays(hidden_dim=64, accelerators=())
True
>>> xla_pays(hidden_dim=512, accelerators=())
False
>>> xla_pays(hidden_dim=512, accelerators=("GPU",))
True
>>> resolve_jit_compile(False, hidden_dim=64)
False
"""

from keras_attn.training.precision import accelerator_types
from keras_attn.utils.arguments import ArgumentError

JIT_COMPILE_CHOICES = ("auto", True, False)
# The widest model (hidden_dim) whose CPU train step XLA made faster, in
# float32 and mixed_bfloat16, in every task measured.
XLA_CPU_MAX_HIDDEN_DIM = 128


def check_jit_compile(name, value):
    """Raises unless `value` is `"auto"`, `True` or `False` (not 0 / 1)."""
    if not (value == "auto" or isinstance(value, bool)):
        raise ArgumentError.of(name, "'auto', True or False", value)
    return value


def xla_pays(hidden_dim, accelerators=None):
    """Whether XLA makes a train step of a model `hidden_dim` wide faster here.

    True with a GPU or TPU; on a CPU, True up to `XLA_CPU_MAX_HIDDEN_DIM`.

    Args:
        hidden_dim: the model's width (its backbone's `hidden_dim`).
        accelerators: device types found (default: `accelerator_types()`).
    """
    if accelerators is None:
        accelerators = accelerator_types()
    return bool(accelerators) or hidden_dim <= XLA_CPU_MAX_HIDDEN_DIM


def resolve_jit_compile(jit_compile, hidden_dim):
    """`jit_compile` itself, or for `"auto"` whether `xla_pays(hidden_dim)`."""
    jit_compile = check_jit_compile("jit_compile", jit_compile)
    if jit_compile != "auto":
        return jit_compile
    return xla_pays(hidden_dim)
