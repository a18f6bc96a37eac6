import pytest

from keras_attn.models import Classifier, Generator
from keras_attn.training import compilation
from keras_attn.training.compilation import (
    XLA_CPU_MAX_HIDDEN_DIM,
    check_jit_compile,
    resolve_jit_compile,
    xla_pays,
)


def test_xla_pays_on_accelerators_and_for_narrow_models_on_a_cpu():
    for dtype, widest in XLA_CPU_MAX_HIDDEN_DIM.items():
        assert xla_pays(widest, dtype, accelerators=())
        assert not xla_pays(widest + 1, dtype, accelerators=())
    assert XLA_CPU_MAX_HIDDEN_DIM["bfloat16"] < XLA_CPU_MAX_HIDDEN_DIM["float32"]
    assert xla_pays(4096, "bfloat16", accelerators=("TPU",))


def test_resolve_keeps_an_explicit_choice_and_rejects_lookalikes():
    assert resolve_jit_compile(True, hidden_dim=4096) is True
    assert resolve_jit_compile(False, hidden_dim=8) is False
    for value in (1, 0, "true", None):
        with pytest.raises(ValueError, match=r"`jit_compile` must be 'auto', True or False"):
            check_jit_compile("jit_compile", value)


@pytest.mark.parametrize("accelerators", [(), ("GPU",)])
def test_task_compile_auto_follows_the_width(monkeypatch, accelerators):
    monkeypatch.setattr(compilation, "accelerator_types", lambda: accelerators)
    narrow = Generator.from_preset("tiny", vocabulary_size=300, sequence_length=8)
    wide = Classifier.from_preset(
        "tiny", num_classes=2, vocabulary_size=300, sequence_length=8, num_layers=1,
        hidden_dim=2 * XLA_CPU_MAX_HIDDEN_DIM["float32"], intermediate_dim=64, num_heads=2,
    )
    narrow.compile()
    wide.compile()
    assert narrow.jit_compile is True
    assert wide.jit_compile is bool(accelerators)
    wide.compile(jit_compile=True)
    assert wide.jit_compile is True


def test_task_compile_auto_reads_the_compute_dtype(monkeypatch):
    monkeypatch.setattr(compilation, "accelerator_types", lambda: ())
    width = XLA_CPU_MAX_HIDDEN_DIM["float32"]
    shape = dict(vocabulary_size=300, sequence_length=8, num_layers=1, hidden_dim=width,
                 intermediate_dim=64, num_heads=2)
    full = Generator.from_preset("tiny", **shape)
    mixed = Generator.from_preset("tiny", dtype="mixed_bfloat16", **shape)
    full.compile()
    mixed.compile()
    assert full.jit_compile is True and mixed.jit_compile is False
