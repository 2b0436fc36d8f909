"""After a run: review its suspects and reuse it. :mod:`lemon.review.detector` scores new pairs against a
finished run (its reference set, model, hyper-parameters and threshold), fitting nothing."""
