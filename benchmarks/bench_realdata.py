"""Real signals with labels through the user's path: Bonn EEG (seizure vs not), beside a simple strong baseline.

    .venv/bin/python benchmarks/bench_realdata.py [--realdata ../shared/realdata] [--subset N] [--write]

Bonn section: each of the 250 single-channel text segments (4,097 samples at
173.61 Hz) becomes one EDF file in a temporary source folder (patient = segment
name, e.g. ``S001``; this conversion is the benchmark's, not the product's), and
``labels.csv`` becomes ``cohort.csv`` (label = seizure, set E). Then the stage
functions the CLI runs, on a fresh home: ``ingestion.driver.ingest.ingest``,
``models.stages.encode`` (EEG), ``models.stages.train`` (frozen strategy, default
head and epochs: nothing tuned here) and ``models.stages.evaluate`` on the
study's held-out patients. The baseline is log band power (delta, theta, alpha,
beta, gamma; Welch on the raw segment) + standardised logistic regression (C=1),
fitted on the same training patients and scored on the same held-out patients.
Target: clinfuse's held-out AUROC within the paired bootstrap interval of the
baseline's (the interval of AUROC(clinfuse) - AUROC(baseline) reaches 0 or above).

``--subset N`` takes the first N segments of each set (the smoke test); ``--write``
replaces "## Real data: Bonn EEG" in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT = REPO.parent / "shared" / "realdata"
BONN_HEADING = "## Real data: Bonn EEG"
BONN_SFREQ = 173.61
BASELINE_BANDS = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 13.0), "beta": (13.0, 30.0),
                  "gamma": (30.0, 45.0)}


@dataclass(frozen=True)
class Segment:
    """One Bonn text file: its patient (the file stem), the path, and the label."""

    patient: str
    path: Path
    label: int


def bonn_segments(realdata: Path, subset: int = 0) -> list[Segment]:
    """The labelled segments of ``eeg_bonn/labels.csv``; ``subset`` > 0 keeps the first N of each set."""
    table = pd.read_csv(realdata / "eeg_bonn" / "labels.csv")
    if subset:
        table = table.groupby("set", sort=True).head(subset)
    return [Segment(Path(p).stem, realdata / "eeg_bonn" / p, int(y)) for p, y in zip(table["path"], table["seizure"])]


def read_segment(path: Path) -> np.ndarray:
    """The segment's samples (one integer per line, in microvolts)."""
    return np.loadtxt(path, dtype=np.float64)


def write_edf(samples_uv: np.ndarray, patient: str, path: Path) -> None:
    """One EDF file, one signal labelled ``EEG`` (no 10-20 name), one data record holding all samples."""
    from edfio import Edf, EdfSignal, Patient

    duration = round(len(samples_uv) / BONN_SFREQ, 5)  # the header field holds 8 characters: 23.59887
    span = float(np.abs(samples_uv).max()) + 1.0
    sig = EdfSignal(samples_uv, sampling_frequency=len(samples_uv) / duration, label="EEG", physical_dimension="uV",
                    physical_range=(-span, span))
    Edf([sig], patient=Patient(code=patient), data_record_duration=duration).write(path)


def convert_bonn(segments: list[Segment], source: Path) -> Path:
    """EDF files and ``cohort.csv`` under ``source``; returns the cohort table's path."""
    source.mkdir(parents=True, exist_ok=True)
    for seg in segments:
        write_edf(read_segment(seg.path), seg.patient, source / f"{seg.patient}.edf")
    cohort = source / "cohort.csv"
    pd.DataFrame({"patient_id": [s.patient for s in segments], "label": [s.label for s in segments]}).to_csv(
        cohort, index=False)
    return cohort


def band_power_features(samples_uv: np.ndarray, sfreq: float = BONN_SFREQ) -> np.ndarray:
    """log10 mean Welch power per band of one raw segment (the baseline's features)."""
    from scipy.signal import welch

    freqs, psd = welch(samples_uv - samples_uv.mean(), fs=sfreq, nperseg=256)
    return np.log10([psd[(freqs >= lo) & (freqs < hi)].mean() + 1e-12 for lo, hi in BASELINE_BANDS.values()])


