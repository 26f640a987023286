"""The checks on a model that an ablation receives: compiled, built, noisy."""

import keras

from noisylayers import control


def check_model(model, argument="Argument `model`", noisy=False, layers=None,
                built=False, nothing_to=None, hint=""):
    """Checks a model for an ablation; returns its (selected) noisy layers.

    Args:
        model: The model to check.
        argument: How the messages name it (`"Argument `model`"`, or `"The
            model that `build_model` returns"`).
        noisy: Whether it must have noisy layers.
        layers: Which noisy layers to return and check, as in
            `noisylayers.noise_layers` (`None` for all).
        built: Whether the selected noisy layers must be built.
        nothing_to: With `noisy`: what cannot be done without noisy layers
            (`"ablate"`, `"perturb"`), for the message.
        hint: With `noisy`: a sentence added to that message.

    Returns:
        The list of the selected noisy layers, in model order.

    Raises:
        TypeError: if `model` is not a `keras.Model`.
        ValueError: if it is not compiled (its compiled loss and metrics
            train and score it); with `noisy`, if it has no noisy layers;
            with `built`, if a selected noisy layer is not built; if
            `layers` selects nothing (as `noise_layers`).
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"{argument} must be a `keras.Model`. "
            f"Received: {model!r} (of type {type(model).__name__})"
        )
    if not getattr(model, "compiled", False):
        raise ValueError(
            f"{argument} must be compiled: the ablations train and evaluate "
            "it with its compiled loss and metrics. "
            f"Received: the uncompiled model '{model.name}'"
        )
    selected = control.noise_layers(model, layers)
    if noisy and not selected:
        raise ValueError(
            f"Model '{model.name}' has no noisy layers (`noisylayers."
            f"WeightNoise`, `NoisyDense`, ...): there is nothing to "
            f"{nothing_to or 'do'}.{' ' + hint if hint else ''}"
        )
    if built:
        unbuilt = [layer.name for layer in selected if not layer.target_variables]
        if unbuilt:
            raise ValueError(
                f"The noisy layers {unbuilt} of model '{model.name}' are not "
                "built: train or call the model first."
            )
    return selected


def check_distinct_names(model, names, what):
    """Raises a `ValueError` if two of `names` (of `what`) are the same."""
    if len(set(names)) != len(names):
        raise ValueError(
            f"The {what} of model '{model.name}' must have distinct names: "
            f"the results refer to them by name. Received: {names}"
        )
