"""Run ``clinfuse ingest`` over a hostile source as a whole process and judge what it did.

Shared by ``tests/test_reliability_attacks.py`` (assertions) and ``benchmarks/bench_attacks.py`` (the
table in docs/RELIABILITY.md): peak memory of the process, time, items lost (files of the source that
no manifest row names), files written outside the home (anything new or changed under the work folder
but outside the home: the source, its siblings, and the run's own TMPDIR).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ingestion.manifest import read_manifest
from tests.corpus.build import CorpusCase

REPO = Path(__file__).resolve().parents[2]
CLINFUSE = [sys.executable, "-c", "from flows.cli import main; main()"]
SECRET = "attack-secret-5d1e9b7c"
GUARD_BYTES = 4 << 30
"""The measuring wrapper kills the ingest tree past this summed RSS: a failed bound must not sink the machine."""


@dataclass(frozen=True)
class IngestRun:
    """What one ``clinfuse ingest`` over a hostile source did."""

    rc: int
    peak_rss: int
    """Kernel high-water RSS of the largest process of the ingest tree (bytes)."""
    tree_peak_rss: int
    """Largest sampled sum of RSS over the whole tree (bytes; forked workers share pages, so an over-count)."""
    killed: bool
    elapsed_s: float
    logs: str
    manifest: pd.DataFrame
    lost: tuple[str, ...]
    written_outside: tuple[str, ...]


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every file (and symlink) under ``root`` but not under ``skip``, with (size, mtime_ns)."""
    found = {}
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if Path(folder, d) != skip and not os.path.islink(os.path.join(folder, d))]
        for name in names + [d for d in os.listdir(folder) if os.path.islink(os.path.join(folder, d))]:
            st = os.lstat(os.path.join(folder, name))
            found[os.path.relpath(os.path.join(folder, name), root)] = (st.st_size, st.st_mtime_ns)
    return found


def source_files(src: Path) -> list[str]:
    """Every file of the source (relative, posix), as ingest should account for it."""
    return sorted(rel for rel in _snapshot(src, src / "\0none"))


def lost_files(src: Path, manifest: pd.DataFrame) -> tuple[str, ...]:
    """Source files that no manifest row names (a zip member row names its archive)."""
    named = {f.split("!", 1)[0] for files in manifest["source_files"] for f in files}
    return tuple(f for f in source_files(src) if Path(f).as_posix() not in named)


def run_ingest(work: Path, src: Path, *, timeout_s: float = 900, workers: int = 2) -> IngestRun:
    """``clinfuse ingest --source src`` with its home at ``work/home`` and TMPDIR at ``work/tmp``, measured."""
    home, tmp, out = work / "home", work / "tmp", work / "measure.json"
    tmp.mkdir(parents=True, exist_ok=True)
    before = _snapshot(work, home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINFUSE_", "PREFECT_", "MLFLOW_"))}
    env.update(CLINFUSE_HOME=str(home), CLINFUSE_PSEUDONYM_SECRET=SECRET, CLINFUSE_WORKERS=str(workers),
               TMPDIR=str(tmp), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1", COLUMNS="200")
    cmd = [sys.executable, "-m", "tests.corpus.measure", str(out), str(GUARD_BYTES), "--",
           *CLINFUSE, "ingest", "--source", str(src)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    measured = json.loads(out.read_text())
    out.unlink()
    after = _snapshot(work, home)
    outside = tuple(sorted(p for p, stamp in after.items() if before.get(p) != stamp))
    manifest_path = home / "manifest.parquet"
    manifest = read_manifest(manifest_path) if manifest_path.exists() else pd.DataFrame(
        columns=["source_files", "status", "reason"])
    return IngestRun(measured["rc"], measured["peak_rss"], measured["tree_peak_rss"], measured["killed"],
                     measured["elapsed_s"], proc.stdout + proc.stderr, manifest, lost_files(src, manifest), outside)


def rows_of(manifest: pd.DataFrame, case: CorpusCase) -> pd.DataFrame:
    """The manifest rows whose files belong to ``case``."""
    mask = manifest["source_files"].map(lambda files: any(case.owns(f) for f in files))
    return manifest[mask]
