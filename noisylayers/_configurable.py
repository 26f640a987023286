"""`Configurable`: the config protocol of the small objects (kinds, priors)."""


class Configurable:
    """Equality, hashing, `repr` and `from_config` from `get_config()`.

    Noise kinds and priors are small value objects, like Keras initializers:
    two with the same class and config are equal (and hash equal).
    """

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{self.__class__.__name__}({args})"

    def __eq__(self, other):
        return type(self) is type(other) and (
            self.get_config() == other.get_config()
        )

    def __hash__(self):
        return hash((type(self), repr(self)))
