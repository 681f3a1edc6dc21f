"""Which of a patient's several items the features use must not depend on reader finish order.

Before: every row carried the moment its reader finished and ``latest_items``
kept the last one, so a patient with three films got whichever film a worker
finished last (real COVID X-rays: 3 of 71 patients changed film between two
ingests of the same folder).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ingestion.driver.ingest import ingest
from ingestion.driver.worker import ReaderConfig
from ingestion.manifest import read_manifest
from models.features.assemble import latest_items

SECRET = "test-secret"
CONFIG = ReaderConfig(ct_spacing_mm=(4.0, 2.0, 2.0), ct_shape=(8, 16, 16), xray_shape=(32, 32),
                      eeg_sfreq=64.0, eeg_window_s=2.0, eeg_line_freq=50.0)


def _films(src: Path, patients: int, per_patient: int) -> None:
    """``per_patient`` different PNG films for each patient, mapped by a sidecar table."""
    src.mkdir(parents=True)
    rng = np.random.default_rng(3)
    lines = ["file,patient_id"]
    for p in range(patients):
        for k in range(per_patient):
            name = f"p{p}_film{k}.png"
            Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8), mode="L").save(src / name)
            lines.append(f"{name},MRN-{p}")
    (src / "images.csv").write_text("\n".join(lines) + "\n")


def test_one_ingest_run_stamps_every_row_with_one_time(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _films(src, patients=3, per_patient=3)
    (src / "broken.png").write_text("not an image")  # quarantined rows carry the run's time too
    ingest(src, None, tmp_path / "home", SECRET, CONFIG, workers=2)
    first = read_manifest(tmp_path / "home" / "manifest.parquet")
    assert len(first) == 10 and (first["status"] == "quarantined").sum() == 1
    assert first["ingested_at"].nunique() == 1
    for k in range(3):  # a later run's new film wins over the first run's films
        Image.fromarray(np.full((40, 40), 7 + 30 * k, np.uint8), mode="L").save(src / f"p{k}_film_new.png")
    (src / "images.csv").write_text((src / "images.csv").read_text()
                                    + "".join(f"p{k}_film_new.png,MRN-{k}\n" for k in range(3)))
    ingest(src, None, tmp_path / "home", SECRET, CONFIG, workers=2)
    second = read_manifest(tmp_path / "home" / "manifest.parquet")
    assert second["ingested_at"].nunique() == 2
    chosen = latest_items(second, ("xray",))
    assert sorted(chosen["source_uri"]) == [f"p{k}_film_new.png" for k in range(3)]


def test_the_chosen_film_is_the_same_whatever_the_row_order(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _films(src, patients=4, per_patient=3)
    ingest(src, None, tmp_path / "home", SECRET, CONFIG, workers=2)
    manifest = read_manifest(tmp_path / "home" / "manifest.parquet")
    want = latest_items(manifest, ("xray",)).set_index("patient_id")["source_uri"].sort_index()
    assert sorted(want) == [f"p{p}_film2.png" for p in range(4)]  # within a run: the greatest source path
    for seed in range(5):
        shuffled = manifest.sample(frac=1.0, random_state=seed).reset_index(drop=True)
        got = latest_items(shuffled, ("xray",)).set_index("patient_id")["source_uri"].sort_index()
        pd.testing.assert_series_equal(got, want)


def test_a_second_ingest_of_the_same_folder_into_a_fresh_home_chooses_the_same_films(tmp_path: Path) -> None:
    src = tmp_path / "src"
    _films(src, patients=4, per_patient=3)
    chosen = []
    for name in ("a", "b"):
        ingest(src, None, tmp_path / name, SECRET, CONFIG, workers=2)
        items = latest_items(read_manifest(tmp_path / name / "manifest.parquet"), ("xray",))
        chosen.append(items.set_index("patient_id")[["source_uri", "content_sha256"]].sort_index())
    pd.testing.assert_frame_equal(chosen[0], chosen[1])
