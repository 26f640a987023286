"""Derived seeds: one salted derivation for every seed the library makes.

A layer, a wrapped model or a Monte Carlo run that needs more than one random
stream derives each from the user's seed and a *salt* naming the stream, like
`tfp.util.SeedStream(seed, salt)`. Adding small integers instead (`seed + 1`)
makes streams collide: `NoisyLSTM(seed=0)` would seed its dropout with the
seed a user gives the next layer (`seed=1`).
"""

import hashlib

#: Derived seeds lie in [0, 2**31), valid for every backend's RNG.
_MODULUS = 2**31


def derive_seed(seed, salt):
    """Returns the seed of the stream `salt` derived from `seed`.

    Args:
        seed: `None` or a non-negative integer (the user's seed).
        salt: A string (or a tuple of strings and integers) naming the stream,
            e.g. `"lstm_dropout"` or `("wrap", 3)`.

    Returns:
        `None` when `seed` is `None` (unseeded stays unseeded), else an
        integer in `[0, 2**31)` that depends on both arguments and differs,
        with overwhelming probability, from `seed` and from other salts.
    """
    if seed is None:
        return None
    if not isinstance(salt, tuple):
        salt = (salt,)
    text = "\x1f".join(["noisylayers", str(int(seed)), *map(str, salt)])
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % _MODULUS
