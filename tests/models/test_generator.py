import json
import os
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.data import alphabet_runs
from keras_attn.models import Generator
from tests.generation.references import controlled_logits_fn, repeated_ngrams
from tests.models.conftest import compile_for_tokens, logits_of

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _expected_run(prompt, n):
    start = LETTERS.index(prompt[-1]) + 1
    return LETTERS[start : start + n]


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    generator = compile_for_tokens(Generator.from_preset("tiny", sequence_length=16))
    history = generator.fit(generator.make_dataset(alphabet_runs(3000, seed=0), batch_size=64),
                            epochs=3, verbose=0)
    return generator, history.history["loss"]


def test_generator_learns_alphabet_runs(trained):
    generator, losses = trained
    assert losses[-1] < 0.4 * losses[0]
    prompts = [run[:3] for run in alphabet_runs(60, seed=1)]
    outputs = generator.generate(prompts, max_new_tokens=4, stop_token_ids=None)
    accuracy = np.mean([out == _expected_run(p, 4) for out, p in zip(outputs, prompts)])
    assert accuracy > 0.9


def _uncached_greedy(generator, prompt, max_new_tokens):
    """Reference: re-run the whole causal pass for every new token."""
    ids = [generator.tokenizer.bos_id, *generator.tokenizer.tokenize([prompt])[0].numpy()]
    new = []
    for _ in range(max_new_tokens):
        logits = logits_of(generator, np.array([ids], "int32"))
        ids.append(int(logits[0, -1].argmax()))
        new.append(ids[-1])
    return new


def test_cached_generation_equals_uncached_greedy_decoding(trained):
    generator, _ = trained
    prompts = ["abc", "mnop", "x", ""]
    cached = generator.generate(prompts, max_new_tokens=6, stop_token_ids=None, return_ids=True)
    for prompt, ids in zip(prompts, cached):
        assert ids == _uncached_greedy(generator, prompt, 6)


def test_mixed_length_batch_equals_one_prompt_at_a_time(trained):
    generator, _ = trained
    prompts = ["ab", "defghij", "q", "klm"]
    batch = generator.generate(prompts, max_new_tokens=5)
    alone = [generator.generate(p, max_new_tokens=5) for p in prompts]
    assert batch == alone


def test_sampling_is_seeded_and_options_do_not_recompile(trained):
    generator, _ = trained
    options = dict(max_new_tokens=8, temperature=2.0, stop_token_ids=None)
    first = generator.generate(["abc", "klm"], seed=11, **options)
    assert generator.generate(["abc", "klm"], seed=11, **options) == first
    others = [generator.generate(["abc", "klm"], seed=s, **options) for s in range(12, 16)]
    assert any(other != first for other in others)
    traces = generator._untracked.functions["decode"].experimental_get_tracing_count()
    generator.generate(["abc", "klm"], seed=3, max_new_tokens=8, temperature=0.7, top_k=3,
                       stop_token_ids=None)
    generator.generate(["abc", "klm"], seed=4, max_new_tokens=8, top_p=0.5, stop_token_ids=None)
    assert generator._untracked.functions["decode"].experimental_get_tracing_count() == traces


def test_top_k_one_is_greedy_at_any_temperature(trained):
    generator, _ = trained
    greedy = generator.generate(["ghi"], max_new_tokens=5)
    assert generator.generate(["ghi"], max_new_tokens=5, temperature=3.0, top_k=1, seed=1) == greedy


def test_stop_tokens_end_generation(trained):
    generator, _ = trained
    stop = generator.tokenizer.token_to_id("f")
    out = generator.generate("abc", max_new_tokens=6, stop_token_ids=[stop])
    assert out == "de"


