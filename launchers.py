"""How a sweep's jobs run: the LAUNCHERS registry (``--command_launcher``), kept in the library at
:mod:`lemon.sweep.launchers` and re-exported here, beside ``sweep.py`` and ``experiments.py``, where the
original LEMoN had it.

Usage:
    python sweep.py launch --experiment smoke --output_root runs --command_launcher local
"""

from lemon.sweep.launchers import LAUNCHERS, Launcher, Option, launcher, option_names

__all__ = ["LAUNCHERS", "Launcher", "Option", "launcher", "option_names"]
