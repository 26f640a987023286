"""Layer families: what the per-example estimators know of a Keras layer.

The `"shared"` estimator runs any layer's own `call`. Flipout and local
reparameterization need the layer's linear map, so they exist for the
families here (Dense, Conv1D/2D/3D and LSTM; which estimator each offers is
the table in `noisylayers.layers.estimators`); a family names the variables
the estimators perturb (`roles`) and, for the linear families, computes the
linear map and the shapes the estimators need.

Both the variants (`NoisyDense`, ...) and `WeightNoise` around the plain
Keras layer use the same family, so nothing is written twice.
"""

import keras
from keras import ops


class Family:
    """The estimators of one family of Keras layers.

    Attributes:
        layer_types: The Keras layer classes of the family.
        estimators: The names of the estimators the family offers.
        recurrent: Whether the family is a recurrent layer, whose
            estimators replace its cell's step rather than its linear map.
    """

    layer_types = ()
    estimators = ("shared",)
    recurrent = False

    def roles(self, layer):
        """The variables the estimators know, e.g. `{"kernel": ...}`."""
        raise NotImplementedError

    def check_targets(self, layer, targets, estimator):
        """Refuses targets that `estimator` cannot perturb in `layer`."""
        known = {id(v) for v in self.roles(layer).values() if v is not None}
        others = [v.path for v in targets if id(v) not in known]
        if others:
            raise ValueError(
                f"Estimator {estimator!r} for layer '{layer.name}' of type "
                f"{type(layer).__name__} perturbs only "
                f"{sorted(k for k, v in self.roles(layer).items() if v is not None)}, "
                f"not {others}. Use estimator='shared' for other weights. "
                f"Received: estimator={estimator!r}"
            )


class LinearFamily(Family):
    """A linear map, a bias and an activation: Dense and convolutions."""

    estimators = ("shared", "flipout", "local_reparameterization")

    def roles(self, layer):
        return {"kernel": layer.kernel, "bias": layer.bias}

    def linear(self, layer, x, kernel):
        """The layer's linear map of `x` with `kernel` (no bias)."""
        raise NotImplementedError

    def bias_shape(self, layer):
        """The shape that broadcasts the bias over an output."""
        raise NotImplementedError

    def sign_shapes(self, layer, x, y):
        """Shapes of the input and output sign tensors (Flipout)."""
        raise NotImplementedError

    def sum_of_squares(self, layer, x):
        """`sum(x^2)` over each output's receptive field, shaped for `y`."""
        raise NotImplementedError

    def finish(self, layer, y):
        """What the layer does after its linear map (the activation)."""
        if layer.activation is not None:
            y = layer.activation(y)
        return y


class DenseFamily(LinearFamily):
    layer_types = (keras.layers.Dense,)

    def linear(self, layer, x, kernel):
        return ops.matmul(x, kernel)

    def bias_shape(self, layer):
        return (layer.units,)

    def sign_shapes(self, layer, x, y):
        return ops.shape(x), ops.shape(y)

    def sum_of_squares(self, layer, x):
        return ops.sum(ops.square(x), axis=-1, keepdims=True)


class ConvFamily(LinearFamily):
    layer_types = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)

    def linear(self, layer, x, kernel):
        if layer.padding != "causal":
            return layer.convolution_op(x, kernel)
        # Conv1D pads causal inputs in `call`, not in `convolution_op`.
        left = layer.dilation_rate[0] * (layer.kernel_size[0] - 1)
        pad = [[0, 0], [left, 0], [0, 0]]
        if layer.data_format != "channels_last":
            pad = [[0, 0], [0, 0], [left, 0]]
        return ops.conv(
            ops.pad(x, pad),
            kernel,
            strides=list(layer.strides),
            padding="valid",
            dilation_rate=layer.dilation_rate,
            data_format=layer.data_format,
        )

    def bias_shape(self, layer):
        if layer.data_format == "channels_last":
            return (1,) * (layer.rank + 1) + (layer.filters,)
        return (1, layer.filters) + (1,) * layer.rank

    def sign_shapes(self, layer, x, y):
        # One sign per example and channel, broadcast over space.
        ones = (1,) * layer.rank
        batch = ops.shape(x)[0]
        if layer.data_format == "channels_last":
            return (batch,) + ones + (ops.shape(x)[-1],), (
                (batch,) + ones + (layer.filters,)
            )
        return (batch, ops.shape(x)[1]) + ones, (batch, layer.filters) + ones

    def sum_of_squares(self, layer, x):
        kernel_shape = tuple(layer.kernel.shape)
        if layer.groups == 1:
            ones = ops.ones(kernel_shape[:-1] + (1,), dtype=x.dtype)
        else:
            ones = ops.ones(kernel_shape, dtype=x.dtype)
        return self.linear(layer, ops.square(x), ones)


class LSTMFamily(Family):
    layer_types = (keras.layers.LSTM,)
    estimators = ("shared", "flipout")
    recurrent = True

    def roles(self, layer):
        cell = layer.cell
        return {
            "kernel": cell.kernel,
            "recurrent_kernel": cell.recurrent_kernel,
            "bias": cell.bias if cell.use_bias else None,
        }


_FAMILIES = (DenseFamily(), ConvFamily(), LSTMFamily())


def family_of(layer):
    """The estimator family of a Keras layer, or `None` (shared only)."""
    for family in _FAMILIES:
        if isinstance(layer, family.layer_types):
            return family
    return None


def offered_estimators(layer):
    """The names of the estimators that layers of this type offer."""
    family = family_of(layer)
    return family.estimators if family is not None else ("shared",)
