"""noisylayers: noise on a neural network's weights, as Keras 3 layers."""

from noisylayers import noise
from noisylayers.layers import WeightNoise
from noisylayers.control import noise_layers
from noisylayers.control import noise_scope
from noisylayers.control import set_noise
from noisylayers import callbacks
from noisylayers import ablation

__version__ = "0.1.0"

__all__ = [
    "WeightNoise",
    "noise",
    "noise_layers",
    "set_noise",
    "noise_scope",
    "callbacks",
    "ablation",
]
