"""Real labelled sets through the user's path (Bonn EEG, COVID chest X-rays), each beside a simple baseline.

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

COVID chest X-ray section: the X-ray rows of ``cxr_covid/metadata.csv`` as a
PNG/JPEG source folder with an ``images.csv`` sidecar (file, patient, view),
cohort label COVID-19 vs any other finding; the same stages on the ``xray``
modality; baseline: grey-level statistics + histogram, averaged per patient,
+ logistic regression on the same split.

``--subset N`` takes the first N Bonn segments of each set (the smoke test);
``--write`` replaces "## Real data: Bonn EEG" / "## Real data: COVID chest X-rays"
in docs/BENCHMARKS.md.
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
CXR_HEADING = "## Real data: COVID chest X-rays"
BENCH_SECRET = "clinfuse-bench-realdata"
"""Pseudonym secret of the benchmark's throw-away homes: fixes the study split across reruns."""
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


def run_stages(source: Path, cohort: Path, home: Path, modality: str, n_boot: int) -> dict:
    """What a user runs, in order, on a fresh home: ingest, encode, train (frozen), evaluate; with timings.

    Also returns the held-out set, the saved model's risks on it, the training patients and the secret
    (to map the benchmark's own ids to pseudonyms for the baseline).
    """
    from flows.settings import Settings
    from ingestion.driver.ingest import ingest
    from models.features.stage_inputs import as_encoder_keys
    from models.held_out import HELD_OUT_FRACTION
    from models.stages import EncodeConfig, EvaluateConfig, TrainStageConfig, encode, evaluate, held_out_set, train
    from models.training.trained_model import TrainedModel

    # The held-out split follows the pseudonyms: a fixed benchmark secret (not a user's) makes reruns hold out
    # the same patients.
    settings = Settings(home=home, pseudonym_secret=BENCH_SECRET)
    settings.ensure_dirs()
    secret = settings.pseudonym_secret.get_secret_value()
    t_ingest, report = timed(ingest, source, cohort, home, secret, settings.reader_config(), workers=2)
    t_encode, encoded = timed(encode, EncodeConfig(home=home, modalities=(modality,), seed=settings.seed))
    keys = as_encoder_keys(dict(encoded.encoder_keys))
    config = TrainStageConfig(home=home, encoder_keys=keys, strategy="frozen", seed=settings.seed)
    t_train, trained = timed(train, config)
    evaluation = evaluate(EvaluateConfig(home=home, model_dir=trained.model_dir, encoder_keys=keys,
                                         seed=settings.seed, n_boot=n_boot))
    held_out = held_out_set(home, keys, 0, settings.seed, HELD_OUT_FRACTION)
    return {"report": report, "evaluation": evaluation, "held_out": held_out, "training": trained.study.training,
            "p_model": TrainedModel.load(trained.model_dir).predict_risk(held_out), "secret": secret,
            "ingest_s": t_ingest, "encode_s": t_encode, "train_s": t_train}


