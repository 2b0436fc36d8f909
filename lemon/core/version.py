"""lemon's version, recorded in every run's args.json and scoring plan."""

__version__ = "0.1.0"