def test_keras_file_and_preset_directory_round_trips(trained, tmp_path):
    generator, _ = trained
    ids = np.array([[2, 10, 11, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], "int32")
    expected_logits = logits_of(generator, ids)
    expected_text = generator.generate(["hij", "b"], max_new_tokens=5)

    path = str(tmp_path / "generator.keras")
    generator.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(logits_of(restored, ids), expected_logits, atol=1e-6)
    assert restored.generate(["hij", "b"], max_new_tokens=5) == expected_text

    preset = str(tmp_path / "preset")
    generator.save_to_preset(preset)
    assert sorted(os.listdir(preset)) == ["config.json", "model.weights.h5", "tokenizer"]
    loaded = Generator.from_preset(preset)
    np.testing.assert_allclose(logits_of(loaded, ids), expected_logits, atol=1e-6)
    assert loaded.generate(["hij", "b"], max_new_tokens=5) == expected_text
    with pytest.raises(ValueError, match="already exists"):
        generator.save_to_preset(preset)


def test_failed_preset_write_keeps_the_earlier_one(trained, tmp_path, monkeypatch):
    generator, _ = trained
    preset = str(tmp_path / "preset")
    generator.save_to_preset(preset)
    before = sorted(os.listdir(preset))

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(generator), "save_weights", broken)
    with pytest.raises(OSError, match="disk full"):
        generator.save_to_preset(preset, overwrite=True)
    assert sorted(os.listdir(preset)) == before
    assert [p for p in os.listdir(tmp_path) if p != "preset"] == []
    Generator.from_preset(preset)


