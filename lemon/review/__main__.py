"""``python -m lemon.review apply``: write your table with a review's decisions applied.

Usage:
    python -m lemon.review apply --run runs/mine --decisions decisions.csv --output cleaned.csv
    python -m lemon.review apply --run runs/mine --decisions decisions.csv --output cleaned.csv --mark

Pairs judged wrong take their correction, or are removed (kept and marked with --mark); review_decision,
review_action and review_original say what changed. The input and the run folder are never written to.
See docs/review.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lemon.core.cli import command
from lemon.core.flags import HelpfulParser


@command()
def main(argv: Sequence[str] | None = None) -> int:
    """CLI: parse, apply, print one line of what was written."""
    p = HelpfulParser(prog="python -m lemon.review", description=__doc__.split("\n\n")[0])
    commands = p.add_subparsers(dest="command", required=True, metavar="apply")
    a = commands.add_parser(
        "apply",
        help="Write the run's input table with the decisions applied.",
        description="Write the run's input table (csv, parquet, or a list of a folder's files) with "
        "the decisions applied: corrections written, pairs judged wrong without one removed.",
    )
    a.add_argument("--run", required=True, help="The run_lemon --output_dir that was reviewed.")
    a.add_argument("--decisions", required=True, help="decisions.csv from the review page.")
    a.add_argument("--output", required=True, help="The cleaned table to write (.csv / .parquet).")
    a.add_argument(
        "--mark",
        action="store_true",
        help="Keep pairs judged wrong without a correction (review_action = marked_wrong).",
    )
    a.add_argument("--overwrite", action="store_true", help="Replace an existing --output.")
    a.add_argument(
        "--input",
        default=None,
        help="The table or folder the run scored, when args.json's data_path does not lead to it "
        "from here.",
    )
    args = p.parse_args(argv)
    from lemon.review.apply import apply_decisions

    applied = apply_decisions(
        args.run, args.decisions, args.output, args.mark, args.overwrite, args.input
    )
    print(applied.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
