"""Build a small clinfuse home on disk for the dashboard's tests and benchmark.

Writes real files in the contract formats (docs/CONTRACTS.md): normalised
arrays (.npy, note .json), ``manifest.parquet`` and one predictions Parquet file
per batch, with imputed modalities, abstentions, missing modalities and a
quarantined item, so every branch of every page has something to draw.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from ingestion.deid.pseudonym import pseudonymise
from ingestion.modalities import MODALITIES
from models.stores.predictions import PREDICTIONS_SCHEMA
from models.stores.predictions_latest import refresh_latest

SECRET = "fixture-secret"
EEG_SFREQ = 128.0


@dataclass(frozen=True)
class FixtureHome:
    """What the builder wrote, so tests can assert against it."""

    home: Path
    patient_ids: tuple[str, ...]
    masks: pd.DataFrame  # index patient_id, columns MODALITIES, values present/missing/imputed (latest batch)
    latest_batch: str
    older_batch: str


def _ct_volume(rng: np.random.Generator, shape=(32, 64, 64)) -> np.ndarray:
    """A chest-like phantom in HU: air outside, soft-tissue body, two lungs, a bony ring."""
    d, h, w = shape
    z, y, x = np.mgrid[0:d, 0:h, 0:w].astype(np.float32)
    vol = np.full(shape, -1024.0, np.float32)
    body = ((y - h / 2) / (h * 0.45)) ** 2 + ((x - w / 2) / (w * 0.45)) ** 2 < 1
    vol[body] = 40.0
    ring = body & ~(((y - h / 2) / (h * 0.40)) ** 2 + ((x - w / 2) / (w * 0.40)) ** 2 < 1)
    vol[ring] = 700.0
    for cx in (w * 0.32, w * 0.68):
        lung = ((y - h / 2) / (h * 0.28)) ** 2 + ((x - cx) / (w * 0.13)) ** 2 < 1
        vol[lung] = -820.0
    nodule = ((z - d * rng.uniform(0.3, 0.7)) ** 2 + (y - h * 0.45) ** 2 + (x - w * 0.3) ** 2) < rng.uniform(4, 16)
    vol[nodule] = 60.0
    return vol + rng.normal(0, 15, shape).astype(np.float32)


def _xray(rng: np.random.Generator, shape=(128, 128)) -> np.ndarray:
    h, w = shape
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 0.55 + 0.2 * np.cos((x - w / 2) / w * np.pi)
    for cx in (w * 0.3, w * 0.7):
        img -= 0.35 * (((y - h * 0.5) / (h * 0.3)) ** 2 + ((x - cx) / (w * 0.14)) ** 2 < 1)
    img += rng.normal(0, 0.02, shape)
    return np.clip(img, 0, 1).astype(np.float32)


def _eeg(rng: np.random.Generator, n_windows=4, window_s=4.0) -> tuple[np.ndarray, list[str]]:
    n = int(window_s * EEG_SFREQ)
    t = np.arange(n_windows * n) / EEG_SFREQ
    sig = np.stack([20 * np.sin(2 * np.pi * (8 + c % 5) * t + c) + rng.normal(0, 5, t.size) for c in range(19)])
    missing = ["O2"] if rng.random() < 0.3 else []
    if missing:
        sig[18] = 0.0
    return sig.reshape(19, n_windows, n).transpose(1, 0, 2).astype(np.float32), missing


def _note(rng: np.random.Generator, i: int) -> dict:
    fever = "fever" if rng.random() < 0.5 else "cough"
    text = (f"HISTORY OF PRESENT ILLNESS: Patient reports {fever} for three days. Denies chest pain.\n"
            f"ASSESSMENT: Possible pneumonia. No evidence of seizure activity.")
    return {
        "text": text,
        "note_type": "Neurology consult" if i % 2 else "Admission note",
        "date": "2024-05-03",
        "sections": {"HISTORY OF PRESENT ILLNESS": f"Patient reports {fever} for three days. Denies chest pain.",
                     "ASSESSMENT": "Possible pneumonia. No evidence of seizure activity."},
        "findings": [
            {"text": fever, "negated": False, "section": "HISTORY OF PRESENT ILLNESS"},
            {"text": "chest pain", "negated": True, "section": "HISTORY OF PRESENT ILLNESS"},
            {"text": "pneumonia", "negated": False, "section": "ASSESSMENT"},
            {"text": "seizure activity", "negated": True, "section": "ASSESSMENT"},
        ],
    }


def _write_item(home: Path, modality: str, payload: object) -> tuple[str, str, dict]:
    """Write one array content-addressed; return (sha256, array_uri, meta)."""
    if modality == "note":
        raw = json.dumps(payload, sort_keys=True).encode()
        ext, meta = "json", {"note_type": payload["note_type"]}
    else:
        arr, meta = payload
        raw = np.ascontiguousarray(arr).tobytes()
        ext = "npy"
    sha = hashlib.sha256(raw).hexdigest()
    rel = f"arrays/{modality}/{sha}.{ext}"
    path = home / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        if modality == "note":
            path.write_bytes(raw)
        else:
            np.save(path, arr)
    return sha, rel, meta


def build_home(home: Path, n_patients: int = 30, seed: int = 0, n_distinct: int = 30,
               maintain_latest: bool = True) -> FixtureHome:
    """Write a home with ``n_patients`` patients, two batches and ``n_distinct`` distinct arrays per modality.

    The batch files are written directly (as another tool might); ``maintain_latest``
    then builds the store's latest-per-patient table as ``append_batch`` would,
    and False leaves the store without one (readers scan every batch file).

    Patient 0 has every modality; patient 1 has no CT (imputed in the latest
    batch, donors are patients 0 and 2); patient 2 has no EEG (missing, not
    imputed) and an abstention; patient 3 has a quarantined EEG; the rest vary.
    """
    rng = np.random.default_rng(seed)
    home.mkdir(parents=True, exist_ok=True)
    pids = tuple(pseudonymise(f"MRN{100000 + i:08d}", SECRET) for i in range(n_patients))
    pools: dict[str, list] = {m: [] for m in MODALITIES}
    for k in range(min(n_distinct, n_patients)):
        pools["ct"].append(_write_item(home, "ct", (_ct_volume(rng), {"spacing": [4.0, 2.0, 2.0]})))
        pools["xray"].append(_write_item(home, "xray", (_xray(rng), {"view": "PA"})))
        sig, missing = _eeg(rng)
        pools["eeg"].append(_write_item(home, "eeg", (sig, {"sfreq": EEG_SFREQ, "missing_channels": missing})))
        pools["note"].append(_write_item(home, "note", _note(rng, k)))

    present = rng.random((n_patients, 4)) > 0.2
    present[0] = True
    if n_patients > 3:
        present[1] = [False, True, True, True]
        present[2] = [True, True, False, True]
        present[3] = [True, True, False, True]
    # the fixture draws the four modalities it always drew; any later one (ECG) is missing for everyone
    present = np.column_stack([present, np.zeros((n_patients, len(MODALITIES) - 4), bool)])
    now = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
    manifest_rows = []
    for i, pid in enumerate(pids):
        for j, m in enumerate(MODALITIES):
            if not present[i, j]:
                continue
            sha, rel, meta = pools[m][i % len(pools[m])]
            manifest_rows.append(dict(item_id=sha, patient_id=pid, modality=m, source_uri=f"src/{m}/{i}",
                                      source_files=[f"src/{m}/{i}"], content_sha256=sha, status="ok", reason="",
                                      array_uri=rel, meta_json=json.dumps(meta),
                                      ingested_at=now - timedelta(days=2), pipeline_version="fixture"))
    if n_patients > 3:
        manifest_rows.append(dict(item_id="f" * 64, patient_id=pids[3], modality="eeg", source_uri="src/eeg/bad.edf",
                                  source_files=["src/eeg/bad.edf"], content_sha256="f" * 64, status="quarantined",
                                  reason="EDF header declares 0 data records; re-export the recording.",
                                  array_uri="", meta_json="{}", ingested_at=now - timedelta(days=2),
                                  pipeline_version="fixture"))
    manifest = pd.DataFrame(manifest_rows)
    manifest["ingested_at"] = pd.to_datetime(manifest["ingested_at"], utc=True).astype("datetime64[us, UTC]")
    manifest.to_parquet(home / "manifest.parquet", index=False)

    (home / "predictions").mkdir(exist_ok=True)
    batches = [("batch-20250301", "1", now - timedelta(days=9)), ("batch-20250310", "2", now)]
    masks_latest = None
    for b, (batch_id, version, when) in enumerate(batches):
        rows = []
        risk = np.clip(rng.beta(2, 3, n_patients) + 0.05 * b, 0.01, 0.99)
        for i, pid in enumerate(pids):
            mask = {m: "present" if present[i, j] else "missing" for j, m in enumerate(MODALITIES)}
            donors: dict[str, list] = {}
            for j, m in enumerate(MODALITIES):
                impute = (i == 1 and m == "ct") or (i > 3 and not present[i, j] and i % 2 == 0 and j < 4)
                if impute and b == 1:
                    mask[m] = "imputed"
                    d1, d2 = pids[(i + 1) % n_patients], pids[(i - 1) % n_patients]
                    donors[m] = [{"patient_id": d1, "weight": 0.6}, {"patient_id": d2, "weight": 0.4}]
            contrib = {m: (float(rng.normal(0, 0.1)) if mask[m] != "missing" else float("nan")) for m in MODALITIES}
            abstain = bool(i == 2 or (i > 3 and i % 7 == 0))
            width = float(rng.uniform(0.05, 0.25))
            rows.append(dict(
                patient_id=pid, model_name="clinfuse", model_version=version, run_id=f"run{version}" * 4,
                batch_id=batch_id, risk=float(risk[i]), risk_low=float(max(0, risk[i] - width / 2)),
                risk_high=float(min(1, risk[i] + width / 2)), predicted_class=int(risk[i] >= 0.5),
                abstain=abstain,
                abstain_reason="imputed modalities drive the prediction" if abstain else "",
                **{f"contrib_{m}": contrib[m] for m in MODALITIES},
                **{f"mask_{m}": mask[m] for m in MODALITIES},
                donors_json=json.dumps(donors), predicted_at=when + timedelta(minutes=i % 5),
            ))
        df = pd.DataFrame(rows)
        df["predicted_at"] = pd.to_datetime(df["predicted_at"], utc=True).astype("datetime64[us, UTC]")
        df.to_parquet(home / "predictions" / f"{batch_id}.parquet", index=False)
        masks_latest = df.set_index("patient_id")[[f"mask_{m}" for m in MODALITIES]]
        masks_latest.columns = list(MODALITIES)
    if maintain_latest:
        refresh_latest(home / "predictions", PREDICTIONS_SCHEMA)
    return FixtureHome(home=home, patient_ids=pids, masks=masks_latest, latest_batch=batches[-1][0],
                       older_batch=batches[0][0])
