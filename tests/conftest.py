import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Every test starts with a clear Keras session and float32 policy.

    Without `gc.collect()` (`free_memory=False`): a full collection of a
    process holding TensorFlow or JAX takes about 0.7 s, which, before every
    test, was half of the suite's time; Python's own collector still runs.
    """
    keras.backend.clear_session(free_memory=False)
    keras.config.set_dtype_policy("float32")
    yield


@pytest.fixture(scope="session")
def jax_compilation_cache(tmp_path_factory):
    """On JAX, a persistent compilation cache for the session: tests that
    load or build the same models again compile their steps once."""
    if keras.backend.backend() == "jax":
        import jax

        if jax.config.jax_compilation_cache_dir is None:
            path = str(tmp_path_factory.mktemp("jax-cache"))
            jax.config.update("jax_compilation_cache_dir", path)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
