"""An interrupted phantom generation of the quality benchmark resumes to the same bytes as one uninterrupted run."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from quality_cache import EEG_SECONDS, cache_dir, extend_generation, patients_on_disk  # noqa: E402

from ingestion.phantom import SignalModel, generate_cohort  # noqa: E402

N, SEED, SHARED = 5, 3, 0.5


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.parts[-1] != "cohort.csv" and not p.name.startswith("answers")}


def test_resumed_generation_equals_uninterrupted(tmp_path: Path) -> None:
    whole = tmp_path / "whole"
    generate_cohort(whole, N, seed=SEED, eeg_seconds=EEG_SECONDS, model=SignalModel(shared=SHARED))
    answers = pd.read_parquet(whole / "answers.parquet")

    # an interruption after two complete patients, the third one half written (one file, a torn cohort row)
    out = cache_dir(tmp_path / "cache", N, SEED, SHARED)
    source = out / "cohort"
    source.mkdir(parents=True)
    lines = (whole / "cohort.csv").read_text().splitlines(keepends=True)
    (source / "cohort.csv").write_text("".join(lines[:3]) + lines[3][:9])
    for i in range(3):
        files = [f for m in ("ct", "xray", "eeg", "note") for f in answers.at[i, f"files_{m}"]]
        for rel in files[:1] if i == 2 else files:
            (source / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(whole / rel, source / rel)
    assert patients_on_disk(out) == 3  # the torn row still parses; resuming must drop it

    assert extend_generation(out, N, SEED, SHARED) == N - 2
    assert (source / "cohort.csv").read_bytes() == (whole / "cohort.csv").read_bytes()
    assert _files(source) == _files(whole)
    resumed = pd.read_parquet(source / "answers.parquet")
    latent = [c for c in answers.columns if not c.startswith("files_") and c != "planted_phi"]
    pd.testing.assert_frame_equal(resumed[latent], answers[latent])
    assert extend_generation(out, N, SEED, SHARED) == 0  # complete: nothing more to write