def baseline_risk(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Standardised logistic regression (C=1, fixed): fitted on training patients only."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(x_train, y_train)
    return clf.predict_proba(x_test)[:, 1]


def timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - t, out


def run_bonn(realdata: Path, work: Path, subset: int = 0, n_boot: int = 1000) -> dict:
    """Convert, ingest, encode, train, evaluate; the baseline on the same split. Returns the figures."""
    from flows.settings import Settings
    from ingestion.deid.pseudonym import pseudonymise
    from ingestion.driver.ingest import ingest
    from models.evaluation.metrics import MetricCI, bootstrap_metrics, paired_auroc_difference
    from models.features.stage_inputs import as_encoder_keys
    from models.held_out import HELD_OUT_FRACTION
    from models.stages import EncodeConfig, EvaluateConfig, TrainStageConfig, encode, evaluate, held_out_set, train
    from models.training.trained_model import TrainedModel

    segments = bonn_segments(realdata, subset)
    source, home = work / "source", work / "home"
    t_convert, cohort = timed(convert_bonn, segments, source)
    settings = Settings(home=home)
    settings.ensure_dirs()
    secret = settings.pseudonym_secret.get_secret_value()
    t_ingest, report = timed(ingest, source, cohort, home, secret, settings.reader_config(), workers=2)
    t_encode, encoded = timed(encode, EncodeConfig(home=home, modalities=("eeg",), seed=settings.seed))
    keys = as_encoder_keys(dict(encoded.encoder_keys))
    config = TrainStageConfig(home=home, encoder_keys=keys, strategy="frozen", seed=settings.seed)
    t_train, trained = timed(train, config)
    evaluation = evaluate(EvaluateConfig(home=home, model_dir=trained.model_dir, encoder_keys=keys,
                                         seed=settings.seed, n_boot=n_boot))
    held_out = held_out_set(home, keys, 0, settings.seed, HELD_OUT_FRACTION)
    p_model = TrainedModel.load(trained.model_dir).predict_risk(held_out)

    by_pseudonym = {pseudonymise(s.patient, secret): s for s in segments}
    features = {s.patient: band_power_features(read_segment(s.path)) for s in segments}
    train_segs = [by_pseudonym[p] for p in trained.study.training]
    test_segs = [by_pseudonym[p] for p in held_out.patient_ids]
    y_test = np.asarray(held_out.labels, int)
    assert [s.label for s in test_segs] == y_test.tolist(), "held-out labels differ from labels.csv"
    p_base = baseline_risk(np.stack([features[s.patient] for s in train_segs]),
                           np.asarray([s.label for s in train_segs]),
                           np.stack([features[s.patient] for s in test_segs]))
    model_ci = bootstrap_metrics(y_test, p_model, n_boot, 0)
    base_ci = bootstrap_metrics(y_test, p_base, n_boot, 0)
    if len(np.unique(y_test)) == 2:
        diff = paired_auroc_difference(y_test, p_model, p_base, n_boot, 0)
    else:  # a tiny subset can hold out one class only: no AUROC, and the verdict says so
        diff = MetricCI(float("nan"), float("nan"), float("nan"))
    m = evaluation.metrics
    n_items = len(segments)
    ok = report.counts.get("eeg", {}).get("ok", 0)
    return {
        "n_segments": n_items, "n_ok": int(ok), "n_quarantined": report.n_quarantined,
        "lost": n_items - int(ok) - report.n_quarantined,
        "quarantine_reasons": sorted({q.reason[:160] for q in report.quarantined}),
        "n_train": len(train_segs), "n_held_out": len(test_segs), "n_held_out_seizure": int(y_test.sum()),
        "clinfuse_auroc": m["auroc"], "clinfuse_auroc_low": m["auroc_low"], "clinfuse_auroc_high": m["auroc_high"],
        "clinfuse_ece": m["ece"], "clinfuse_auroc_recomputed": model_ci["auroc"].value,
        "baseline_auroc": base_ci["auroc"].value, "baseline_auroc_low": base_ci["auroc"].low,
        "baseline_auroc_high": base_ci["auroc"].high, "baseline_ece": base_ci["ece"].value,
        "diff": diff.value, "diff_low": diff.low, "diff_high": diff.high, "met": None if np.isnan(diff.high) else bool(diff.high >= 0.0),
        "convert_s": t_convert, "ingest_s": t_ingest, "encode_s": t_encode, "train_s": t_train,
        "ingest_s_per_item": t_ingest / n_items, "encode_s_per_item": t_encode / max(int(ok), 1),
        "load": os.getloadavg(),
    }


def bonn_markdown(r: dict) -> str:
    """The Bonn section's body: the task, the table and the verdict, all from ``r``."""
    verdict = {True: "met", False: "NOT met", None: "not measurable (one class held out)"}[r["met"]]
    lines = [
        "Produced by `benchmarks/bench_realdata.py --write`. Bonn University epilepsy EEG (Andrzejak et al. 2001), "
        f"{r['n_segments']} single-channel segments (sets A-E, 23.6 s at 173.61 Hz), label seizure = set E. Each "
        "segment is written as an EDF file with one channel labelled `EEG` (no 10-20 name: read as a reduced "
        "montage, the lead in the Cz row) and run through the stage functions the CLI runs: ingest, encode, "
        "train (frozen EEG encoder, default fusion head and epochs, nothing tuned), evaluate on the study's "
        "held-out patients. Baseline: log Welch band power (delta, theta, alpha, beta, gamma) of the raw "
        "segment + standardised logistic regression (C = 1), fitted on the same training patients, scored on "
        "the same held-out patients. 95 % intervals: patient bootstrap; the difference is paired. A segment "
        "whose file is quarantined keeps its cohort row: clinfuse scores that patient without EEG (imputed), "
        "the baseline from the raw text.",
        "",
        f"Ingest: {r['n_ok']} ok, {r['n_quarantined']} quarantined, {r['lost']} lost of {r['n_segments']}. "
        f"Split: {r['n_train']} training, {r['n_held_out']} held out ({r['n_held_out_seizure']} seizure)."
        + "".join(f" Quarantined: {reason}" for reason in r["quarantine_reasons"]),
        "",
        "| model | held-out AUROC [95 % CI] | ECE |",
        "|---|---|---|",
        f"| clinfuse (EEG encoder, frozen, fusion head) | {r['clinfuse_auroc']:.3f} "
        f"[{r['clinfuse_auroc_low']:.3f}, {r['clinfuse_auroc_high']:.3f}] | {r['clinfuse_ece']:.3f} |",
        f"| log band power + logistic regression | {r['baseline_auroc']:.3f} "
        f"[{r['baseline_auroc_low']:.3f}, {r['baseline_auroc_high']:.3f}] | {r['baseline_ece']:.3f} |",
        "",
        f"AUROC(clinfuse) - AUROC(baseline) = {r['diff']:+.3f} [{r['diff_low']:+.3f}, {r['diff_high']:+.3f}] "
        f"(paired). Target (clinfuse reaches the baseline within the paired interval): **{verdict}**.",
        "",
        f"Time (2 shared CPU cores, load {r['load'][0]:.1f} at the end): ingest {r['ingest_s']:.1f} s "
        f"({r['ingest_s_per_item']:.2f} s per segment), encode {r['encode_s']:.1f} s "
        f"({r['encode_s_per_item']:.3f} s per segment), train {r['train_s']:.1f} s; EDF conversion "
        f"{r['convert_s']:.1f} s (the benchmark's).",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT)
    ap.add_argument("--subset", type=int, default=0, help="first N segments of each set (0: all 250)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--write", action="store_true", help="replace the Bonn section of docs/BENCHMARKS.md")
    args = ap.parse_args()
    if not (args.realdata / "eeg_bonn" / "labels.csv").is_file():
        sys.exit(f"no Bonn EEG under {args.realdata}/eeg_bonn")
    with tempfile.TemporaryDirectory(prefix="clinfuse-bonn-") as tmp:
        result = run_bonn(args.realdata, Path(tmp), args.subset, args.n_boot)
    markdown = bonn_markdown(result)
    print(markdown)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if args.write:
        if args.subset:
            sys.exit("--write takes the whole set: drop --subset")
        from benchmarks.markdown_section import write_section

        write_section(BONN_HEADING, markdown)


if __name__ == "__main__":
    main()
