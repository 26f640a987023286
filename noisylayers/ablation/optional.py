"""The ablations' optional dependencies, imported on first use.

tqdm (progress bars), matplotlib (plots) and scikit-learn (the digits of
`noisylayers ablate`) come with `pip install "noisylayers[ablation]"`, and
Ray (`--ray`) with `pip install "noisylayers[ray]"`; `import noisylayers`
does not need them.
"""

import importlib


class MissingDependencyError(ModuleNotFoundError):
    """An optional dependency is not installed; the message says which extra."""


def require(module, purpose, extra="ablation"):
    """Imports `module`; if it is missing, says which extra provides it.

    Args:
        module: The module's dotted name (`"matplotlib.figure"`).
        purpose: What it is needed for, for the message (`"plots"`).
        extra: The extra of `noisylayers` that installs it.

    Returns:
        The module.

    Raises:
        MissingDependencyError: (a `ModuleNotFoundError`) if it is not
            installed, naming the extra that provides it.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise MissingDependencyError(
            f"No module named {e.name!r}, needed for {purpose}: "
            f'pip install "noisylayers[{extra}]"',
            name=e.name,
        ) from e
