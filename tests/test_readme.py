"""Every command README.md shows, run as a user would type it (in a fresh folder, offline).

The own-data commands and the Python example run on a table the test writes in the documented layout
(``image`` paths and ``caption`` per row) with a tiny random CLIP saved where huggingface_hub keeps the
download of the default model, ``openai/clip-vit-base-patch32``; the researchers' commands run on a fake
MS-COCO in the real Karpathy layout. They spawn a dozen processes, so they are slow tests (CI runs them);
the fast test checks that each command parses and names real things.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import run_lemon

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks of ``language``, in order."""
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), flags=re.DOTALL)


def commands() -> list[str]:
    """Every shell command of the README's bash blocks (continuations joined, comments dropped)."""
    lines = [line.split(" #")[0].strip() for b in blocks("bash") for line in b.splitlines()]
    return [line for line in lines if line]


def section(title: str) -> list[str]:
    """The commands of the bash blocks under the README heading ``title`` (up to the next heading)."""
    text = README.read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 3)
    body = text[start : end if end > 0 else None]
    found = re.findall(r"```bash\n(.*?)```", body, flags=re.DOTALL)
    return [line.strip() for b in found for line in b.splitlines() if line.strip()]


def test_every_command_is_one_the_tests_below_run():
    """A command added to the README without a test here fails: each is in one of the sections run."""
    covered = (
        section("Install and run the demo")
        + section("Your own data in three commands")
        + section("Researchers: the paper's experiments")
    )
    assert commands() == covered
    assert len(blocks("python")) == 1


def test_the_test_command_is_what_ci_runs():
    install_and_demo, tests = section("Install and run the demo")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests == "python -m pytest -q" and ci[-1] == tests
    install, demo = install_and_demo.split(" && ")
    # CI installs the same extra through uv (the same resolution, faster)
    assert install == 'pip install -e ".[dev]"'
    assert 'python3 -m uv pip install --system -q -e ".[dev]"' in ci
    assert demo.startswith("python -m run_lemon --dataset demo")


def test_every_run_lemon_command_parses_and_names_real_things():
    checked = 0
    for command in commands():
        words = shlex.split(command.split(" && ")[-1])
        if words[:3] == ["python", "-m", "run_lemon"]:
            run_lemon.check(words[3:])
            checked += 1
    assert checked == 5


# ------------------------------------------------------------------------------------------ running them
def run(command: str, cwd: Path, env: dict, stdin: str = "") -> subprocess.CompletedProcess:
    """``command`` as the README shows it, typed in ``cwd``, with this interpreter for ``python`` and the
    repository's scripts (``python sweep.py``) where a user in the repository root has them."""
    words = shlex.split(command)
    if words[0] == "python":
        words[0] = sys.executable
    if words[1].endswith(".py") and (ROOT / words[1]).is_file():
        words[1] = str(ROOT / words[1])
    return subprocess.run(
        words, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=900
    )


