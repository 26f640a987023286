import keras
import pytest

from tests.ablation.tiny import make_data


@pytest.fixture
def data():
    """48 training and 16 validation examples: whole batches of 16."""
    return make_data()


@pytest.fixture(scope="session", autouse=True)
def jax_compilation_cache(tmp_path_factory):
    """Every run compiles the same steps: on JAX, compile them only once.

    (`noisylayers ablate` does the same, see `noisylayers.cli.use_jax_compilation_cache`.)
    """
    if keras.backend.backend() == "jax":
        import jax

        path = str(tmp_path_factory.mktemp("jax-cache"))
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
