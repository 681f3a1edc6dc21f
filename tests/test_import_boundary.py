"""`ingestion/` and `models/` are a plain library: no orchestration, tracking, UI or app import, lazy ones included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("ingestion", "models")
FORBIDDEN = ("prefect", "prefect_dask", "mlflow", "streamlit", "flows", "dashboard")


# What fits or reads data must not know how the phantom is drawn: neither the generator nor the
# feature-level simulator drawn from its signal model (only the stages' ``--synthetic N`` path calls it).
GENERATOR_BLIND = ("models/encoders", "models/features", "models/fusion", "models/imputation", "models/training",
                   "ingestion/readers", "ingestion/driver", "ingestion/deid")
GENERATOR = ("ingestion.phantom", "models.simulation")


def _imports_of(path: Path, prefixes: tuple[str, ...]) -> list[str]:
    """``file:line imports name`` for every import of a name under ``prefixes`` (module level or lazy)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant):
            names = [str(node.args[0].value)]
        else:
            continue
        found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {n}" for n in names
                  if any(n == p or n.startswith(p + ".") for p in prefixes)]
    return found


def forbidden_imports(path: Path) -> list[str]:
    """Every orchestration, tracking or UI import anywhere in the file (module level or in a function)."""
    return _imports_of(path, FORBIDDEN)


def test_library_imports_no_orchestration_tracking_or_ui() -> None:
    files = [p for pkg in LIBRARY for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 40  # the walk found the packages
    assert [hit for p in files for hit in forbidden_imports(p)] == []


def test_the_check_sees_lazy_imports(tmp_path: Path, monkeypatch) -> None:
    """A lazy import inside a function, and importlib by name, are caught (the check can fail)."""
    monkeypatch.setattr("tests.test_import_boundary.ROOT", tmp_path)
    bad = tmp_path / "lazy.py"
    bad.write_text("import numpy\n\ndef f():\n    from prefect import flow\n    import importlib\n"
                   "    importlib.import_module('mlflow.pyfunc')\n")
    assert forbidden_imports(bad) == ["lazy.py:4 imports prefect", "lazy.py:6 imports mlflow.pyfunc"]


def test_features_encoders_and_readers_never_import_the_generator() -> None:
    files = [p for pkg in GENERATOR_BLIND for p in sorted((ROOT / pkg).rglob("*.py"))]
    assert len(files) > 40
    assert [hit for p in files for hit in _imports_of(p, GENERATOR)] == []
    planted = ROOT / "models" / "simulation" / "phantom_features.py"  # the check can fail: the simulator does
    assert any("ingestion.phantom" in hit for hit in _imports_of(planted, GENERATOR))


def test_the_ingest_flow_imports_neither_torch_nor_the_models() -> None:
    """`clinfuse ingest` runs the ingest flow in its own process: torch and the model stages cost it ~7 s there."""
    import subprocess
    import sys

    code = ("import sys, flows.flows.ingest, flows.commands.ingest; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m == 'monai' or m.startswith('models.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
