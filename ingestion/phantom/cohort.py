"""Write a phantom cohort to disk as a hospital export: DICOM, EDF, text notes and a cohort table.

Patients are streamed one at a time (memory stays flat in the number of
patients); each patient draws from its own generator seeded by
``(seed, patient index)``, so the export is byte-identical for a seed.
Layout (docs/CONTRACTS.md, "Phantom cohort export")::

    DIR/cohort.csv         patient_id (MRN), label, age, sex, crp, wbc, lactate
    DIR/answers.parquet    latent variables, oracle risks, present_* flags, planted_phi -- evaluation only
                           (its schema metadata records the image drawing: ingestion.phantom.anatomy)
    DIR/dicom/<random>/<random>.dcm   CT series (one folder each) and X-rays (CR/DX)
    DIR/eeg/<random>.edf
    DIR/notes/<random>.txt
"""

from __future__ import annotations

import csv
import multiprocessing
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingestion.modalities import PHANTOM_MODALITIES as MODALITIES  # the phantom's draws, not ECG
from ingestion.phantom.anatomy import Anatomy, anatomy_metadata, check_anatomy
from ingestion.phantom.ct import write_ct_series
from ingestion.phantom.eeg import MIN_SECONDS, write_eeg
from ingestion.phantom.notes import write_note
from ingestion.phantom.phi import PlantedItem, make_identity
from ingestion.phantom.xray import write_xray
from ingestion.phantom.signal_model import SignalModel, lab_values, sample_latents

COHORT_COLUMNS = ("patient_id", "label", "age", "sex", "crp", "wbc", "lactate")
ANSWERS_BATCH = 256
"""Patients per row group of answers.parquet: written as generated, never all held in memory."""


@dataclass(frozen=True)
class PhantomSummary:
    """Where the cohort went and what it holds."""

    out_dir: Path
    cohort_csv: Path
    answers_parquet: Path
    dicom_dir: Path
    eeg_dir: Path
    notes_dir: Path
    n_patients: int
    n_positive: int
    present: dict[str, int]
    """Patients with each modality present."""
    n_files: int
    """Every file written under dicom/, eeg/ and notes/."""
    anatomy: str = "standard"
    """The image drawing (:mod:`ingestion.phantom.anatomy`)."""


def _write_patient(out_dir: Path, rng: np.random.Generator, row: pd.Series,
                   eeg_seconds: tuple[int, int], anatomy: str = "standard") -> list[PlantedItem]:
    """All files of one patient; a missing modality writes nothing."""
    identity = make_identity(rng, row["patient_id"], row["sex"], int(row["age"]))
    items: list[PlantedItem] = []
    if row["present_ct"]:
        items.append(write_ct_series(out_dir / "dicom", rng, identity, row["ev_ct"], row["ct_side"], anatomy))
    if row["present_xray"]:
        items.append(write_xray(out_dir / "dicom", rng, identity, row["ev_xray"], row["xray_side"], anatomy))
    if row["present_eeg"]:
        items.append(write_eeg(out_dir / "eeg", rng, identity, row["ev_eeg"], row["eeg_side"], eeg_seconds))
    if row["present_note"]:
        items.append(write_note(out_dir / "notes", rng, identity, int(row["age"]), row["ev_note"],
                                str(row["note_side"])))
    return items


def _patient_job(job: tuple[Path, int, int, pd.Series, tuple[int, int], str]) -> tuple[pd.Series, list[PlantedItem]]:
    """One patient's files from its own generator ``(seed, 1, index)``: independent of order and process."""
    out_dir, seed, index, row, eeg_seconds, anatomy = job
    return row, _write_patient(out_dir, np.random.default_rng([seed, 1, index]), row, eeg_seconds, anatomy)


def _run_in_order(func: Callable, jobs: Iterator, workers: int) -> Iterator:
    """``map(func, jobs)`` in order, over ``workers`` processes with at most ``2 * workers`` jobs in flight."""
    if workers <= 1:
        yield from map(func, jobs)
        return
    # spawn, not fork: the parent holds pyarrow's thread pools, which a forked child must not inherit
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pending: deque = deque()
        for job in jobs:
            pending.append(pool.submit(func, job))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _answers_row(out_dir: Path, row: pd.Series, items: list[PlantedItem]) -> dict:
    answer = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
    planted: list[str] = []
    for item in items:
        planted += [s for s in item.planted_phi if s not in planted]
        answer[f"files_{item.modality}"] = [p.relative_to(out_dir).as_posix() for p in sorted(item.files)]
    for m in MODALITIES:
        answer.setdefault(f"files_{m}", [])
    answer["planted_phi"] = planted
    return answer


