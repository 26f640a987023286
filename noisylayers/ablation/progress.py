"""Progress bars of the ablations: tqdm's, or none (tqdm is then not needed)."""

from noisylayers.ablation.optional import require


def progress_bar(iterable=None, enabled=True, **kwargs):
    """A `tqdm.auto.tqdm` bar, or with `enabled=False` a silent stand-in.

    Args:
        iterable: What to iterate over, if anything.
        enabled: Whether to show the bar.
        **kwargs: For `tqdm` (`desc`, `unit`, `total`, ...).

    Returns:
        A context manager and iterable with `update` and `set_postfix_str`.
    """
    if not enabled:
        return _NoBar(iterable)
    return require("tqdm.auto", "progress bars").tqdm(iterable, **kwargs)


class _NoBar:
    """What the ablations use of a tqdm bar, doing nothing."""

    def __init__(self, iterable):
        self._iterable = iterable

    def __iter__(self):
        return iter(self._iterable)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass

    def set_postfix_str(self, text):
        pass
