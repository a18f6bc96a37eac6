"""Shared checks every keras-attn layer gets for free.

`run_layer_checks` builds a functional model around one layer call and
verifies: config round trip, `.keras` save/load with identical outputs, a
`model.fit` step compiled with XLA (`jit_compile=True`) that changes the
weights, and finite outputs under `mixed_float16` and `mixed_bfloat16`.
"""

import keras
import numpy as np
from keras import ops


def _first(outputs):
    return outputs[0] if isinstance(outputs, (tuple, list)) else outputs


def _build_model(layer, input_data, call_kwargs):
    batch = next(iter(input_data.values())).shape[0]
    inputs = {
        name: keras.Input(
            shape=value.shape[1:], batch_size=batch, dtype=str(value.dtype), name=name
        )
        for name, value in input_data.items()
    }
    outputs = _first(layer(**inputs, **call_kwargs))
    return keras.Model(inputs, outputs)


def check_config_round_trip(layer):
    config = layer.get_config()
    clone = layer.__class__.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer)
    assert restored.get_config() == config


def check_saving(layer, input_data, call_kwargs, tmp_path):
    model = _build_model(layer, input_data, call_kwargs)
    expected = ops.convert_to_numpy(model(input_data))
    path = str(tmp_path / "layer_model.keras")
    model.save(path)
    restored = keras.models.load_model(path)
    actual = ops.convert_to_numpy(restored(input_data))
    np.testing.assert_allclose(actual, expected, atol=1e-6, rtol=1e-6)


def check_fit_jit(layer_cls, init_kwargs, input_data, call_kwargs):
    layer = layer_cls(**init_kwargs)
    model = _build_model(layer, input_data, call_kwargs)
    target = np.random.default_rng(0).normal(size=model.output.shape).astype("float32")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", jit_compile=True)
    before = [ops.convert_to_numpy(w).copy() for w in layer.trainable_weights]
    history = model.fit(input_data, target, batch_size=target.shape[0], epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    after = [ops.convert_to_numpy(w) for w in layer.trainable_weights]
    if before:
        assert any(not np.allclose(b, a) for b, a in zip(before, after)), "fit changed no weight"


def check_mixed_precision(layer_cls, init_kwargs, input_data, call_kwargs):
    for policy in ("mixed_float16", "mixed_bfloat16"):
        layer = layer_cls(**init_kwargs, dtype=policy)
        outputs = layer(**input_data, **call_kwargs)
        for output in keras.tree.flatten(outputs):
            value = ops.convert_to_numpy(ops.cast(output, "float32"))
            assert np.all(np.isfinite(value)), f"non-finite output under {policy}"
        first = _first(outputs)
        if "float" in str(first.dtype):
            assert keras.backend.standardize_dtype(first.dtype) == layer.compute_dtype


def run_layer_checks(
    layer_cls,
    init_kwargs,
    input_data,
    tmp_path,
    call_kwargs=None,
    expected_output_shape=None,
    run_training=True,
    run_mixed_precision=True,
):
    """Runs the standard battery on `layer_cls(**init_kwargs)`.

    Args:
        layer_cls: the layer class.
        init_kwargs: constructor arguments.
        input_data: dict of argument name -> numpy array, passed by keyword.
        tmp_path: pytest's `tmp_path` for the `.keras` file.
        call_kwargs: extra non-tensor call arguments.
        expected_output_shape: shape of the (first) output, checked if given.
    """
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)
    outputs = layer(**input_data, **call_kwargs)
    if expected_output_shape is not None:
        assert tuple(_first(outputs).shape) == tuple(expected_output_shape)
    check_config_round_trip(layer)
    check_saving(layer, input_data, call_kwargs, tmp_path)
    if run_training:
        check_fit_jit(layer_cls, init_kwargs, input_data, call_kwargs)
    if run_mixed_precision:
        check_mixed_precision(layer_cls, init_kwargs, input_data, call_kwargs)
