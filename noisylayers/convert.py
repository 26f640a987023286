"""`wrap` and `unwrap`: put noise into a model you have, take it out again."""

import inspect

import keras

from noisylayers import _keras_private
from noisylayers import control
from noisylayers._seeds import derive_seed
from noisylayers._validation import check_seed
from noisylayers.layers.base import NoisyLayer
from noisylayers.layers.targets import DEFAULT_TARGETS
from noisylayers.layers.targets import matches
from noisylayers.layers.variant import NoisyVariant
from noisylayers.layers.weight_noise import WeightNoise


def _check_model(model, what):
    if not isinstance(model, keras.Model):
        raise TypeError(
            f"Argument `model` of `{what}` must be a `keras.Model`. "
            f"Received: model of type {type(model).__name__}"
        )
    if not _keras_private.is_cloneable(model):
        raise ValueError(
            f"`noisylayers.{what}` rebuilds a model layer by layer, which "
            "Keras can do for Sequential and functional models only; "
            f"'{model.name}' is a subclassed model ({type(model).__name__}). "
            "Put the noise in the model's own code instead: wrap its layers "
            "in `noisylayers.WeightNoise(...)` (or use `NoisyDense`, ...) "
            "where it creates them."
        )


def _perturbable(layer):
    return any(
        matches(v, t) for v in layer.weights for t in DEFAULT_TARGETS
    ) and keras.backend.is_float_dtype(layer.weights[0].dtype)


def _select(model, layers):
    candidates = control.leaf_layers(model)
    if layers is None:
        chosen = [
            layer
            for layer in candidates
            if not isinstance(layer, NoisyLayer) and _perturbable(layer)
        ]
    else:
        chosen = control.select_layers(model, candidates, layers)
    return {id(layer) for layer in chosen}


def _clone_layer(layer):
    return layer.__class__.from_config(layer.get_config())


def _accepted_kwargs_call(layer, *args, **kwargs):
    """Calls `layer`, dropping keyword arguments its `call` does not take."""
    params = inspect.signature(layer.call).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kwargs = {
            k: v for k, v in kwargs.items() if k in params or k == "training"
        }
    return layer(*args, **kwargs)


def _rebuild(model, replace):
    """Clones `model`, layer by layer, copying every weight.

    `replace(layer)` returns `None` to copy a layer as it is, or
    `(new_layer, holder, weights)`: the layer to use instead, and the layer
    (itself or one it wraps) that receives `weights` once the clone is built.
    """
    copies = []

    def clone_function(layer):
        replaced = replace(layer)
        if replaced is None:
            new = _clone_layer(layer)
            copies.append((new, layer.get_weights()))
            return new
        new, holder, weights = replaced
        copies.append((holder, weights))
        return new

    kwargs = {"clone_function": clone_function, "recursive": True}
    if not isinstance(model, keras.Sequential):
        kwargs["call_function"] = _accepted_kwargs_call
    new_model = keras.models.clone_model(model, **kwargs)
    for layer, weights in copies:
        layer.set_weights(weights)
    return new_model


