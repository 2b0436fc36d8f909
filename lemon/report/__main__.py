"""``python -m lemon.report RUN_DIR``: write report.html and flagged.csv of a finished run."""

import sys

from lemon.report.build import main

if __name__ == "__main__":
    sys.exit(main())
