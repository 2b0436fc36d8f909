"""From reviewed flags to a corrected dataset: ``python -m lemon.review apply`` writes the user's table
with a review's decisions applied (:mod:`lemon.review.apply`). The decisions format is
:mod:`lemon.data.decisions` (read by ``run_lemon --reviewed`` too)."""

from lemon.review.apply import Applied, apply_decisions

__all__ = ["Applied", "apply_decisions"]
