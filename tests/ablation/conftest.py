import pytest

from tests.ablation.tiny import make_data


@pytest.fixture
def data():
    """48 training and 16 validation examples: whole batches of 16."""
    return make_data()


@pytest.fixture(scope="session", autouse=True)
def _compile_once(jax_compilation_cache):
    """Every run compiles the same steps: on JAX, compile them only once.

    (`noisylayers ablate` does the same, see `noisylayers.cli.use_jax_compilation_cache`.)
    """
