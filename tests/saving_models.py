"""Models used by the saving tests; importable by a fresh process."""

import keras
from keras import layers

import noisylayers


@keras.saving.register_keras_serializable(package="noisylayers_tests")
class NoisyMLP(keras.Model):
    """A subclassed model with two noisy layers."""

    def __init__(self, units=8, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.hidden = noisylayers.WeightNoise(
            layers.Dense(units, activation="relu"), seed=1
        )
        self.head = noisylayers.WeightNoise(
            layers.Dense(3), noise="dropconnect", seed=2
        )

    def call(self, inputs, training=None):
        return self.head(self.hidden(inputs, training=training), training=training)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def sequential():
    return keras.Sequential(
        [
            keras.Input((6,)),
            noisylayers.WeightNoise(layers.Dense(8, activation="relu"), seed=1),
            layers.BatchNormalization(),
            noisylayers.WeightNoise(
                layers.Dense(3), noise="multiplicative_gaussian", seed=2
            ),
        ]
    )


def functional():
    inputs = keras.Input((6,))
    x = noisylayers.WeightNoise(layers.Dense(8, activation="relu"), seed=1)(inputs)
    outputs = noisylayers.WeightNoise(layers.Dense(3), noise="dropconnect")(x)
    return keras.Model(inputs, outputs)


def subclassed():
    model = NoisyMLP()
    model(keras.ops.zeros((1, 6)))
    return model


def nested():
    """A functional model holding a Sequential block with a noisy layer."""
    block = keras.Sequential(
        [
            keras.Input((6,)),
            noisylayers.WeightNoise(layers.Dense(5, activation="tanh"), seed=4),
        ],
        name="block",
    )
    inputs = keras.Input((6,))
    outputs = noisylayers.WeightNoise(
        layers.Dense(3), targets=["kernel"], seed=5
    )(block(inputs))
    return keras.Model(inputs, outputs)


def recurrent():
    return keras.Sequential(
        [
            keras.Input((4, 6)),
            noisylayers.WeightNoise(
                layers.Bidirectional(layers.LSTM(3, dropout=0.2)), seed=6
            ),
            noisylayers.WeightNoise(layers.Dense(3)),
        ]
    )


def variants():
    """Every variant with a per-example estimator, and a GRU."""
    inputs = keras.Input((4, 6))
    x = noisylayers.NoisyLSTM(5, estimator="flipout", return_sequences=True, seed=1)(
        inputs
    )
    x = noisylayers.NoisyGRU(4, return_sequences=True)(x)
    x = noisylayers.NoisyConv1D(3, 2, padding="causal", estimator="flipout")(x)
    x = layers.Flatten()(x)
    x = noisylayers.NoisyDense(
        5, activation="relu", estimator="local_reparameterization", seed=2
    )(x)
    outputs = noisylayers.WeightNoise(layers.Dense(3), estimator="flipout")(x)
    return keras.Model(inputs, outputs)


def learned():
    """The learned and adaptive kinds, in variants and in the wrapper."""
    noise = noisylayers.noise
    priors = noisylayers.priors
    return keras.Sequential(
        [
            keras.Input((6,)),
            noisylayers.NoisyDense(
                8,
                activation="relu",
                estimator="flipout",
                noise=noise.LearnedGaussian(
                    0.1, prior=priors.ScaleMixtureNormal(0.25, 1.0, 0.1), kl_weight=1e-3
                ),
            ),
            noisylayers.WeightNoise(
                layers.Dense(8, activation="tanh"),
                noise=noise.LearnedGaussian(prior=priors.Laplace(0.0, 0.5), dataset_size=16),
            ),
            noisylayers.NoisyDense(8, noise=noise.AdaptiveGaussian(kl_weight=1e-3)),
            noisylayers.NoisyDense(8, noise=noise.Factorized(0.4)),
            noisylayers.WeightNoise(
                layers.Dense(3), noise=noise.VariationalDropout(kl_weight=1e-3)
            ),
        ]
    )


def tfp_prior():
    """A TFP distribution as prior (TensorFlow backend only)."""
    import tensorflow_probability as tfp

    tfd = tfp.distributions
    mixture = tfd.MixtureSameFamily(
        tfd.Categorical(probs=[0.3, 0.7]), tfd.Normal([0.0, 0.0], [1.0, 0.1])
    )
    return keras.Sequential(
        [
            keras.Input((6,)),
            noisylayers.NoisyDense(
                8,
                activation="relu",
                noise=noisylayers.noise.LearnedGaussian(
                    prior=tfd.StudentT(3.0, 0.0, 1.0), kl_weight=1e-3
                ),
            ),
            noisylayers.WeightNoise(
                layers.Dense(3),
                noise=noisylayers.noise.LearnedGaussian(prior=mixture, kl_weight=1e-3),
            ),
        ]
    )


BUILDERS = {
    "sequential": sequential,
    "functional": functional,
    "subclassed": subclassed,
    "nested": nested,
    "recurrent": recurrent,
    "variants": variants,
    "learned": learned,
}
if keras.backend.backend() == "tensorflow":
    BUILDERS["tfp_prior"] = tfp_prior
