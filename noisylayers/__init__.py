"""noisylayers: noise on a neural network's weights, as Keras 3 layers."""

from noisylayers import noise
from noisylayers.layers import WeightNoise

__version__ = "0.1.0"

__all__ = ["WeightNoise", "noise"]
