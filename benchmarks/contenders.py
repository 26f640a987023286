"""The registry of contenders: everything the benchmark times.

A contender turns a `Config` (model and batch size) and one batch of data into
a `Runner`: a zero-argument compiled training step and, where it makes sense,
a zero-argument inference call. Each returns something the harness can wait
on (a Python number, a numpy array or backend arrays).

To add a contender, add an entry to `ESTIMATORS` (a noisylayers wrapper
factory, run with every kind of `NOISE_KINDS`), to `VARIANTS` (the variant
layers `NoisyDense` / `NoisyConv2D` / `NoisyLSTM` with one estimator and one
kind), or append a `Contender` to `CONTENDERS`; `counterpart` names the
`tfp.layers` contender it must beat (see `report.targets`).
"""

import dataclasses
import itertools
from typing import Callable, Optional

import numpy as np

from benchmarks.models import NotSupported
from benchmarks.models import keras_model
from benchmarks.models import tf_keras_model


@dataclasses.dataclass
class Runner:
    train: Optional[Callable] = None
    infer: Optional[Callable] = None
    model: object = None


@dataclasses.dataclass(frozen=True)
class Contender:
    name: str
    label: str
    family: str  # floor | plain | noisylayers | tfp | recipe | reference
    make: Callable  # (config, x, y) -> Runner; may raise NotSupported
    needs_tensorflow: bool = False
    quick: bool = True
    estimator: Optional[str] = None
    noise: Optional[str] = None
    counterpart: Optional[str] = None  # tfp contender this one should beat
    memory: bool = True  # measure its peak memory (full run)
    # Learned-variance rivals (keras-proba, tfp.layers) of the same estimator
    # that this contender must beat by 1.5x (issue 22; see report.targets).
    rivals: tuple = ()


# --------------------------------------------------------------------------
# Keras 3 contenders (any backend).


def _keras_runner(model, x, y):
    import keras

    xt = keras.ops.convert_to_tensor(x)
    yt = keras.ops.convert_to_tensor(y)
    if keras.backend.backend() == "jax":
        return _jax_runner(model, xt, yt)
    # On TensorFlow, the compiled function that `fit` runs per batch, on an
    # iterator (as `_tf_keras_runner`). `train_on_batch` would also reset
    # every metric eagerly at each call (`fit` does at each epoch): 0.6 ms on
    # plain Keras, more for a model with more metrics.
    import tensorflow as tf

    model.train_on_batch(xt, yt)  # builds the model, optimizer and metrics
    model.make_train_function()
    train_it = iter(tf.data.Dataset.from_tensors((xt, yt)).repeat())
    return Runner(
        train=lambda: model.train_function(train_it),
        infer=lambda: model.predict_on_batch(xt),
        model=model,
    )


def _jax_runner(model, xt, yt):
    """One step of `fit` / `predict` as Keras' JAX trainer runs them.

    `train_on_batch` on JAX also copies every variable out of and back into
    the model on each call, which `fit` does not (it threads the state
    through the compiled step and syncs at the end). That per-variable
    Python work would count the wrapper's extra variables (enabled, scale,
    seed state) against it, so we thread the state as `fit` does
    (keras/src/backend/jax/trainer.py); the model's variables are synced
    back whenever we switch between training and inference.
    """
    model.train_on_batch(xt, yt)  # builds the model, optimizer and metrics
    model.predict_on_batch(xt)
    model.make_train_function()
    model.make_predict_function()
    held = {"mode": None, "state": None}

    def switch(mode):
        if held["mode"] == mode:
            return
        if held["mode"] is not None:  # write the threaded state back
            keys = ["trainable_variables", "non_trainable_variables",
                    "optimizer_variables", "metrics_variables"]
            model._jax_state = dict(zip(keys, held["state"]))
            model._jax_state_synced = False
            model.jax_state_sync()
        held["state"] = model._get_jax_state(
            trainable_variables=True,
            non_trainable_variables=True,
            optimizer_variables=mode == "train",
            metrics_variables=mode == "train",
        )
        held["mode"] = mode

    def train():
        switch("train")
        logs, held["state"] = model.train_function(
            held["state"], iter([(xt, yt, None)])
        )
        return logs

    def infer():
        switch("infer")
        outputs, held["state"] = model.predict_function(
            held["state"], iter([(xt,)])
        )
        return outputs

    return Runner(train=train, infer=infer, model=model)


