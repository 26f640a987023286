"""The spec language of noise kinds: `"gaussian:0.1"` to a kind and back.

A spec names a kind and, after a colon, its parameters, as the arguments of
a Python call: `KIND`, `KIND:VALUE` (the kind's first parameter),
`KIND:NAME=VALUE,NAME=VALUE` or both (`variational_dropout:3,kl_weight=1e-4`).
Values are Python literals (numbers, `None`, quoted strings, lists) or bare
words (`per=channel`, `prior=laplace`). The arguments are read with the
standard library's `ast` and never evaluated.

| function     | gives                                                         |
|--------------|---------------------------------------------------------------|
| `parse`      | the kind a spec describes                                     |
| `to_spec`    | the full spec of a kind: `"gaussian:stddev=0.1"`              |
| `short_spec` | `"gaussian:0.1"` for a kind with one number, else `to_spec`'s |

`noisylayers.noise.get` (and every `noise=` argument, and the command's
`--noise`) reads specs too.
"""

import ast
import inspect

#: The name of the call whose arguments a spec's text after `KIND:` is.
_CALL = "spec"
_FORMS = "A spec is KIND, KIND:VALUE or KIND:NAME=VALUE,NAME=VALUE"


def parse(text):
    """Reads a noise spec such as `"gaussian:0.1"` as a noise kind.

    Args:
        text: The spec: `KIND`, `KIND:VALUE` (the kind's first parameter,
            e.g. the stddev of `gaussian` or the rate of `dropconnect`),
            `KIND:NAME=VALUE,...` (any parameters, e.g.
            `learned_gaussian:init_stddev=0.05,dataset_size=1000`) or both
            (`variational_dropout:3,kl_weight=1e-4`). `KIND` is an alias or
            a class name; values are Python literals (numbers, `None`,
            quoted strings, lists) or bare words (`normal`).

    Returns:
        A `noisylayers.noise.Noise` instance.

    Raises:
        ValueError: for an unknown kind or parameter, a malformed spec or
            an invalid value; the message quotes the spec.
        TypeError: if `text` is not a string.

    Example:

    >>> noisylayers.noise.parse("relative_gaussian:0.05,per=channel")
    RelativeGaussian(stddev=0.05, per='channel')
    """
    from noisylayers import noise as noise_module

    if not isinstance(text, str):
        raise TypeError(f"A noise spec must be a string. Received: {text!r}")
    kind, colon, rest = text.partition(":")
    kind = kind.strip()
    noise = noise_module.get(kind)
    if not colon:
        return noise
    names = _parameters(type(noise))
    positional, keywords = _arguments(rest, text)
    if len(positional) > 1 or (positional and not names):
        first = f"`{names[0]}`" if names else "none here"
        raise _malformed(
            text, f"one VALUE at most, for the first parameter ({first})"
        )
    kwargs = {}
    for name, value in [*zip(names, positional), *keywords]:
        if name not in names:
            raise ValueError(
                f"Noise kind {kind!r} has no parameter {name!r}; its "
                f"parameters are {names}. Received: {text!r}"
            )
        if name in kwargs:
            raise ValueError(
                f"The noise spec gives parameter {name!r} twice. "
                f"Received: {text!r}"
            )
        default = getattr(noise, name, None)
        if isinstance(default, float) and type(value) is int:
            value = float(value)
        kwargs[name] = value
    config = {**noise.get_config(), **kwargs}
    try:
        return type(noise).from_config(config)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Invalid noise spec {text!r}: {e}") from None


def to_spec(noise):
    """The full spec of a noise kind, as `parse` reads it.

    Args:
        noise: A noise kind (or anything `noisylayers.noise.get` accepts).

    Returns:
        `KIND:NAME=VALUE,...` with every parameter of the kind's config
        (`KIND` alone for a kind without parameters).

    Raises:
        ValueError: for a kind without an alias, or with a parameter that
            has no spec (a prior other than an alias with its defaults).

    Example:

    >>> noisylayers.noise.to_spec(noisylayers.noise.Gaussian(0.05))
    'gaussian:stddev=0.05'
    """
    from noisylayers import noise as noise_module

    noise = noise_module.get(noise)
    alias = _alias(noise)
    params = []
    for name, value in noise.get_config().items():
        if isinstance(value, dict):
            value = _prior_alias(value)
            if value is None:
                raise ValueError(
                    f"No spec for a kind with nested parameters: {noise!r}"
                )
            params.append(f"{name}={value}")
        else:
            params.append(f"{name}={value!r}")
    return f"{alias}:{','.join(params)}" if params else alias


def short_spec(noise):
    """The shortest spec of a noise kind: `"gaussian:0.1"` where it exists.

    Args:
        noise: A noise kind (or anything `noisylayers.noise.get` accepts).

    Returns:
        `KIND:VALUE` for a kind whose config is one number (written with
        `:g`, or in full where `:g` would round it), else `to_spec(noise)`.

    Raises:
        ValueError: as `to_spec`.

    Example:

    >>> noisylayers.noise.short_spec(noisylayers.noise.DropConnect(0.25))
    'dropconnect:0.25'
    """
    from noisylayers import noise as noise_module

    noise = noise_module.get(noise)
    config = noise.get_config()
    if len(config) == 1:
        (value,) = config.values()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            text = f"{value:g}"
            if float(text) != value:
                text = repr(value)
            return f"{_alias(noise)}:{text}"
    return to_spec(noise)


def _alias(noise):
    from noisylayers import noise as noise_module

    alias = next(
        (a for a, cls in noise_module.ALIASES.items() if type(noise) is cls), None
    )
    if alias is None:
        raise ValueError(f"No spec for a kind without an alias: {noise!r}")
    return alias


def _parameters(cls):
    """The names a spec may give: the keyword parameters of `cls`."""
    return [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]


def _arguments(rest, text):
    """The positional values and `(name, value)` pairs of `KIND:rest`."""
    try:
        tree = ast.parse(f"{_CALL}({rest})", mode="eval")
    except SyntaxError as e:
        raise _malformed(text, e.msg) from None
    call = tree.body
    if not (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id == _CALL
    ):
        raise _malformed(text)
    if not call.args and not call.keywords:
        raise _malformed(text, "nothing follows the colon")
    if any(isinstance(a, ast.Starred) for a in call.args) or any(
        k.arg is None for k in call.keywords
    ):
        raise _malformed(text, "no * or ** arguments")
    positional = [_value(a, text) for a in call.args]
    keywords = [(k.arg, _value(k.value, text)) for k in call.keywords]
    return positional, keywords


def _malformed(text, why=None):
    why = f": {why}" if why else ""
    return ValueError(f"Malformed noise spec{why}. {_FORMS}. Received: {text!r}")


def _value(node, text):
    """A literal's value, or a bare word as a string."""
    if isinstance(node, ast.Name):
        return node.id
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(
            f"The value {ast.unparse(node)!r} in a noise spec is neither a "
            "Python literal (a number, None, a quoted string, a list) nor a "
            f"bare word. Received: {text!r}"
        ) from None


def _prior_alias(config):
    """The alias of the prior a config describes, if it is that alias'
    default prior; else `None`."""
    from noisylayers import priors

    prior = priors.get(config)
    for alias, cls in priors.ALIASES.items():
        if prior == cls():
            return alias
    return None
