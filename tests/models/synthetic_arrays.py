"""Normalised arrays + manifest + cohort in the CONTRACTS.md formats, with a known label signal.

Used by the model tests and benchmarks/bench_encoders.py when no ingested phantom is at
hand. Each modality carries weak evidence of the label: a hyperdense CT lesion, an
X-ray opacity, hemispheric EEG delta slowing, and affirmed vs negated note findings.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from ingestion.modalities import STANDARD_1020

LEFT = [i for i, c in enumerate(STANDARD_1020) if c[-1] in "13579"]
RIGHT = [i for i, c in enumerate(STANDARD_1020) if c[-1] in "2468" or c == "T8"]


def ct_volume(rng: np.random.Generator, lesion: bool, shape=(32, 64, 64)) -> np.ndarray:
    d, h, w = shape
    z, y, x = np.mgrid[:d, :h, :w]
    brain = ((z - d / 2) / (d * 0.45)) ** 2 + ((y - h / 2) / (h * 0.4)) ** 2 + ((x - w / 2) / (w * 0.35)) ** 2 < 1
    vol = np.where(brain, 30.0, -1000.0) + rng.normal(0, 6, shape)
    if lesion:
        cz, cy = rng.integers(d // 3, 2 * d // 3), rng.integers(h // 3, 2 * h // 3)
        cx = w // 2 + rng.choice([-1, 1]) * rng.integers(w // 8, w // 5)
        blob = ((z - cz) / 3) ** 2 + ((y - cy) / 5) ** 2 + ((x - cx) / 5) ** 2 < 1
        vol[blob & brain] = 70.0 + rng.normal(0, 5, int((blob & brain).sum()))
    return vol.astype(np.float32)


def xray_image(rng: np.random.Generator, opacity: bool, shape=(128, 128)) -> np.ndarray:
    h, w = shape
    y, x = np.mgrid[:h, :w]
    img = 0.6 - 0.35 * ((((x - w * 0.3) / (w * 0.15)) ** 2 + ((y - h / 2) / (h * 0.3)) ** 2 < 1)
                        | ((((x - w * 0.7) / (w * 0.15)) ** 2 + ((y - h / 2) / (h * 0.3)) ** 2) < 1))
    if opacity:
        cx, cy = w * rng.choice([0.3, 0.7]), h * rng.uniform(0.4, 0.7)
        img = img + 0.3 * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * 8.0 ** 2)))
    return np.clip(img + rng.normal(0, 0.03, shape), 0, 1).astype(np.float32)


def eeg_windows(rng: np.random.Generator, slowing: bool, n_windows=6, sfreq=128.0, seconds=4.0) -> np.ndarray:
    n = int(sfreq * seconds)
    t = np.arange(n_windows * n) / sfreq
    sig = rng.normal(0, 8, (19, len(t))) + 15 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 6, (19, 1)))
    if slowing:
        side = LEFT if rng.random() < 0.5 else RIGHT
        sig[side] += 40 * np.sin(2 * np.pi * rng.uniform(1.5, 3) * t + rng.uniform(0, 6))
    return sig.reshape(19, n_windows, n).transpose(1, 0, 2).astype(np.float32)


def note_json(rng: np.random.Generator, positive: bool) -> dict:
    affirmed = "Focal hemorrhage seen on imaging." if positive else "No hemorrhage."
    filler = rng.choice(["Patient seen in clinic.", "Family at bedside.", "Vitals stable overnight."])
    text = (f"HISTORY OF PRESENT ILLNESS: headache for {rng.integers(1, 30)} days. {filler} "
            f"Visit {rng.integers(10**6)}. ASSESSMENT: {affirmed}")
    return {"text": text, "note_type": "Neurology consult", "date": "2024-05-03",
            "sections": {"ASSESSMENT": affirmed},
            "findings": [{"text": "hemorrhage", "negated": not positive, "section": "ASSESSMENT"},
                         {"text": "headache", "negated": False, "section": "HISTORY"}]}


SYNTHETIC_MODALITIES = ("ct", "xray", "eeg", "note")
"""What these arrays are drawn for; fixed (not ``MODALITIES``) so a new modality leaves every draw as it was."""


def write_synthetic_home(home: Path, n_patients: int = 40, seed: int = 0, strength: float = 0.8,
                         missing_rate: float = 0.15, modalities=SYNTHETIC_MODALITIES,
                         bad_items: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write arrays under ``home/arrays`` and return (manifest, cohort) DataFrames.

    A positive patient shows each modality's sign with probability ``strength``, a
    negative one with ``1 - strength``. ``bad_items`` extra ok rows (ingested last, so they
    are their patients' latest items) point at corrupt files.
    """
    rng = np.random.default_rng(seed)
    rows, cohort = [], []
    t0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
    for i in range(n_patients):
        pid = "P" + hashlib.sha256(f"{seed}-{i}".encode()).hexdigest()[:12]
        y = int(rng.random() < 0.5)
        cohort.append({"patient_id": pid, "label": y, "age": int(rng.integers(20, 90)),
                       "sex": rng.choice(["M", "F"]), "crp": float(rng.gamma(2, 5 + 5 * y)),
                       "wbc": float(rng.normal(8, 2)), "lactate": float(rng.gamma(2, 0.8))})
        for m in modalities:
            if rng.random() < missing_rate:
                continue
            sign = rng.random() < (strength if y else 1 - strength)
            if m == "ct":
                payload, ext = ct_volume(rng, sign), "npy"
            elif m == "xray":
                payload, ext = xray_image(rng, sign), "npy"
            elif m == "eeg":
                payload, ext = eeg_windows(rng, sign), "npy"
            else:
                payload, ext = json.dumps(note_json(rng, sign)).encode(), "json"
            rows.append(_write_item(home, pid, m, payload, ext, t0 + timedelta(minutes=len(rows))))
    for j in range(bad_items):
        m = ("eeg", "xray", "ct")[j % 3]
        rows.append(_write_item(home, cohort[j % len(cohort)]["patient_id"], m,
                                b"this is not an npy file", "npy", t0 + timedelta(days=10)))
    rows.append({**rows[0], "item_id": "f" * 64, "content_sha256": "f" * 64, "status": "quarantined",
                 "reason": "unreadable DICOM", "array_uri": ""})
    return pd.DataFrame(rows), pd.DataFrame(cohort)


def _write_item(home: Path, pid: str, modality: str, payload, ext: str, when: datetime) -> dict:
    blob = payload if isinstance(payload, bytes) else _npy_bytes(payload)
    sha = hashlib.sha256(blob).hexdigest()
    rel = Path("arrays") / modality / f"{sha}.{ext}"
    (home / rel).parent.mkdir(parents=True, exist_ok=True)
    (home / rel).write_bytes(blob)
    return {"item_id": sha, "patient_id": pid, "modality": modality, "source_uri": f"src/{sha[:8]}",
            "source_files": [f"src/{sha[:8]}"], "content_sha256": sha, "status": "ok", "reason": "",
            "array_uri": rel.as_posix(), "meta_json": "{}", "ingested_at": when, "pipeline_version": "test"}


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
