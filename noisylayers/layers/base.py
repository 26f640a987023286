"""`NoisyLayer`: what every noisy layer (wrapper and variants) shares."""

import warnings

import keras
import numpy as np

from noisylayers import _keras_private
from noisylayers import noise as noise_module
from noisylayers._validation import check_magnitude
from noisylayers._validation import check_seed
from noisylayers.layers import estimators as estimators_module
from noisylayers.layers import kl_log
from noisylayers.layers import noise_table as noise_table_module
from noisylayers.layers import saving
from noisylayers.layers import targets as targets_module
from noisylayers.layers.estimators import families

# The steps of the subclass contract that a layer has gone through.
_INITIALIZED = "initialized"
_BUILT = "built"


class NoisyLayer:
    """Mixin holding the noise of a noisy layer.

    `noisylayers.WeightNoise` and the variants (`NoisyDense`, `NoisyConv2D`,
    `NoisyLSTM`, ...) mix it into a Keras layer. It owns the noise kind, the
    estimator, the target weights, the seed generator and the `enabled`,
    `scale` (and, for kinds with a KL term, `kl_weight`) variables, and runs
    a call with noise. Everything that acts on a whole model
    (`noisylayers.set_noise`, the callbacks, the ablations) works with any
    `NoisyLayer`.

    **The contract of a subclass**, what the host Keras layer calls and in
    which order (each step checks that the one before it ran, and raises a
    `RuntimeError` naming the missing step otherwise):

    1. `perturbed_layer()`: the subclass returns the Keras layer whose
       weights are perturbed (`self` for a variant, the wrapped layer for
       `WeightNoise`). A method, not an attribute, so that Keras' saving
       does not walk it; it must answer from the start of `_init_noise`.
    2. `_init_noise(noise, estimator, targets, seed)`: once, at the end of
       `__init__` (after the Keras layer's own `__init__`). Checks the
       arguments and creates the `enabled`, `scale` (and `kl_weight`)
       variables and the seed generator.
    3. `_build_noise()`: at the end of `build`, once the perturbed layer's
       weights exist. Resolves the targets and builds the noise kind's
       variables (and the noise table).
    4. `call` returns `_noise_call(inputs, training, call_layer)`, where
       `call_layer()` runs the plain layer's computation. In training (or
       while `sample_at_inference`) the layer's estimator runs the call;
       otherwise `call_layer()` runs on the kind's inference values.
    5. `get_config` adds `_noise_config()`, and `from_config` builds the
       layer within `noisylayers.layers.saving.loading(cls, config)`.

    `noisylayers.layers.variant.NoisyVariant` shows the four lines a
    variant needs.
    """

    _noise_stage = None

    def perturbed_layer(self):
        """The Keras layer whose weights are perturbed."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement `perturbed_layer()`, "
            "returning the Keras layer whose weights it perturbs."
        )

    def _require_stage(self, stage, method, step):
        order = (None, _INITIALIZED, _BUILT)
        if order.index(self._noise_stage) < order.index(stage):
            raise RuntimeError(
                f"Layer '{self.name}' of type {type(self).__name__} ran "
                f"`{method}` before `{step}`. A `NoisyLayer` calls "
                "`_init_noise(...)` at the end of `__init__`, `_build_noise()` "
                "at the end of `build`, and `_noise_call(...)` in `call` "
                "(see the `NoisyLayer` docstring)."
            )

    def _init_noise(self, noise, estimator, targets, seed):
        if self._noise_stage is not None:
            raise RuntimeError(
                f"Layer '{self.name}' of type {type(self).__name__} ran "
                "`_init_noise` twice: call it once, at the end of `__init__`."
            )
        self.noise = noise_module.get(noise)
        self.targets = targets_module.standardize_targets(targets)
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
        self._kl_log = None
        if self.noise.has_kl:
            # The `kl` entry of `fit`'s logs (see `layers/kl_log.py`).
            self._kl_log = kl_log.add_kl_log(self)
            self._kl_log_metric = kl_log.KLLog()
        self._target_variables = None
        self._noise_states = None
        self._noise_table = None
        self._noise_variables = []
        # The KL term added by the latest training call (see `_noise_call`).
        self._kl_loss = None
        self._sample_at_inference = False
        self._noise_stage = _INITIALIZED

    # -- estimators ---------------------------------------------------------

    def available_estimators(self):
        """The estimators that this layer type and noise kind support."""
        offered = families.offered_estimators(self.perturbed_layer())
        return [
            e for e in offered if self.noise.unsupported_reason(e) is None
        ]

    def _check_estimator(self, estimator):
        layer = self.perturbed_layer()
        offered = families.offered_estimators(layer)
        if estimator is None:
            preferred = self.noise.preferred_estimator
            estimator = preferred if preferred in offered else "shared"
        if estimator not in estimators_module.ESTIMATORS:
            reason = (
                f"unknown estimator (known: {list(estimators_module.ESTIMATORS)})"
            )
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
        return targets_module.nothing_to_perturb_message(
            self.perturbed_layer(), self.candidate_weights()
        )

    def candidate_weights(self):
        """The weights of the perturbed layer that can be targets.

        All the weights of `perturbed_layer()` (its sublayers' included),
        without the noisy layer's own variables (`enabled`, `scale`,
        `kl_weight`, the noise table and the noise kind's variables).
        """
        own = {
            id(v)
            for v in (
                self._enabled,
                self._scale,
                self._kl_weight,
                self._kl_log,
                self._noise_table,
            )
        }
        own.update(id(v) for v in self._noise_variables)
        return [v for v in self.perturbed_layer().weights if id(v) not in own]

    def _check_perturbable(self):
        targets_module.check_perturbable(self.perturbed_layer())

    def _resolve_targets(self):
        """The variables to perturb; raises a `ValueError` if there are none."""
        self._check_perturbable()
        selected = targets_module.select(
            self.perturbed_layer(), self.candidate_weights(), self.targets, self.noise
        )
        estimators_module.get(self.estimator).check_targets(self, selected)
        return selected

    def _build_noise(self):
        """Resolves the targets and builds the noise kind's variables."""
        self._require_stage(_INITIALIZED, "_build_noise", "_init_noise")
        self._target_variables = self._resolve_targets()
        if noise_table_module.uses_table(self.noise) and self._noise_table is None:
            self._noise_table = noise_table_module.add_noise_table(
                self, self._target_variables, self.seed
            )
        before = {id(v) for v in self.weights}
        perturbed = self.perturbed_layer()
        self._noise_states = [
            self.noise.build(self, v, targets_module.fan_in(perturbed, v))
            for v in self._target_variables
        ]
        self._noise_variables = [v for v in self.weights if id(v) not in before]
        self._noise_stage = _BUILT
        self._warn_if_below_resolution()

    def _warn_if_below_resolution(self):
        """Warns when the noise vanishes in a low-precision compute dtype."""
        dtype = keras.backend.standardize_dtype(self.compute_dtype)
        if dtype not in ("float16", "bfloat16"):
            return
        for v in self._target_variables:
            message = self.noise.resolution_warning(
                _keras_private.read_value(v), dtype
            )
            if message is not None:
                warnings.warn(
                    f"Layer '{self.name}', weight '{v.path}': {message}",
                    stacklevel=3,
                )
                return

    @property
    def kl_log_variable(self):
        """The running `(sum, count)` of the weighted KL of training steps.

        The `kl` entry of `fit`'s logs reads it (`None` without a KL term);
        a non-trainable variable, reset when an epoch starts.
        """
        return self._kl_log

    @property
    def noise_table(self):
        """The layer's table of normals (`sampler="table"`), else `None`.

        A non-trainable variable that is not saved: it is regenerated from
        the layer's `seed` when the layer builds.
        """
        return self._noise_table

    def save_own_variables(self, store):
        saving.save_own_variables(self, store)

    def load_own_variables(self, store):
        saving.load_own_variables(self, store)

    @property
    def target_variables(self):
        """The weights that receive noise (after build)."""
        return list(self._target_variables or [])

    @property
    def noise_states(self):
        """The noise kind's state of each target, in order (`None` before build).

        What `noise.build` returned for each of `target_variables`, and what
        the layer passes back to the kind's `perturbation`, `variance`, `kl`
        and `stats`.
        """
        if self._noise_states is None:
            return None
        return list(self._noise_states)

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

    @property
    def sample_at_inference(self):
        """Whether inference calls sample the noise too (default False).

        While True, a call with `training=False` (or `None`) runs the
        estimator as a training call does (its own `enabled` and `scale`)
        but adds no KL term; everything else in the model stays in
        inference mode. `noisylayers.mc_predict` sets it around its calls.
        A Python attribute, read when a call is traced: set it before
        calling the model eagerly or compiling a function.
        """
        return self._sample_at_inference

    @sample_at_inference.setter
    def sample_at_inference(self, value):
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(
                "Attribute `sample_at_inference` must be a boolean. "
                f"Received: sample_at_inference={value!r}"
            )
        self._sample_at_inference = bool(value)

    # -- the call ---------------------------------------------------------------

    def inference_mapping(self):
        """The targets whose inference value is not their clean value.

        Returns:
            A list of `(variable, value)` pairs: the weight each target
            reads as in an inference call, for the kinds that change it
            (`VariationalDropout` zeroes pruned weights); empty otherwise.
        """
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

        Returns:
            The outputs of the call.

        Raises:
            RuntimeError: if the layer did not run `_build_noise()` in
                `build` (see the subclass contract above).
        """
        self._require_stage(_BUILT, "_noise_call", "_build_noise")
        self._check_perturbable()
        if self._kl_log is not None:
            kl_log.note_call(training)
        if not (training or self._sample_at_inference):
            mapping = self.inference_mapping()
            if not mapping:
                return call_layer()
            with _keras_private.substitute(mapping, owner=self):
                return call_layer()
        values = [_keras_private.read_value(v) for v in self._target_variables]
        scale = keras.ops.where(self._enabled.value, self._scale.value, 0.0)
        estimator = estimators_module.get(self.estimator)
        outputs, perturbations = estimator.apply(
            self, inputs, values, scale, call_layer
        )
        if self._kl_weight is not None and training and not self._kl_added():
            kls = [
                self.noise.kl(value, state, self.seed_generator, p)
                for value, state, p in zip(values, self._noise_states, perturbations)
            ]
            kl = keras.ops.sum(
                keras.ops.stack([keras.ops.cast(k, "float32") for k in kls])
            )
            self._kl_loss = self._kl_weight.value * kl
            self.add_loss(self._kl_loss)
            kl_log.record(self._kl_log, self._kl_loss)
        return outputs

    def _kl_added(self):
        """Whether this layer's KL term is already among its losses.

        A layer used twice in a model (two branches sharing its weights)
        adds its KL once per step, as Keras adds a weight regularizer once:
        Keras clears a layer's losses when an outermost call begins, so the
        KL of an earlier call of the same step is still there.
        """
        last = self._kl_loss
        return last is not None and any(
            loss is last for loss in _keras_private.own_losses(self)
        )

    def _noise_config(self):
        if self._target_variables is not None:
            self._check_perturbable()
        return saving.noise_config(self)
