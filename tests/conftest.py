import gc
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

# Multi-module runs execute in worker processes (see the module's docstring).
pytest_plugins = ("tests.process_isolation",)

# A test that grew the process by more than this collects garbage when it
# ends: Keras models are reference cycles, so a model a test built (a
# 124M-parameter preset, a fitted task) otherwise stays in memory until
# Python's rare full collection, and the suite grew past 8 GiB.
_COLLECT_AFTER_GROWTH_BYTES = 32 * 2**20


def _resident_bytes():
    """This process's resident memory, or None where /proc is unavailable."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Each test starts in float32 with a fixed seed, whatever the last one did."""
    import keras  # not at the top: the isolation parent never imports TensorFlow
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(1234)
    before = _resident_bytes()
    yield
    keras.config.set_dtype_policy("float32")
    after = _resident_bytes()
    if before is not None and after is not None and after - before > _COLLECT_AFTER_GROWTH_BYTES:
        gc.collect()


@pytest.fixture(autouse=True, scope="module")
def _release_module_state():
    """After each module (and its module-scoped models): Keras' global state,
    TensorFlow's kernel caches and the garbage they leave."""
    import keras

    yield
    keras.backend.clear_session(free_memory=True)
