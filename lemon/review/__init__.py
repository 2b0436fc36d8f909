"""After a run: from reviewed flags to a corrected dataset, and the run reused on new data.

``python -m lemon.review apply`` writes the user's table with a review's decisions applied
(:mod:`lemon.review.apply`; the decisions format is :mod:`lemon.data.decisions`, read by
``run_lemon --reviewed`` too). :mod:`lemon.review.detector` scores new pairs against a finished run (its
reference set, model, hyper-parameters and threshold), fitting nothing.
"""

from lemon.review.apply import Applied, apply_decisions

__all__ = ["Applied", "apply_decisions"]
