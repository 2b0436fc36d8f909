"""decisions.csv: the columns, values and one-line refusals, and how decisions are matched to a run's pairs."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from lemon.core.errors import LemonError
from lemon.data.decisions import COLUMNS, match_decisions, read_decisions


def write(tmp_path, rows, name="decisions.csv", columns=COLUMNS):
    path = tmp_path / name
    pd.DataFrame(rows, columns=list(columns)).to_csv(path, index=False)
    return path


def row(r, image="", decision="wrong", corrected="", audit=0, at="2025-05-01T12:00:00Z", **extra):
    return {
        "row": r,
        "image": image,
        "decision": decision,
        "corrected": corrected,
        "audit": audit,
        "reviewed_at": at,
        **extra,
    }


def test_a_valid_file_reads_with_types_and_the_split_column_optional(tmp_path):
    path = write(
        tmp_path,
        [row(3, "a.jpg", "Wrong", "cat"), row(5, "", " right ", "", 1), row(7, decision="unsure")],
    )
    d = read_decisions(path)
    assert d["row"].tolist() == [3, 5, 7]
    assert d["decision"].tolist() == ["wrong", "right", "unsure"]  # case and spaces forgiven
    assert d["audit"].tolist() == [False, True, False]
    assert d["corrected"].tolist() == ["cat", "", ""]
    assert d["split"].tolist() == ["", "", ""]  # no split column: empty


def test_cells_are_kept_as_written(tmp_path):
    path = write(tmp_path, [row(1, "0007.jpg", corrected="007")])
    d = read_decisions(path)
    assert d["image"].iloc[0] == "0007.jpg" and d["corrected"].iloc[0] == "007"


def test_the_latest_decision_of_a_pair_wins(tmp_path, caplog):
    path = write(
        tmp_path,
        [
            row(2, decision="wrong", at="2025-05-01T12:00:00Z"),
            row(2, decision="right", at="2025-05-02T08:00:00Z"),
            row(2, decision="unsure", at="2025-04-30T08:00:00Z"),
        ],
    )
    with caplog.at_level(logging.WARNING):
        d = read_decisions(path)
    assert d["decision"].tolist() == ["right"]
    assert "2 pair(s) have several decisions" in caplog.text


@pytest.mark.parametrize(
    "rows, columns, message",
    [
        ([], COLUMNS, r"holds no decisions \(only a header\)"),
        ([{"row": 1, "decision": "wrong"}], ("row", "decision"), r"lacks the column\(s\) image"),
        ([row("x1")], COLUMNS, r"line 2: row 'x1' is not a row number"),
        ([row(1), row(-2)], COLUMNS, r"line 3: row '-2' is not a row number"),
        (
            [row(1, decision="maybe")],
            COLUMNS,
            r"line 2: decision 'maybe' is not one of wrong, right",
        ),
        ([row(1, audit=2)], COLUMNS, r"line 2: audit '2' must be 1 .* or 0"),
        ([row(1, at="yesterday")], COLUMNS, r"line 2: reviewed_at 'yesterday' is not an ISO 8601"),
    ],
)
def test_every_bad_file_is_one_line_naming_the_line(tmp_path, rows, columns, message):
    with pytest.raises(LemonError, match=message):
        read_decisions(write(tmp_path, rows, columns=columns))


def test_a_missing_file_names_where_decisions_come_from(tmp_path):
    with pytest.raises(LemonError, match=r"Decisions file not found: .*review page"):
        read_decisions(tmp_path / "nope.csv")


def test_an_unreadable_file_is_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"row,image\n\xff\xfe\x00bad")
    with pytest.raises(LemonError, match="Cannot read decisions"):
        read_decisions(path)


# ------------------------------------------------------------------------------------ matching a run
RUN_SPLIT = np.array(["train", "train", "val", "test"])
RUN_ROW = np.array([0, 1, 0, 5])
RUN_IMAGE = np.array(["a.jpg", "b.jpg", "c.jpg", "d.jpg"], dtype=object)


def match(tmp_path, rows, image=RUN_IMAGE):
    path = write(tmp_path, rows, columns=[*COLUMNS, "split"] if "split" in rows[0] else COLUMNS)
    return match_decisions(read_decisions(path), RUN_SPLIT, RUN_ROW, image, str(path), "run X")


def test_decisions_find_their_pairs_by_row_split_and_image(tmp_path):
    found = match(
        tmp_path, [row(5, "d.jpg", split=""), row(0, "c.jpg", split="val"), row(1, "", split="")]
    )
    assert found.tolist() == [3, 2, 1]


def test_a_row_in_several_splits_needs_the_split_column(tmp_path):
    with pytest.raises(
        LemonError, match=r"line 2: row 0 is in several splits of run X \(train, val\)"
    ):
        match(tmp_path, [row(0)])


def test_a_row_the_run_did_not_score_is_named(tmp_path):
    with pytest.raises(LemonError, match=r"line 3: row 9 is not a scored pair of run X"):
        match(tmp_path, [row(5), row(9)])
    with pytest.raises(LemonError, match=r"row 5 of split 'val' is not a scored pair"):
        match(tmp_path, [row(5, split="val")])


def test_an_image_that_is_not_the_runs_at_that_row_is_named(tmp_path):
    with pytest.raises(LemonError, match=r"line 2: row 5 is image 'd.jpg' in run X but 'x.jpg'"):
        match(tmp_path, [row(5, "x.jpg")])
    assert match(tmp_path, [row(5, "x.jpg")], image=None).tolist() == [3]  # no image to check


def test_one_pair_with_two_decisions_one_with_a_split_is_refused(tmp_path):
    with pytest.raises(LemonError, match=r"line 3: row 5 already has a decision on line 2"):
        match(tmp_path, [row(5, split=""), row(5, split="test")])
