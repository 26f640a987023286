"""`NoisyLayer`: what every noisy layer (wrapper and variants) shares."""

import contextlib
import warnings

import keras
import numpy as np

from noisylayers import _keras_private
from noisylayers import noise as noise_module
from noisylayers._validation import check_magnitude
from noisylayers._validation import check_seed
from noisylayers.layers import estimators as estimators_module
from noisylayers.noise import sampling
from noisylayers.noise.base import ESTIMATORS

#: Version of the noisylayers fields in saved layer configs. Files written
#: with an older version keep loading (tests/fixtures holds one).
FORMAT_VERSION = 1

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


class NoisyLayer:
    """Mixin holding the noise of a noisy layer.

    `noisylayers.WeightNoise` and the variants (`NoisyDense`, `NoisyConv2D`,
    `NoisyLSTM`, ...) mix it into a Keras layer. It owns the noise kind, the
    estimator, the target weights, the seed generator and the `enabled`,
    `scale` (and, for kinds with a KL term, `kl_weight`) variables, and runs
    a call with noise. Everything that acts on a whole model
    (`noisylayers.set_noise`, the callbacks, the ablations) works with any
    `NoisyLayer`.

    Subclasses call `_init_noise(...)` at the end of `__init__`,
    `_build_noise()` at the end of `build`, and route `call` through
    `_noise_call(inputs, training, call_layer)`; `_perturbed()` returns the
    Keras layer whose weights are perturbed (a method, not an attribute, so
    that Keras' saving does not walk it).
    """

    def _perturbed(self):
        """The Keras layer whose weights are perturbed."""
        raise NotImplementedError

    def _init_noise(self, noise, estimator, targets, seed):
        self.noise = noise_module.get(noise)
        self.targets = _check_targets(targets)
        self.seed = check_seed(seed)
        self.estimator = self._check_estimator(estimator)
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
        self._kl_weight = None
        if self.noise.has_kl:
            self._kl_weight = self.add_weight(
                name="kl_weight",
                shape=(),
                dtype="float32",
                initializer=keras.initializers.Constant(self.noise.kl_weight),
                trainable=False,
                autocast=False,
            )
        self._target_variables = None
        self._noise_states = None
        self._noise_table = None
        # Set by `noisylayers.mc_predict` around eager inference calls.
        self._sample_at_inference = False

    # -- estimators ---------------------------------------------------------

    def _family(self):
        return estimators_module.family_of(self._perturbed())

    def available_estimators(self):
        """The estimators that this layer type and noise kind support."""
        family = self._family()
        offered = family.estimators if family else ("shared",)
        return [
            e for e in offered if self.noise.unsupported_reason(e) is None
        ]

    def _check_estimator(self, estimator):
        layer = self._perturbed()
        family = estimators_module.family_of(layer)
        offered = family.estimators if family else ("shared",)
        if estimator is None:
            preferred = self.noise.preferred_estimator
            estimator = preferred if preferred in offered else "shared"
        if estimator not in ESTIMATORS:
            reason = f"unknown estimator (known: {list(ESTIMATORS)})"
        elif estimator not in offered:
            reason = f"layers of type {type(layer).__name__} do not have it"
        else:
            reason = self.noise.unsupported_reason(estimator)
        if reason is not None:
            works = [e for e in offered if self.noise.unsupported_reason(e) is None]
            raise ValueError(
                f"Estimator {estimator!r} cannot be used for layer "
                f"'{layer.name}' of type {type(layer).__name__} with noise "
                f"{self.noise!r}: {reason}. Estimators that work for this "
                f"layer type and noise kind: {works}. "
                f"Received: estimator={estimator!r}"
            )
        return estimator

    # -- targets and state ----------------------------------------------------

    def _nothing_to_perturb_message(self):
        layer = self._perturbed()
        return (
            f"Layer '{layer.name}' (of type "
            f"{layer.__class__.__name__}) has no weights to perturb: "
            f"noisy layers look for weights named {list(DEFAULT_TARGETS)}. "
            f"Received: layer={layer.name}, "
            f"with weights {[v.path for v in self._candidate_weights()]}"
        )

    def _candidate_weights(self):
        """The weights of the perturbed layer (not the noise's own)."""
        own = {
            id(v)
            for v in (self._enabled, self._scale, self._kl_weight, self._noise_table)
        }
        own.update(id(v) for v in getattr(self, "_noise_variables", ()))
        return [v for v in self._perturbed().weights if id(v) not in own]

    def _check_perturbable(self):
        """Refuses a perturbed layer that LoRA or quantization changed.

        Run at build, in every noisy call and when saving: enabling LoRA on
        (or quantizing) a layer after noise was put on it would silently
        stop the noise on its kernel and write a file that cannot load.
        """
        layer = self._perturbed()
        for sub in _keras_private.sublayers(layer):
            if getattr(sub, "lora_enabled", False):
                raise ValueError(
                    f"Cannot put noise on the weights of layer '{sub.name}': "
                    "LoRA is enabled, so its trainable weights are the LoRA "
                    "factors, not the kernel. Put noise on the layer before "
                    f"enabling LoRA, or disable LoRA. Received: layer="
                    f"{layer.name}"
                )
            mode = getattr(sub, "quantization_mode", None)
            if mode is not None:
                raise ValueError(
                    f"Cannot put noise on the weights of layer '{sub.name}': "
                    f"it is quantized ({mode}). Quantize the model after "
                    "`noisylayers.unwrap(model)` instead. Received: "
                    f"layer={layer.name}"
                )

    def _resolve_targets(self):
        """The variables to perturb; raises a `ValueError` if there are none."""
        layer = self._perturbed()
        self._check_perturbable()
        weights = self._candidate_weights()
        if self.targets is None:
            selected = [
                v
                for v in weights
                if any(_matches(v, t) for t in DEFAULT_TARGETS)
                and self.noise.applies_to(v)
            ]
            if not selected:
                raise ValueError(self._nothing_to_perturb_message())
        else:
            for target in self.targets:
                if not any(_matches(v, target) for v in weights):
                    raise ValueError(
                        f"Argument `targets` names a weight that layer "
                        f"'{layer.name}' does not have: {target!r}. Its "
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
                    f"{layer.name}, targets={self.targets}"
                )
        family = self._family()
        if family is not None and self.estimator != "shared":
            family.check_targets(layer, selected, self.estimator)
        return selected

    def _build_noise(self):
        """Resolves the targets and builds the noise kind's variables."""
        self._target_variables = self._resolve_targets()
        table = getattr(self.noise, "sampler", "exact") == "table"
        if table and self._noise_table is None:
            sizes = [int(np.prod(v.shape)) for v in self._target_variables]
            self._noise_table = self.add_weight(
                name="noise_table",
                shape=(sampling.table_size(sizes),),
                initializer=keras.initializers.RandomNormal(0.0, 1.0, seed=self.seed),
                dtype="float32",
                trainable=False,
                autocast=False,
            )
        before = {id(v) for v in self.weights}
        self._noise_states = [
            self.noise.build(self, v, _fan_in(self._perturbed(), v))
            for v in self._target_variables
        ]
        self._noise_variables = [
            v for v in self.weights if id(v) not in before
        ]
        self._warn_if_below_resolution()

    def _warn_if_below_resolution(self):
        """Warns when fixed additive noise vanishes in a low-precision cast."""
        dtype = keras.backend.standardize_dtype(self.compute_dtype)
        stddev = getattr(self.noise, "stddev", None)
        if dtype not in ("float16", "bfloat16") or type(self.noise).__name__ != "Gaussian":
            return
        for v in self._target_variables:
            value = keras.ops.convert_to_numpy(_keras_private.read_value(v))
            magnitude = float(np.mean(np.abs(value)))
            step = float(np.finfo(dtype if dtype == "float16" else np.float32).eps)
            if dtype == "bfloat16":
                step = 2.0**-7
            if stddev < 0.5 * step * magnitude:
                warnings.warn(
                    f"Layer '{self.name}': noise of stddev {stddev:g} is below "
                    f"the resolution of {dtype} at the magnitude of weight "
                    f"'{v.path}' (mean |w| {magnitude:.3g}, step "
                    f"{step * magnitude:.3g}): most of it vanishes when the "
                    "noisy weight is cast for compute. Use a larger stddev, "
                    "a relative kind (`MultiplicativeGaussian`, "
                    "`RelativeGaussian`) or a float32 policy for this layer.",
                    stacklevel=2,
                )
                return

    @property
    def noise_table(self):
        """The layer's table of normals (`sampler="table"`), else `None`.

        A non-trainable variable that is not saved: it is regenerated from
        the layer's `seed` when the layer builds.
        """
        return self._noise_table

    def save_own_variables(self, store):
        # Like `Layer.save_own_variables`, without the noise table.
        for i, v in enumerate(self._saved_variables()):
            store[str(i)] = v

    def load_own_variables(self, store):
        variables = self._saved_variables()
        if len(store.keys()) != len(variables):
            raise ValueError(
                f"Layer '{self.name}' expected {len(variables)} variables, "
                f"but received {len(store.keys())} variables during loading. "
                f"Expected: {[v.name for v in variables]}"
            )
        for i, v in enumerate(variables):
            v.assign(store[str(i)])

    def _saved_variables(self):
        return [
            v
            for v in _keras_private.own_variables(self)
            if v is not self._noise_table
        ]

    @property
    def target_variables(self):
        """The weights that receive noise (after build)."""
        return list(self._target_variables or [])

    def noise_state(self, variable):
        """The noise kind's state for a target weight (None if it has none)."""
        for v, state in zip(self._target_variables or (), self._noise_states or ()):
            if v is variable:
                return state
        raise ValueError(
            f"Weight '{variable.path}' is not a target of layer '{self.name}'."
        )

    # -- controls ---------------------------------------------------------------

    @property
    def enabled(self):
        """Whether training calls perturb the weights (a saved variable)."""
        return bool(keras.ops.convert_to_numpy(self._enabled))

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
        return float(keras.ops.convert_to_numpy(self._scale))

    @scale.setter
    def scale(self, value):
        self._scale.assign(check_magnitude("scale", value))

    @property
    def kl_weight(self):
        """Factor on the KL term (a saved variable), `None` without a KL."""
        if self._kl_weight is None:
            return None
        return float(keras.ops.convert_to_numpy(self._kl_weight))

    @kl_weight.setter
    def kl_weight(self, value):
        if self._kl_weight is None:
            raise ValueError(
                f"Layer '{self.name}' has no KL term: its noise {self.noise!r} "
                f"has no `kl_weight`. Received: kl_weight={value!r}"
            )
        self._kl_weight.assign(check_magnitude("kl_weight", value))

    # -- the call ---------------------------------------------------------------

    def _inference_mapping(self):
        mapping = []
        for v, state in zip(self._target_variables, self._noise_states):
            value = self.noise.inference_value(_keras_private.read_value(v), state)
            if value is not None:
                mapping.append((v, value))
        return mapping

    def noisy_weights(self, seed, scale=1.0):
        """Draws one noisy value of each target weight, as `shared` would.

        Args:
            seed: A `keras.random.SeedGenerator` (or seed) to draw from.
            scale: Multiplies the perturbation.

        Returns:
            A list of `(variable, noisy_value)` pairs, one per target.
        """
        values = [_keras_private.read_value(v) for v in self._target_variables]
        perturbations = self.noise.perturbations(values, seed, self._noise_states)
        return [
            (v, value + keras.ops.cast(scale, p.dtype) * p)
            for v, value, p in zip(self._target_variables, values, perturbations)
        ]

    def _noise_call(self, inputs, training, call_layer):
        """Runs `call_layer()` with noise in training (or MC sampling).

        Args:
            inputs: The inputs of the call (for the per-example estimators).
            training: The call's `training` argument.
            call_layer: Function of no argument running the plain layer's
                computation (with its own `training` setting).
        """
        if self._target_variables is not None:
            self._check_perturbable()
        if not (training or self._sample_at_inference):
            mapping = self._inference_mapping()
            if not mapping:
                return call_layer()
            with _keras_private.substitute(mapping, owner=self):
                return call_layer()
        targets = self._target_variables
        states = self._noise_states
        values = [_keras_private.read_value(v) for v in targets]
        scale = keras.ops.where(self._enabled.value, self._scale.value, 0.0)
        perturbations = [None] * len(targets)
        if self.estimator == "local_reparameterization":
            moments = {
                id(v): (value, self.noise.variance(value, state))
                for v, value, state in zip(targets, values, states)
            }
            outputs = self._family().local_reparameterization(
                self._perturbed(), inputs, moments, scale, self.seed_generator
            )
        else:
            perturbations = self.noise.perturbations(
                values, self.seed_generator, states
            )
            if self.estimator == "shared":
                mapping = [
                    (v, value + keras.ops.cast(scale, p.dtype) * p)
                    for v, value, p in zip(targets, values, perturbations)
                ]
                with _keras_private.substitute(mapping, owner=self):
                    outputs = call_layer()
            else:
                draws = {
                    id(v): (value, keras.ops.cast(scale, p.dtype) * p)
                    for v, value, p in zip(targets, values, perturbations)
                }
                outputs = self._family().flipout(
                    self._perturbed(),
                    inputs,
                    draws,
                    self.seed_generator,
                    call_layer,
                )
        if self._kl_weight is not None and training:
            kls = [
                self.noise.kl(value, state, self.seed_generator, p)
                for value, state, p in zip(values, states, perturbations)
            ]
            kl = keras.ops.sum(
                keras.ops.stack([keras.ops.cast(k, "float32") for k in kls])
            )
            self.add_loss(self._kl_weight.value * kl)
        return outputs

    @classmethod
    @contextlib.contextmanager
    def _loading(cls, config):
        """Checks a saved config's format; names the layer in any error."""
        config = dict(config)
        name = config.get("name", "?")
        version = config.pop("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(
                f"Cannot load noisy layer '{name}' ({cls.__name__}): it was "
                f"saved in noisylayers config format {version!r}, newer than "
                f"this version's ({FORMAT_VERSION}). Upgrade noisylayers. "
                f"Received: format_version={version!r}"
            )
        missing = [k for k in ("noise",) if k not in config]
        if missing:
            raise ValueError(
                f"Cannot load noisy layer '{name}' ({cls.__name__}): its saved "
                f"config lacks the field(s) {missing}. Received: "
                f"{sorted(config)}"
            )
        try:
            yield config
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(
                f"Cannot load noisy layer '{name}' ({cls.__name__}) from its "
                f"saved config: {e}"
            ) from e

    def _noise_config(self):
        if self._target_variables is not None:
            self._check_perturbable()
        return {
            "format_version": FORMAT_VERSION,
            "noise": noise_module.serialize(self.noise),
            "estimator": self.estimator,
            "targets": None if self.targets is None else list(self.targets),
            "seed": self.seed,
        }


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


