"""TPU readiness: every training batch has a fully static shape, every train
step compiles with XLA (`jit_compile=True`), and the compiled decoding loops
are traced with static shapes only. TPUs compile each step once for fixed
shapes; a `None` dimension anywhere would fail there or recompile per batch."""

import numpy as np
import pytest
import tensorflow as tf

from keras_attn.data import load_builtin
from keras_attn.models import Classifier, Generator, MaskedLanguageModel, Translator

SETUPS = {
    "generator": (lambda: Generator.from_preset("tiny", sequence_length=16, num_layers=1),
                  "alphabet_runs"),
    "classifier": (lambda: Classifier.from_preset("tiny", num_classes=2, sequence_length=16,
                                                  num_layers=1), "sentiment_negation"),
    "masked_lm": (lambda: MaskedLanguageModel.from_preset("tiny", sequence_length=24,
                                                          num_layers=1), "sorted_letters"),
    "translator": (lambda: Translator.from_preset("tiny", source_length=32, target_length=8,
                                                  num_encoder_layers=1, num_decoder_layers=1),
                   "number_words"),
}


def _static(spec):
    # Python values in a signature (e.g. a beam width) are static by nature.
    tensors = [s for s in tf.nest.flatten(spec) if isinstance(s, tf.TypeSpec)]
    return bool(tensors) and all(s.shape.is_fully_defined() for s in tensors)


@pytest.mark.parametrize("task", sorted(SETUPS))
def test_batches_are_static_and_the_train_step_compiles_with_xla(task):
    build, dataset_name = SETUPS[task]
    model = build()
    model.compile(jit_compile=True)  # "auto" would skip XLA for a run this short on a CPU
    data = load_builtin(dataset_name, "train", num_examples=40)
    dataset = model.dataset_from_data(data, batch_size=8)
    assert _static(dataset.element_spec), dataset.element_spec
    history = model.fit(dataset, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # The XLA-compiled step was traced once, for the one static batch shape.
    assert model.train_function is not None


def test_decoding_loops_are_traced_with_static_shapes():
    generator = SETUPS["generator"][0]()
    generator.generate(["ab", "abc"], max_new_tokens=3)
    (decode,) = generator._untracked.functions.values()
    for concrete in decode._list_all_concrete_functions():
        assert _static(concrete.structured_input_signature), concrete.structured_input_signature

    translator = SETUPS["translator"][0]()
    translator.translate(["one", "two"])
    translator.translate(["one", "two"], beam_width=2)
    assert len(translator._untracked.functions) == 2
    for function in translator._untracked.functions.values():
        for concrete in function._list_all_concrete_functions():
            assert _static(concrete.structured_input_signature)
