"""Noisy layers: the `WeightNoise` wrapper and the Keras-layer variants."""

from noisylayers.layers.base import NoisyLayer
from noisylayers.layers.conv import NoisyConv1D
from noisylayers.layers.conv import NoisyConv2D
from noisylayers.layers.conv import NoisyConv3D
from noisylayers.layers.dense import NoisyDense
from noisylayers.layers.recurrent import NoisyGRU
from noisylayers.layers.recurrent import NoisyLSTM
from noisylayers.layers.weight_noise import WeightNoise
