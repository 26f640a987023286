"""`python -m noisylayers`: the `noisylayers` command.

An entry point, like the `noisylayers` console script, and no part of the
library (no module imports it): it runs the command's front end,
`noisylayers_cli`. Python runs the package's `__init__` first, which imports
Keras and the backend, so here even `--help` takes seconds and the backend's
start-up lines may show; `noisylayers --help` (or `python -m noisylayers_cli
--help`) answers without them.
"""

import sys

from noisylayers_cli import main

sys.exit(main())