def make_plain(config, x, y):
    return _keras_runner(keras_model(config.spec), x, y)


# Noise kinds, with the parameters the benchmark uses (noisylayers configs).
NOISE_KINDS = {
    "gaussian": {"class_name": "Gaussian", "config": {"stddev": 0.01}},
    "multiplicative_gaussian": {
        "class_name": "MultiplicativeGaussian",
        "config": {"stddev": 0.1},
    },
    "dropconnect": {"class_name": "DropConnect", "config": {"rate": 0.5}},
    # Issue 14: additive Gaussian drawn from the layer's noise table.
    "gaussian_table": {
        "class_name": "Gaussian",
        "config": {"stddev": 0.01, "sampler": "table"},
    },
}


# Kinds used by the variant contenders only (not run with every estimator).
# LearnedGaussian is Bayes by backprop: a learned sigma per weight and a KL
# term, as tfp.layers' mean-field posteriors (kl_weight = 1 / 60000, MNIST).
VARIANT_NOISE_KINDS = {
    "learned_gaussian": {
        "class_name": "LearnedGaussian",
        "config": {"dataset_size": 60000},
    },
}


def _noise(kind):
    import noisylayers

    return noisylayers.noise.get({**NOISE_KINDS, **VARIANT_NOISE_KINDS}[kind])


def _zero_noise():
    """A noise kind that draws nothing: isolates the wrapper's mechanism."""
    import keras
    import noisylayers

    class Zero(noisylayers.noise.Noise):
        def perturbation(self, value, seed):
            return keras.ops.zeros_like(value)

    return Zero()


def _shared(layer, noise, seed):
    import noisylayers

    return noisylayers.WeightNoise(layer, noise=noise, seed=seed)


# Estimators of the wrapper: how a noisylayers layer is made around a Keras
# layer, run with every kind of NOISE_KINDS ("nl-<estimator>-<kind>"). The
# per-example estimators (flipout, local_reparameterization) run the same
# code in the wrapper and in the variants; they are timed as variants below.
ESTIMATORS = {
    "shared": _shared,
}
TFP_COUNTERPART = {
    "shared": "tfp-reparameterization",
    "local_reparameterization": "tfp-local-reparameterization",
    "flipout": "tfp-flipout",
}


def _noisy_maker(estimator, noise, jit_compile="auto"):
    def make(config, x, y):
        seeds = itertools.count(1)

        def wrap(layer):
            return ESTIMATORS[estimator](layer, _noise(noise), next(seeds))

        model = keras_model(config.spec, wrap=wrap, jit_compile=jit_compile)
        return _keras_runner(model, x, y)

    return make


def _variant_classes():
    import keras
    import noisylayers

    return {
        keras.layers.Dense: noisylayers.NoisyDense,
        keras.layers.Conv2D: noisylayers.NoisyConv2D,
        keras.layers.LSTM: noisylayers.NoisyLSTM,
    }


def variant_of(layer, noise, seed, estimator):
    """The noisylayers variant of a plain Keras layer (same config).

    Raises `NotSupported` where the variant does not have `estimator` (e.g.
    `NoisyLSTM` and local reparameterization).
    """
    cls = _variant_classes()[type(layer)]
    config = layer.get_config()
    config.pop("seed", None)  # LSTM's dropout seed; the variant's is noise's
    try:
        return cls(**config, noise=noise, estimator=estimator, seed=seed)
    except ValueError as e:
        if "cannot be used" in str(e):
            raise NotSupported(
                f"n/a: {cls.__name__} has no {estimator} estimator"
            ) from e
        raise


