import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras import ops

from keras_attn.data import number_words
from keras_attn.models import Translator
from keras_attn.tokenizers import ByteTokenizer, WordPieceTokenizer
from tests.generation.references import repeated_ngrams
from tests.models.conftest import compile_for_tokens, logits_of


@pytest.fixture(scope="module")
def trained():
    keras.utils.set_random_seed(0)
    translator = compile_for_tokens(
        Translator.from_preset("tiny", source_length=32, target_length=8)
    )
    sources, targets = number_words(4000, seed=0)
    history = translator.fit(translator.make_dataset(sources, targets, batch_size=64),
                             epochs=5, verbose=0)
    return translator, history.history["loss"]


def test_translator_learns_number_words(trained):
    translator, losses = trained
    assert losses[-1] < 0.1 * losses[0]
    sources, targets = number_words(200, seed=1)
    outputs = translator.translate(sources)
    exact = np.mean([o == t for o, t in zip(outputs, targets)])
    assert exact > 0.9


def _uncached_greedy(translator, source_ids, steps):
    """Reference: re-run the whole decoder on the growing target each step."""
    bos, eos = translator.target_tokenizer.bos_id, translator.target_tokenizer.eos_id
    target = [[bos] for _ in range(len(source_ids))]
    done = [False] * len(source_ids)
    for _ in range(steps):
        logits = logits_of(translator, {"source_ids": source_ids,
                                        "target_ids": np.array(target, "int32")})
        for row, token in enumerate(logits[:, -1].argmax(-1)):
            target[row].append(0 if done[row] else int(token))
            done[row] = done[row] or int(token) == eos
    return np.array(target)


def test_cached_translation_equals_uncached_greedy_decoding(trained):
    translator, _ = trained
    sources, _ = number_words(6, seed=2)
    source_ids, _ = translator.encode_sources(sources)
    cached = ops.convert_to_numpy(translator.translate_ids(source_ids, max_length=7))
    np.testing.assert_array_equal(cached, _uncached_greedy(translator, source_ids, 7))


def test_beam_search_with_one_beam_equals_greedy(trained):
    translator, _ = trained
    sources, _ = number_words(16, seed=3)
    source_ids, _ = translator.encode_sources(sources)
    greedy = translator.translate_ids(source_ids, search="greedy")
    beam = translator.translate_ids(source_ids, beam_width=1, search="beam")
    np.testing.assert_array_equal(ops.convert_to_numpy(beam), ops.convert_to_numpy(greedy))


def test_beam_search_translates_batches_and_matches_one_at_a_time(trained):
    translator, _ = trained
    sources, targets = number_words(40, seed=4)
    batch = translator.translate(sources, beam_width=4, length_penalty=0.6)
    assert np.mean([o == t for o, t in zip(batch, targets)]) > 0.9
    assert [translator.translate(s, beam_width=4) for s in sources[:3]] == batch[:3]


def test_bad_arguments(trained):
    translator, _ = trained
    with pytest.raises(ValueError, match="beam_width"):
        translator.translate("one", beam_width=0)
    with pytest.raises(ValueError, match="max_length"):
        translator.translate("one", max_length=8)
    with pytest.raises(ValueError, match="search"):
        translator.translate_ids(np.ones((1, 32), "int32"), beam_width=2, search="greedy")
    with pytest.raises(ValueError, match="sources"):
        translator.make_dataset(["one", "two"], ["1"])
    with pytest.raises(ValueError, match="target_tokenizer"):
        Translator.from_preset("tiny", target_tokenizer=ByteTokenizer(),
                               target_vocabulary_size=100, share_embeddings=False)


def _until_eos(row, eos):
    row = list(row)
    return row[: row.index(eos) + 1] if eos in row else row


def test_repetition_controls_in_greedy_and_beam_search(trained):
    translator, _ = trained
    eos = translator.target_tokenizer.eos_id
    sources = ["eleven", "one hundred eleven", "two hundred twenty two", "five hundred five",
               "three hundred thirty", "seven"]
    source_ids, _ = translator.encode_sources(sources)
    plain = ops.convert_to_numpy(translator.translate_ids(source_ids))
    # The digits repeat ("111", "222"): with n = 1 no token may come twice.
    assert any(repeated_ngrams(_until_eos(row, eos), 1) for row in plain)
    greedy = translator._untracked.functions[("greedy", 1, 7)]
    traces = greedy.experimental_get_tracing_count()
    for size, penalty in [(1, 1.0), (2, 1.5), (0, 3.0)]:
        controls = dict(no_repeat_ngram_size=size, repetition_penalty=penalty)
        ids = ops.convert_to_numpy(translator.translate_ids(source_ids, **controls))
        beam = translator.translate_ids(source_ids, beam_width=1, search="beam", **controls)
        np.testing.assert_array_equal(ops.convert_to_numpy(beam), ids)
        if size:
            for row in ids:
                assert repeated_ngrams(_until_eos(row, eos), size) == []
        wide = ops.convert_to_numpy(translator.translate_ids(source_ids, beam_width=3, **controls))
        if size:
            for row in wide:
                assert repeated_ngrams(_until_eos(row, eos), size) == []
    assert greedy.experimental_get_tracing_count() == traces
    texts = translator.translate(sources, no_repeat_ngram_size=1)
    assert all(len(set(text)) == len(text) for text in texts)
    with pytest.raises(ValueError, match="`no_repeat_ngram_size` must be a non-negative integer"):
        translator.translate("one", no_repeat_ngram_size=1.5)
    with pytest.raises(ValueError, match="`repetition_penalty` must be a finite number > 0"):
        translator.translate("one", beam_width=2, repetition_penalty=-1.0)


