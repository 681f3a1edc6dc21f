"""The COVID X-ray + notes section: its split statistics, notes table and verdicts, on made-up and real inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import realdata_cxr as cxr


def _split(seed: int, gap: float) -> dict:
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(5, int), np.ones(11, int)]
    signal = y + rng.normal(0, 0.8, len(y))
    risks = {"clinfuse": signal + gap * y, "lr_embeddings": signal, "baseline": rng.normal(size=len(y))}
    return {"seed": seed, "y": y, "risks": risks, "evaluate_auroc": 0.5, "n_train": 55, "n_held_out": 16,
            "train_s": 1.0, "head": "linear" if seed % 2 else "network", "epochs": 3,
            "trust": {"n": 16.0, "auroc": 0.8, "ece": 0.1, "ece_uncalibrated": 0.2, "interval_level": 0.9,
                      "set_coverage": 15 / 16, "set_both_rate": 0.25, "abstain_rate": 0.0,
                      "auroc_not_abstained": 0.8}}


def test_corrected_interval_is_wider_than_the_naive_one() -> None:
    d = np.array([0.1, -0.05, 0.2, 0.15, 0.0, 0.12])
    mean, low, high = cxr.corrected_interval(d, n_test=16, n_train=55)
    naive = 2.571 * d.std(ddof=1) / np.sqrt(len(d))
    assert mean == pytest.approx(d.mean()) and low < mean < high
    assert (high - low) / 2 > naive * 1.2  # 1/R + n_test/n_train = 0.46 vs 1/R = 0.17
    assert np.isnan(cxr.corrected_interval(np.array([0.1]), 16, 55)[1])


def test_summary_and_section_state_each_arm_and_verdict(tmp_path: Path) -> None:
    arms = {arm: cxr.summarise([_split(s, 1.5 if arm == "fused" else 0.0) for s in range(6)]) for arm in cxr.ARMS}
    fused = arms["fused"]
    assert fused["diff"]["baseline"][1] > 0 and fused["wins"]["baseline"] == 6  # a real gain clears the interval
    assert arms["xray"]["diff"]["lr_embeddings"] == pytest.approx((0.0, 0.0, 0.0))  # same risks: no difference
    r = {"arms": arms, "n_images": 131, "n_notes": 71, "n_patients": 71, "n_positive": 47, "ok": {"xray": 131,
         "note": 71}, "n_quarantined": 0, "quarantine_reasons": [], "lost": 0, "ingest_s": 10.0, "encode_s": 5.0,
         "convert_s": 0.1, "n_splits": 6, "named": (14, 1), "load": (3.0, 3.0, 3.0)}
    text = cxr.markdown(r)
    assert "| X-ray + notes | clinfuse (frozen encoders, fusion head) |" in text
    assert "beats the baseline: **met**" in text and "reaches the baseline: **met**" in text
    assert cxr._verdict((-0.2, -0.4, -0.01), beat=False) == "**NOT met**"
    assert cxr._verdict((0.05, -0.1, 0.2), beat=True).startswith("**NOT met** (ahead on average")
    assert "| 3 / 3 |" in text  # heads chosen over the splits
    assert "notes of 14 of the 47 COVID-19 patients" in text
    assert "| X-ray | 96 over 6 splits | 0.200 -> 0.100 | 93.8 % [" in text  # the trust table, pooled
    saved = tmp_path / "run.json"  # what bench_realdata.py --json writes, and the re-render reads back
    saved.write_text(json.dumps({"cxr": r}, default=str))
    assert cxr.markdown(cxr.from_json(saved)) == text


def test_notes_table_joins_a_patients_distinct_notes(tmp_path: Path) -> None:
    (tmp_path / "cxr_covid").mkdir()
    pd.DataFrame({"patientid": ["1", "1", "1", "2"], "filename": ["a.png", "b.png", "c.png", "d.png"],
                  "clinical_notes": ["Fever.", "Fever.", "Cough. ", None]}).to_csv(
        tmp_path / "cxr_covid" / "metadata.csv", index=False)
    table = pd.DataFrame({"filename": ["a.png", "b.png", "c.png", "d.png"]})
    assert cxr.cxr_notes(tmp_path, table) == {"1": "Fever. Cough.", "2": ""}


@pytest.mark.realdata
def test_every_covid_xray_patient_has_a_note(realdata: Path) -> None:
    if not (realdata / "cxr_covid" / "metadata.csv").is_file():
        pytest.skip(f"no cxr_covid under {realdata}")
    table = cxr.cxr_table(realdata)
    notes = cxr.cxr_notes(realdata, table)
    assert set(notes) == set(table["patientid"]) and all(notes.values())
