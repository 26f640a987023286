from noisylayers.layers.weight_noise import WeightNoise
