"""The report a data team opens: ``report.html`` and ``flagged.csv`` of a finished run
(``python -m lemon.report RUN_DIR`` or ``run_lemon --report``)."""

from lemon.report.build import write_report

__all__ = ["write_report"]
