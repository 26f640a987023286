"""The benchmark models and their data, for Keras 3 and for tf_keras (TFP).

A model is a list of `(kind, kwargs)` layer descriptions, so every contender
builds *the same* architecture with its own layer classes: plain Keras layers,
Keras layers wrapped by noisylayers, or `tfp.layers` under `tf_keras`.
"""

import dataclasses

import numpy as np

# Layer kinds that have weights (and so receive noise / a TFP counterpart).
WEIGHTED = ("dense", "conv2d", "lstm")


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    key: str
    title: str
    input_shape: tuple
    arch: tuple
    classes: int = 10

    def kinds(self):
        return {kind for kind, _ in self.arch}


MODELS = {
    "mlp": ModelSpec(
        key="mlp",
        title="MLP 784-512-512-10",
        input_shape=(784,),
        arch=(
            ("dense", {"units": 512, "activation": "relu"}),
            ("dense", {"units": 512, "activation": "relu"}),
            ("dense", {"units": 10}),
        ),
    ),
    # The Keras MNIST convnet: two Conv2D and a Dense on 28x28x1.
    "cnn": ModelSpec(
        key="cnn",
        title="CNN 2xConv2D+Dense, 28x28x1",
        input_shape=(28, 28, 1),
        arch=(
            ("conv2d", {"filters": 32, "kernel_size": 3, "activation": "relu"}),
            ("maxpool", {"pool_size": 2}),
            ("conv2d", {"filters": 64, "kernel_size": 3, "activation": "relu"}),
            ("maxpool", {"pool_size": 2}),
            ("flatten", {}),
            ("dense", {"units": 10}),
        ),
    ),
    "lstm": ModelSpec(
        key="lstm",
        title="LSTM(128), 50x32 + Dense",
        input_shape=(50, 32),
        arch=(
            ("lstm", {"units": 128}),
            ("dense", {"units": 10}),
        ),
    ),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """One measured setting: a model and a batch size."""

    model: str
    batch: int

    @property
    def key(self):
        return f"{self.model}-b{self.batch}"

    @property
    def spec(self):
        return MODELS[self.model]

    @classmethod
    def parse(cls, text):
        model, _, batch = text.partition(":")
        if model not in MODELS or not batch.isdigit():
            raise ValueError(
                f"A config is MODEL:BATCH with MODEL in {sorted(MODELS)}. "
                f"Received: {text!r}"
            )
        return cls(model, int(batch))


def data(config, seed=0):
    """Random inputs in [0, 1) (like pixels) and labels (numpy), one batch.

    Non-negative inputs matter for the gradient-variance figure: with
    zero-mean inputs the per-example gradients' noise terms cancel across a
    batch whatever the estimator, which would hide the shared estimator's
    correlated noise.
    """
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (config.batch, *config.spec.input_shape))
    y = rng.integers(0, config.spec.classes, size=(config.batch,))
    return x.astype("float32"), y.astype("int32")


class NotSupported(Exception):
    """A contender has no layer for some part of a model (e.g. TFP LSTM)."""


def _layer_ctors(layers):
    """The layer class of each architecture kind, from a Keras namespace."""
    return {
        "dense": layers.Dense,
        "conv2d": layers.Conv2D,
        "lstm": layers.LSTM,
        "maxpool": layers.MaxPooling2D,
        "flatten": layers.Flatten,
    }


def keras_model(spec, wrap=None, seed=0, jit_compile="auto"):
    """A compiled Keras 3 model; `wrap(layer)` is applied to weighted layers."""
    import keras

    keras.utils.set_random_seed(seed)
    ctors = _layer_ctors(keras.layers)
    stack = [keras.Input(spec.input_shape)]
    for kind, kwargs in spec.arch:
        layer = ctors[kind](**kwargs)
        if wrap is not None and kind in WEIGHTED:
            layer = wrap(layer)
        stack.append(layer)
    model = keras.Sequential(stack)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=jit_compile,
    )
    return model


def tf_keras_model(spec, weighted_ctors=None, seed=0):
    """A compiled tf_keras model; `weighted_ctors` maps weighted kinds to
    layer classes (e.g. TFP layers); a kind mapped to None is unsupported."""
    import tensorflow as tf
    import tf_keras

    tf.random.set_seed(seed)
    np.random.seed(seed)
    ctors = _layer_ctors(tf_keras.layers)
    ctors.update(weighted_ctors or {})
    stack = [tf_keras.Input(spec.input_shape)]
    for kind, kwargs in spec.arch:
        ctor = ctors[kind]
        if ctor is None:
            raise NotSupported(f"no {kind} layer")
        stack.append(ctor(**kwargs))
    model = tf_keras.Sequential(stack)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(1e-3),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model
