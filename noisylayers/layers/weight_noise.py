"""`WeightNoise`: noise on the weights of any Keras layer."""

import inspect

import keras

from noisylayers import _keras_private
from noisylayers.layers import saving
from noisylayers.layers.base import NoisyLayer


@keras.saving.register_keras_serializable(package="noisylayers")
class WeightNoise(NoisyLayer, keras.layers.Wrapper):
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
    and its losses (`add_loss`, activity regularizers) are counted once,
    with every estimator. `model.summary(expand_nested=True)` shows the
    wrapped layer under the wrapper.

    `enabled` and `scale` can be changed at any time, also after `compile`:
    they are non-trainable variables read inside the compiled step, so the
    next training batch uses the new values. They are saved with the model.
    While `enabled` is False, the numbers are still drawn in training but the
    weights are used unperturbed.

    The noise stream restarts from `seed` when a saved model is loaded (Keras
    does not save random-generator state). A learned kind
    (`noisylayers.noise.LearnedGaussian`, ...) creates its variables (e.g.
    `kernel_rho`) on the wrapper, which trains and saves them; the wrapped
    layer's own weights stay the clean (mean) weights.

    Args:
        layer: The `keras.layers.Layer` instance to wrap.
        noise: The noise kind: a `noisylayers.noise.Noise` instance, a string
            alias (any key of `noisylayers.noise.ALIASES`) or class name, a
            spec with parameters (`"gaussian:0.05"`, see
            `noisylayers.noise.parse`) or a config dict. Defaults to
            `"gaussian"`, additive Gaussian noise of standard deviation 0.01.
        targets: `None` to perturb every weight of the wrapped layer (and its
            sublayers) named `kernel`, `bias`, `recurrent_kernel`,
            `depthwise_kernel`, `pointwise_kernel` or `embeddings`; or a list
            of names selecting weights by name (`"kernel"`) or path suffix
            (`"forward_lstm/lstm_cell/kernel"`). Each name must match at
            least one weight.
        seed: Optional integer seed making the noise reproducible. Wrappers
            without a seed draw independent noise.
        estimator: How a training call samples: `"shared"` (default): one
            weight sample per call, for any layer; `"flipout"`: the same
            perturbation decorrelated per example by random signs (Dense,
            Conv1D/2D/3D and LSTM, with symmetric kinds);
            `"local_reparameterization"`: the pre-activations drawn from
            their Gaussian marginal, one number per output (Dense and
            Conv1D/2D/3D, with Gaussian kinds). `None` picks the kind's
            preferred estimator where the layer has it, else `"shared"`.
            The code is the variants' (`noisylayers.NoisyDense`, ...).
        **kwargs: Base layer keyword arguments, such as `name`.

    Call arguments:
        inputs: The inputs of the wrapped layer: as for the wrapped layer,
            one tensor (or structure), or several positional or keyword
            inputs (`wrapper(query, value)`, `wrapper(query=q, value=v)`
            for a `MultiHeadAttention`). A layer of several inputs is
            built from the shapes of all of them.
        training: Python boolean, by keyword. Noise is applied only when
            True.
        mask: Optional mask, passed on to the wrapped layer if its `call`
            accepts one.
        **kwargs: Further keyword arguments of the wrapped layer's `call`
            (e.g. `initial_state`, `attention_mask`).

    Returns:
        The output of the wrapped layer, computed with noisy weights in
        training and with its clean weights otherwise.

    Raises:
        ValueError: if `layer` is not a Keras layer, or is (or holds) a
            noisy layer already (`WeightNoise`, `NoisyDense`, ...: two
            noises would stack); if `estimator` is
            unknown or does not work for this layer type or noise kind (the
            message lists those that do); if it has nothing to
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

    def __init__(
        self,
        layer,
        noise="gaussian",
        targets=None,
        seed=None,
        estimator=None,
        **kwargs,
    ):
        if not isinstance(layer, keras.layers.Layer):
            raise ValueError(
                "Argument `layer` must be a `keras.layers.Layer` instance. "
                f"Received: layer={layer!r} (of type {type(layer).__name__})"
            )
        _refuse_noisy(layer)
        super().__init__(layer, **kwargs)
        self._init_noise(noise, estimator, targets, seed)
        self.supports_masking = layer.supports_masking
        params = inspect.signature(layer.call).parameters.values()
        self._layer_takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
        self._layer_call_args = {p.name for p in params}
        if layer.built:
            self._target_variables = self._resolve_targets()
        elif not layer.weights and _builds_nothing(layer):
            raise ValueError(self._nothing_to_perturb_message())

    def perturbed_layer(self):
        return self.layer

    @property
    def layers(self):
        """The wrapped layer, in a list (what `model.summary` expands)."""
        return [self.layer]

    def __call__(self, *args, **kwargs):
        if not self.built and not self.layer.built:
            # Keras would build this wrapper from its first input only; a
            # layer of several inputs (attention) needs the shapes of all.
            with keras.name_scope(self.name):
                _build_from_inputs(self.layer, args, kwargs)
        return super().__call__(*args, **kwargs)

    def build(self, input_shape=None):
        super().build(input_shape)
        self._build_noise()

    def get_build_config(self):
        # The wrapped layer's shapes: all of its inputs, not only the first.
        if not self.built:
            return super().get_build_config()
        return self.layer.get_build_config()

    def build_from_config(self, config):
        config = config or {}
        if "shapes_dict" in config and not self.layer.built:
            self.layer.build(**config["shapes_dict"])
        self.build(config.get("input_shape"))

    def _layer_kwargs(self, kwargs):
        """The keyword arguments of a wrapper call that the layer accepts."""
        if kwargs.get("mask", 0) is None:
            del kwargs["mask"]
        if self._layer_takes_kwargs:
            return kwargs
        return {k: v for k, v in kwargs.items() if k in self._layer_call_args}

    def call(self, inputs=None, *args, training=None, mask=None, **kwargs):
        if inputs is None:
            # Inputs given by keyword (`query=q, value=v`): Keras filled
            # `mask` from them as one structure, which the wrapped layer
            # would misread; its own call takes each input's mask.
            layer_args = args
            if isinstance(mask, dict):
                mask = None
        else:
            layer_args = (inputs, *args)
        kwargs = self._layer_kwargs({"mask": mask, **kwargs})

        ran = []

        def call_layer():
            ran.append(True)
            return self.layer(*layer_args, training=training, **kwargs)

        outputs = self._noise_call(inputs, training, call_layer)
        if not ran:
            # The estimator computed the layer's linear map itself (Flipout,
            # local reparameterization), without the layer's `__call__`.
            self._add_activity_losses(outputs)
        return outputs

    def _add_activity_losses(self, outputs):
        """The wrapped layer's activity-regularizer losses, as its
        `__call__` adds them (normalized by the batch size)."""
        regularizer = self.layer.activity_regularizer
        if regularizer is None:
            return
        for output in keras.tree.flatten(outputs):
            if keras.ops.is_tensor(output):
                loss = regularizer(output)
                if len(output.shape) > 0:
                    batch_size = keras.ops.cast(
                        keras.ops.shape(output)[0], dtype=loss.dtype
                    )
                    loss = keras.ops.divide_no_nan(loss, batch_size)
                self.add_loss(loss)

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
        return _keras_private.trace_output_spec(self, *args, **kwargs)

    @property
    def reset_state(self):
        """The wrapped layer's `reset_state` (e.g. a stateful RNN's).

        Raises `AttributeError` when the wrapped layer has none, so that
        `hasattr(layer, "reset_state")` answers for the wrapped layer.
        """
        return self.layer.reset_state

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def get_config(self):
        return {**super().get_config(), **self._noise_config()}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # `Wrapper.from_config` pops "layer" from the dict it is given.
        with saving.loading(cls, config) as config:
            return super().from_config(config, custom_objects=custom_objects)