def _variant_maker(estimator, noise):
    def make(config, x, y):
        seeds = itertools.count(1)

        def wrap(layer):
            return variant_of(layer, _noise(noise), next(seeds), estimator)

        return _keras_runner(keras_model(config.spec, wrap=wrap), x, y)

    return make


# The variant layers (NoisyDense, NoisyConv2D, NoisyLSTM), contender
# "nl-variant-<estimator>-<kind>": (estimator, kind, in --quick).
VARIANTS = [
    ("shared", "gaussian", True),
    ("flipout", "gaussian", True),
    ("local_reparameterization", "gaussian", True),
    ("shared", "learned_gaussian", False),
    ("local_reparameterization", "learned_gaussian", False),
    ("flipout", "learned_gaussian", False),
]

# The Bayes-by-backprop layers of the other libraries, per estimator: the
# learned-variance variants must be 1.5x faster than each (issue 22).
LEARNED_RIVALS = {
    "shared": ("kp-reparameterization", "tfp-reparameterization"),
    "local_reparameterization": ("kp-local-reparameterization",
                                 "tfp-local-reparameterization"),
    "flipout": ("kp-flipout", "tfp-flipout"),
}


def make_plain_xla(config, x, y):
    return _keras_runner(keras_model(config.spec, jit_compile=True), x, y)


def _weight_shapes(config):
    """Shapes of every weight the noisy contenders perturb (all of them)."""
    model = keras_model(config.spec)
    return [tuple(v.shape) for v in model.trainable_variables]


def _draw_functions(config):
    """Compiled (draw all weights' noise, empty call) for the backend."""
    import keras

    shapes = _weight_shapes(config)
    gen = keras.random.SeedGenerator(1234)
    if keras.backend.backend() == "jax":
        import jax

        @jax.jit
        def draw(state):
            with keras.StatelessScope(state_mapping=[(gen.state, state)]) as s:
                out = [
                    keras.random.normal(shape, stddev=0.01, seed=gen)
                    for shape in shapes
                ]
                return out, s.get_current_value(gen.state)

        @jax.jit
        def empty(state):
            return state + 1

        holder = [gen.state.value]

        def draw_step():
            out, holder[0] = draw(holder[0])
            return out

        counter = [gen.state.value]

        def empty_step():
            counter[0] = empty(counter[0])
            return counter[0]

        return draw_step, empty_step
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function
        def draw_step():
            return [
                keras.random.normal(shape, stddev=0.01, seed=gen)
                for shape in shapes
            ]

        @tf.function
        def empty_step():
            return tf.constant(0.0)

        return draw_step, empty_step
    raise NotSupported(f"no floor for backend {keras.backend.backend()}")


def make_floor(config, x, y):
    return Runner(train=_draw_functions(config)[0])


def make_call_overhead(config, x, y):
    return Runner(train=_draw_functions(config)[1])


# --------------------------------------------------------------------------
# The Bayes-by-backprop floor: the fewest ops a mean-field Gaussian layer of
# Keras 3 can run per training step (kernel `mu + softplus(rho) * eps`, one
# exact normal per kernel weight, the analytic KL to N(0, 1) as a layer loss,
# a deterministic bias as keras-proba's), with no configurability, checks or
# saving. No library layer of the same estimator can be much faster: it is
# the yardstick for "1.5x faster than keras-proba" (issue 22).