def user_env(tmp_path: Path) -> dict:
    """This repository on the path (as in its root after ``pip install -e``), caches under ``tmp_path``."""
    env = dict(os.environ)
    env.update(
        LEMON_CACHE_DIR=str(tmp_path / "cache"),
        LEMON_DATA_DIR=str(tmp_path / "data"),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    return env


def offline_env(tmp_path: Path) -> dict:
    """:func:`user_env` without network, and the default CLIP (openai/clip-vit-base-patch32) in the Hub
    cache as a tiny random model."""
    from tiny_clip import tiny_clip_in_hub_cache

    hf_home = tmp_path / "hf"
    tiny_clip_in_hub_cache(hf_home)
    return {**user_env(tmp_path), "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}


def write_pairs(folder: Path, name: str, n: int, seed: int) -> pd.DataFrame:
    """``name``: n image paths with captions, one in ten captions belonging to another image."""
    from fake_data import caption, write_image

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        image = f"photos/{name}_{i:03d}.jpg"
        write_image(folder / image, rng)
        rows.append({"image": image, "caption": caption(i + 1000 * seed, rng)})
    table = pd.DataFrame(rows)
    wrong = np.arange(0, n, 10)
    table.loc[wrong, "caption"] = table["caption"].to_numpy()[(wrong + 5) % n]
    table.to_csv(folder / f"{name}.csv", index=False)
    return table


def review(run_dir: Path, out: Path) -> pd.DataFrame:
    """decisions.csv as the review page downloads it: the first flagged pair wrong with a correction,
    the second wrong without one, the third right; and three pairs of a random audit sample of all
    pairs (flagged or not, as the page draws it), one of them wrong."""
    scores = pd.read_csv(run_dir / "scores.csv")
    flagged = scores[scores["flagged"]].sort_values("score", ascending=False).head(3)
    audited = scores.drop(flagged.index).sample(3, random_state=0)
    rows = []
    for (_, pair), decision, corrected in zip(
        flagged.iterrows(), ["wrong", "wrong", "right"], ["a corrected caption", "", ""]
    ):
        rows.append((pair, decision, corrected, False))
    rows += [
        (pair, d, "", True) for (_, pair), d in zip(audited.iterrows(), ["wrong", "right", "right"])
    ]
    decisions = pd.DataFrame(
        [
            {
                "row": int(p["row"]),
                "image": p["image"],
                "decision": d,
                "corrected": c,
                "audit": a,
                "reviewed_at": "2026-12-06T12:00:00Z",
                "split": p["split"],
            }
            for p, d, c, a in rows
        ]
    )
    decisions.to_csv(out, index=False)
    return decisions


@pytest.mark.slow
def test_your_own_data_commands_and_the_python_example(tmp_path):
    """The three commands, the two follow-ups and the Python example, in the README's order."""
    env = offline_env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    pairs = write_pairs(work, "pairs", 60, seed=1)
    write_pairs(work, "new_pairs", 20, seed=2)
    check, score, apply = section("Your own data in three commands")[:3]
    reviewed, detector = section("Your own data in three commands")[3:]

    done = run(check, work, env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"train\D+\d+", done.stdout), done.stdout

    done = run(score, work, env)
    assert done.returncode == 0, done.stderr
    assert "estimated noise rate" in done.stdout
    mine = work / "runs" / "mine"
    assert (mine / "report.html").is_file() and (mine / "done").is_file()
    scored = pd.read_csv(mine / "scores.csv")
    dropped = pd.read_csv(mine / "dropped.csv")
    assert len(scored) + len(dropped) == len(pairs)
    assert {"suggested_text", "suggestion_similarity"} <= set(scored.columns)

    decisions = review(mine, work / "decisions.csv")
    original = (work / "pairs.csv").read_bytes()
    done = run(apply, work, env)
    assert done.returncode == 0, done.stderr
    assert (work / "pairs.csv").read_bytes() == original  # the user's table is never changed
    cleaned = pd.read_csv(work / "pairs.cleaned.csv")
    corrected, removed = decisions["row"].iloc[0], decisions["row"].iloc[1]
    assert len(cleaned) == len(pairs) - 2  # two pairs judged wrong without a correction
    assert (cleaned["caption"] == "a corrected caption").sum() == 1
    assert pairs["image"].iloc[corrected] in set(cleaned["image"])
    assert pairs["image"].iloc[removed] not in set(cleaned["image"])

    done = run(reviewed, work, env)
    assert done.returncode == 0, done.stderr
    assert (
        "noise rate from the audit (--reviewed): 33.3% (1 of 3 audited pairs wrong" in done.stdout
    )
    done = run(detector, work, env)
    assert done.returncode == 0, done.stderr
    assert len(pd.read_csv(work / "runs" / "new" / "scores.csv")) == 20

    example = work / "example.py"
    example.write_text(blocks("python")[0] + "print(len(scores), len(suspects), len(flags))\n")
    done = run(f"python {example}", work, env)
    assert done.returncode == 0, done.stderr
    assert re.search(r"\d+\.\d% of the pairs look wrong", done.stdout)
    assert done.stdout.split()[-3:][0] == "60" and done.stdout.split()[-1] == "20"


@pytest.mark.slow
def test_the_researchers_commands(tmp_path):
    """A paper run on MS-COCO (a fake copy in the real layout), the paper's grid up to the question
    before submitting to Slurm (answered no: nothing is submitted), and the tables of the finished run."""
    from fake_data import fake_mscoco

    env = offline_env(tmp_path)
    fake_mscoco(tmp_path / "data")
    work = tmp_path / "work"
    work.mkdir()
    paper_run, sweep, tables = section("Researchers: the paper's experiments")

    done = run(paper_run, work, env)
    assert done.returncode == 0, done.stderr
    args = json.loads((work / "runs" / "coco_cat" / "args.json").read_text())
    assert args["noise_type"] == "cat" and args["noise_level"] == 0.4

    done = run(sweep, work, env, stdin="n\n")
    assert re.search(r"About to launch \d{3,} job\(s\) with 'slurm'", done.stdout), done.stdout
    assert done.returncode == 1 and "nothing launched" in done.stderr
    assert not (work / "runs" / "lemon_all").exists()

    done = run(tables, work, env)
    assert done.returncode == 0, done.stderr
    assert (work / "runs" / "tables").is_dir() and "mscoco" in done.stdout


@pytest.mark.slow
def test_the_demo_command_prints_what_the_readme_says(tmp_path):
    """The README's first command in a fresh folder: the numbers the README quotes are the ones it prints
    (test AUROC to 0.01; the true rate, 40.0%, printed beside the estimate and inside its interval)."""
    env = user_env(tmp_path)
    demo = section("Install and run the demo")[0].split(" && ")[1]
    done = run(demo, tmp_path, env)
    assert done.returncode == 0, done.stderr
    quoted = float(re.search(r"test AUROC (0\.\d+)", README.read_text())[1])
    test_row = next(line for line in done.stdout.splitlines() if line.startswith("test "))
    assert abs(float(test_row.split()[2]) - quoted) < 0.01, test_row
    rate = re.search(
        r"estimated noise rate \(no labels used\): ([\d.]+)% \(interval ([\d.]+)%-([\d.]+)%\).*"
        r"true rate 40\.0%",
        done.stdout,
    )
    assert rate and float(rate[2]) <= 40.0 <= float(rate[3]), done.stdout
    assert (tmp_path / "runs" / "demo" / "done").is_file()


def test_the_real_noise_table_is_the_benchmarks():
    """README's table of the 15 real-noise files shows every row of docs/label-free.md's benchmark table
    (python benchmarks/bench_label_free.py --real-noise --markdown), misses marked: no row dropped or
    rounded differently."""
    doc = (ROOT / "docs" / "label-free.md").read_text()
    start = doc.index("### Real label noise")
    doc = doc[start : doc.index("\n### ", start)]
    measured = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 12 and cells[2] == "FIX":
            rate = cells[4].replace(" (!)", "")
            measured[cells[0]] = (cells[3], rate, cells[5], cells[6], cells[7], cells[11])
    shown = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 5 and cells[0] in measured:
            found = re.fullmatch(r"([\d.]+)( \(miss\))? \(([\d.]+)–([\d.]+)\)", cells[2])
            assert found, line
            met = "F1" if found[2] else "both"
            interval = f"{found[3]}-{found[4]}"
            shown[cells[0]] = (cells[1], found[1], interval, cells[3], cells[4], met)
    assert len(measured) == 15 and shown == measured