def _answers_schema(latents: pd.DataFrame, anatomy: str) -> pa.Schema:
    """Latent columns as sampled, then the per-modality file lists and the planted PHI; the drawing as metadata."""
    schema = pa.Schema.from_pandas(latents, preserve_index=False).remove_metadata()
    for name in [*(f"files_{m}" for m in MODALITIES), "planted_phi"]:
        schema = schema.append(pa.field(name, pa.list_(pa.string())))
    return schema.with_metadata(anatomy_metadata(anatomy))


def generate_cohort(out_dir: Path, n_patients: int, seed: int = 7, missing_rate: float = 0.0,
                    mechanism: Literal["mcar", "mnar"] = "mcar", eeg_seconds: tuple[int, int] = (60, 120),
                    progress: Callable[[int], None] | None = None,
                    model: SignalModel | None = None, workers: int = 1,
                    anatomy: Anatomy = "standard") -> PhantomSummary:
    """Generate ``n_patients`` into ``out_dir`` (created; must not already hold a cohort).

    ``progress`` is called after each patient with the number of patients
    written so far. ``workers`` > 1 writes patients in that many processes
    (same bytes as one process). ``anatomy`` picks the image drawing (:mod:`ingestion.phantom.anatomy`;
    the labels and oracle columns do not depend on it). Raises ``FileExistsError`` rather than mixing two cohorts
    in one folder, and ``ValueError`` for arguments out of range.
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be at least 1, got {n_patients}")
    check_anatomy(anatomy)
    if not MIN_SECONDS <= eeg_seconds[0] <= eeg_seconds[1]:
        raise ValueError(f"eeg_seconds must be (min, max) with {MIN_SECONDS} <= min <= max, got {eeg_seconds}")
    out_dir = Path(out_dir)
    cohort_csv, answers_path = out_dir / "cohort.csv", out_dir / "answers.parquet"
    if cohort_csv.exists() or answers_path.exists():
        raise FileExistsError(f"{out_dir} already holds a phantom cohort; choose an empty --out folder")
    latents = sample_latents(n_patients, seed, missing_rate, mechanism, model)
    labs = lab_values(latents)
    out_dir.mkdir(parents=True, exist_ok=True)
    schema = _answers_schema(latents, anatomy)
    partial = answers_path.with_suffix(".parquet.partial")
    batch: list[dict] = []
    n_files = 0
    with cohort_csv.open("w", newline="", encoding="utf-8") as handle, pq.ParquetWriter(partial, schema) as answers:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COHORT_COLUMNS)
        jobs = ((out_dir, seed, int(i), row, eeg_seconds, anatomy) for i, row in latents.iterrows())
        for i, (row, items) in enumerate(_run_in_order(_patient_job, jobs, workers)):
            n_files += sum(len(item.files) for item in items)
            writer.writerow([row["patient_id"], int(row["label"]), int(row["age"]), row["sex"],
                             *(f"{labs.at[i, c]:.2f}" for c in ("crp", "wbc", "lactate"))])
            batch.append(_answers_row(out_dir, row, items))
            if len(batch) == ANSWERS_BATCH or i == n_patients - 1:  # memory stays flat in N
                answers.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
            if progress is not None:
                progress(i + 1)
    partial.replace(answers_path)  # answers appear only once the whole cohort is on disk
    return PhantomSummary(
        out_dir=out_dir, cohort_csv=cohort_csv, answers_parquet=answers_path, dicom_dir=out_dir / "dicom",
        eeg_dir=out_dir / "eeg", notes_dir=out_dir / "notes", n_patients=n_patients,
        n_positive=int(latents["label"].sum()),
        present={m: int(latents[f"present_{m}"].sum()) for m in MODALITIES}, n_files=n_files, anatomy=anatomy,
    )
