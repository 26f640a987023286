"""`Shared`: one weight sample per call, for any layer."""

from noisylayers import _keras_private
from noisylayers.layers.estimators.base import Estimator
from noisylayers.layers.estimators.base import draw
from noisylayers.layers.estimators.base import scaled


class Shared(Estimator):
    """One weight sample per call, shared by all the examples of the batch.

    Runs the layer's own computation (`call_layer`) with each target read as
    `value + scale * perturbation` (`noisylayers._keras_private.substitute`),
    so it works for any Keras layer; a recurrent layer uses the sample at
    every time step.
    """

    name = "shared"

    def check_targets(self, layer, targets):
        # Any weight of any layer.
        return None

    def apply(self, layer, inputs, values, scale, call_layer):
        perturbations = draw(layer, values)
        mapping = [
            (v, value + scaled(scale, p))
            for v, value, p in zip(layer.target_variables, values, perturbations)
        ]
        with _keras_private.substitute(mapping, owner=layer):
            outputs = call_layer()
        return outputs, perturbations
