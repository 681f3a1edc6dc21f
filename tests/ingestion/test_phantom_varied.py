"""The varied phantom drawing (``--anatomy varied``): what varies is measured on the written files.

Poses, lesion counts and chest asymmetry are read back from the DICOM with
pydicom and simple image measurements here, never from the generator's own
draws; the labels and oracle columns are compared between the two drawings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from scipy import ndimage as ndi
from typer.testing import CliRunner

from flows.cli import app
from ingestion.driver.ingest import ingest
from ingestion.phantom import generate_cohort
from ingestion.phantom.anatomy import DRAWING_VERSIONS, read_anatomy
from ingestion.phantom.ct import write_ct_series
from ingestion.phantom.eeg import MIN_SECONDS
from ingestion.phantom.phi import make_identity
from ingestion.phantom.xray import write_xray
from ingestion.driver.worker import ReaderConfig

SECRET = "test-phantom-varied"
SIX = {"n_patients": 6, "seed": 5, "eeg_seconds": (MIN_SECONDS, MIN_SECONDS)}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same six patients (seed 5) drawn both ways."""
    root = tmp_path_factory.mktemp("varied")
    return {a: generate_cohort(root / a, anatomy=a, **SIX).out_dir for a in ("standard", "varied")}


def _hu(root: Path, files: list[str]) -> tuple[np.ndarray, float, float]:
    """HU volume in slice-position order, pixel spacing and slice spacing (mm), from the files."""
    slices = sorted((pydicom.dcmread(root / f) for f in files), key=lambda s: float(s.ImagePositionPatient[2]))
    hu = np.stack([s.pixel_array * float(s.RescaleSlope) + float(s.RescaleIntercept) for s in slices])
    return hu.astype(np.float32), float(slices[0].PixelSpacing[0]), float(slices[0].SliceThickness)


