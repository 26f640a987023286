"""`wrap` and `unwrap`: put noise into a model you have, take it out again."""

import inspect
import warnings

import keras

from noisylayers import _keras_private
from noisylayers import control
from noisylayers import noise as noise_module
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


def _children(layer):
    """The layers inside a plain Keras wrapper layer (none for other layers).

    `Bidirectional` holds a forward and a backward layer; any other
    `keras.layers.Wrapper` (`TimeDistributed`, a user's wrapper) one `layer`.
    Noisy layers are not looked into: they are what `wrap` makes.
    """
    if isinstance(layer, NoisyLayer):
        return []
    if isinstance(layer, keras.layers.Bidirectional):
        return [layer.forward_layer, layer.backward_layer]
    if isinstance(layer, keras.layers.Wrapper):
        return [layer.layer]
    return []


def _leaves(model):
    """The layers `wrap` and `unwrap` may replace, in model order.

    `control.leaf_layers`, with the wrapper layers (`Bidirectional`,
    `TimeDistributed`, ...) replaced by the layers they wrap, recursively.
    """
    found = []

    def walk(layer):
        children = _children(layer)
        if children:
            for child in children:
                walk(child)
        else:
            found.append(layer)

    for layer in control.leaf_layers(model):
        walk(layer)
    return found


def _parents(model):
    """Maps `id(child)` to the wrapper layer directly holding it."""
    parents = {}

    def walk(layer):
        for child in _children(layer):
            parents[id(child)] = layer
            walk(child)

    for layer in control.leaf_layers(model):
        walk(layer)
    return parents


#: The variant of each Keras layer class: `wrap` uses it where a wrapper
#: layer needs its inner layer to stay of its Keras type (`Bidirectional`
#: holds recurrent layers, never a `WeightNoise`).
def _variants():
    from noisylayers import layers as noisy

    return {
        keras.layers.Dense: noisy.NoisyDense,
        keras.layers.Conv1D: noisy.NoisyConv1D,
        keras.layers.Conv2D: noisy.NoisyConv2D,
        keras.layers.Conv3D: noisy.NoisyConv3D,
        keras.layers.LSTM: noisy.NoisyLSTM,
        keras.layers.GRU: noisy.NoisyGRU,
    }


def _select(model, layers):
    """The layers `wrap` replaces: a set of ids (leaves or wrapper layers)."""
    candidates = _leaves(model)
    parents = _parents(model)
    if layers is not None:
        chosen = control.select_layers(model, candidates, layers)
        noisy = [layer.name for layer in chosen if isinstance(layer, NoisyLayer)]
        if noisy:
            raise ValueError(
                f"Layers {noisy} of model '{model.name}' are noisy already: "
                "`wrap` does not stack a second noise on them. Change their "
                "noise with `noisylayers.set_noise`, or `noisylayers.unwrap` "
                f"the model first. Received: layers={layers!r}"
            )
        return {id(layer) for layer in chosen}
    selected = set()
    for layer in candidates:
        if isinstance(layer, NoisyLayer) or not _perturbable(layer):
            continue
        parent = parents.get(id(layer))
        if isinstance(parent, keras.layers.Bidirectional) and (
            type(layer) not in _variants()
        ):
            # No variant keeps it recurrent: wrap the whole Bidirectional.
            selected.add(id(parent))
            parents.pop(id(layer))
        else:
            selected.add(id(layer))
    return selected


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


def _copy(layer):
    """A clone of a layer that is kept, and the function filling its weights."""
    weights = layer.get_weights()
    return _clone_layer(layer), lambda new: new.set_weights(weights)


def _assign(variables, values):
    for variable, value in zip(variables, values):
        variable.assign(value)


