"""lemon.core.errors: every command ends a LemonError with one line and exit code 2."""

from __future__ import annotations

import pytest

from lemon.core.errors import DatasetNotFoundError, one_line_errors


@one_line_errors
def _command(argv: list[str] | None = None) -> int:
    """A command."""
    if argv == ["missing"]:
        raise DatasetNotFoundError("Dataset 'x' not found under /data; see DataSources.md#x.")
    if argv == ["bug"]:
        raise KeyError("a bug is a traceback, not a one-line error")
    return 0


def test_a_lemon_error_is_one_line_and_exit_code_2(capsys):
    assert _command(["missing"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "error: Dataset 'x' not found under /data; see DataSources.md#x.\n"
    assert captured.out == ""
    assert _command([]) == 0 and _command.__doc__ == "A command."


def test_other_exceptions_are_not_swallowed():
    with pytest.raises(KeyError):
        _command(["bug"])