def test_trains_in_mixed_bfloat16_and_in_a_distribution_strategy():
    keras.config.set_dtype_policy("mixed_bfloat16")
    generator = compile_for_tokens(Generator.from_preset("tiny", sequence_length=16))
    history = generator.fit(generator.make_dataset(alphabet_runs(256), batch_size=32),
                            epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert isinstance(generator.generate("abc", max_new_tokens=3), str)
    keras.config.set_dtype_policy("float32")
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        generator = compile_for_tokens(Generator.from_preset("tiny", sequence_length=16))
    history = generator.fit(generator.make_dataset(alphabet_runs(256), batch_size=32),
                            epochs=2, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_presets_and_bad_arguments(trained):
    generator, _ = trained
    assert {"tiny", "small", "base", "gpt2_small"} <= set(Generator.preset_names())
    with pytest.raises(ValueError, match="preset"):
        Generator.from_preset("gpt5")
    with pytest.raises(ValueError, match="max_new_tokens"):
        generator.generate("abc", max_new_tokens=16)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generator.generate("abc", max_new_tokens=0)
    with pytest.raises(ValueError, match="stop_token_ids"):
        generator.generate("abc", max_new_tokens=4, stop_token_ids="end")
    with pytest.raises(ValueError, match="tokenizer"):
        Generator.from_preset("tiny", vocabulary_size=100)
    with pytest.warns(UserWarning, match="dropped"):
        generator.generate("abcdefghijklmn", max_new_tokens=4)
    assert ops.convert_to_numpy(generator.generate_ids(
        np.array([[2, 10, 0, 0]]), np.array([[True, True, False, False]]))).shape == (1, 4)


def test_make_dataset_reports_truncation(trained):
    generator, _ = trained
    with pytest.warns(UserWarning, match="1 of 2 rows"):
        generator.make_dataset(["abc", LETTERS], batch_size=2)
    # 26 letters + [BOS] + [EOS] packed into sequence_length + 1 = 17 slots.
    assert generator.last_truncation.rows_truncated == 1
    assert generator.last_truncation.tokens_dropped == 11


def test_unseeded_sampling_follows_the_keras_global_seed():
    generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)

    def sample():
        return generator.generate(["ab", "cd"], max_new_tokens=8, temperature=1.0,
                                  stop_token_ids=None)

    keras.utils.set_random_seed(5)
    first = sample()
    keras.utils.set_random_seed(5)
    again = sample()
    keras.utils.set_random_seed(6)
    other = sample()
    # An untrained model samples near-uniformly over 263 ids: another seed
    # gives another draw.
    assert first == again and first != other


def test_compile_defaults_are_the_tasks_own():
    generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    generator.compile(label_smoothing=0.1)
    assert generator.jit_compile is True
    assert generator.loss.label_smoothing == 0.1
    history = generator.fit(generator.make_dataset(alphabet_runs(64, seed=0), batch_size=32),
                            epochs=1, verbose=0)
    assert {"loss", "masked_accuracy", "perplexity"} <= set(history.history)
    with pytest.raises(ValueError, match="`label_smoothing` applies to the task's own loss"):
        generator.compile(loss="mse", label_smoothing=0.1)


def test_no_repeat_ngram_size_never_repeats_an_ngram_of_the_row(trained):
    generator, _ = trained
    # Past the alphabet the trained model loops ([EOS] [EOS] ...): prompts
    # of 3 letters + [BOS] fit the 16 - 12 slots left to a prompt.
    prompts = ["xyz", "uvw", "nop", "z"]
    options = dict(max_new_tokens=12, stop_token_ids=None, return_ids=True)
    bos = generator.tokenizer.bos_id
    rows = [[bos, *ids] for ids in generator.tokenizer.tokenize(prompts).to_list()]
    plain = generator.generate(prompts, **options)
    assert any(repeated_ngrams(row + out, 2) for row, out in zip(rows, plain))
    for size in (2, 3):
        outputs = generator.generate(prompts, no_repeat_ngram_size=size, **options)
        for row, out in zip(rows, outputs):
            assert len(out) == 12 and repeated_ngrams(row + out, size) == []


def _uncached_controlled_greedy(generator, prompt, max_new_tokens, size, penalty):
    """Reference: the whole causal pass per token, the controls applied in
    plain Python to the full row (`[BOS]` and prompt included)."""
    ids = [generator.tokenizer.bos_id, *generator.tokenizer.tokenize([prompt])[0].numpy()]
    logits_fn = controlled_logits_fn(
        lambda prefix: logits_of(generator, np.array([prefix], "int32"))[0, -1], size, penalty
    )
    start = len(ids)
    for _ in range(max_new_tokens):
        ids.append(int(np.argmax(logits_fn(ids))))
    return ids[start:]


def test_controls_match_the_uncached_reference_and_do_not_recompile(trained):
    generator, _ = trained
    prompts = ["xyz", "abc", "q"]
    options = dict(max_new_tokens=10, stop_token_ids=None, return_ids=True)
    generator.generate(prompts, **options)
    traces = generator._untracked.functions["decode"].experimental_get_tracing_count()
    for size, penalty in [(2, 1.0), (0, 2.5), (3, 1.8)]:
        outputs = generator.generate(
            prompts, no_repeat_ngram_size=size, repetition_penalty=penalty, **options
        )
        for prompt, out in zip(prompts, outputs):
            assert out == _uncached_controlled_greedy(generator, prompt, 10, size, penalty)
    sampled = generator.generate(prompts, temperature=0.8, top_p=0.9, seed=3,
                                 no_repeat_ngram_size=2, repetition_penalty=1.2, **options)
    assert all(len(out) == 10 for out in sampled)
    assert generator._untracked.functions["decode"].experimental_get_tracing_count() == traces
    with pytest.raises(ValueError, match="`no_repeat_ngram_size` must be a non-negative integer"):
        generator.generate("abc", max_new_tokens=4, no_repeat_ngram_size=-1)
    with pytest.raises(ValueError, match="`repetition_penalty` must be a finite number > 0"):
        generator.generate("abc", max_new_tokens=4, repetition_penalty=0.0)
    with pytest.raises(ValueError, match="`repetition_penalty` must be a finite number > 0"):
        generator.generate_ids(np.array([[2, 10, 0, 0]]), np.array([[True, True, False, False]]),
                               repetition_penalty=float("nan"))


def test_a_keras_file_restores_the_compiled_state(tmp_path):
    generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    generator.compile(optimizer=keras.optimizers.AdamW(2e-3), label_smoothing=0.1)
    dataset = generator.make_dataset(alphabet_runs(64, seed=0), batch_size=32)
    generator.fit(dataset, epochs=1, verbose=0)
    path = str(tmp_path / "compiled.keras")
    generator.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.saving.load_model(path)
    assert loaded.compiled and isinstance(loaded.optimizer, keras.optimizers.AdamW)
    assert loaded.loss.label_smoothing == 0.1 and loaded.jit_compile is True
    np.testing.assert_allclose(
        float(loaded.optimizer.iterations), float(generator.optimizer.iterations)
    )
    history = loaded.fit(dataset, epochs=1, verbose=0)
    assert {"loss", "masked_accuracy", "perplexity"} <= set(history.history)


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("temperature", -1.0, "`temperature` must be a number >= 0"),
        ("temperature", float("nan"), "`temperature` must be a number >= 0"),
        ("top_p", 1.5, r"`top_p` must be a number in \(0, 1\]"),
        ("top_k", -5, "`top_k` must be a non-negative integer"),
    ],
)
def test_out_of_range_sampling_options_are_refused_not_ignored(option, value, message):
    # Before, these reached the compiled loop as tensors and quietly gave greedy output.
    generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    with pytest.raises(ValueError, match=message):
        generator.generate(["ab"], max_new_tokens=4, **{option: value})


