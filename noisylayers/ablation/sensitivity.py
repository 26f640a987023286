"""Sensitivity ablation: how much noise in each layer hurts a trained model."""

import functools

import keras
from tqdm.auto import tqdm

from noisylayers import control
from noisylayers._validation import check_list
from noisylayers._validation import check_number
from noisylayers._validation import check_positive_int
from noisylayers._validation import check_seed
from noisylayers.ablation.results import SensitivityAblationResult

DEFAULT_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def sensitivity_ablation(
    model,
    data,
    scales=DEFAULT_SCALES,
    draws=5,
    layers=None,
    batch_size=256,
    seed=0,
    metadata=None,
    progress=True,
):
    """Evaluates a trained model with noise in one layer at a time.

    For each selected noisy layer and each scale, draws the layer's weight
    noise `draws` times, as the layer would in training with its `scale` set
    to that scale (`noisy = clean + scale * perturbation` for each of its
    target weights), and evaluates the model with `model.evaluate` on
    `data`. One draw is one perturbed copy of the weights for the whole
    evaluation. The other layers keep their clean weights, and the model
    runs in inference mode (Dropout off, BatchNormalization with its moving
    statistics): only the weights change.

    The noise is put into the layer's variables for each evaluation and the
    clean values are assigned back afterwards, also on an error or an
    interruption. The layers' `enabled` and `scale` settings play no part.

    Args:
        model: A compiled, built `keras.Model` with noisy layers
            (`noisylayers.WeightNoise`), e.g. a trained one.
        data: `(x, y)`, the evaluation data (anything `evaluate` takes).
        scales: Distinct non-negative numbers: the noise scales to try,
            as multiples of each layer's noise.
        draws: Positive integer, the number of noise draws per layer and
            scale.
        layers: Which noisy layers to perturb, as in
            `noisylayers.set_noise`: `None` for all of them, or names, glob
            patterns or layer objects.
        batch_size: Positive integer, for `evaluate`.
        seed: Non-negative integer seeding the noise draws.
        metadata: Optional JSON-compatible dict kept in the result's spec.
        progress: Whether to show a progress bar.

    Returns:
        A `SensitivityAblationResult`: the metrics per layer and scale (mean
        and spread over the draws, difference to the clean model).

    Raises:
        ValueError: for invalid arguments, an uncompiled or unbuilt model,
            or a model without (selected) noisy layers.
        TypeError: for arguments of the wrong type.

    Example:

    ```python
    result = noisylayers.ablation.sensitivity_ablation(
        model, (x_val, y_val), scales=[0.5, 1, 2, 4], draws=5)
    print(result)
    result.plot("sensitivity.png")
    ```
    """
    if not isinstance(model, keras.Model):
        raise TypeError(
            "Argument `model` must be a `keras.Model`. "
            f"Received: model of type {type(model).__name__}"
        )
    if not getattr(model, "compiled", False):
        raise ValueError(
            "Argument `model` must be compiled: its metrics are evaluated. "
            f"Received: the uncompiled model '{model.name}'"
        )
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError(
            "Argument `data` must be a pair (x, y). "
            f"Received: data of type {type(data).__name__}"
        ) from None
    scales = check_list(
        "scales", scales, functools.partial(check_number, "scales", low=0.0)
    )
    draws = check_positive_int("draws", draws)
    batch_size = check_positive_int("batch_size", batch_size)
    seed = check_seed(seed)
    selected = control.noise_layers(model, layers)
    if not selected:
        raise ValueError(
            f"Model '{model.name}' has no noisy layers (`noisylayers."
            "WeightNoise`): there is nothing to perturb."
        )
    names = [layer.name for layer in selected]
    if len(set(names)) != len(names):
        raise ValueError(
            f"The noisy layers of model '{model.name}' must have distinct "
            f"names: the result refers to them by name. Received: {names}"
        )
    unbuilt = [layer.name for layer in selected if not layer.target_variables]
    if unbuilt:
        raise ValueError(
            f"The noisy layers {unbuilt} of model '{model.name}' are not "
            "built: train or call the model first."
        )

    def evaluate():
        metrics = model.evaluate(
            x, y, batch_size=batch_size, verbose=0, return_dict=True
        )
        return {k: float(v) for k, v in metrics.items()}

    spec = {
        "kind": "sensitivity",
        "layers": names,
        "scales": scales,
        "draws": draws,
        "seed": seed,
        "noise": {layer.name: repr(layer.noise) for layer in selected},
        "clean": evaluate(),
        "metadata": metadata or {},
    }
    generator = keras.random.SeedGenerator(seed)
    records = []
    with tqdm(
        total=len(selected) * len(scales),
        desc="Sensitivity ablation",
        unit="scale",
        disable=not progress,
    ) as bar:
        for layer in selected:
            variables = layer.target_variables
            clean = [keras.ops.copy(v.value) for v in variables]
            try:
                for scale in scales:
                    bar.set_postfix_str(f"{layer.name} x{scale:g}")
                    for draw in range(draws):
                        for variable, value in zip(variables, clean):
                            variable.assign(value)
                        for variable, value in layer.noisy_weights(
                            generator, scale
                        ):
                            variable.assign(value)
                        records.append(
                            {
                                "layer": layer.name,
                                "scale": scale,
                                "draw": draw,
                                "metrics": evaluate(),
                            }
                        )
                    bar.update()
            finally:
                for variable, value in zip(variables, clean):
                    variable.assign(value)
    return SensitivityAblationResult(spec, records)
