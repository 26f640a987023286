"""`python -m noisylayers`: the `noisylayers` command."""

import sys

from noisylayers.cli import main

sys.exit(main())
