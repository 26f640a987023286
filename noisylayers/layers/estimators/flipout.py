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
    if _can_hoist_inputs(cell):
        # The input side of every step, `x_t K + ((x_t * s) dK) * r + b
        # (+ db * r)`, does not depend on the state: computed for all the
        # time steps at once, one large product outside the loop, and the
        # loop does only the recurrent products (the same sums, added in
        # another order).
        step = _lstm_recurrent_step(cell, parts, signs, dtype)
        inner_loop = _hoisted_inner_loop(layer, cell, parts, signs, dtype)
        with _keras_private.override_call(cell, step), _no_cudnn(
            layer
        ), _override(layer, "inner_loop", inner_loop):
            return call_layer()
    step = _lstm_step(cell, parts, signs, dtype)
    with _keras_private.override_call(cell, step), _no_cudnn(layer):
        return call_layer()


def _can_hoist_inputs(cell):
    """Whether the input products can be computed before the loop.

    With `implementation=2` and no input dropout (Keras' dropout mask would
    be drawn inside the step), as `keras.layers.LSTM` runs by default.
    """
    return cell.implementation != 1 and not 0.0 < cell.dropout < 1.0


@contextlib.contextmanager
def _override(obj, name, value):
    setattr(obj, name, value)
    try:
        yield
    finally:
        delattr(obj, name)


def _weight(parts, role, variable, dtype):
    value, delta = parts[role]
    value = variable if value is None else value
    return ops.cast(value, dtype), (
        None if delta is None else ops.cast(delta, dtype)
    )


def _product(x, w, dw, s, r):
    """`x w`, plus Flipout's `((x * s) dw) * r` when `dw` is drawn."""
    y = ops.matmul(x, w)
    if dw is not None:
        y = y + ops.matmul(x * s, dw) * r
    return y


def _lstm_output(cell, z, c_tm1):
    """The LSTM cell's new `(h, c)` from its four gate pre-activations `z`."""
    z0, z1, z2, z3 = z
    i = cell.recurrent_activation(z0)
    f = cell.recurrent_activation(z1)
    c = f * c_tm1 + i * cell.activation(z2)
    o = cell.recurrent_activation(z3)
    h = o * cell.activation(c)
    return h, [h, c]


def _hoisted_inner_loop(layer, cell, parts, signs, dtype):
    """`RNN.inner_loop` run on the precomputed input side of every step."""
    import keras

    def inner_loop(sequences, initial_state, mask, training=False):
        kernel, d_kernel = _weight(parts, "kernel", cell.kernel, dtype)
        x = ops.cast(sequences, dtype)
        z = _product(x, kernel, d_kernel, ops.expand_dims(signs["x"], 1),
                     ops.expand_dims(signs["x_out"], 1))
        if cell.use_bias:
            bias, d_bias = _weight(parts, "bias", cell.bias, dtype)
            z = z + bias
            if d_bias is not None:
                z = z + d_bias * ops.expand_dims(signs["x_out"], 1)
        return keras.layers.RNN.inner_loop(
            layer, z, initial_state, mask, training=training
        )

    return inner_loop


def _lstm_recurrent_step(cell, parts, signs, dtype):
    """An `LSTMCell.call` whose `inputs` are the precomputed input side."""

    def step(inputs, states, training=False):
        # `implementation=2`: Keras uses 1 whenever `recurrent_dropout > 0`.
        h_tm1_in, c_tm1 = states[0], states[1]
        recurrent, d_recurrent = _weight(
            parts, "recurrent_kernel", cell.recurrent_kernel, dtype
        )
        z = inputs + _product(
            h_tm1_in, recurrent, d_recurrent, signs["h"], signs["h_out"])
        return _lstm_output(cell, ops.split(z, 4, axis=1), c_tm1)

    return step


@contextlib.contextmanager
def _no_cudnn(layer):
    # The fused cuDNN kernel reads the cell's weights directly.
    saved = layer.use_cudnn
    layer.use_cudnn = False
    try:
        yield
    finally:
        layer.use_cudnn = saved


def _per_gate(x, masks):
    """`x` for each of the 4 gates, with its dropout mask if there is one."""
    if masks is None:
        return [x] * 4
    if isinstance(masks, (list, tuple)):
        return [x * m for m in masks]
    return [x * masks] * 4


def _lstm_step(cell, parts, signs, dtype):
    """An `LSTMCell.call` computing `x K + h U + b` with Flipout.

    Follows `keras.layers.LSTMCell.call`: with `implementation=1` (which
    Keras uses whenever `recurrent_dropout > 0`) each gate has its own
    dropout masks on the inputs and on the state, so each gate's product
    is computed apart; with `implementation=2` one input mask and one fused
    product.
    """

    def weight(role, variable):
        return _weight(parts, role, variable, dtype)

    def gates(tensor):
        return [None] * 4 if tensor is None else ops.split(tensor, 4, axis=-1)

    def step(inputs, states, training=False):
        h_tm1, c_tm1 = states[0], states[1]
        x_masks = h_masks = None
        if training and 0.0 < cell.dropout < 1.0:
            x_masks = cell.get_dropout_mask(inputs)
        if training and 0.0 < cell.recurrent_dropout < 1.0:
            h_masks = cell.get_recurrent_dropout_mask(h_tm1)
        kernel, d_kernel = weight("kernel", cell.kernel)
        recurrent, d_recurrent = weight("recurrent_kernel", cell.recurrent_kernel)
        if cell.implementation == 1:
            xs, hs = _per_gate(inputs, x_masks), _per_gate(h_tm1, h_masks)
            z = [
                _product(x, k, dk, signs["x"], r)
                + _product(h, u, du, signs["h"], rh)
                for x, h, k, dk, u, du, r, rh in zip(
                    xs,
                    hs,
                    gates(kernel),
                    gates(d_kernel),
                    gates(recurrent),
                    gates(d_recurrent),
                    gates(signs["x_out"]),
                    gates(signs["h_out"]),
                )
            ]
            if cell.use_bias:
                bias, d_bias = weight("bias", cell.bias)
                z = [
                    zg + b if db is None else zg + b + db * r
                    for zg, b, db, r in zip(
                        z, gates(bias), gates(d_bias), gates(signs["x_out"])
                    )
                ]
        else:
            if x_masks is not None:
                inputs = inputs * x_masks
            z = _product(inputs, kernel, d_kernel, signs["x"], signs["x_out"])
            z = z + _product(
                h_tm1, recurrent, d_recurrent, signs["h"], signs["h_out"]
            )
            if cell.use_bias:
                bias, d_bias = weight("bias", cell.bias)
                z = z + bias
                if d_bias is not None:
                    z = z + d_bias * signs["x_out"]
            z = ops.split(z, 4, axis=1)
        return _lstm_output(cell, z, c_tm1)

    return step
