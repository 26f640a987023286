"""`noisylayers._command_files`: what the commands read, with one-line errors."""

import keras
import numpy as np
import pytest

from noisylayers import _command_files

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow", reason="backend-independent file checks"
)


def test_load_arrays_takes_the_first_pair_the_file_holds(tmp_path):
    path = str(tmp_path / "d.npz")
    np.savez(path, x=np.ones(3), y=np.zeros(3), x_test=np.full(2, 5.0))
    x, y = _command_files.load_arrays("--data", path)
    assert x.tolist() == [1, 1, 1] and y.tolist() == [0, 0, 0]
    x, y = _command_files.load_arrays("--ood", path, [("x_test", None), ("x", None)])
    assert x.tolist() == [5, 5] and y is None


@pytest.mark.parametrize("content, message", [
    (None, r"--data \S+: cannot read it as \.npz"),
    ("text", r"--data \S+: cannot read it as a NumPy \.npz file"),
    ("npy", r"--data \S+: cannot read it as a NumPy \.npz file"),
    ("npz", r"--data \S+ must hold arrays 'x' and 'y' or 'a' and 'b'; "
            r"it holds \['inputs'\]\."),
])
def test_load_arrays_refuses_a_bad_file_in_one_line(tmp_path, content, message):
    path = tmp_path / "d.npz"
    if content == "text":
        path.write_text("not arrays")
    elif content == "npy":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    elif content == "npz":
        np.savez(path, inputs=np.ones(3))
    with pytest.raises(ValueError, match=message) as info:
        _command_files.load_arrays("--data", str(path), [("x", "y"), ("a", "b")])
    assert "\n" not in str(info.value)


def test_load_model_and_check_fits(tmp_path):
    with pytest.raises(ValueError, match=r"MODEL \S+missing\.keras: no such file\."):
        _command_files.load_model(str(tmp_path / "missing.keras"))
    text = tmp_path / "text.keras"
    text.write_text("no model")
    with pytest.raises(ValueError, match="cannot load it as a Keras model"):
        _command_files.load_model(str(text))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    path = str(tmp_path / "m.keras")
    model.save(path)
    model = _command_files.load_model(path)
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    assert _command_files.check_fits(model, path, "--data", "d.npz", x, y) is None
    assert _command_files.check_fits(model, path, "--ood", "o.npz", x).shape == (1, 2)
    with pytest.raises(ValueError, match=r"--data d\.npz does not fit MODEL \S+: "
                                         r"x has shape \(4, 5\), y \(4, 2\)"):
        _command_files.check_fits(model, path, "--data", "d.npz", np.ones((4, 5)), y)