def compare(run: dict, features: dict[str, np.ndarray], labels: dict[str, int], modality: str, n_items: int,
            n_boot: int) -> dict:
    """clinfuse's held-out figures beside the baseline's on the same patients (ids: the benchmark's own)."""
    from ingestion.deid.pseudonym import pseudonymise
    from models.evaluation.metrics import MetricCI, bootstrap_metrics, paired_auroc_difference

    original = {pseudonymise(pid, run["secret"]): pid for pid in labels}
    train_ids = [original[p] for p in run["training"]]
    test_ids = [original[p] for p in run["held_out"].patient_ids]
    y_test = np.asarray(run["held_out"].labels, int)
    assert [labels[i] for i in test_ids] == y_test.tolist(), "held-out labels differ from the cohort table"
    p_model = run["p_model"]
    p_base = baseline_risk(np.stack([features[i] for i in train_ids]), np.asarray([labels[i] for i in train_ids]),
                           np.stack([features[i] for i in test_ids]))
    model_ci = bootstrap_metrics(y_test, p_model, n_boot, 0)
    base_ci = bootstrap_metrics(y_test, p_base, n_boot, 0)
    if len(np.unique(y_test)) == 2:
        diff = paired_auroc_difference(y_test, p_model, p_base, n_boot, 0)
    else:  # a tiny subset can hold out one class only: no AUROC, and the verdict says so
        diff = MetricCI(float("nan"), float("nan"), float("nan"))
    m, report = run["evaluation"].metrics, run["report"]
    ok = int(report.counts.get(modality, {}).get("ok", 0))
    return {
        "n_items": n_items, "n_ok": ok, "n_quarantined": report.n_quarantined,
        "lost": n_items - ok - report.n_quarantined,
        "quarantine_reasons": sorted({q.reason[:160] for q in report.quarantined}),
        "n_patients": len(labels), "n_train": len(train_ids), "n_held_out": len(test_ids),
        "n_held_out_positive": int(y_test.sum()),
        "clinfuse_auroc": m["auroc"], "clinfuse_auroc_low": m["auroc_low"], "clinfuse_auroc_high": m["auroc_high"],
        "clinfuse_ece": m["ece"], "clinfuse_auroc_recomputed": model_ci["auroc"].value,
        "baseline_auroc": base_ci["auroc"].value, "baseline_auroc_low": base_ci["auroc"].low,
        "baseline_auroc_high": base_ci["auroc"].high, "baseline_ece": base_ci["ece"].value,
        "diff": diff.value, "diff_low": diff.low, "diff_high": diff.high,
        "met": None if np.isnan(diff.high) else bool(diff.high >= 0.0),
        "ingest_s": run["ingest_s"], "encode_s": run["encode_s"], "train_s": run["train_s"],
        "ingest_s_per_item": run["ingest_s"] / n_items, "encode_s_per_item": run["encode_s"] / max(ok, 1),
        "load": os.getloadavg(),
    }


def run_bonn(realdata: Path, work: Path, subset: int = 0, n_boot: int = 1000) -> dict:
    """Convert, ingest, encode, train, evaluate; the baseline on the same split. Returns the figures."""
    segments = bonn_segments(realdata, subset)
    t_convert, cohort = timed(convert_bonn, segments, work / "source")
    run = run_stages(work / "source", cohort, work / "home", "eeg", n_boot)
    features = {s.patient: band_power_features(read_segment(s.path)) for s in segments}
    result = compare(run, features, {s.patient: s.label for s in segments}, "eeg", len(segments), n_boot)
    return {**result, "convert_s": t_convert}


def cxr_table(realdata: Path) -> pd.DataFrame:
    """The X-ray rows of ``cxr_covid/metadata.csv`` (CT rows left out): file, patient, view, label."""
    meta = pd.read_csv(realdata / "cxr_covid" / "metadata.csv", dtype={"patientid": str})
    xr = meta[meta["modality"].str.strip().str.lower() == "x-ray"].copy()
    xr["label"] = xr["finding"].fillna("").str.startswith("COVID-19").astype(int)
    return xr[["filename", "patientid", "view", "label"]].reset_index(drop=True)


def convert_cxr(realdata: Path, table: pd.DataFrame, source: Path) -> Path:
    """Source folder: the X-ray files (symlinked), ``images.csv`` and ``cohort.csv`` (COVID-19 if any film is)."""
    source.mkdir(parents=True, exist_ok=True)
    for name in table["filename"]:
        (source / name).symlink_to(realdata / "cxr_covid" / "images" / name)
    sidecar = table.rename(columns={"filename": "file", "patientid": "patient_id"})[["file", "patient_id", "view"]]
    sidecar.assign(modality="X-ray").to_csv(source / "images.csv", index=False)
    cohort = source / "cohort.csv"
    table.groupby("patientid")["label"].max().rename_axis("patient_id").reset_index().to_csv(cohort, index=False)
    return cohort


def intensity_features(path: Path) -> np.ndarray:
    """Grey-level statistics of one image: mean, std, 5/25/50/75/95th percentiles, 16-bin histogram."""
    from PIL import Image

    grey = np.asarray(Image.open(path).convert("L").resize((256, 256)), np.float64) / 255.0
    hist = np.histogram(grey, bins=16, range=(0.0, 1.0))[0] / grey.size
    return np.concatenate([[grey.mean(), grey.std()], np.percentile(grey, [5, 25, 50, 75, 95]), hist])