def test_keras_file_and_preset_round_trips(trained, tmp_path):
    translator, _ = trained
    sources, _ = number_words(4, seed=5)
    source_ids, _ = translator.encode_sources(sources)
    inputs = {"source_ids": source_ids, "target_ids": np.full((4, 8), 2, "int32")}
    expected_logits = logits_of(translator, inputs)
    expected = translator.translate(sources, beam_width=2)
    path = str(tmp_path / "translator.keras")
    translator.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(logits_of(restored, inputs), expected_logits, atol=1e-6)
    assert restored.translate(sources, beam_width=2) == expected
    translator.save_to_preset(str(tmp_path / "preset"))
    loaded = Translator.from_preset(str(tmp_path / "preset"))
    np.testing.assert_allclose(logits_of(loaded, inputs), expected_logits, atol=1e-6)
    assert loaded.translate(sources) == translator.translate(sources)


def test_separate_vocabularies_train_under_mixed_precision_and_distribution():
    sources, targets = number_words(256, seed=6)
    source_tokenizer = WordPieceTokenizer.train(sources, vocabulary_size=60)
    keras.config.set_dtype_policy("mixed_bfloat16")
    translator = compile_for_tokens(Translator.from_preset(
        "tiny", source_tokenizer=source_tokenizer, target_tokenizer=ByteTokenizer(),
        source_length=8, target_length=6))
    assert not translator.backbone.share_embeddings
    assert translator.backbone.source_vocabulary_size == source_tokenizer.vocabulary_size
    history = translator.fit(translator.make_dataset(sources, targets, batch_size=32),
                             epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert len(translator.translate(sources[:2], beam_width=2)) == 2
    keras.config.set_dtype_policy("float32")
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        translator = compile_for_tokens(Translator.from_preset(
            "tiny", source_length=32, target_length=6))
    history = translator.fit(translator.make_dataset(sources, targets, batch_size=32),
                             epochs=3, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_translate_refuses_nan_penalty_zero_length_and_too_many_beams():
    translator = Translator.from_preset("tiny", source_length=8, target_length=8,
                                        num_encoder_layers=1, num_decoder_layers=1)
    with pytest.raises(ValueError, match="`length_penalty` must be a finite number"):
        translator.translate(["ab"], beam_width=2, length_penalty=float("nan"))
    # 0 used to mean "the default length".
    with pytest.raises(ValueError, match="`max_length` must be a positive integer"):
        translator.translate(["ab"], max_length=0)
    with pytest.raises(ValueError, match=r"`beam_width` must be at most the target vocabulary"):
        translator.translate(["ab"], beam_width=1000)
    assert translator.translate([]) == []


# ----------------------------------------------------------- bad inputs


@pytest.fixture(scope="module")
def small_translator():
    return Translator.from_preset(
        "tiny", source_length=16, target_length=8, num_encoder_layers=1, num_decoder_layers=1
    )


@pytest.mark.parametrize("source_ids, message", [
    (np.ones((2, 5), "int32"), r"`source_ids` must have shape \(batch, source_length=16\)"),
    (np.ones((2, 20), "int32"), r"`source_ids` must have shape \(batch, source_length=16\)"),
    (np.ones((16,), "int32"), r"`source_ids` must have rank 2"),
    (np.ones((2, 16), "float32"), r"`source_ids` must hold integer token ids"),
    (np.full((2, 16), -1, "int32"), r"`source_ids` must hold ids in \[0, 263\)"),
    (np.full((2, 16), 263, "int32"), r"`source_ids` must hold ids in \[0, 263\)"),
])
@pytest.mark.parametrize("beam_width", [1, 2])
def test_translate_ids_refuses_wrong_source_buffers(small_translator, source_ids, message,
                                                    beam_width):
    # Before: the compiled loop answered for any of these.
    with pytest.raises(ValueError, match=message):
        small_translator.translate_ids(source_ids, beam_width=beam_width)


def test_translate_warns_about_and_records_truncated_texts(small_translator):
    with pytest.warns(UserWarning, match=r"texts: 1 of 2 rows \(50.0%\) truncated, 5 tokens "
                                         r"dropped"):
        small_translator.translate(["short", "x" * 20])  # 20 bytes + [EOS] in 16 positions
    report = small_translator.last_truncation["texts"]
    assert (report.rows, report.rows_truncated, report.tokens_dropped) == (2, 1, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        small_translator.translate(["x" * 15, "y"])  # fits exactly: no warning
    assert small_translator.last_truncation["texts"].rows_truncated == 0


def test_a_preset_whose_config_changes_source_length_is_refused(small_translator, tmp_path):
    # Sinusoidal positions have no weights, so before this loaded and answered
    # with inputs cut at another length than the model was trained with.
    path = tmp_path / "preset"
    small_translator.save_to_preset(str(path))
    config = json.loads((path / "config.json").read_text())
    config["config"]["backbone"]["config"]["source_length"] = 32
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"`source_length`: 32 in the config, 16 in the weights"
                       ) as error:
        Translator.from_preset(str(path))
    assert str(path / "config.json") in str(error.value)
    assert str(path / "model.weights.h5") in str(error.value)


def test_target_start_ids_lead_every_decoded_buffer_and_round_trip():
    keras.utils.set_random_seed(3)
    translator = Translator.from_preset(
        "tiny", source_length=16, target_length=8, num_encoder_layers=1,
        num_decoder_layers=1, target_start_ids=(3, 2),
    )
    source_ids, _ = translator.encode_sources(["one two", "three"])
    for beam_width in (1, 2):
        output = ops.convert_to_numpy(translator.translate_ids(source_ids, beam_width=beam_width))
        assert output.shape == (2, 8) and np.all(output[:, :2] == [3, 2])
    # Cached greedy decoding from two start ids = argmax of full forward passes.
    output = ops.convert_to_numpy(translator.translate_ids(source_ids, max_length=3))
    for step in range(2, 5):
        logits = logits_of(translator, {"source_ids": source_ids, "target_ids": output[:, :step]})
        expected = np.argmax(logits[:, -1], axis=-1)
        alive = ~np.isin(output[:, 2:step], (3, 0)).any(axis=1)
        np.testing.assert_array_equal(output[alive, step], expected[alive])
    batch = translator.texts_to_inputs(["one two"], targets=["ab"])
    assert batch.tokens["target"][0] == ["[EOS]", "[BOS]", "a", "b"]
    assert translator.get_config()["target_start_ids"] == [3, 2]
    restored = Translator.from_config(json.loads(json.dumps(translator.get_config())))
    assert restored.target_start_ids == (3, 2)
    with pytest.raises(ValueError, match="max_length"):
        translator.translate_ids(source_ids, max_length=7)
    with pytest.raises(ValueError, match="target_start_ids"):
        Translator.from_preset("tiny", source_length=16, target_length=8, num_encoder_layers=1,
                               num_decoder_layers=1, target_start_ids=(3, 9999))


def test_decoding_equals_the_loops_with_every_cache_in_the_nest():
    """The reference keeps the cross-attention caches in the cache nest
    (re-gathered every beam step) and feeds the start ids token by token;
    the translator keeps them outside and prefills: same outputs."""
    from keras_attn.generation import beam_search, sample

    keras.utils.set_random_seed(3)
    translator = Translator.from_preset("tiny", source_length=16, target_length=8,
                                        num_encoder_layers=1, num_decoder_layers=1)
    backbone = translator.backbone
    source_ids, _ = translator.encode_sources(["one two", "three", "x y z"])
    encoder_outputs, source_mask = backbone.encode(source_ids)
    cache = (backbone.empty_caches(3, 8), backbone.cross_attention_caches(encoder_outputs),
             source_mask)

    def next_fn(ids, cache, index):
        self_caches, cross_caches, mask = cache
        hidden, self_caches = backbone.decode_with_cache(ids, self_caches, cross_caches, mask,
                                                         index)
        return translator.vocabulary_logits(hidden[:, -1:])[:, 0], (self_caches, cross_caches,
                                                                     mask)

    token_ids = np.zeros((3, 8), "int32")
    token_ids[:, 0] = translator.target_start_ids[0]
    mask = np.arange(8)[None, :] < 1
    mask = np.broadcast_to(mask, (3, 8))
    eos, pad = translator.target_tokenizer.eos_id, translator.target_tokenizer.pad_id
    want_beam, _ = beam_search(next_fn, token_ids, mask, cache, 3, length_penalty=0.6,
                               eos_id=eos, pad_id=pad)
    got_beam = translator.translate_ids(source_ids, beam_width=3, length_penalty=0.6)
    np.testing.assert_array_equal(ops.convert_to_numpy(got_beam), ops.convert_to_numpy(want_beam))
    want_greedy, _ = sample(next_fn, token_ids, mask, cache, stop_token_ids=(eos,), pad_id=pad)
    got_greedy = translator.translate_ids(source_ids)
    np.testing.assert_array_equal(ops.convert_to_numpy(got_greedy),
                                  ops.convert_to_numpy(want_greedy))