def test_an_empty_prompt_list_gives_an_empty_list():
    generator = Generator.from_preset("tiny", sequence_length=16, num_layers=1)
    assert generator.generate([], max_new_tokens=4) == []


@pytest.fixture(scope="module")
def small_generator():
    return Generator.from_preset("tiny", sequence_length=16, num_layers=1)


def _prompt_buffer(batch=2, length=16, prompt=3):
    ids = np.zeros((batch, length), "int32")
    ids[:, :prompt] = [1, 70, 71][:prompt]
    return ids, ids != 0


def test_generate_ids_refuses_a_row_without_prompt_tokens(small_generator):
    # Before: decoding started at position -1 and overwrote [BOS].
    ids, mask = _prompt_buffer()
    mask[1] = False
    with pytest.raises(ValueError, match=r"Every row of `prompt_mask` needs at least one prompt "
                                         r"token .* empty row\(s\) \[1\]"):
        small_generator.generate_ids(ids, mask)
    # The other rows alone decode, keeping their prompt ([BOS] first).
    ids[:, 0] = small_generator.tokenizer.bos_id
    output = np.asarray(small_generator.generate_ids(ids[:1], mask[:1]))
    np.testing.assert_array_equal(output[0, :3], ids[0, :3])


@pytest.mark.parametrize("value", [-3, 263, 10**6])
def test_generate_ids_refuses_ids_out_of_the_vocabulary(small_generator, value):
    # Before: the compiled loop answered (XLA clamps gathers) with garbage.
    ids, mask = _prompt_buffer()
    ids[0, 1] = value
    with pytest.raises(ValueError, match=rf"`token_ids` must hold ids in \[0, "
                                         rf"{small_generator.backbone.vocabulary_size}\)"):
        small_generator.generate_ids(ids, mask)


@pytest.mark.parametrize("change, message", [
    (lambda ids, mask: (np.zeros((2, 20), "int32") + 1, np.ones((2, 20), bool)),
     r"`token_ids` must have at most sequence_length \(16\) positions"),
    (lambda ids, mask: (ids, mask[:, :8]), "`prompt_mask` must have the shape of `token_ids`"),
    (lambda ids, mask: (ids, np.roll(mask, 2, axis=1)),
     r"`prompt_mask` must be True on a prefix of each row"),
    (lambda ids, mask: (ids[0], mask[0]), "`token_ids` must have rank 2"),
    (lambda ids, mask: (ids.astype("float32"), mask), "`token_ids` must hold integer token ids"),
])
def test_generate_ids_refuses_malformed_buffers(small_generator, change, message):
    with pytest.raises(ValueError, match=message):
        small_generator.generate_ids(*change(*_prompt_buffer()))


# ------------------------------------------------------ broken presets


@pytest.fixture(scope="module")
def saved_preset(small_generator, tmp_path_factory):
    path = tmp_path_factory.mktemp("presets") / "generator"
    small_generator.save_to_preset(str(path))
    return path


def _broken_copy(saved_preset, tmp_path, edit):
    import shutil

    path = tmp_path / "broken"
    shutil.copytree(saved_preset, path)
    edit(path)
    return path


def _cut(name, keep):
    def edit(path):
        data = (path / name).read_bytes()
        (path / name).write_bytes(data[: keep(len(data))])
    return edit


def _edit_backbone(**changes):
    def edit(path):
        config = json.loads((path / "config.json").read_text())
        config["config"]["backbone"]["config"].update(changes)
        (path / "config.json").write_text(json.dumps(config))
    return edit


def _unstamped(edit):
    """As a preset written before weights files named their architecture."""
    def unstamp(path):
        import h5py

        with h5py.File(path / "model.weights.h5", "a") as weights:
            del weights.attrs["keras_attn_architecture"]
        edit(path)
    return unstamp