def run_cxr(realdata: Path, work: Path, n_boot: int = 1000) -> dict:
    """COVID-19 vs other findings on the X-rays: the same stages, and the intensity baseline (per-patient mean)."""
    table = cxr_table(realdata)
    t_convert, cohort = timed(convert_cxr, realdata, table, work / "source")
    run = run_stages(work / "source", cohort, work / "home", "xray", n_boot)
    per_image = [intensity_features(realdata / "cxr_covid" / "images" / f) for f in table["filename"]]
    features = {pid: np.mean([per_image[i] for i in rows], axis=0)
                for pid, rows in table.groupby("patientid").indices.items()}
    labels = table.groupby("patientid")["label"].max().to_dict()
    result = compare(run, features, {str(k): int(v) for k, v in labels.items()}, "xray", len(table), n_boot)
    return {**result, "convert_s": t_convert}


def results_markdown(r: dict, clinfuse: str, baseline: str, positive: str, unit: str) -> list[str]:
    """Ingest tally, split, the two-row table, the paired difference and verdict, and the time per item."""
    verdict = {True: "met", False: "NOT met", None: "not measurable (one class held out)"}[r["met"]]
    return [
        f"Ingest: {r['n_ok']} ok, {r['n_quarantined']} quarantined, {r['lost']} lost of {r['n_items']} {unit}s. "
        f"Split: {r['n_train']} training, {r['n_held_out']} held-out patients ({r['n_held_out_positive']} "
        f"{positive})." + "".join(f" Quarantined: {reason}" for reason in r["quarantine_reasons"]),
        "",
        "| model | held-out AUROC [95 % CI] | ECE |",
        "|---|---|---|",
        f"| {clinfuse} | {r['clinfuse_auroc']:.3f} [{r['clinfuse_auroc_low']:.3f}, {r['clinfuse_auroc_high']:.3f}] "
        f"| {r['clinfuse_ece']:.3f} |",
        f"| {baseline} | {r['baseline_auroc']:.3f} [{r['baseline_auroc_low']:.3f}, {r['baseline_auroc_high']:.3f}] "
        f"| {r['baseline_ece']:.3f} |",
        "",
        f"AUROC(clinfuse) - AUROC(baseline) = {r['diff']:+.3f} [{r['diff_low']:+.3f}, {r['diff_high']:+.3f}] "
        f"(paired). Target (clinfuse reaches the baseline within the paired interval): **{verdict}**."
        + caveats(r),
        "",
        f"Time (2 shared CPU cores, load {r['load'][0]:.1f} at the end): ingest {r['ingest_s']:.1f} s "
        f"({r['ingest_s_per_item']:.3f} s per {unit}), encode {r['encode_s']:.1f} s "
        f"({r['encode_s_per_item']:.3f} s per {unit}), train {r['train_s']:.1f} s; building the source folder "
        f"{r['convert_s']:.1f} s (the benchmark's).",
    ]


def caveats(r: dict) -> str:
    """What limits the verdict, read from the figures: a ceiling both reach, or few patients of one class."""
    notes = ""
    if min(r["clinfuse_auroc_low"], r["baseline_auroc_low"]) >= 0.999:
        notes += " Both sit at the ceiling (AUROC 1 in every resample): this set cannot tell them apart."
    minority = min(r["n_held_out_positive"], r["n_held_out"] - r["n_held_out_positive"])
    if minority < 5:
        notes += (f" Only {minority} held-out patients of the smaller class: the intervals are wide and the verdict "
                  "is weak evidence either way.")
    reruns = r.get("rerun_clinfuse_auroc", [])
    if reruns:
        same = all(np.isclose(a, r["clinfuse_auroc"]) for a in reruns)
        notes += (" The same stages rerun on a fresh home (same split) gave clinfuse held-out AUROC "
                  + ", ".join(f"{a:.3f}" for a in reruns)
                  + (": the same." if same else ": the result moves from run to run (training is not "
                     "bit-reproducible); compare the spread with the gap to the baseline."))
    return notes


