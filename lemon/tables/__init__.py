"""Finished runs read back: one row per run (results) and the paper's tables built from them (aggregate;
``python sweep.py tables``)."""
