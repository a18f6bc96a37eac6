"""Shared checks every keras-attn layer gets for free.

`run_layer_checks` builds a functional model around one layer call and
verifies (as keras-hub's `TestCase.run_layer_test` does): the number of
trainable and non-trainable weights, a symbolic call on `keras.Input`s whose
output shapes match the eager call's, config round trip, `.keras` save/load
with identical outputs, a `model.fit` step compiled with XLA
(`jit_compile=True`) that changes the weights, and finite outputs under
`mixed_float16` and `mixed_bfloat16` with every sublayer on the layer's
dtype policy.
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


def check_symbolic_call(layer_cls, init_kwargs, input_data, call_kwargs, eager_outputs):
    """A fresh layer called on `keras.Input`s gives outputs of the eager shapes
    (batch axis left unknown) and dtypes."""
    layer = layer_cls(**init_kwargs)
    inputs = {
        name: keras.Input(shape=value.shape[1:], dtype=str(value.dtype), name=name)
        for name, value in input_data.items()
    }
    symbolic = keras.tree.flatten(layer(**inputs, **call_kwargs))
    eager = keras.tree.flatten(eager_outputs)
    assert len(symbolic) == len(eager), "symbolic and eager calls return different structures"
    for got, want in zip(symbolic, eager):
        want_shape = tuple(want.shape)
        assert tuple(got.shape)[1:] == want_shape[1:], (
            f"symbolic output shape {tuple(got.shape)} != eager {want_shape}"
        )
        # A batch axis stays unknown; an axis of size 1 that does not follow
        # the batch (a broadcast bias) stays 1.
        assert got.shape[0] in (None, want_shape[0])
        assert keras.backend.standardize_dtype(got.dtype) == keras.backend.standardize_dtype(
            want.dtype
        )


def check_weight_counts(layer, expected_num_trainable_weights, expected_num_non_trainable_weights):
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights, (
            f"{len(layer.trainable_weights)} trainable weights, expected "
            f"{expected_num_trainable_weights}: {[w.path for w in layer.trainable_weights]}"
        )
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights, (
            f"{len(layer.non_trainable_weights)} non-trainable weights, expected "
            f"{expected_num_non_trainable_weights}: "
            f"{[w.path for w in layer.non_trainable_weights]}"
        )


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
        for sublayer in layer._flatten_layers(include_self=False):
            assert sublayer.dtype_policy.name == policy, (
                f"sublayer {sublayer.name!r} of {layer.name!r} has dtype policy "
                f"{sublayer.dtype_policy.name!r} under {policy!r}"
            )
            assert sublayer.variable_dtype == "float32"
            assert sublayer.compute_dtype == layer.compute_dtype
        for weight in layer.weights:
            assert keras.backend.standardize_dtype(weight.dtype) == "float32", (
                f"{weight.path} is {weight.dtype} under {policy}"
            )
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
    expected_num_trainable_weights=None,
    expected_num_non_trainable_weights=0,
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
        expected_num_trainable_weights: the number of trainable weights once
            built; required: count it from the layer's structure.
        expected_num_non_trainable_weights: likewise for non-trainable
            weights (default 0).
    """
    if expected_num_trainable_weights is None:
        raise ValueError(
            "run_layer_checks needs `expected_num_trainable_weights` (count it from the "
            "layer's structure)"
        )
    call_kwargs = call_kwargs or {}
    layer = layer_cls(**init_kwargs)
    outputs = layer(**input_data, **call_kwargs)
    if expected_output_shape is not None:
        assert tuple(_first(outputs).shape) == tuple(expected_output_shape)
    check_weight_counts(layer, expected_num_trainable_weights, expected_num_non_trainable_weights)
    check_symbolic_call(layer_cls, init_kwargs, input_data, call_kwargs, outputs)
    check_config_round_trip(layer)
    check_saving(layer, input_data, call_kwargs, tmp_path)
    if run_training:
        check_fit_jit(layer_cls, init_kwargs, input_data, call_kwargs)
    if run_mixed_precision:
        check_mixed_precision(layer_cls, init_kwargs, input_data, call_kwargs)