def _bbb_floor_layer():
    import keras
    from keras import ops

    class FloorBBB(keras.layers.Layer):
        def __init__(self, like, kl_weight, seed):
            super().__init__()
            self.conv = isinstance(like, keras.layers.Conv2D)
            self.out_dim = like.filters if self.conv else like.units
            self.kernel_size = like.kernel_size if self.conv else ()
            self.conv_args = dict(
                strides=like.strides, padding=like.padding,
                data_format=like.data_format, dilation_rate=like.dilation_rate,
            ) if self.conv else {}
            self.use_bias = like.use_bias
            self.activation = like.activation
            self.kl_weight = kl_weight
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.output_shape_of = like.compute_output_shape

        def build(self, input_shape):
            shape = (*self.kernel_size, input_shape[-1], self.out_dim)
            self.mu = self.add_weight(shape=shape, initializer="glorot_uniform")
            self.rho = self.add_weight(
                shape=shape, initializer=keras.initializers.Constant(-3.0))
            self.bias = self.add_weight(shape=(self.out_dim,), initializer="zeros") \
                if self.use_bias else None

        def call(self, x):
            sigma = ops.softplus(self.rho)
            w = self.mu + sigma * keras.random.normal(
                ops.shape(self.mu), seed=self.seed_generator)
            self.add_loss(self.kl_weight * ops.sum(
                0.5 * (ops.square(sigma) + ops.square(self.mu))
                - ops.log(sigma) - 0.5))
            y = ops.conv(x, w, **self.conv_args) if self.conv else ops.matmul(x, w)
            if self.bias is not None:
                y = y + self.bias
            return self.activation(y)

        def compute_output_shape(self, input_shape):
            return self.output_shape_of(input_shape)

    return FloorBBB


def make_bbb_floor(config, x, y):
    import keras

    layer_cls = _bbb_floor_layer()
    seeds = itertools.count(1)

    def wrap(layer):
        if not isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            raise NotSupported(f"no floor for {type(layer).__name__}")
        return layer_cls(layer, KERAS_PROBA_KL_WEIGHT, next(seeds))

    return _keras_runner(keras_model(config.spec, wrap=wrap), x, y)


# --------------------------------------------------------------------------
# keras-proba (Keras 3, any backend): TFP's variational layers ported to
# Keras 3 (`pip install keras-proba`, in the `bench` extra). Mean-field
# Normal kernel posterior with `scale = eps + softplus(u)`, N(0, 1) prior,
# deterministic bias, `kl_weight = 1 / 60000` as the learned variants.
KERAS_PROBA_KL_WEIGHT = 1.0 / 60000


def _keras_proba_maker(dense, conv2d):
    def make(config, x, y):
        try:
            import keras_proba
        except ImportError as e:
            raise NotSupported(
                "not installed: pip install keras-proba (bench extra)"
            ) from e
        import keras

        ctors = {
            keras.layers.Dense: dense and getattr(keras_proba.layers, dense),
            keras.layers.Conv2D: conv2d and getattr(keras_proba.layers, conv2d),
        }
        seeds = itertools.count(1)

        def wrap(layer):
            ctor = ctors.get(type(layer))
            if ctor is None:
                raise NotSupported(
                    f"no layer: keras-proba has no {type(layer).__name__} "
                    "with this estimator")
            config_ = layer.get_config()
            keep = ("units", "filters", "kernel_size", "strides", "padding",
                    "data_format", "dilation_rate", "activation", "use_bias")
            kwargs = {k: config_[k] for k in keep if k in config_}
            return ctor(**kwargs, kl_weight=KERAS_PROBA_KL_WEIGHT,
                        seed=next(seeds))

        return _keras_runner(keras_model(config.spec, wrap=wrap), x, y)

    return make


# --------------------------------------------------------------------------
# TensorFlow-only contenders: tfp.layers under tf_keras, and the Q&A recipe.


def _tf_keras_runner(model, x, y):
    import tensorflow as tf

    train_it = iter(tf.data.Dataset.from_tensors((x, y)).repeat())
    pred_it = iter(tf.data.Dataset.from_tensors((x,)).repeat())
    model.make_train_function()
    model.make_predict_function()
    # What `fit` and `predict` run per batch (train_on_batch / predict_on_batch
    # would build a tf.data iterator per call in tf_keras).
    return Runner(
        train=lambda: float(model.train_function(train_it)["loss"]),
        infer=lambda: model.predict_function(pred_it).numpy(),
        model=model,
    )


def make_tf_keras_plain(config, x, y):
    return _tf_keras_runner(tf_keras_model(config.spec), x, y)


