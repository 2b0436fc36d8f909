"""Atomic writes and the done marker (lemon/core/io.py)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lemon.core import io


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a.json"
    io.atomic_write_json(path, {"x": np.float32(1.5), "nan": math.nan, "arr": np.arange(3)})
    assert json.loads(path.read_text()) == {"x": 1.5, "nan": None, "arr": [0, 1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "a.json"
    io.atomic_write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        io.atomic_write_json(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_done_marker(tmp_path):
    assert not io.is_done(tmp_path)
    io.mark_done(tmp_path, 1.25)
    assert io.is_done(tmp_path) and "wall_time_s=1.250" in (tmp_path / "done").read_text()
