import keras
import numpy as np
import pytest

from keras_attn.training import MaskedSparseCategoricalCrossentropy


def compile_for_tokens(model, learning_rate=3e-3):
    # jit_compile "auto": these fits are short, so no XLA on a CPU; the train
    # steps' XLA compilation is tested in test_static_shapes.py.
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=MaskedSparseCategoricalCrossentropy(),
    )
    return model


def logits_of(model, inputs):
    return np.asarray(keras.ops.convert_to_numpy(model(inputs)))


@pytest.fixture(autouse=True)
def _quiet_dataset_shuffle_warning(recwarn):
    yield
