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


BUILDERS = {
    "sequential": sequential,
    "functional": functional,
    "subclassed": subclassed,
    "nested": nested,
    "recurrent": recurrent,
}
