"""`LocalReparameterization`: pre-activations drawn from their marginal.

Local reparameterization (Kingma et al. 2015): the pre-activation is drawn
from its exact Gaussian marginal, mean `x W + b` and variance
`x^2 var(W) + var(b)`; for a variance that is the same for every weight
(additive Gaussian noise) this is `s^2 (sum(x^2) + 1)`, one draw per output
and no second matmul. For convolutions the variance is exact per output
element; outputs at different positions are drawn independently. The
activation (and anything the Keras layer does after its linear map) is
applied to the noisy pre-activation.
"""

from keras import ops

from noisylayers.layers.estimators import families
from noisylayers.layers.estimators.base import Estimator
from noisylayers.noise import sampling


class LocalReparameterization(Estimator):
    """Local reparameterization for the Dense and Conv1D/2D/3D families.

    Needs a Gaussian noise kind (one with a `variance`). It draws no weight
    sample, so a kind's KL term gets no perturbation. With
    `sampler="table"` the output noise comes from the layer's noise table
    when the output shape is known at trace time and fits in half of it.
    """

    name = "local_reparameterization"

    def apply(self, layer, inputs, values, scale, call_layer):
        moments = {
            id(v): (value, layer.noise.variance(value, state))
            for v, value, state in zip(
                layer.target_variables, values, layer.noise_states
            )
        }
        perturbed = layer.perturbed_layer()
        family = families.family_of(perturbed)
        outputs = _linear(
            family,
            perturbed,
            inputs,
            moments,
            scale,
            layer.seed_generator,
            layer.noise_table,
        )
        return outputs, [None] * len(values)


def _linear(family, layer, inputs, moments, scale, seed, table=None):
    roles = family.roles(layer)
    kernel, kernel_var = moments.get(id(roles["kernel"]), (None, None))
    dtype = layer.compute_dtype
    x = ops.cast(inputs, dtype)
    if kernel is None:
        kernel = roles["kernel"]
    mean = family.linear(layer, x, ops.cast(kernel, dtype))
    # The variance in float32 at least: its square root's gradient at
    # 0 needs a floor that float16 cannot hold.
    vdtype = "float64" if dtype == "float64" else "float32"
    variance = None
    if kernel_var is not None:
        xf = ops.cast(x, vdtype)
        if ops.ndim(kernel_var) == 0:
            variance = ops.cast(kernel_var, vdtype) * family.sum_of_squares(
                layer, xf
            )
        else:
            variance = family.linear(
                layer, ops.square(xf), ops.cast(kernel_var, vdtype)
            )
    if roles["bias"] is not None:
        bias, bias_var = moments.get(id(roles["bias"]), (None, None))
        if bias is None:
            bias = roles["bias"]
        mean = mean + ops.reshape(ops.cast(bias, dtype), family.bias_shape(layer))
        if bias_var is not None:
            bias_var = ops.cast(bias_var, vdtype)
            if ops.ndim(bias_var) > 0:
                bias_var = ops.reshape(bias_var, family.bias_shape(layer))
            variance = bias_var if variance is None else variance + bias_var
    if variance is not None:
        variance = ops.broadcast_to(variance, ops.shape(mean))
        std = ops.sqrt(ops.maximum(variance, 1e-16))
        # From the layer's noise table with `sampler="table"` (when the
        # output shape is static and fits), else exact.
        eps = sampling.standard_normal(
            ops.shape(mean), dtype=vdtype, seed=seed, table=table
        )
        noise = ops.cast(scale, vdtype) * std * eps
        mean = mean + ops.cast(noise, dtype)
    return family.finish(layer, mean)
