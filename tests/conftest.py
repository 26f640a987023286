import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    """Every test starts with a clear Keras session and float32 policy."""
    keras.backend.clear_session()
    keras.config.set_dtype_policy("float32")
    yield
