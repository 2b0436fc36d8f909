"""``python -m lemon.downstream``: see :mod:`lemon.downstream.cli`."""

import sys

from lemon.downstream.cli import main

sys.exit(main())