def _tfp_maker(dense, conv2d):
    def make(config, x, y):
        import tensorflow_probability as tfp

        ctors = {
            "dense": dense and getattr(tfp.layers, dense),
            "conv2d": conv2d and getattr(tfp.layers, conv2d),
            "lstm": None,  # tfp.layers has no recurrent layer
        }
        return _tf_keras_runner(tf_keras_model(config.spec, ctors), x, y)

    return make


def _recipe_maker(compiled):
    """Recipe 1 of ../shared/docs/seed-qa.md, in Keras 3 (TF backend).

    get_weights / add numpy noise / set_weights / GradientTape +
    apply_gradients / set_weights(clean), as the answer writes it (its order
    restores the weights after `apply_gradients`, discarding the update; the
    cost is the same as the correct order).
    """

    def make(config, x, y):
        import keras
        import tensorflow as tf

        model = keras_model(config.spec)
        optimizer = model.optimizer
        loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        xt, yt = tf.constant(x), tf.constant(y)
        rng = np.random.default_rng(0)
        noise_stddev = 0.01

        def gradient_step(x_batch, y_batch):
            with tf.GradientTape() as tape:
                predictions = model(x_batch, training=True)
                loss = loss_fn(y_batch, predictions)
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return loss

        if compiled:
            gradient_step = tf.function(gradient_step)

        def train():
            weights = model.get_weights()
            noisy_weights = [
                w + rng.normal(0.0, noise_stddev, w.shape) for w in weights
            ]
            model.set_weights(noisy_weights)
            loss = gradient_step(xt, yt)
            model.set_weights(weights)
            return float(loss)

        return Runner(train=train, model=model)

    return make


# --------------------------------------------------------------------------
# The registry. Order = table order.


def _noisy_contenders():
    out = []
    for estimator in ESTIMATORS:
        for noise in NOISE_KINDS:
            out.append(
                Contender(
                    name=f"nl-{estimator}-{noise}",
                    label=f"noisylayers {estimator}, {noise}",
                    family="noisylayers",
                    make=_noisy_maker(estimator, noise),
                    estimator=estimator,
                    noise=noise,
                    counterpart=TFP_COUNTERPART.get(estimator),
                    quick=(noise == "gaussian"),  # --quick: one kind
                )
            )
    return out


def _variant_contenders():
    out = []
    for estimator, noise, quick in VARIANTS:
        out.append(
            Contender(
                name=f"nl-variant-{estimator}-{noise}",
                label=f"noisylayers Noisy* variant, {estimator}, {noise}",
                family="noisylayers",
                make=_variant_maker(estimator, noise),
                estimator=estimator,
                noise=noise,
                counterpart=TFP_COUNTERPART.get(estimator),
                quick=quick,
                rivals=(LEARNED_RIVALS[estimator]
                        if noise == "learned_gaussian" else ()),
            )
        )
    return out


def _make_mechanism(config, x, y):
    def wrap(layer):
        return _shared(layer, _zero_noise(), 1)

    return _keras_runner(keras_model(config.spec, wrap=wrap), x, y)