def _pose(hu: np.ndarray, px: float, dz: float) -> tuple[float, float, float]:
    """Head centre offset from the array centre (mm), in-plane angle of its long axis and tilt (degrees)."""
    body = hu > -500
    mid = body[len(hu) // 2]
    rows, cols = np.nonzero(mid)
    centre = (hu.shape[2] - 1) / 2.0
    offset = float(np.hypot(cols.mean() - centre, rows.mean() - centre) * px)
    major = np.linalg.eigh(np.cov(np.vstack([cols, rows])))[1][:, 1]
    angle = (np.degrees(np.arctan2(major[0], major[1])) + 90.0) % 180.0 - 90.0
    inner = body[len(hu) // 4: 3 * len(hu) // 4]  # the head's front-back centre moves with z when it is tilted
    fronts = [np.nonzero(s)[0].mean() * px for s in inner]
    tilt = np.degrees(np.arctan(np.polyfit(np.arange(len(fronts)) * dz, fronts, 1)[0]))
    return offset, float(angle), float(tilt)


def _bright_spots(hu: np.ndarray, px: float, dz: float) -> int:
    """Components inside the skull clearly brighter than most brain tissue (>= 150 mm^3)."""
    bone = hu > 300
    inside = np.stack([ndi.binary_fill_holes(b) for b in bone]) & ~bone
    brain = ndi.binary_erosion(inside, iterations=max(1, round(4.0 / px)))  # 4 mm off the skull
    smooth = ndi.gaussian_filter(np.clip(hu, 0, 100), (1.5 / dz, 1.5 / px, 1.5 / px))
    spots = brain & (smooth > np.percentile(smooth[brain], 95) + 12.0)
    labels, n = ndi.label(spots)
    volumes = ndi.sum(spots, labels, range(1, n + 1)) * px * px * dz
    return int((np.asarray(volumes) >= 150.0).sum())


@pytest.mark.slow
def test_varied_cohort_ingests_with_nothing_lost_and_records_its_drawing(cohorts: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    src = cohorts["varied"]
    assert read_anatomy(src / "answers.parquet") == {"anatomy": "varied", "drawings": DRAWING_VERSIONS["varied"]}
    assert read_anatomy(cohorts["standard"] / "answers.parquet")["anatomy"] == "standard"
    config = ReaderConfig(ct_spacing_mm=(4.0, 2.0, 2.0), ct_shape=(8, 16, 16), xray_shape=(32, 32),
                          eeg_sfreq=64.0, eeg_window_s=2.0, eeg_line_freq=50.0)
    report = ingest(src, src / "cohort.csv", tmp_path / "home", SECRET, config, workers=1,
                    exclude=(src / "answers.parquet",))
    assert report.n_quarantined == 0, [(q.source_uri, q.reason) for q in report.quarantined]
    for m in ("ct", "xray", "eeg", "note"):
        assert report.counts[m].get("ok", 0) == 6, report.counts
    assert report.cohort.in_files_not_in_cohort == ()


def test_heads_shift_turn_and_tilt_in_the_varied_files_only(cohorts: dict[str, Path]) -> None:
    poses = {}
    for anatomy, root in cohorts.items():
        answers = pd.read_parquet(root / "answers.parquet")
        poses[anatomy] = np.array([_pose(*_hu(root, list(files))) for files in answers["files_ct"]])
    np.testing.assert_allclose(poses["standard"], 0.0, atol=1.0)  # centred, upright, not tilted
    offset, angle, tilt = poses["varied"].T
    assert offset.max() > 10.0 and np.ptp(offset) > 5.0
    assert np.ptp(angle) > 15.0 and (angle > 3).any() and (angle < -3).any()
    assert np.ptp(tilt) > 5.0


def test_labels_and_oracle_columns_do_not_depend_on_the_drawing(cohorts: dict[str, Path]) -> None:
    standard, varied = (pd.read_parquet(cohorts[a] / "answers.parquet") for a in ("standard", "varied"))
    latent = [c for c in standard.columns if not c.startswith("files_") and c != "planted_phi"]  # file-derived
    assert [c for c in latent if c.startswith("oracle_risk")] and "label" in latent
    pd.testing.assert_frame_equal(standard[latent], varied[latent])
    assert pd.read_csv(cohorts["standard"] / "cohort.csv").equals(pd.read_csv(cohorts["varied"] / "cohort.csv"))


def test_varied_heads_have_no_one_or_two_lesions_by_evidence(tmp_path: Path) -> None:
    """Strong CT evidence draws one or two bright lesions, weak evidence none (counted on the written files)."""
    def spots(evidence: float, seed: int) -> int:
        rng = np.random.default_rng(seed)
        identity = make_identity(rng, "MRN12345678", "F", 50)
        item = write_ct_series(tmp_path / f"{evidence}-{seed}", rng, identity, evidence, "L", anatomy="varied")
        return _bright_spots(*_hu(tmp_path, [p.relative_to(tmp_path).as_posix() for p in item.files]))

    strong = [spots(3.5, s) for s in range(6)]
    assert {spots(-3.0, s) for s in range(3)} == {0}
    assert set(strong) == {1, 2}, strong


def _density(path: Path) -> np.ndarray:
    ds = pydicom.dcmread(path)
    img = ds.pixel_array.astype(float) / (2**ds.BitsStored - 1)
    return 1.0 - img if ds.PhotometricInterpretation == "MONOCHROME1" else img


def test_varied_chest_is_asymmetric_posed_and_shows_devices(tmp_path: Path) -> None:
    found = {}
    for anatomy in ("standard", "varied"):
        rng = np.random.default_rng(3)
        rows = []
        for i in range(8):
            identity = make_identity(rng, f"MRN{10_000_000 + i}", "F", 60)
            d = _density(write_xray(tmp_path / anatomy, rng, identity, 0.0, "L", anatomy=anatomy).files[0])
            cols = np.nonzero(d > 0.3)[1]
            rows.append((np.abs(d - d[:, ::-1]).mean(),  # mirror asymmetry
                         (cols.mean() - (d.shape[1] - 1) / 2.0) / d.shape[1],  # body centre offset
                         int(((d - ndi.grey_opening(d, size=(9, 9))) > 0.25).sum())))  # thin/small bright things
        found[anatomy] = np.array(rows)
    std, var = found["standard"], found["varied"]
    assert var[:, 0].min() > 1.5 * std[:, 0].max()
    assert np.ptp(var[:, 1]) > 3 * np.ptp(std[:, 1])
    assert std[:, 2].max() == 0 and (var[:, 2] > 50).any()


def test_cli_anatomy_option(tmp_path: Path) -> None:
    runner = CliRunner()
    assert "--anatomy" in runner.invoke(app, ["phantom", "--help"]).output
    out = tmp_path / "cli"
    result = runner.invoke(app, ["phantom", "-n", "1", "--out", str(out), "--anatomy", "varied",
                                 "--eeg-min-s", "4", "--eeg-max-s", "4", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "varied" in result.output and read_anatomy(out / "answers.parquet")["anatomy"] == "varied"
    bad = runner.invoke(app, ["phantom", "--out", str(tmp_path / "x"), "--anatomy", "curvy"])
    assert bad.exit_code != 0 and not (tmp_path / "x").exists()
