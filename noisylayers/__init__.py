"""noisylayers: noise on a neural network's weights, as Keras 3 layers.

`import noisylayers` loads what a saved model needs (the layers, the noise
kinds, the controls) and `noisylayers.hardware` (analog devices over time);
`noisylayers.ablation` is imported on first use.
"""

import importlib

from noisylayers import noise
from noisylayers.layers import NoisyConv1D
from noisylayers.layers import NoisyConv2D
from noisylayers.layers import NoisyConv3D
from noisylayers.layers import NoisyDense
from noisylayers.layers import NoisyGRU
from noisylayers.layers import NoisyLayer
from noisylayers.layers import NoisyLSTM
from noisylayers.layers import WeightNoise
from noisylayers import priors
from noisylayers.diagnostics import mc_predict
from noisylayers.diagnostics import mc_sample
from noisylayers.diagnostics import noise_stats
from noisylayers.convert import unwrap
from noisylayers.convert import wrap
from noisylayers.control import noise_layers
from noisylayers.control import noise_scope
from noisylayers.control import set_noise
from noisylayers import callbacks
from noisylayers import hardware
from noisylayers import uncertainty

__version__ = "0.1.0"

__all__ = [
    "WeightNoise",
    "NoisyLayer",
    "NoisyDense",
    "NoisyConv1D",
    "NoisyConv2D",
    "NoisyConv3D",
    "NoisyLSTM",
    "NoisyGRU",
    "noise",
    "priors",
    "mc_predict",
    "mc_sample",
    "noise_stats",
    "wrap",
    "unwrap",
    "noise_layers",
    "set_noise",
    "noise_scope",
    "callbacks",
    "hardware",
    "uncertainty",
    "ablation",
]


def __getattr__(name):
    # The ablation toolkit (and what it needs) is imported on first use.
    if name == "ablation":
        return importlib.import_module("noisylayers.ablation")
    raise AttributeError(f"module 'noisylayers' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), "ablation"})
