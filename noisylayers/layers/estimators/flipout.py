"""`Flipout`: one perturbation per call, decorrelated per example by signs.

Flipout (Wen et al. 2018): `y = x W + ((x * s) dW) * r` with one
perturbation `dW` per call and Rademacher signs `s` (per example and input
channel) and `r` (per example and output channel). Each example sees its
own weights `W + dW * outer(s, r)`, with the same distribution as `W + dW`
when `dW` is symmetric about zero and independent across weights. For
convolutions the signs are broadcast over space; for an LSTM they are drawn
once per sequence and used at every step, and the input and recurrent
products each get their own signs (Edward2's `LSTMCellFlipout`).
"""

import contextlib

from keras import ops

from noisylayers import _keras_private
from noisylayers.layers.estimators import families
from noisylayers.layers.estimators.base import Estimator
from noisylayers.layers.estimators.base import draw
from noisylayers.layers.estimators.base import scaled
from noisylayers.noise import sampling


def rademacher(shape, dtype, seed):
    """Random signs (+1 or -1 with equal probability) of `shape`."""
    uniform = sampling.uniform(shape, dtype="float32", seed=seed)
    return ops.cast(ops.where(uniform < 0.5, -1.0, 1.0), dtype)


class Flipout(Estimator):
    """Flipout for the Dense, Conv1D/2D/3D and LSTM families.

    Needs a noise kind whose perturbation is symmetric about zero and
    independent across weights (`Noise.symmetric`).
    """

    name = "flipout"

    def apply(self, layer, inputs, values, scale, call_layer):
        perturbations = draw(layer, values)
        draws = {
            id(v): (value, scaled(scale, p))
            for v, value, p in zip(layer.target_variables, values, perturbations)
        }
        perturbed = layer.perturbed_layer()
        family = families.family_of(perturbed)
        if family.recurrent:
            outputs = _recurrent(
                family, perturbed, inputs, draws, layer.seed_generator, call_layer
            )
        else:
            outputs = _linear(family, perturbed, inputs, draws, layer.seed_generator)
        return outputs, perturbations


def _split(draws, variable):
    """`(value, perturbation)` of a target, `(None, None)` if not targeted."""
    if variable is None:
        return None, None
    return draws.get(id(variable), (None, None))


def _linear(family, layer, inputs, draws, seed):
    roles = family.roles(layer)
    kernel, d_kernel = _split(draws, roles["kernel"])
    bias, d_bias = _split(draws, roles["bias"])
    dtype = layer.compute_dtype
    x = ops.cast(inputs, dtype)
    if kernel is None:
        kernel = roles["kernel"]
    y = family.linear(layer, x, ops.cast(kernel, dtype))
    in_shape, out_shape = family.sign_shapes(layer, x, y)
    r = rademacher(out_shape, dtype, seed)
    if d_kernel is not None:
        s = rademacher(in_shape, dtype, seed)
        y = y + family.linear(layer, x * s, ops.cast(d_kernel, dtype)) * r
    if roles["bias"] is not None:
        if bias is None:
            bias = roles["bias"]
        y = y + ops.reshape(ops.cast(bias, dtype), family.bias_shape(layer))
        if d_bias is not None:
            d_bias = ops.reshape(ops.cast(d_bias, dtype), family.bias_shape(layer))
            y = y + d_bias * r
    return family.finish(layer, y)


def _recurrent(family, layer, inputs, draws, seed, call_layer):
    """Runs Keras' own recurrent loop (masking, `go_backwards`, states,
    dropout masks) with a Flipout step in place of the cell's `call`."""
    cell = layer.cell
    dtype = layer.compute_dtype
    batch = ops.shape(inputs)[0]
    units = cell.units
    # Signs drawn once per sequence, used at every step.
    signs = {
        "x": rademacher((batch, ops.shape(inputs)[-1]), dtype, seed),
        "x_out": rademacher((batch, 4 * units), dtype, seed),
        "h": rademacher((batch, units), dtype, seed),
        "h_out": rademacher((batch, 4 * units), dtype, seed),
    }
    parts = {
        role: _split(draws, variable)
        for role, variable in family.roles(layer).items()
    }
    step = _lstm_step(cell, parts, signs, dtype)
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


def _lstm_step(cell, parts, signs, dtype):
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