def _refuse_noisy(layer):
    """Refuses a layer that is, or holds, a noisy layer already."""
    for sub in _keras_private.sublayers(layer):
        if isinstance(sub, NoisyLayer):
            inside = "" if sub is layer else f" (inside layer '{layer.name}')"
            raise ValueError(
                f"Cannot wrap layer '{sub.name}'{inside} in WeightNoise: it "
                f"is already a noisy layer ({type(sub).__name__} with noise "
                f"{sub.noise!r}), and a second noise would stack on its "
                "first. Give it the noise you want with its own arguments, "
                "or wrap the plain Keras layer (`noisylayers.unwrap` "
                f"returns a copy with plain layers). Received: "
                f"layer={layer.name} (of type {type(layer).__name__})"
            )


def _build_from_inputs(layer, args, kwargs):
    """Builds `layer` from the shapes of all the inputs of its call.

    What Keras' `Layer.__call__` does before a call: the shape of each tensor
    argument of `layer.call`, as `build(input_shape)` for a `build` of one
    argument and as `build(query_shape=..., value_shape=...)` otherwise.
    Calls with one tensor input are left to `build`, as before (so their
    variable paths do not change); so are arguments that do not bind, for
    the call to report.
    """
    signature = inspect.signature(layer.call)
    kwargs = {
        k: v
        for k, v in kwargs.items()
        if k not in ("training", "mask") or k in signature.parameters
    }
    try:
        bound = signature.bind(*args, **kwargs).arguments
    except TypeError:
        return
    shapes = {}
    for name, value in bound.items():
        if name == "mask" or value is None or _catch_all(signature, name):
            continue
        flat = keras.tree.flatten(value)
        if flat and all(x is None or _is_array(x) for x in flat):
            shapes[f"{name}_shape"] = keras.tree.map_structure(
                lambda x: None if x is None else tuple(x.shape), value
            )
    if len(shapes) < 2:
        return
    params = [
        p.name
        for p in inspect.signature(layer.build).parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if len(params) > 1:
        layer.build(**{k: v for k, v in shapes.items() if k in params})
    else:
        layer.build(next(iter(shapes.values())))


def _catch_all(signature, name):
    param = signature.parameters[name]
    return param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD)


def _is_array(x):
    return hasattr(x, "shape") and hasattr(x, "dtype")


def _overrides(layer, method):
    return getattr(type(layer), method) is not getattr(keras.layers.Layer, method)


def _builds_nothing(layer):
    """True for a layer class that creates no weights in `build` (Flatten...)."""
    return not _overrides(layer, "build")