def _fan_in(layer, variable):
    """Inputs per output unit of the (sub)layer that owns `variable`."""
    shape = tuple(variable.shape)
    if len(shape) >= 2:
        return int(np.prod(shape[:-1]))
    # A bias: the fan-in of a kernel of the same sublayer.
    prefix = variable.path.rsplit("/", 1)[0]
    for v in layer.weights:
        if len(v.shape) >= 2 and v.path.rsplit("/", 1)[0] == prefix:
            if "recurrent" not in v.name:
                return int(np.prod(tuple(v.shape)[:-1]))
    return 1


class NoisyVariant(NoisyLayer):
    """Mixin turning a Keras layer class into a noisy variant of itself.

    The variant *is* its Keras layer (same arguments, weights and
    computation in inference) plus the noise. Keras' `Dense` and `Conv`
    save only their kernel and bias, so the variant saves and loads every
    variable it owns (`enabled`, `scale`, a learned kind's variables) the
    way a generic `Layer` does.
    """

    def _perturbed(self):
        return self

    def _refuse(self, what):
        raise ValueError(
            f"Layer '{self.name}' of type {type(self).__name__} does not "
            f"support {what}: its noise is defined on the float kernel. Use "
            f"`noisylayers.unwrap` to get the plain Keras layer first."
        )

    def enable_lora(self, *args, **kwargs):
        self._refuse("LoRA")

    def quantize(self, *args, **kwargs):
        self._refuse("quantization")

    def get_config(self):
        return {**super().get_config(), **self._noise_config()}

    @classmethod
    def from_config(cls, config):
        with cls._loading(config) as config:
            return super().from_config(config)


def check_no_lora(cls, kwargs):
    """Refuses a `lora_rank` argument to a variant's constructor."""
    if kwargs.get("lora_rank"):
        raise ValueError(
            f"{cls.__name__} does not support LoRA: its noise is defined on "
            f"the float kernel. Received: lora_rank={kwargs['lora_rank']!r}"
        )
