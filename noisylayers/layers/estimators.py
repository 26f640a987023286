"""Per-example estimators (Flipout, local reparameterization) per layer family.

The `"shared"` estimator runs any layer's own `call` on one weight sample per
call (see `NoisyLayer`). The per-example estimators need the layer's inputs
and its linear map, so they exist for the families below, and both the
variants (`NoisyDense`, ...) and `WeightNoise` around the plain Keras layer
run the same code:

| family                 | estimators                                  |
|------------------------|---------------------------------------------|
| Dense                  | shared, flipout, local_reparameterization   |
| Conv1D, Conv2D, Conv3D | shared, flipout, local_reparameterization   |
| LSTM                   | shared, flipout                             |
| anything else          | shared                                      |

- Flipout (Wen et al. 2018): `y = x W + ((x * s) dW) * r` with one
  perturbation `dW` per call and Rademacher signs `s` (per example and
  input channel) and `r` (per example and output channel); for
  convolutions the signs are broadcast over space, for an LSTM they are
  drawn once per sequence and used at every step.
- Local reparameterization (Kingma et al. 2015): the pre-activation is drawn
  from its exact Gaussian marginal, mean `x W + b` and variance
  `x^2 var(W) + var(b)`; for a variance that is the same for every weight
  (additive Gaussian noise) this is `s^2 (sum(x^2) + 1)`, one draw per
  output and no second matmul.

The activation (and anything the Keras layer does after its linear map) is
applied to the noisy pre-activation.
"""

import contextlib

import keras
from keras import ops

from noisylayers import _keras_private
from noisylayers.noise import sampling


def _rademacher(shape, dtype, seed):
    uniform = sampling.uniform(shape, dtype="float32", seed=seed)
    return ops.cast(ops.where(uniform < 0.5, -1.0, 1.0), dtype)


def _split(draws, variable):
    """`(value, perturbation)` of a target, `(None, None)` if not targeted."""
    if variable is None:
        return None, None
    return draws.get(id(variable), (None, None))


class _Family:
    """The estimators of one family of Keras layers."""

    layer_types = ()
    estimators = ("shared",)

    def roles(self, layer):
        """The variables the estimators know, e.g. `{"kernel": ...}`."""
        raise NotImplementedError

    def check_targets(self, layer, targets, estimator):
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


class _LinearFamily(_Family):
    """A linear map, a bias and an activation: Dense and convolutions."""

    estimators = ("shared", "flipout", "local_reparameterization")

    def roles(self, layer):
        return {"kernel": layer.kernel, "bias": layer.bias}

    def linear(self, layer, x, kernel):
        raise NotImplementedError

    def bias_shape(self, layer):
        raise NotImplementedError

    def sign_shapes(self, layer, x, y):
        """Shapes of the input and output sign tensors."""
        raise NotImplementedError

    def sum_of_squares(self, layer, x):
        """`sum(x^2)` over each output's receptive field, shaped for `y`."""
        raise NotImplementedError

    def _finish(self, layer, y):
        if layer.activation is not None:
            y = layer.activation(y)
        return y

    def flipout(self, layer, inputs, draws, seed, call_layer):
        roles = self.roles(layer)
        kernel, d_kernel = _split(draws, roles["kernel"])
        bias, d_bias = _split(draws, roles["bias"])
        dtype = layer.compute_dtype
        x = ops.cast(inputs, dtype)
        if kernel is None:
            kernel = roles["kernel"]
        y = self.linear(layer, x, ops.cast(kernel, dtype))
        in_shape, out_shape = self.sign_shapes(layer, x, y)
        r = _rademacher(out_shape, dtype, seed)
        if d_kernel is not None:
            s = _rademacher(in_shape, dtype, seed)
            y = y + self.linear(layer, x * s, ops.cast(d_kernel, dtype)) * r
        if roles["bias"] is not None:
            if bias is None:
                bias = roles["bias"]
            y = y + ops.reshape(ops.cast(bias, dtype), self.bias_shape(layer))
            if d_bias is not None:
                d_bias = ops.reshape(ops.cast(d_bias, dtype), self.bias_shape(layer))
                y = y + d_bias * r
        return self._finish(layer, y)

    def local_reparameterization(self, layer, inputs, moments, scale, seed):
        roles = self.roles(layer)
        kernel, kernel_var = moments.get(id(roles["kernel"]), (None, None))
        dtype = layer.compute_dtype
        x = ops.cast(inputs, dtype)
        if kernel is None:
            kernel = roles["kernel"]
        mean = self.linear(layer, x, ops.cast(kernel, dtype))
        # The variance in float32 at least: its square root's gradient at
        # 0 needs a floor that float16 cannot hold.
        vdtype = "float64" if dtype == "float64" else "float32"
        variance = None
        if kernel_var is not None:
            xf = ops.cast(x, vdtype)
            if ops.ndim(kernel_var) == 0:
                variance = ops.cast(kernel_var, vdtype) * self.sum_of_squares(
                    layer, xf
                )
            else:
                variance = self.linear(
                    layer, ops.square(xf), ops.cast(kernel_var, vdtype)
                )
        if roles["bias"] is not None:
            bias, bias_var = moments.get(id(roles["bias"]), (None, None))
            if bias is None:
                bias = roles["bias"]
            mean = mean + ops.reshape(ops.cast(bias, dtype), self.bias_shape(layer))
            if bias_var is not None:
                bias_var = ops.cast(bias_var, vdtype)
                if ops.ndim(bias_var) > 0:
                    bias_var = ops.reshape(bias_var, self.bias_shape(layer))
                variance = bias_var if variance is None else variance + bias_var
        if variance is not None:
            variance = ops.broadcast_to(variance, ops.shape(mean))
            std = ops.sqrt(ops.maximum(variance, 1e-16))
            eps = sampling.normal(ops.shape(mean), dtype=vdtype, seed=seed)
            noise = ops.cast(scale, vdtype) * std * eps
            mean = mean + ops.cast(noise, dtype)
        return self._finish(layer, mean)


