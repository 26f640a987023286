"""`noisylayers.layers.targets`: target names, matching and fan-in."""

import keras
import pytest

from noisylayers.layers import targets

TF_ONLY = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="backend-independent check, run once",
)


@TF_ONLY
def test_matches_by_name_or_path_suffix():
    lstm = keras.layers.Bidirectional(keras.layers.LSTM(2, name="lstm"), name="bi")
    lstm.build((None, 3, 4))
    kernel = lstm.forward_layer.cell.kernel
    assert targets.matches(kernel, "kernel")
    assert targets.matches(kernel, "lstm_cell/kernel")
    assert not targets.matches(kernel, "ernel")  # a suffix of the name only
    assert not targets.matches(kernel, "recurrent_kernel")
    assert targets.is_default_target(kernel)


@TF_ONLY
def test_standardize_targets():
    assert targets.standardize_targets(None) is None
    assert targets.standardize_targets("kernel") == ("kernel",)
    assert targets.standardize_targets(["kernel", "bias"]) == ("kernel", "bias")
    with pytest.raises(TypeError, match=r"Received: targets=\['kernel', ''\]"):
        targets.standardize_targets(["kernel", ""])
    with pytest.raises(ValueError, match=r"Received: targets=\[\]"):
        targets.standardize_targets([])


@TF_ONLY
def test_fan_in_of_kernels_and_biases():
    conv = keras.layers.Conv2D(5, 3)
    conv.build((None, 8, 8, 2))
    assert targets.fan_in(conv, conv.kernel) == 3 * 3 * 2
    assert targets.fan_in(conv, conv.bias) == 3 * 3 * 2
    lstm = keras.layers.LSTM(4)
    lstm.build((None, 3, 6))
    # A recurrent layer's bias takes the input kernel's fan-in.
    assert targets.fan_in(lstm, lstm.cell.bias) == 6
    assert targets.fan_in(lstm, lstm.cell.recurrent_kernel) == 4
