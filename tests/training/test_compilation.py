import pytest

from keras_attn.models import Classifier, Generator
from keras_attn.training import compilation
from keras_attn.training.compilation import (
    XLA_CPU_MAX_HIDDEN_DIM,
    check_jit_compile,
    resolve_jit_compile,
    steps_of_run,
    xla_pays,
    xla_repays_compiling,
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


def test_steps_of_run_reads_datasets_arrays_and_explicit_steps():
    import numpy as np
    import tensorflow as tf

    dataset = tf.data.Dataset.range(50).batch(8)  # 7 batches
    assert steps_of_run(dataset, epochs=3) == 21
    assert steps_of_run(dataset.repeat()) is None  # infinite
    assert steps_of_run(dataset.filter(lambda x: True)) is None  # unknown
    assert steps_of_run({"token_ids": np.zeros((65, 4))}, epochs=2) == 6  # batches of 32
    assert steps_of_run(np.zeros((65, 4)), batch_size=64) == 2
    assert steps_of_run(dataset, steps=5, epochs=2) == 10
    assert steps_of_run(iter([1, 2])) is None


def _alphabet_dataset(model, examples):
    from keras_attn.data import alphabet_runs

    return model.make_dataset(alphabet_runs(examples, seed=0), batch_size=8, bucketing=False)


def test_auto_keeps_xla_on_a_cpu_only_for_runs_that_repay_compiling(monkeypatch):
    monkeypatch.setattr(compilation, "accelerator_types", lambda: ())
    monkeypatch.setattr(compilation, "XLA_CPU_MIN_STEPS", 6)
    assert not xla_repays_compiling(5, accelerators=())
    assert xla_repays_compiling(6, accelerators=()) and xla_repays_compiling(None, ())
    assert xla_repays_compiling(1, accelerators=("TPU",))
    shape = dict(sequence_length=32, num_layers=1, hidden_dim=16, intermediate_dim=32)

    short = Generator.from_preset("tiny", **shape)
    short.compile()
    assert short.jit_compile is True  # nothing run yet
    short.fit(_alphabet_dataset(short, 16), epochs=2, verbose=0)  # 4 steps
    assert short.jit_compile is False
    # Decoding keeps compile's choice: its loop runs many steps a call.
    assert short.decoding_jit_compile is True
    short.generate(["ab"], max_new_tokens=2)
    assert list(short._untracked.functions) == ["decode"]
    short.fit(_alphabet_dataset(short, 64), epochs=2, verbose=0)  # step function kept
    assert short.jit_compile is False

    long = Generator.from_preset("tiny", **shape)
    long.compile()
    long.fit(_alphabet_dataset(long, 24), epochs=2, verbose=0)  # 6 steps
    assert long.jit_compile is True

    chosen = Generator.from_preset("tiny", **shape)
    chosen.compile(jit_compile=True)
    chosen.fit(_alphabet_dataset(chosen, 16), verbose=0)
    assert chosen.jit_compile is True

    evaluated = Generator.from_preset("tiny", **shape)
    evaluated.compile()
    evaluated.evaluate(_alphabet_dataset(evaluated, 16), verbose=0)
    assert evaluated.jit_compile is False
    evaluated.compile()  # compiling again starts over
    assert evaluated.jit_compile is True
    evaluated.evaluate(_alphabet_dataset(evaluated, 48), verbose=0)
    assert evaluated.jit_compile is True
