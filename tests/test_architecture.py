"""How the code is put together: packages by layer with every import pointing down, no import cycles among
the project's modules, the library never imports a top-level script, the run configuration stops at the
pipeline, and ``--help`` answers without importing torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("run_lemon", "sweep", "experiments", "launchers", "train_clip_from_scratch")
#: the modules that may read a RunConfig: the entry points and the run package (the config module, the
#: pipeline and its stages); every layer below takes explicit options
CONFIG_READERS = {
    "run_lemon",
    "train_clip_from_scratch",
    "lemon.data.__main__",
    "lemon.embed.__main__",
    "lemon.scale.parts.__main__",
    "lemon.run.config",
    "lemon.run.load",
    "lemon.run.stages",
    "lemon.run.outputs",
    "lemon.run.pipeline",
    # run_lemon --detector: a run whose scoring is a finished run's (rebuilt from that run's args.json)
    "lemon.review.reference",
    "lemon.review.detector_run",
}
#: lemon's packages from the bottom up: a module may import its own layer and the layers below it. The
#: last layer holds the applications of a run (its report, tables of many runs, the Python API, sweeps,
#: review, downstream training); the entry points (``__main__`` modules) stand above every layer.
LAYERS = (
    ("lemon.core",),
    ("lemon.data",),
    ("lemon.noise",),
    ("lemon.train",),
    ("lemon.embed",),
    ("lemon.neighbors",),
    ("lemon.method",),
    ("lemon.scorers",),
    ("lemon.scale",),
    ("lemon.report",),
    ("lemon.run",),
    ("lemon.tables", "lemon.api", "lemon.sweep", "lemon.downstream", "lemon.review"),
)


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the project (the lemon package and the top-level scripts)."""
    modules = {name: REPO / f"{name}.py" for name in SCRIPTS}
    for path in sorted((REPO / "lemon").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> dict[str, set[str]]:
    """Project modules ``name`` imports (at module level or inside functions alike) -> imported names.

    Imports under ``if TYPE_CHECKING:`` are left out: they never run.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in modules:  # `from pkg import module`
                    found.setdefault(sub, set())
                elif base in modules:
                    found.setdefault(base, set()).add(alias.name)
    found.pop(name, None)
    return found


def import_graph() -> dict[str, dict[str, set[str]]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, dict[str, set[str]]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_finds_a_cycle():
    graph = {"a": {"b": set()}, "b": {"c": set()}, "c": {"a": set()}, "d": {"a": set()}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b": set()}, "b": {}}) == []


def test_no_import_cycles_among_the_projects_modules():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the package holding ``module`` (None: a top-level script or the lemon root)."""
    for i, packages in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in packages):
            return i
    return None


def test_every_package_of_lemon_has_a_layer():
    packages = {p.name for p in (REPO / "lemon").iterdir() if (p / "__init__.py").is_file()}
    layered = {p.split(".")[1] for layer in LAYERS for p in layer}
    assert packages == layered, f"without a layer: {sorted(packages - layered)}"
    modules = [p.name for p in (REPO / "lemon").glob("*.py") if p.name != "__init__.py"]
    assert not modules, f"modules beside the packages of lemon/ (put them in a layer): {modules}"


def test_imports_point_down_the_layers():
    upward = [
        f"{name} -> {target}"
        for name, imported in import_graph().items()
        if name.startswith("lemon.") and not name.endswith("__main__")
        for target in imported
        if (here := layer_of(name)) is not None
        and (there := layer_of(target)) is not None
        and there > here
    ]
    assert not upward, "imports pointing up the layers: " + "; ".join(sorted(upward))


def test_the_layer_check_sees_an_upward_import():
    assert layer_of("lemon.core.io") < layer_of("lemon.run.pipeline") < layer_of("lemon.api.issues")
    assert layer_of("run_lemon") is None


def test_the_library_never_imports_a_top_level_script():
    found = [
        f"{name} -> {target}"
        for name, imported in import_graph().items()
        if name.startswith("lemon")
        for target in imported
        if target in SCRIPTS
    ]
    assert not found, "lemon imports top-level scripts: " + "; ".join(sorted(found))


def test_run_config_is_read_only_by_the_entry_points_and_the_pipeline():
    readers = {
        name
        for name, imported in import_graph().items()
        if "RunConfig" in imported.get("lemon.run.config", ())
    }
    assert readers <= CONFIG_READERS, f"RunConfig imported by {sorted(readers - CONFIG_READERS)}"


def test_help_answers_without_importing_torch():
    code = (
        "import sys, contextlib, io\n"
        "import run_lemon\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        run_lemon.main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert '--knn_k' in out.getvalue()\n"
        "print(sorted(m for m in ('torch', 'sklearn', 'pandas', 'open_clip', 'transformers') "
        "if m in sys.modules))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", f"--help imported {proc.stdout.strip()}"
