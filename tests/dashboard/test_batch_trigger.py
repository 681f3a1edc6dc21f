"""Starting a batch from the dashboard: safe zip unpacking, parameter mapping, failures as messages."""

from __future__ import annotations

import io
import sys
import types
import zipfile
from pathlib import Path

import pytest

from dashboard.auth import password_ok
from dashboard.batch_trigger import cohort_kwargs, run_batch, unpack_zip


def _zip(members: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, text in members.items():
            z.writestr(name, text)
    return buf.getvalue()


def test_unpack_zip_returns_the_cohort_folder(tmp_path: Path) -> None:
    out = unpack_zip(_zip({"cohort/cohort.csv": "patient_id,label\n", "cohort/notes/a.txt": "x"}), tmp_path)
    assert out.name == "cohort" and (out / "notes" / "a.txt").read_text() == "x"


def test_unpack_zip_refuses_escape_and_garbage(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside"):
        unpack_zip(_zip({"../evil.txt": "x"}), tmp_path)
    with pytest.raises(ValueError, match="not a readable zip"):
        unpack_zip(b"not a zip", tmp_path)
    assert not (tmp_path.parent / "evil.txt").exists()


def test_cohort_kwargs_follow_the_flow_signature() -> None:
    def a(source_dir: str, limit: int = 1) -> None: ...
    def b(path: str) -> None: ...
    assert cohort_kwargs(a, Path("/c")) == {"source_dir": "/c"}
    assert cohort_kwargs(b, Path("/c"), Path("/h")) == {"path": "/c"}

    def c(source: str, cohort_csv: str | None = None, home: str | None = None) -> None: ...
    assert cohort_kwargs(c, Path("/c"), Path("/h")) == {"source": "/c", "home": "/h"}


def test_run_batch_reports_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    assert not run_batch(tmp_path / "absent", None, lambda f, t: None).ok

    def boom(cohort_dir: str) -> None:
        raise RuntimeError("encoder weights missing")

    monkeypatch.setitem(sys.modules, "flows.predict_flow", types.SimpleNamespace(predict_flow=boom))
    outcome = run_batch(tmp_path, None, lambda f, t: seen.append(t))
    assert not outcome.ok and "encoder weights missing" in outcome.message and seen


def test_password_check() -> None:
    assert password_ok("pässword", "pässword")
    assert not password_ok("passwor", "password") and not password_ok("", "password")