def _rebuild_wrapper(layer, convert):
    """Rebuilds a plain wrapper layer around its converted inner layers.

    Returns the new wrapper and a function that fills the weights of its
    inner layers once it is built. Keras' `Bidirectional` recreates its
    forward layer from the given layer's config, so the weights go to the
    new wrapper's own inner layers, found after construction.
    """
    converted = [convert(child) for child in _children(layer)]
    config = layer.get_config()
    config.pop("layer", None)
    if isinstance(layer, keras.layers.Bidirectional):
        config.pop("backward_layer", None)
        new = type(layer)(
            converted[0][0], backward_layer=converted[1][0], **config
        )
    else:
        new = type(layer)(converted[0][0], **config)

    def fill(built):
        for (_, fill_child), child in zip(converted, _children(built)):
            fill_child(child)

    return new, fill


def _rebuild(model, convert):
    """Clones `model`, layer by layer, with `convert(layer)` for each layer.

    `convert(layer)` returns `(new_layer, fill)`: the layer to use instead,
    and a function that receives it once the clone is built and sets its
    weights.
    """
    fills = []

    def clone_function(layer):
        new, fill = convert(layer)
        fills.append((new, fill))
        return new

    kwargs = {"clone_function": clone_function, "recursive": True}
    if not isinstance(model, keras.Sequential):
        kwargs["call_function"] = _accepted_kwargs_call
    new_model = keras.models.clone_model(model, **kwargs)
    for new, fill in fills:
        fill(new)
    return new_model


def wrap(
    model,
    noise="gaussian",
    layers=None,
    estimator="shared",
    seed=None,
    fallback="shared",
):
    """A copy of `model` with weight noise on (some of) its layers.

    Rebuilds the model with `keras.models.clone_model`, wrapping each
    selected layer in `noisylayers.WeightNoise` (with the given noise kind,
    estimator and a per-layer seed derived from `seed`), and copies every
    weight: inference outputs are identical to the original's, training
    calls are noisy. Each wrapper takes the name of the layer it wraps, so
    selections by the old names (`set_noise(model, layers="conv1")`, the
    ablations) keep working. The original model is not modified. Nested
    Sequential and functional models are rebuilt too; a layer shared between
    several places stays shared.

    Wrapper layers are looked into: `TimeDistributed(Dense)` becomes
    `TimeDistributed(WeightNoise(Dense))`, and the recurrent layers of a
    `Bidirectional` become their variants (`NoisyLSTM`, `NoisyGRU`), which
    stay recurrent layers as `Bidirectional` requires; a `Bidirectional` of
    another recurrent layer (`SimpleRNN`) is wrapped whole.

    Layers that are noisy already keep their noise: with `layers=None` they
    are left as they are, and selecting one by name is an error (`wrap`
    never stacks two noises on a layer).

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
        fallback: The estimator used for a selected layer that does not
            have `estimator` (a `DepthwiseConv2D` asked for `"flipout"`):
            `"shared"` (default) falls back and warns once, naming those
            layers; `None` refuses, naming them all before anything is
            built.

    Returns:
        A new `keras.Model` with the same weights.

    Raises:
        ValueError: for a subclassed model (Keras cannot clone it: wrap
            its layers in its own code), a name or pattern matching no
            layer or selecting a noisy layer, or a layer the noise or
            estimator (and `fallback`) does not fit.
        TypeError: for a `model` that is not a Keras model or a malformed
            `layers`.

    Example:

    ```python
    base = keras.applications.MobileNetV3Small(weights=None)  # or your own
    noisy = noisylayers.wrap(base, noise=noisylayers.noise.Gaussian(0.01),
                             layers="conv*", estimator="flipout")
    noisy.compile("adam", "sparse_categorical_crossentropy")
    noisy.fit(x, y)              # fine-tune with weight noise
    plain = noisylayers.unwrap(noisy)   # deploy without noisylayers
    ```
    """
    _check_model(model, "wrap")
    seed = check_seed(seed)
    if fallback is not None and fallback != "shared":
        raise ValueError(
            "Argument `fallback` must be 'shared' or None. "
            f"Received: fallback={fallback!r}"
        )
    selected = _select(model, layers)
    parents = _parents(model)
    # Every noisy layer is made before cloning, so that every refusal comes
    # before anything is built, and the fallbacks are known.
    made, fell_back, refused = {}, [], []
    for layer in [*_leaves(model), *parents.values()]:
        if id(layer) not in selected or id(layer) in made:
            continue
        in_bidirectional = isinstance(
            parents.get(id(layer)), keras.layers.Bidirectional
        )
        layer_seed = derive_seed(seed, ("wrap", layer.name))
        chosen = estimator
        if estimator is not None:
            probe, _ = _noisy(layer, noise, "shared", layer_seed, in_bidirectional)
            if estimator not in probe.available_estimators():
                if fallback is None:
                    refused.append(f"'{layer.name}' ({type(layer).__name__})")
                    continue
                chosen = fallback
                fell_back.append(layer.name)
        made[id(layer)] = _noisy(layer, noise, chosen, layer_seed, in_bidirectional)
    if refused:
        raise ValueError(
            f"Estimator {estimator!r} cannot be used for layers "
            f"{', '.join(refused)} of model '{model.name}' with noise "
            f"{noise!r}. Select other layers, or pass fallback='shared' to "
            f"use the shared estimator for them. Received: estimator="
            f"{estimator!r}, fallback=None"
        )
    if fell_back:
        warnings.warn(
            f"`wrap`: layers {fell_back} do not have estimator {estimator!r} "
            "and use 'shared' instead (fallback='shared'; pass "
            "fallback=None to refuse instead).",
            stacklevel=2,
        )

    def convert(layer):
        if id(layer) in made:
            return made[id(layer)]
        if _children(layer) and any(
            id(inner) in selected for inner in _descendants(layer)
        ):
            return _rebuild_wrapper(layer, convert)
        return _copy(layer)

    return _rebuild(model, convert)