CONTENDERS = [
    Contender("plain", "plain Keras (floor)", "plain", make_plain),
    # The same plain model again: an A/A test of how far two identical
    # contenders drift apart on this machine (the noise band of the ratios).
    Contender(
        "plain-again",
        "plain Keras again (A/A noise check)",
        "reference",
        make_plain,
        memory=False,
    ),
    Contender(
        "noise-draw",
        "noise draw alone (RNG floor)",
        "floor",
        make_floor,
        memory=False,
    ),
    Contender(
        "bbb-floor",
        "Bayes-by-backprop floor: minimal mean-field Gaussian Keras layer",
        "floor",
        make_bbb_floor,
        quick=False,
        memory=False,
    ),
    Contender(
        "call-overhead",
        "empty compiled call",
        "floor",
        make_call_overhead,
        memory=False,
    ),
    *_noisy_contenders(),
    *_variant_contenders(),
    Contender(
        "nl-mechanism",
        "noisylayers shared, zero noise (no draw)",
        "reference",
        _make_mechanism,
        quick=False,
        memory=False,
    ),
    # On TensorFlow, Keras compiles with XLA only when asked (jit_compile=True
    # on CPU): XLA:CPU's Philox random numbers are ~60x slower than TF's own.
    Contender(
        "plain-xla",
        "plain Keras, jit_compile=True",
        "reference",
        make_plain_xla,
        needs_tensorflow=True,
        quick=False,
        memory=False,
    ),
    Contender(
        "nl-shared-gaussian-xla",
        "noisylayers shared, gaussian, jit_compile=True",
        "reference",
        _noisy_maker("shared", "gaussian", jit_compile=True),
        needs_tensorflow=True,
        quick=False,
        memory=False,
    ),
    Contender(
        "nl-shared-gaussian_table-xla",
        "noisylayers shared, gaussian, table sampler, jit_compile=True",
        "reference",
        _noisy_maker("shared", "gaussian_table", jit_compile=True),
        needs_tensorflow=True,
        quick=False,
        memory=False,
    ),
    Contender(
        "tf_keras-plain",
        "plain tf_keras (TFP's floor)",
        "reference",
        make_tf_keras_plain,
        needs_tensorflow=True,
        quick=False,
    ),
    Contender(
        "kp-reparameterization",
        "keras-proba DenseReparameterization / Conv2DReparameterization",
        "keras-proba",
        _keras_proba_maker("DenseReparameterization", "Conv2DReparameterization"),
        estimator="shared",
        noise="learned_gaussian",
        quick=False,
    ),
    Contender(
        "kp-local-reparameterization",
        "keras-proba DenseLocalReparameterization",
        "keras-proba",
        _keras_proba_maker("DenseLocalReparameterization", None),
        estimator="local_reparameterization",
        noise="learned_gaussian",
        quick=False,
    ),
    Contender(
        "kp-flipout",
        "keras-proba DenseFlipout / Conv2DFlipout",
        "keras-proba",
        _keras_proba_maker("DenseFlipout", "Conv2DFlipout"),
        estimator="flipout",
        noise="learned_gaussian",
        quick=False,
    ),
    Contender(
        "tfp-reparameterization",
        "tfp.layers Reparameterization",
        "tfp",
        _tfp_maker("DenseReparameterization", "Convolution2DReparameterization"),
        needs_tensorflow=True,
        estimator="shared",
    ),
    Contender(
        "tfp-local-reparameterization",
        "tfp.layers LocalReparameterization",
        "tfp",
        _tfp_maker("DenseLocalReparameterization", None),
        needs_tensorflow=True,
        estimator="local_reparameterization",
        quick=False,
    ),
    Contender(
        "tfp-flipout",
        "tfp.layers Flipout",
        "tfp",
        _tfp_maker("DenseFlipout", "Convolution2DFlipout"),
        needs_tensorflow=True,
        estimator="flipout",
    ),
    Contender(
        "recipe-compiled",
        "Q&A recipe, tf.function grads",
        "recipe",
        _recipe_maker(compiled=True),
        needs_tensorflow=True,
    ),
    Contender(
        "recipe-eager",
        "Q&A recipe, eager",
        "recipe",
        _recipe_maker(compiled=False),
        needs_tensorflow=True,
        quick=False,
    ),
]
BY_NAME = {c.name: c for c in CONTENDERS}


def select(backend, quick, names=None):
    """The contenders to run on `backend` (`names` overrides `quick`)."""
    unknown = set(names or ()) - set(BY_NAME)
    if unknown:
        raise ValueError(
            f"Unknown contenders {sorted(unknown)}; known: {sorted(BY_NAME)}"
        )
    chosen = []
    for c in CONTENDERS:
        if names is not None:
            if c.name not in names and c.name not in ("plain",):
                continue
        elif quick and not c.quick:
            continue
        if c.needs_tensorflow and backend != "tensorflow":
            continue
        chosen.append(c)
    return chosen
