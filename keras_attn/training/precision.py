"""Choosing the compute precision: does bfloat16 pay on this machine?

Under Keras' `mixed_bfloat16` policy the layers compute in bfloat16 and keep
float32 variables; keras-attn's attention softmax, the tasks' logits, losses
and metrics stay float32 (`Task.logits_from_backbone` casts). bfloat16 is
only faster where the hardware multiplies it natively: accelerators (GPUs
with tensor cores, TPUs) and CPUs whose oneDNN kernels have bfloat16
instructions: Intel AMX (`amx_bf16`) and AVX-512 BF16 (`avx512_bf16`, e.g.
AMD Zen 4; measured by `benchmarks/training_speed.py` on such a CPU: 1.2x
float32's tokens/s at width 256 and 1.4x at width 512, with XLA off).
Elsewhere TensorFlow emulates it and a step gets slower.

`resolve_precision("auto")` is what recipes use for `training.precision:
auto`: `"mixed_bfloat16"` where `bfloat16_pays()`, else `"float32"`.

Example:
>>> bfloat16_pays(cpu_flags=frozenset({"avx2"}), accelerators=())
False
>>> bfloat16_pays(cpu_flags=frozenset({"amx_bf16", "amx_tile"}), accelerators=())
True
>>> bfloat16_pays(cpu_flags=frozenset({"avx512f", "avx512_bf16"}), accelerators=())
True
>>> resolve_precision("float32")
'float32'
"""

import functools

from keras_attn.utils.arguments import check_choice

PRECISIONS = ("auto", "float32", "mixed_bfloat16", "mixed_float16")
# CPU flags (Linux /proc/cpuinfo names) whose presence makes bfloat16 matmuls
# faster than float32 in TensorFlow's oneDNN kernels.
BFLOAT16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.cache
def read_cpu_flags(path="/proc/cpuinfo"):
    """The CPU feature flags Linux lists (`frozenset` of names, e.g.
    `"amx_bf16"`), or an empty set where there is no such file."""
    flags = set()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        return frozenset()
    return frozenset(flags)


def accelerator_types():
    """The accelerators TensorFlow finds here: a tuple of `"GPU"` / `"TPU"`,
    empty on a CPU-only machine."""
    import tensorflow as tf

    return tuple(
        device.device_type
        for device in tf.config.list_physical_devices()
        if device.device_type in ("GPU", "TPU")
    )


def bfloat16_pays(cpu_flags=None, accelerators=None):
    """Whether `mixed_bfloat16` trains faster than float32 here.

    True with a GPU or TPU, or on a CPU with bfloat16 matmul instructions
    (`BFLOAT16_CPU_FLAGS`: AMX or AVX-512 BF16); False on other CPUs.

    Args:
        cpu_flags: the CPU's flags (default: `read_cpu_flags()`).
        accelerators: device types found (default: TensorFlow's GPUs and
            TPUs).
    """
    if accelerators is None:
        accelerators = accelerator_types()
    if accelerators:
        return True
    if cpu_flags is None:
        cpu_flags = read_cpu_flags()
    return any(flag in cpu_flags for flag in BFLOAT16_CPU_FLAGS)


def resolve_precision(precision):
    """A Keras dtype policy name: `precision` itself, or for `"auto"`
    `"mixed_bfloat16"` where `bfloat16_pays()`, else `"float32"`."""
    precision = check_choice("precision", precision, PRECISIONS)
    if precision != "auto":
        return precision
    return "mixed_bfloat16" if bfloat16_pays() else "float32"
