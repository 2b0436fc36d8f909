"""One run's life: its configuration (run_lemon's flags), the pipeline as a list of named stages, and its
output folder (checked, locked, written beside it and swapped in when finished)."""