def bonn_markdown(r: dict) -> str:
    """The Bonn section's body: the task, the table and the verdict, all from ``r``."""
    intro = (
        "Produced by `benchmarks/bench_realdata.py --write`. Bonn University epilepsy EEG (Andrzejak et al. 2001), "
        f"{r['n_items']} single-channel segments (sets A-E, 23.6 s at 173.61 Hz), label seizure = set E. Each "
        "segment is written as an EDF file with one channel labelled `EEG` (no 10-20 name: read as a reduced "
        "montage, the lead in the Cz row) and run through the stage functions the CLI runs: ingest, encode, "
        "train (frozen EEG encoder, default fusion head and epochs, nothing tuned), evaluate on the study's "
        "held-out patients. Baseline: log Welch band power (delta, theta, alpha, beta, gamma) of the raw "
        "segment + standardised logistic regression (C = 1), fitted on the same training patients, scored on "
        "the same held-out patients (the study split, 20 %, under a fixed benchmark pseudonym secret so reruns "
        "hold out the same patients). 95 % intervals: patient bootstrap; the difference is paired. A segment "
        "whose file is quarantined keeps its cohort row: clinfuse scores that patient without EEG (imputed), "
        "the baseline from the raw text.")
    return "\n".join([intro, "", *results_markdown(r, "clinfuse (EEG encoder, frozen, fusion head)",
                                                    "log band power + logistic regression", "seizure", "segment")])


def cxr_markdown(r: dict) -> str:
    """The COVID chest X-ray section's body."""
    intro = (
        "Produced by `benchmarks/bench_realdata.py --write`. COVID-19 image data collection (Cohen et al. 2020), "
        f"the {r['n_items']} X-ray rows of `metadata.csv` (CT rows left out) of {r['n_patients']} patients; "
        "label COVID-19 (finding starts with COVID-19, on any film of the patient) vs other pneumonias / no "
        "finding. The source folder holds the PNG/JPEG files and an `images.csv` sidecar (file, patient, view, "
        "modality X-ray) made from `metadata.csv`; then the same stages as the EEG section (ingest, encode, "
        "train with the frozen X-ray encoder and default head, evaluate on the study's held-out patients). "
        "Baseline: grey-level statistics of each image (mean, std, 5/25/50/75/95th percentiles, 16-bin "
        "histogram at 256x256), averaged per patient, + standardised logistic regression (C = 1), fitted on "
        "the same training patients. The held-out set is small: read the intervals, not the points.")
    return "\n".join([intro, "", *results_markdown(r, "clinfuse (X-ray encoder, frozen, fusion head)",
                                                    "intensity statistics + logistic regression", "COVID-19",
                                                    "image")])


SECTIONS = {"bonn": (BONN_HEADING, "eeg_bonn/labels.csv"), "cxr": (CXR_HEADING, "cxr_covid/metadata.csv")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT)
    ap.add_argument("--sections", default="bonn,cxr", help="comma-separated: bonn, cxr")
    ap.add_argument("--subset", type=int, default=0, help="Bonn: first N segments of each set (0: all 250)")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--reruns", type=int, default=1, help="extra fresh-home runs per section (run-to-run spread)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--write", action="store_true", help="replace the sections run in docs/BENCHMARKS.md")
    args = ap.parse_args()
    if args.write and args.subset:
        sys.exit("--write takes the whole set: drop --subset")
    figures = {}
    for name in args.sections.split(","):
        heading, needed = SECTIONS[name]
        if not (args.realdata / needed).is_file():
            sys.exit(f"no {needed} under {args.realdata}")
        runs = []
        for _ in range(1 + args.reruns):
            with tempfile.TemporaryDirectory(prefix=f"clinfuse-{name}-") as tmp:
                if name == "bonn":
                    runs.append(run_bonn(args.realdata, Path(tmp), args.subset, args.n_boot))
                else:
                    runs.append(run_cxr(args.realdata, Path(tmp), args.n_boot))
        result = {**runs[0], "rerun_clinfuse_auroc": [r["clinfuse_auroc"] for r in runs[1:]]}
        markdown = bonn_markdown(result) if name == "bonn" else cxr_markdown(result)
        figures[name] = result
        print(f"{heading}\n\n{markdown}\n")
        if args.write:
            from benchmarks.markdown_section import write_section

            write_section(heading, markdown)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
