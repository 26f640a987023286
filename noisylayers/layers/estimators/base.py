"""`Estimator`: how a noisy layer samples in a training call."""

import keras

from noisylayers.layers.estimators import families


class Estimator:
    """Base class of the estimators: how a training call samples the noise.

    One instance per estimator, registered under its `name` in
    `noisylayers.layers.estimators` (the names users pass as
    `estimator=`). In a training call (or while sampling at inference), a
    noisy layer reads the clean values of its targets and calls the
    `apply` method of its estimator, which draws the noise and computes the
    outputs.

    Attributes:
        name: The string that selects the estimator.
    """

    name = None

    def check_targets(self, layer, targets):
        """Refuses `targets` that this estimator cannot perturb.

        Called when the noisy layer resolves its targets (at build).

        Args:
            layer: The noisy layer (a `noisylayers.NoisyLayer`).
            targets: The variables it is about to perturb.
        """
        family = families.family_of(layer.perturbed_layer())
        if family is not None:
            family.check_targets(layer.perturbed_layer(), targets, self.name)

    def apply(self, layer, inputs, values, scale, call_layer):
        """Runs one noisy call of `layer`.

        Args:
            layer: The noisy layer (a `noisylayers.NoisyLayer`, built).
            inputs: The inputs of the call.
            values: The clean values of `layer.target_variables`, in order.
            scale: Scalar tensor multiplying the perturbations (0 while the
                layer is disabled).
            call_layer: Function of no argument running the plain layer's
                computation (with its own `training` setting).

        Returns:
            `(outputs, perturbations)`: the outputs of the call, and the
            unscaled perturbation drawn for each target (`None` where the
            estimator drew no weight sample), for the KL term.
        """
        raise NotImplementedError

    def __repr__(self):
        return f"<estimator {self.name!r}>"


def draw(layer, values):
    """One unscaled perturbation per target of `layer`, in order."""
    return layer.noise.perturbations(values, layer.seed_generator, layer.noise_states)


def scaled(scale, perturbation):
    """`scale * perturbation`, in the perturbation's dtype."""
    return keras.ops.cast(scale, perturbation.dtype) * perturbation
