"""Both notebooks run top to bottom (nbclient, python3 kernel) on a small sweep built here, and on none."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
pytestmark = pytest.mark.slow  # a kernel start per notebook plus a 10-run sweep: ~30-60 s


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory) -> Path:
    from test_aggregate import build_sweep

    return build_sweep(tmp_path_factory.mktemp("nb") / "sweep", kind="notebook")


def execute(name: str, sweep_root: Path, monkeypatch) -> nbformat.NotebookNode:
    """Run notebooks/<name> in its own folder, as a user would (lemon importable, sweep root from env)."""
    monkeypatch.setenv("LEMON_SWEEP_ROOT", str(sweep_root))
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
    ).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All text the notebook printed or displayed, and the number of PNG figures."""
    text, figures = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", out
            text.append(out.get("text", ""))
            data = out.get("data", {})
            text.append(data.get("text/plain", ""))
            figures += "image/png" in data
    return "\n".join(text), figures


@pytest.mark.parametrize("name", ["agg_results.ipynb", "hparam_drop.ipynb"])
def test_notebooks_are_clean_and_portable(name):
    source = (NOTEBOOKS / name).read_text()
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert all(
        not c.get("outputs") for c in nb.cells if c.cell_type == "code"
    )  # committed unexecuted
    for forbidden in ("sys.path", "/work/", "/home/", "/tmp/", "C:\\\\"):
        assert forbidden not in source
    imports = {
        line.strip()
        for c in nb.cells
        if c.cell_type == "code"
        for line in c.source.splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imports == {"import matplotlib.pyplot as plt", "from lemon.tables import aggregate"}


def test_agg_results_notebook(small_sweep, monkeypatch):
    text, figures = outputs(execute("agg_results.ipynb", small_sweep, monkeypatch))
    assert "10 run folders under" in text and "10 loaded" in text
    for method in ("lemon_opt", "lemon_fix", "clip_sim"):
        assert method in text
    assert r"\toprule" in text and "No ablation runs in this sweep." in text
    assert figures == 2  # AUROC bars + noise-level curve (lemon_fix at 0.2 and 0.4)


def test_hparam_drop_notebook(small_sweep, monkeypatch):
    text, figures = outputs(execute("hparam_drop.ipynb", small_sweep, monkeypatch))
    assert "AUROC drop" in text and r"\toprule" in text
    assert figures == 2


@pytest.mark.parametrize("name", ["agg_results.ipynb", "hparam_drop.ipynb"])
def test_notebooks_on_a_missing_sweep_say_so(name, tmp_path, monkeypatch, capsys):
    """The cells run in-process (no kernel: cheaper) against a sweep folder that does not exist."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.setenv("LEMON_SWEEP_ROOT", str(tmp_path / "none"))
    namespace = {"display": print}
    for cell in nbformat.read(NOTEBOOKS / name, as_version=4).cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, name, "exec"), namespace)
    out = capsys.readouterr().out
    assert "does not exist" in out
    assert ("nothing to tabulate" if name == "agg_results.ipynb" else "needs both LEMoN_OPT") in out
