"""`WeightNoise`: noise on the weights of any Keras layer."""

import inspect

import keras
import numpy as np

from noisylayers import _keras_private
from noisylayers import noise as noise_module
from noisylayers._validation import check_number
from noisylayers._validation import check_seed

DEFAULT_TARGETS = (
    "kernel",
    "bias",
    "recurrent_kernel",
    "depthwise_kernel",
    "pointwise_kernel",
    "embeddings",
)


def _matches(variable, name):
    """Whether a target `name` selects `variable` (by name or path suffix)."""
    return variable.name == name or variable.path.endswith("/" + name)


@keras.saving.register_keras_serializable(package="noisylayers")
class WeightNoise(keras.layers.Wrapper):
    """Puts noise on the weights of a layer during training.

    In a training call, `WeightNoise` draws noise for each target weight of
    the wrapped layer (by default its kernels, biases, recurrent kernels and
    embeddings) and runs the wrapped layer's own `call` on the noisy values.
    The variables themselves are never assigned: gradients flow through
    `noisy = clean + perturbation` to the clean weights, which the optimizer
    updates. In an inference call (`training=False` or `None`) it returns
    exactly what the wrapped layer returns, and does nothing else.

    Recurrent layers (`LSTM`, `GRU`, `SimpleRNN`, `Bidirectional`) get one
    noise draw per call, shared by all the time steps of a sequence
    (Graves 2011). Everything else the wrapped layer does keeps working:
    BatchNormalization statistics and its own dropout randomness are updated,
    and its losses (`add_loss`, activity regularizers) are counted once.

    `enabled` and `scale` can be changed at any time, also after `compile`:
    they are non-trainable variables read inside the compiled step, so the
    next training batch uses the new values. They are saved with the model.
    While `enabled` is False, the numbers are still drawn in training but the
    weights are used unperturbed.

    The noise stream restarts from `seed` when a saved model is loaded (Keras
    does not save random-generator state).

    Args:
        layer: The `keras.layers.Layer` instance to wrap.
        noise: The noise kind: a `noisylayers.noise.Noise` instance, a string
            alias (`"gaussian"`, `"multiplicative_gaussian"`,
            `"dropconnect"`) or a config dict. Defaults to `"gaussian"`,
            additive Gaussian noise of standard deviation 0.01.
        targets: `None` to perturb every weight of the wrapped layer (and its
            sublayers) named `kernel`, `bias`, `recurrent_kernel`,
            `depthwise_kernel`, `pointwise_kernel` or `embeddings`; or a list
            of names selecting weights by name (`"kernel"`) or path suffix
            (`"forward_lstm/lstm_cell/kernel"`). Each name must match at
            least one weight.
        seed: Optional integer seed making the noise reproducible. Wrappers
            without a seed draw independent noise.
        **kwargs: Base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: The inputs of the wrapped layer.
        training: Python boolean. Noise is applied only when True.
        mask: Optional mask, passed on to the wrapped layer if its `call`
            accepts one.
        **kwargs: Further keyword arguments of the wrapped layer's `call`
            (e.g. `initial_state`).

    Returns:
        The output of the wrapped layer, computed with noisy weights in
        training and with its clean weights otherwise.

    Raises:
        ValueError: if `layer` is not a Keras layer; if it has nothing to
            perturb, a name in `targets` matches no weight, or a target is
            a LoRA-enabled or quantized weight (raised at construction when
            the layer is already built, else when it is built).
        TypeError: if `targets` is not a list of strings or `seed` not an
            integer.

    Example:

    ```python
    model = keras.Sequential([
        keras.Input((64,)),
        noisylayers.WeightNoise(keras.layers.Dense(128, activation="relu"),
                                noise=noisylayers.noise.Gaussian(0.05)),
        noisylayers.WeightNoise(keras.layers.Dense(10), noise="dropconnect"),
    ])
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y)                  # noisy weights in every training step
    model.predict(x)                 # the clean weights, deterministic
    model.layers[0].scale = 0.5      # halve the noise from the next batch on
    ```
    """

    def __init__(self, layer, noise="gaussian", targets=None, seed=None, **kwargs):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "Argument `layer` must be a `keras.layers.Layer` instance. "
                f"Received: layer={layer!r} (of type {type(layer).__name__})"
            )
        super().__init__(layer, **kwargs)
        self.noise = noise_module.get(noise)
        self.targets = self._check_targets(targets)
        self.seed = check_seed(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self._enabled = self.add_weight(
            name="noise_enabled",
            shape=(),
            dtype="bool",
            initializer="ones",
            trainable=False,
            autocast=False,
        )
        self._scale = self.add_weight(
            name="noise_scale",
            shape=(),
            dtype="float32",
            initializer="ones",
            trainable=False,
            autocast=False,
        )
        self.supports_masking = layer.supports_masking
        params = inspect.signature(layer.call).parameters.values()
        self._layer_takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
        self._layer_call_args = {p.name for p in params}
        self._target_variables = None
        if layer.built:
            self._target_variables = self._resolve_targets()
        elif not layer.weights and _builds_nothing(layer):
            raise ValueError(self._nothing_to_perturb_message())

    @staticmethod
    def _check_targets(targets):
        if targets is None:
            return None
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(
            isinstance(t, str) and t for t in targets
        ):
            raise TypeError(
                "Argument `targets` must be None or a list of weight names. "
                f"Received: targets={targets!r}"
            )
        if not targets:
            raise ValueError(
                "Argument `targets` must name at least one weight (use None "
                f"for the defaults). Received: targets={targets!r}"
            )
        return tuple(targets)

    def _nothing_to_perturb_message(self):
        return (
            f"Layer '{self.layer.name}' (of type "
            f"{self.layer.__class__.__name__}) has no weights to perturb: "
            f"WeightNoise looks for weights named {list(DEFAULT_TARGETS)}. "
            f"Received: layer={self.layer.name}, "
            f"with weights {[v.path for v in self.layer.weights]}"
        )

    def _resolve_targets(self):
        """The variables to perturb; raises a `ValueError` if there are none."""
        for sub in _keras_private.sublayers(self.layer):
            if getattr(sub, "lora_enabled", False):
                raise ValueError(
                    f"Cannot put noise on the weights of layer '{sub.name}' "
                    "(inside WeightNoise): LoRA is enabled, so its trainable "
                    "weights are the LoRA factors, not the kernel. Wrap the "
                    "layer before enabling LoRA, or disable LoRA. "
                    f"Received: layer={self.layer.name}"
                )
            mode = getattr(sub, "quantization_mode", None)
            if mode is not None:
                raise ValueError(
                    f"Cannot put noise on the weights of layer '{sub.name}' "
                    f"(inside WeightNoise): it is quantized ({mode}). "
                    f"Received: layer={self.layer.name}"
                )
        weights = self.layer.weights
        if self.targets is None:
            selected = [
                v for v in weights if any(_matches(v, t) for t in DEFAULT_TARGETS)
            ]
            if not selected:
                raise ValueError(self._nothing_to_perturb_message())
        else:
            for target in self.targets:
                if not any(_matches(v, target) for v in weights):
                    raise ValueError(
                        f"Argument `targets` names a weight that layer "
                        f"'{self.layer.name}' does not have: {target!r}. Its "
                        f"weights are {[v.path for v in weights]}. "
                        f"Received: targets={list(self.targets)}"
                    )
            selected = [
                v for v in weights if any(_matches(v, t) for t in self.targets)
            ]
        for v in selected:
            if not keras.backend.is_float_dtype(v.dtype):
                raise ValueError(
                    f"Cannot put noise on weight '{v.path}' of dtype "
                    f"{v.dtype} (a quantized layer?): only floating-point "
                    f"weights can be perturbed. Received: layer="
                    f"{self.layer.name}, targets={self.targets}"
                )
        return selected

    def build(self, input_shape=None):
        super().build(input_shape)
        self._target_variables = self._resolve_targets()

    @property
    def target_variables(self):
        """The wrapped layer's variables that receive noise (after build)."""
        return list(self._target_variables or [])

    @property
    def enabled(self):
        """Whether training calls perturb the weights (a saved variable)."""
        return bool(keras.ops.convert_to_numpy(self._enabled.value))

    @enabled.setter
    def enabled(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(
                "Attribute `enabled` must be a boolean. "
                f"Received: enabled={value!r}"
            )
        self._enabled.assign(bool(value))

    @property
    def scale(self):
        """Factor on the noise magnitude (a saved variable, default 1)."""
        return float(keras.ops.convert_to_numpy(self._scale.value))

    @scale.setter
    def scale(self, value):
        self._scale.assign(check_number("scale", value, 0.0))

    def _layer_kwargs(self, kwargs):
        """The keyword arguments of a wrapper call that the layer accepts."""
        if kwargs.get("mask", 0) is None:
            del kwargs["mask"]
        if self._layer_takes_kwargs:
            return kwargs
        return {k: v for k, v in kwargs.items() if k in self._layer_call_args}

    def call(self, inputs, training=None, mask=None, **kwargs):
        kwargs = self._layer_kwargs({"mask": mask, **kwargs})
        if not training:
            return self.layer(inputs, training=training, **kwargs)
        scale = keras.ops.where(self._enabled.value, self._scale.value, 0.0)
        mapping = [
            (v, self.noise(_keras_private.read_value(v), self.seed_generator, scale))
            for v in self._target_variables
        ]
        with _keras_private.substitute(mapping, owner=self):
            return self.layer(inputs, training=training, **kwargs)

    def compute_output_shape(self, *args, **kwargs):
        # Needed by layers that wrap this one (e.g. `TimeDistributed`); a
        # wrapped layer without its own raises `NotImplementedError`, as a
        # plain Keras layer would.
        return self.layer.compute_output_shape(*args, **kwargs)

    def compute_output_spec(self, *args, **kwargs):
        # Delegating avoids running the inner call symbolically (slow, and a
        # cuDNN fallback message for LSTMs on GPU), but only a layer with its
        # own `compute_output_shape` can answer; otherwise trace `call`.
        if _overrides(self.layer, "compute_output_shape"):
            kwargs = self._layer_kwargs(dict(kwargs))
            return self.layer.compute_output_spec(*args, **kwargs)
        return keras.Operation.compute_output_spec(self, *args, **kwargs)

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def get_config(self):
        config = {
            "noise": noise_module.serialize(self.noise),
            "targets": None if self.targets is None else list(self.targets),
            "seed": self.seed,
        }
        return {**super().get_config(), **config}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # `Wrapper.from_config` pops "layer" from the dict it is given.
        return super().from_config(dict(config), custom_objects=custom_objects)


def _overrides(layer, method):
    return getattr(type(layer), method) is not getattr(keras.layers.Layer, method)


def _builds_nothing(layer):
    """True for a layer class that creates no weights in `build` (Flatten...)."""
    return not _overrides(layer, "build")
