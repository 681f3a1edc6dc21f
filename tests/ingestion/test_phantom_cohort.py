"""generate_cohort and `clinfuse phantom`: byte-identical for a seed, argument checks, the CLI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from ingestion.phantom import PhantomSummary, generate_cohort

TINY = {"n_patients": 2, "missing_rate": 0.2, "eeg_seconds": (4, 6)}


def tree_digest(root: Path) -> str:
    """One hash over every relative path and every byte under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def test_same_seed_identical_bytes_different_seed_differs(tmp_path: Path) -> None:
    a = generate_cohort(tmp_path / "a", seed=21, **TINY)
    b = generate_cohort(tmp_path / "b", seed=21, **TINY)
    c = generate_cohort(tmp_path / "c", seed=22, **TINY)
    assert a.n_files > 30
    assert tree_digest(a.out_dir) == tree_digest(b.out_dir)
    assert tree_digest(a.out_dir) != tree_digest(c.out_dir)
    ids_a = pd.read_csv(a.cohort_csv)["patient_id"]
    ids_c = pd.read_csv(c.cohort_csv)["patient_id"]
    assert set(ids_a).isdisjoint(ids_c)


@pytest.mark.slow
def test_worker_processes_do_not_change_a_byte(tmp_path: Path) -> None:
    one = generate_cohort(tmp_path / "one", seed=4, **TINY)
    two = generate_cohort(tmp_path / "two", seed=4, workers=2, **TINY)
    assert tree_digest(one.out_dir) == tree_digest(two.out_dir)


def test_summary_counts_match_disk_and_progress_reports_each_patient(tmp_path: Path) -> None:
    seen: list[int] = []
    summary = generate_cohort(tmp_path / "out", n_patients=4, seed=3, eeg_seconds=(4, 5), progress=seen.append)
    assert isinstance(summary, PhantomSummary)
    assert seen == [1, 2, 3, 4]
    assert summary.present == {"ct": 4, "xray": 4, "eeg": 4, "note": 4}  # missing_rate 0
    files = [p for d in (summary.dicom_dir, summary.eeg_dir, summary.notes_dir) for p in d.rglob("*") if p.is_file()]
    assert len(files) == summary.n_files
    assert len(list(summary.eeg_dir.glob("*.edf"))) == 4 and len(list(summary.notes_dir.glob("*.txt"))) == 4
    answers = pd.read_parquet(summary.answers_parquet)
    assert summary.n_positive == int(answers["label"].sum())
    assert answers["planted_phi"].map(len).min() >= 10


def test_refuses_to_mix_two_cohorts_and_bad_arguments(tmp_path: Path) -> None:
    generate_cohort(tmp_path / "x", n_patients=1, seed=1, eeg_seconds=(4, 4))
    with pytest.raises(FileExistsError):
        generate_cohort(tmp_path / "x", n_patients=1, seed=1, eeg_seconds=(4, 4))
    with pytest.raises(ValueError):
        generate_cohort(tmp_path / "y", n_patients=1, eeg_seconds=(2, 3))  # too short for an EEG
    with pytest.raises(ValueError):
        generate_cohort(tmp_path / "y", n_patients=0)
    with pytest.raises(ValueError):
        generate_cohort(tmp_path / "y", n_patients=2, eeg_seconds=(10, 5))
    with pytest.raises(ValueError):
        generate_cohort(tmp_path / "y", n_patients=2, mechanism="mar")  # type: ignore[arg-type]


def test_cli_writes_a_cohort_and_reports_a_clear_error_on_reuse(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["phantom", "--patients", "2", "--out", str(tmp_path / "cli"), "--seed", "5",
            "--missing-rate", "0.3", "--mechanism", "mnar", "--eeg-min-s", "4", "--eeg-max-s", "5", "--workers", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "patients" in result.output and (tmp_path / "cli" / "answers.parquet").is_file()
    cohort = pd.read_csv(tmp_path / "cli" / "cohort.csv")
    assert len(cohort) == 2
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already holds a phantom cohort" in " ".join(again.output.split())
    bad = runner.invoke(app, ["phantom", "--out", str(tmp_path / "z"), "--mechanism", "mar"])
    assert bad.exit_code != 0