def wrap(model, noise="gaussian", layers=None, estimator="shared", seed=None):
    """A copy of `model` with weight noise on (some of) its layers.

    Rebuilds the model with `keras.models.clone_model`, wrapping each
    selected layer in `noisylayers.WeightNoise` (with the given noise kind,
    estimator and a per-layer seed derived from `seed`), and copies every
    weight: inference outputs are identical to the original's, training
    calls are noisy. Each wrapper takes the name of the layer it wraps, so
    selections by the old names (`set_noise(model, layers="conv1")`, the
    ablations) keep working. Layers that are already noisy are left as they
    are. The original model is not modified. Nested Sequential and
    functional models are rebuilt too; a layer shared between several
    places stays shared.

    Compilation is not carried over (Keras' cloning does not copy it):
    `compile` the returned model before training it.

    Args:
        model: A Sequential or functional `keras.Model` (nested ones
            included).
        noise: The noise kind of every wrapper (see `noisylayers.noise.get`).
        layers: Which layers to wrap: `None` (default) for every layer with
            a weight that `WeightNoise` perturbs by default (a kernel, bias,
            recurrent kernel or embeddings), or a layer name, glob pattern
            (`"conv*"`) or layer object, or a list of these.
        estimator: The estimator of every wrapper (see `WeightNoise`).
        seed: Optional integer; each wrapped layer gets a seed derived from
            it and the layer's name.

    Returns:
        A new `keras.Model` with the same weights.

    Raises:
        ValueError: for a subclassed model (Keras cannot clone it: wrap
            its layers in its own code), a name or pattern matching no
            layer, or a layer the noise or estimator does not fit.
        TypeError: for a `model` that is not a Keras model or a malformed
            `layers`.

    Example:

    ```python
    base = keras.applications.MobileNetV3Small(weights=None)  # or your own
    noisy = noisylayers.wrap(base, noise=noisylayers.noise.Gaussian(0.01),
                             layers="conv*")
    noisy.compile("adam", "sparse_categorical_crossentropy")
    noisy.fit(x, y)              # fine-tune with weight noise
    plain = noisylayers.unwrap(noisy)   # deploy without noisylayers
    ```
    """
    _check_model(model, "wrap")
    seed = check_seed(seed)
    selected = _select(model, layers)
    order = [layer for layer in control.leaf_layers(model) if id(layer) in selected]
    seeds = {
        id(layer): derive_seed(seed, ("wrap", layer.name)) for layer in order
    }
    def replace(layer):
        if id(layer) not in selected or isinstance(layer, NoisyLayer):
            return None
        inner = _clone_layer(layer)
        new = WeightNoise(
            inner,
            noise=noise,
            estimator=estimator,
            seed=seeds[id(layer)],
            name=layer.name,
        )
        return new, inner, layer.get_weights()

    return _rebuild(model, replace)


#: The keys a variant adds to its Keras layer's config.
NOISE_CONFIG_KEYS = ("noise", "estimator", "targets", "seed", "format_version")


def _keras_base(variant):
    for cls in type(variant).__mro__:
        if issubclass(cls, keras.layers.Layer) and not issubclass(cls, NoisyLayer):
            if cls.__module__.startswith("keras"):
                return cls
    raise ValueError(f"No Keras base class for {type(variant).__name__}.")


def _clean_weights(layer):
    """The deployable weights of a noisy layer's perturbed layer, in order."""
    mapping = {id(v): value for v, value in layer.inference_mapping()}
    return [
        keras.ops.convert_to_numpy(mapping.get(id(v), v.value))
        for v in layer.candidate_weights()
    ]


def unwrap(model):
    """A copy of `model` with every noisy layer replaced by its plain layer.

    `WeightNoise(layer)` becomes (a copy of) `layer`, a variant such as
    `NoisyDense` becomes its Keras class (`Dense`) with the same config,
    each holding the clean (mean) weights; for a kind that prunes
    (`VariationalDropout`) the pruned weights are zero. Inference outputs
    are identical. The result needs no noisylayers: saved as `.keras`, it
    loads and predicts where noisylayers is not installed. The original
    model is not modified; compilation is not carried over.

    Args:
        model: A Sequential or functional `keras.Model` (nested ones
            included).

    Returns:
        A new `keras.Model` without noisy layers.

    Raises:
        ValueError: for a subclassed model (Keras cannot clone it).
        TypeError: for a `model` that is not a Keras model.

    Example:

    ```python
    plain = noisylayers.unwrap(trained_noisy_model)
    plain.save("deploy.keras")   # loads with plain Keras
    ```
    """
    _check_model(model, "unwrap")

    def replace(layer):
        if isinstance(layer, WeightNoise):
            inner = layer.layer
            new = inner.__class__.from_config({**inner.get_config(), "name": layer.name})
            return new, new, _clean_weights(layer)
        if isinstance(layer, NoisyVariant):
            base = _keras_base(layer)
            config = {
                k: v
                for k, v in layer.get_config().items()
                if k not in NOISE_CONFIG_KEYS
            }
            new = base.from_config(config)
            return new, new, _clean_weights(layer)
        return None

    return _rebuild(model, replace)
