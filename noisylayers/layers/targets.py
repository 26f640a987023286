"""Which weights of a layer get noise: target names, matching and refusals.

A noisy layer perturbs the weights its `targets` argument names (by name or
path suffix), or by default those named in `DEFAULT_TARGETS`. Only float
weights of a layer without LoRA or quantization can be perturbed.
"""

import keras
import numpy as np

from noisylayers import _keras_private

#: The weight names a noisy layer perturbs when `targets=None`.
DEFAULT_TARGETS = (
    "kernel",
    "bias",
    "recurrent_kernel",
    "depthwise_kernel",
    "pointwise_kernel",
    "embeddings",
)


def matches(variable, name):
    """Whether the target `name` selects `variable` (by name or path suffix).

    Example:

    >>> dense = keras.layers.Dense(2, name="fc")
    >>> dense.build((None, 3))
    >>> matches(dense.kernel, "kernel"), matches(dense.kernel, "fc/kernel")
    (True, True)
    """
    return variable.name == name or variable.path.endswith("/" + name)


def is_default_target(variable):
    """Whether one of `DEFAULT_TARGETS` selects `variable`."""
    return any(matches(variable, t) for t in DEFAULT_TARGETS)


def standardize_targets(targets):
    """Checks a `targets` argument: `None`, a name or a list of names.

    Returns:
        `None` or a tuple of names.

    Raises:
        TypeError: if `targets` is not `None`, a string or a list of
            non-empty strings.
        ValueError: for an empty list.
    """
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


def nothing_to_perturb_message(layer, weights):
    """The error message for a layer without weights to perturb."""
    return (
        f"Layer '{layer.name}' (of type "
        f"{layer.__class__.__name__}) has no weights to perturb: "
        f"noisy layers look for weights named {list(DEFAULT_TARGETS)}. "
        f"Received: layer={layer.name}, "
        f"with weights {[v.path for v in weights]}"
    )


def select(layer, weights, targets, noise):
    """The weights among `weights` (of `layer`) that receive noise.

    Args:
        layer: The Keras layer whose weights are perturbed.
        weights: Its candidate weights (not the noise's own variables).
        targets: `None` for the defaults (the weights named in
            `DEFAULT_TARGETS` that `noise.applies_to`), or names.
        noise: The noise kind.

    Returns:
        The selected variables, in the order of `weights`.

    Raises:
        ValueError: if nothing is selected, a name matches no weight, or a
            selected weight is not a float weight.
    """
    if targets is None:
        selected = [
            v for v in weights if is_default_target(v) and noise.applies_to(v)
        ]
        if not selected:
            raise ValueError(nothing_to_perturb_message(layer, weights))
    else:
        for target in targets:
            if not any(matches(v, target) for v in weights):
                raise ValueError(
                    f"Argument `targets` names a weight that layer "
                    f"'{layer.name}' does not have: {target!r}. Its "
                    f"weights are {[v.path for v in weights]}. "
                    f"Received: targets={list(targets)}"
                )
        selected = [v for v in weights if any(matches(v, t) for t in targets)]
    for v in selected:
        if not keras.backend.is_float_dtype(v.dtype):
            raise ValueError(
                f"Cannot put noise on weight '{v.path}' of dtype "
                f"{v.dtype} (a quantized layer?): only floating-point "
                f"weights can be perturbed. Received: layer="
                f"{layer.name}, targets={targets}"
            )
    return selected


def check_perturbable(layer):
    """Refuses a perturbed layer that LoRA or quantization changed.

    Run at build, in every noisy call and when saving: enabling LoRA on
    (or quantizing) a layer after noise was put on it would silently stop
    the noise on its kernel and write a file that cannot load.

    Raises:
        ValueError: if `layer` or one of its sublayers has LoRA enabled or
            is quantized.
    """
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


def fan_in(layer, variable):
    """Inputs per output unit of the (sub)layer of `layer` that owns `variable`."""
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
