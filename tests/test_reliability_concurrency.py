"""Concurrency: two runs at once on one CLINFUSE_HOME never corrupt the manifest, the store or the predictions.

Two `clinfuse ingest` processes start together on the same home and source, then two encode processes,
then several processes append prediction batches at once. Afterwards every table validates, no key is
doubled, every vector passes its checksum and every batch reads back whole.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ingestion.manifest import read_manifest
from ingestion.modalities import MODALITIES
from models.features.assemble import usable_items
from models.stores.embeddings import KEY_COLUMNS, EmbeddingStore
from models.stores.predictions import append_batch, batch_files, read_predictions
from tests.test_reliability_corpus import REPO, clean_env
from tests.test_reliability_crash import ENCODE_SCRIPT
from tests.conftest import forked_processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SECRET = "concurrency-secret-61ae"


def _subset(small_phantom: Path, src: Path, n_patients: int = 6) -> int:
    """Copy the files of the first ``n_patients`` phantom patients; returns how many files."""
    answers = pd.read_parquet(small_phantom / "answers.parquet").head(n_patients)
    n = 0
    for column in [c for c in answers.columns if c.startswith("files_")]:  # the modalities the phantom drew
        for files in answers[column]:
            for rel in files:
                (src / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(small_phantom / rel, src / rel)
                n += 1
    return n


def _run_together(cmds: list[list[str]], env: dict[str, str]) -> list[str]:
    procs = [subprocess.Popen(c, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in cmds]
    outs = [p.communicate(timeout=400)[0].decode(errors="replace") for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    return outs


@pytest.fixture(scope="module")
def home_after_two_ingests(tmp_path_factory: pytest.TempPathFactory, small_phantom: Path):
    root = tmp_path_factory.mktemp("concurrent")
    src, home = root / "src", root / "home"
    n_files = _subset(small_phantom, src)
    cli = [sys.executable, "-c", "from flows.cli import main; main()", "ingest", "--source", str(src), "--workers", "1"]
    _run_together([cli, cli], clean_env(home, CLINFUSE_PSEUDONYM_SECRET=SECRET))
    return home, n_files


def test_two_ingests_at_once_leave_one_valid_manifest(home_after_two_ingests) -> None:
    home, n_files = home_after_two_ingests
    manifest = read_manifest(home / "manifest.parquet")  # validates: unique item ids, schema
    files = [f for fs in manifest["source_files"] for f in fs]
    assert len(files) == len(set(files)) == n_files
    assert (manifest["status"] == "ok").all(), manifest["reason"].tolist()
    assert all((home / uri).is_file() for uri in manifest["array_uri"])
    assert not list(home.glob(".manifest.parquet.*.tmp")), "a temporary manifest was left behind"


def test_two_encodes_at_once_leave_one_consistent_store(home_after_two_ingests) -> None:
    home, _ = home_after_two_ingests
    cmd = [sys.executable, "-c", ENCODE_SCRIPT, str(home), "2"]
    _run_together([cmd, cmd], clean_env(home))
    store = EmbeddingStore(home / "embeddings")
    index = store.index()
    n_usable = len(usable_items(read_manifest(home / "manifest.parquet")).drop_duplicates("content_sha256"))
    assert not index.duplicated(list(KEY_COLUMNS)).any()
    assert len(index) == n_usable
    assert store.verify() == []


def _append_batches(root: str, worker: int, n_batches: int, n_rows: int) -> None:
    rng = np.random.default_rng(worker)
    for b in range(n_batches):
        risk = rng.uniform(0, 1, n_rows)
        frame = pd.DataFrame({
            "patient_id": [f"P{worker:04x}{b:04x}{i:04x}" for i in range(n_rows)],
            "risk": risk, "risk_low": risk * 0.9, "risk_high": np.minimum(risk * 1.1, 1.0),
            "predicted_class": (risk > 0.5).astype(int), "abstain": False, "abstain_reason": "",
            **{f"contrib_{m}": 0.1 for m in MODALITIES}, **{f"mask_{m}": "present" for m in MODALITIES},
            "donors_json": "{}",
        })
        append_batch(Path(root), frame, model_name="clinfuse", model_version=str(worker), run_id=f"run{worker}")


def test_concurrent_prediction_appends_all_read_back(tmp_path: Path) -> None:
    root, workers, n_batches, n_rows = tmp_path / "predictions", 4, 5, 200
    # fork: the writers need no fresh interpreter; spawn is slow on a busy box
    procs = forked_processes(_append_batches, [(str(root), w, n_batches, n_rows) for w in range(workers)])
    for p in procs:
        p.join(300)
        assert p.exitcode == 0
    assert len(batch_files(root)) == workers * n_batches
    frame = read_predictions(root)
    assert len(frame) == workers * n_batches * n_rows
    assert frame.groupby("batch_id").size().eq(n_rows).all()
    assert not list(root.glob(".*.tmp"))
