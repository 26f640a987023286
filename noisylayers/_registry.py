"""`Registry`: the named classes of one family of small objects (kinds, priors).

Noise kinds (`noisylayers.noise`) and priors (`noisylayers.priors`) are
looked up like `keras.initializers`: by an object, a string alias, a class
name or a config dict. A `Registry` holds one family's aliases and classes
and does the lookups, with Keras-style errors that name the argument and the
received value; each module's `get` adds what only it accepts (a spec string
for kinds, `None` and TFP objects for priors).
"""

import difflib
import reprlib

import keras


class Registry:
    """The aliases and classes of a family of configurable objects.

    Args:
        what: The family's name in messages (`"noise kind"`, `"prior"`).
        argument: The name of the argument users pass (`"noise"`, `"prior"`),
            as in `"Received: noise='gausian'"`.
        base: The base class every member derives from.
        base_name: The base class's public path, for messages
            (`"noisylayers.noise.Noise"`).
        aliases: Dict from string alias to class. The registry reads it at
            each lookup, so entries added later count.
        classes: Further classes that configs may name but strings may not
            (an abstract base, an adapter built from other objects).
        forms: Further accepted forms, for the `TypeError` message
            (`"a spec such as 'gaussian:0.1'"`).
    """

    def __init__(self, what, argument, base, base_name, aliases, classes=(), forms=()):
        self.what = what
        self.argument = argument
        self.base = base
        self.base_name = base_name
        self.aliases = aliases
        self._classes = tuple(classes)
        self.forms = tuple(forms)

    @property
    def named_classes(self):
        """Class name to class, for the classes with an alias."""
        return {cls.__name__: cls for cls in self.aliases.values()}

    @property
    def config_classes(self):
        """Class name to class, for every class a config may name."""
        return {**{cls.__name__: cls for cls in self._classes}, **self.named_classes}

    def alias_of(self, obj):
        """The alias of `obj`'s class (its exact class), or `None`."""
        return next((a for a, c in self.aliases.items() if type(obj) is c), None)

    def lookup(self, name):
        """The class named by an alias or a class name.

        Raises:
            ValueError: for an unknown name (with the closest known names).
        """
        cls = self.aliases.get(name) or self.named_classes.get(name)
        if cls is None:
            close = difflib.get_close_matches(name, self.aliases, n=2)
            close = close or difflib.get_close_matches(name, self.named_classes, n=2)
            hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
            others = _one_of([f"a `{self.base_name}` instance", *self.forms])
            raise ValueError(
                f"Unknown {self.what}.{hint} Expected one of "
                f"{sorted(self.aliases)} (or the class names "
                f"{sorted(self.named_classes)}), or {others}. "
                f"Received: {self.argument}={name!r}"
            )
        return cls

    def serialize(self, obj):
        """The config dict of `obj` (`None` for `None`)."""
        if obj is None:
            return None
        return keras.saving.serialize_keras_object(obj)

    def deserialize(self, config, custom_objects=None):
        """Keras' deserialization, knowing this family's classes and aliases."""
        return keras.saving.deserialize_keras_object(
            config,
            module_objects={**self.config_classes, **self.aliases},
            custom_objects=custom_objects,
            printable_module_name=self.what,
        )

    def from_config(self, config):
        """The object a config dict describes; a `ValueError` otherwise."""
        try:
            obj = self.deserialize(config)
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(
                f"Could not build a {self.what} from the config. "
                f"Received: {self.argument}={brief_repr(config)} ({e})"
            ) from e
        if not isinstance(obj, self.base):
            raise ValueError(
                f"The config does not describe a `{self.base_name}` (a "
                f"{self.what}). Received: {self.argument}={brief_repr(config)}"
            )
        return obj

    def get(self, identifier):
        """An instance (returned as is), a name or a config, as an object.

        Raises:
            ValueError: for an unknown name or a bad config.
            TypeError: for anything else.
        """
        if isinstance(identifier, self.base):
            return identifier
        if isinstance(identifier, str):
            return self.lookup(identifier)()
        if isinstance(identifier, dict):
            return self.from_config(identifier)
        raise self.type_error(identifier)

    def type_error(self, identifier):
        forms = [
            f"a `{self.base_name}` instance",
            f"a string alias ({sorted(self.aliases)}) or class name",
            *self.forms,
            "a config dict",
        ]
        return TypeError(
            f"Argument `{self.argument}` must be {_one_of(forms)}. "
            f"Received: {self.argument}={identifier!r} "
            f"(of type {type(identifier).__name__})"
        )


def _one_of(forms):
    """`"a, b or c"`."""
    return forms[0] if len(forms) == 1 else ", ".join(forms[:-1]) + " or " + forms[-1]


def brief_repr(value):
    """`repr(value)`, shortened inside large configs (for messages)."""
    brief = reprlib.Repr()
    brief.maxlevel, brief.maxdict, brief.maxlist = 6, 12, 12
    brief.maxstring = brief.maxother = 200
    return brief.repr(value)