class _DenseFamily(_LinearFamily):
    layer_types = (keras.layers.Dense,)

    def linear(self, layer, x, kernel):
        return ops.matmul(x, kernel)

    def bias_shape(self, layer):
        return (layer.units,)

    def sign_shapes(self, layer, x, y):
        return ops.shape(x), ops.shape(y)

    def sum_of_squares(self, layer, x):
        return ops.sum(ops.square(x), axis=-1, keepdims=True)


class _ConvFamily(_LinearFamily):
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


class _LSTMFamily(_Family):
    layer_types = (keras.layers.LSTM,)
    estimators = ("shared", "flipout")

    def roles(self, layer):
        cell = layer.cell
        return {
            "kernel": cell.kernel,
            "recurrent_kernel": cell.recurrent_kernel,
            "bias": cell.bias if cell.use_bias else None,
        }

    def flipout(self, layer, inputs, draws, seed, call_layer):
        cell = layer.cell
        roles = self.roles(layer)
        dtype = layer.compute_dtype
        batch = ops.shape(inputs)[0]
        units = cell.units
        # Signs drawn once per sequence, used at every step.
        signs = {
            "x": _rademacher((batch, ops.shape(inputs)[-1]), dtype, seed),
            "x_out": _rademacher((batch, 4 * units), dtype, seed),
            "h": _rademacher((batch, units), dtype, seed),
            "h_out": _rademacher((batch, 4 * units), dtype, seed),
        }
        parts = {
            role: _split(draws, variable) for role, variable in roles.items()
        }
        step = _flipout_lstm_step(cell, parts, signs, dtype)
        with _keras_private.override_call(cell, step), _no_cudnn(layer):
            return call_layer()


@contextlib.contextmanager
def _no_cudnn(layer):
    # The fused cuDNN kernel reads the cell's weights directly.
    saved = layer.use_cudnn
    layer.use_cudnn = False
    try:
        yield
    finally:
        layer.use_cudnn = saved


def _flipout_lstm_step(cell, parts, signs, dtype):
    """An `LSTMCell.call` computing `x K + h U + b` with Flipout."""

    def weight(role, variable):
        value, delta = parts[role]
        value = variable if value is None else value
        return ops.cast(value, dtype), (
            None if delta is None else ops.cast(delta, dtype)
        )

    def step(inputs, states, training=False):
        h_tm1, c_tm1 = states[0], states[1]
        if training and 0.0 < cell.dropout < 1.0:
            inputs = inputs * cell.get_dropout_mask(inputs)
        if training and 0.0 < cell.recurrent_dropout < 1.0:
            h_tm1 = h_tm1 * cell.get_recurrent_dropout_mask(h_tm1)
        kernel, d_kernel = weight("kernel", cell.kernel)
        recurrent, d_recurrent = weight("recurrent_kernel", cell.recurrent_kernel)
        z = ops.matmul(inputs, kernel) + ops.matmul(h_tm1, recurrent)
        if d_kernel is not None:
            z = z + ops.matmul(inputs * signs["x"], d_kernel) * signs["x_out"]
        if d_recurrent is not None:
            z = z + ops.matmul(h_tm1 * signs["h"], d_recurrent) * signs["h_out"]
        if cell.use_bias:
            bias, d_bias = weight("bias", cell.bias)
            z = z + bias
            if d_bias is not None:
                z = z + d_bias * signs["x_out"]
        z0, z1, z2, z3 = ops.split(z, 4, axis=1)
        i = cell.recurrent_activation(z0)
        f = cell.recurrent_activation(z1)
        c = f * c_tm1 + i * cell.activation(z2)
        o = cell.recurrent_activation(z3)
        h = o * cell.activation(c)
        return h, [h, c]

    return step


_FAMILIES = (_DenseFamily(), _ConvFamily(), _LSTMFamily())


def family_of(layer):
    """The estimator family of a Keras layer, or `None` (shared only)."""
    for family in _FAMILIES:
        if isinstance(layer, family.layer_types):
            return family
    return None
