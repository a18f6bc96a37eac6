import pytest

from keras_attn.training.precision import bfloat16_pays, read_cpu_flags, resolve_precision


def test_bfloat16_pays_with_bfloat16_instructions_or_an_accelerator_only():
    assert bfloat16_pays(cpu_flags=frozenset({"amx_bf16", "amx_tile"}), accelerators=())
    assert bfloat16_pays(cpu_flags=frozenset({"avx512_bf16", "avx512f"}), accelerators=())
    assert not bfloat16_pays(cpu_flags=frozenset({"avx512f", "avx2"}), accelerators=())
    assert not bfloat16_pays(cpu_flags=frozenset(), accelerators=())
    assert bfloat16_pays(cpu_flags=frozenset(), accelerators=("GPU",))


def test_read_cpu_flags_parses_the_flags_line(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nflags\t\t: fpu avx2 amx_bf16\n\nflags\t: sse\n")
    assert read_cpu_flags(str(path)) == frozenset({"fpu", "avx2", "amx_bf16", "sse"})
    assert read_cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_resolve_precision():
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    assert resolve_precision("auto") in ("float32", "mixed_bfloat16")
    assert resolve_precision("auto") == ("mixed_bfloat16" if bfloat16_pays() else "float32")
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("bfloat16")


def test_the_cli_and_recipes_offer_the_same_precisions():
    from keras_attn.cli import PRECISIONS as CLI_PRECISIONS
    from keras_attn.recipes.schema import PRECISIONS as RECIPE_PRECISIONS
    from keras_attn.training.precision import PRECISIONS

    assert CLI_PRECISIONS == RECIPE_PRECISIONS == PRECISIONS