def _descendants(layer):
    for child in _children(layer):
        yield child
        yield from _descendants(child)


def _noisy(layer, noise, estimator, seed, in_bidirectional):
    """The noisy replacement of `layer` and the function filling its weights."""
    weights = layer.get_weights()
    if in_bidirectional:
        variant = _variants().get(type(layer))
        if variant is None:
            raise ValueError(
                f"Layer '{layer.name}' (of type {type(layer).__name__}) is "
                "inside a Bidirectional layer, which holds recurrent layers "
                "only, and has no noisy variant: select the Bidirectional "
                f"layer itself instead. Received: layers={layer.name!r}"
            )
        new = variant.from_config(
            {
                **layer.get_config(),
                "noise": noise_module.serialize(noise_module.get(noise)),
                "estimator": estimator,
                "seed": seed,
            }
        )
        return new, lambda built: _assign(built.candidate_weights(), weights)
    inner = _clone_layer(layer)
    new = WeightNoise(
        inner, noise=noise, estimator=estimator, seed=seed, name=layer.name
    )
    return new, lambda built: built.layer.set_weights(weights)


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
    (`VariationalDropout`) the pruned weights are zero. Noisy layers inside
    wrapper layers (`Bidirectional(NoisyLSTM(...))`,
    `TimeDistributed(WeightNoise(...))`) are replaced too. Inference outputs
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

    def convert(layer):
        if isinstance(layer, WeightNoise):
            inner = layer.layer
            new = inner.__class__.from_config({**inner.get_config(), "name": layer.name})
        elif isinstance(layer, NoisyVariant):
            base = _keras_base(layer)
            config = {
                k: v
                for k, v in layer.get_config().items()
                if k not in NOISE_CONFIG_KEYS
            }
            new = base.from_config(config)
        elif any(isinstance(inner, NoisyLayer) for inner in _descendants(layer)):
            return _rebuild_wrapper(layer, convert)
        else:
            return _copy(layer)
        weights = _clean_weights(layer)
        return new, lambda built: built.set_weights(weights)

    return _rebuild(model, convert)