@pytest.mark.parametrize("edit, file, message", [
    (_cut("model.weights.h5", lambda n: 0), "model.weights.h5",
     r"not a readable weights file \(0 bytes; empty or cut short\?\)"),
    (_cut("model.weights.h5", lambda n: n // 2), "model.weights.h5",
     r"not a readable weights file \(\d+ bytes; empty or cut short\?\)"),
    (_cut("config.json", lambda n: n // 2), "config.json",
     r", line \d+ column \d+: not valid JSON"),
    (_cut("config.json", lambda n: 0), "config.json", r"line 1 column 1: not valid JSON"),
    (lambda path: (path / "config.json").write_text("[1, 2]"), "config.json",
     r'expected a JSON object with "task" and "config" keys'),
    (lambda path: (path / "model.weights.h5").unlink(), None, r"has no model.weights.h5"),
    (_edit_backbone(hidden_dim=32), "config.json",
     r"`hidden_dim`: 32 in the config, 64 in the weights"),
    (_edit_backbone(sequence_length=32, num_layers=2), "config.json",
     r"`num_layers`: 2 in the config, 1 in the weights; `sequence_length`: 32 in the config, "
     r"16 in the weights"),
    (_edit_backbone(hidden_dim="wide"), "config.json", r"invalid model config: `hidden_dim`"),
    (_unstamped(_edit_backbone(num_layers=2)), "model.weights.h5",
     r"the weights do not fit the model .*config.json describes"),
])
def test_a_broken_preset_names_its_file(saved_preset, tmp_path, edit, file, message):
    # Before: h5py / JSON text without the file's path, "expected 2 variables,
    # received 0", or (sequence_length) a model that loaded and answered wrongly.
    path = _broken_copy(saved_preset, tmp_path, edit)
    with pytest.raises(ValueError, match=message) as error:
        Generator.from_preset(str(path))
    if file is not None:
        assert str(path / file) in str(error.value)


def test_an_intact_preset_and_one_with_another_dropout_load(
    saved_preset, tmp_path, small_generator
):
    ids = _prompt_buffer()[0]
    expected = logits_of(small_generator, ids)
    np.testing.assert_allclose(logits_of(Generator.from_preset(str(saved_preset)), ids), expected)
    # Dropout does not change what the weights mean: it may be edited.
    path = _broken_copy(saved_preset, tmp_path, _edit_backbone(dropout=0.2))
    edited = Generator.from_preset(str(path))
    assert edited.backbone.dropout == 0.2
    np.testing.assert_allclose(logits_of(edited, ids), expected)


def test_new_options_and_a_shorter_budget_reuse_the_compiled_loop():
    keras.utils.set_random_seed(1)
    generator = Generator.from_preset("tiny", sequence_length=64, num_layers=1)
    prompts = ["abc", "hello w"]
    greedy = dict(stop_token_ids=None, return_ids=True)
    long = generator.generate(prompts, max_new_tokens=30, **greedy)
    decode = generator._untracked.functions["decode"]
    traces = decode.experimental_get_tracing_count()
    # 8 + 10 positions fit the 48-position buffer compiled above: reused,
    # and the loop ends at the budget with the same tokens.
    short = generator.generate(prompts, max_new_tokens=10, **greedy)
    assert short == [ids[:10] for ids in long]
    sampled = [
        generator.generate(prompts, max_new_tokens=n, temperature=t, top_k=k, top_p=p, seed=s,
                           no_repeat_ngram_size=size, repetition_penalty=penalty, **greedy)
        for n, t, k, p, s, size, penalty in [(20, 0.9, 5, 0.8, 3, 2, 1.3),
                                             (25, 1.5, 0, 1.0, 4, 0, 1.0)]
    ]
    assert [len(ids) for ids in sampled[0] + sampled[1]] == [20, 20, 25, 25]
    assert decode.experimental_get_tracing_count() == traces


def test_every_prefill_length_gives_the_same_tokens():
    keras.utils.set_random_seed(2)
    generator = Generator.from_preset("tiny", sequence_length=32, num_layers=1)
    ids = np.zeros((2, 32), "int32")
    ids[0, :5], ids[1, :2] = [1, 70, 71, 72, 73], [1, 80]
    outputs = [
        ops.convert_to_numpy(generator.generate_ids(ids, ids != 0, prefill_length=n))
        for n in (1, 2, 16, 32)
    ]
    for output in outputs[1:]:
        np.testing.assert_array_equal(output, outputs[0])
    with pytest.raises(ValueError, match="`prefill_length` must be at most the buffer length"):
        generator.generate_ids(ids, ids != 0, prefill_length=33)
