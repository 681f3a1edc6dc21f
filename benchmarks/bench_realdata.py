"""Real labelled sets through the user's path (Bonn EEG, COVID chest X-rays, Indiana reports) beside simple baselines.

    .venv/bin/python benchmarks/bench_realdata.py [--realdata ../shared/realdata] [--sections bonn,cxr,indiana]
        [--subset N] [--notes-subset N] [--reruns N] [--splits N] [--write]

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

COVID chest X-ray section (``benchmarks/realdata_cxr.py``): the X-ray rows of
``cxr_covid/metadata.csv`` as a PNG/JPEG source folder with an ``images.csv``
sidecar (file, patient, view) and the patients' ``clinical_notes`` as a notes
table, cohort label COVID-19 vs any other finding; X-ray, notes and both fused,
each on ``--splits`` study splits (seeds 7, 8, ...), beside grey-level
statistics + LR, TF-IDF + LR, both concatenated, and LR on clinfuse's own
embeddings, fitted on each split's training patients.

Indiana section: the Indiana University chest X-ray reports
(``notes/indiana_reports_subset.csv``), text = findings + impression (reports with
neither are left out, as in ``bench_realdata_notes.py``), label abnormal =
``Problems`` is not "normal". The reports become one notes table
(``patient_id, date, note_type, text``; patient ``IU<uid>``, one fixed date: the
set has none) and a cohort table in a source folder; then the same stages on the
``note`` modality (the packaged MiniLM note encoder, as ``clinfuse encode`` runs it).
Baseline: TF-IDF (1-2 grams, min_df 2, sublinear tf) + logistic regression (C=4,
the settings of ``bench_realdata_notes.py``) fitted on the training patients'
report texts, scored on the same held-out patients.

``--subset N`` takes the first N Bonn segments of each set (the smoke test);
``--notes-subset N`` a stratified N of the Indiana reports (seed 0);
``--write`` replaces "## Real data: Bonn EEG" / "## Real data: COVID chest X-rays" /
"## Real data: Indiana chest X-ray reports" in docs/BENCHMARKS.md (only the sections run).
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
from typing import Callable

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT = REPO.parent / "shared" / "realdata"
BONN_HEADING = "## Real data: Bonn EEG"
CXR_HEADING = "## Real data: COVID chest X-rays"
INDIANA_HEADING = "## Real data: Indiana chest X-ray reports"
INDIANA_CSV = "notes/indiana_reports_subset.csv"
NOTE_DATE = "2014-01-01"
"""The one date given to every Indiana report (the set has none; the notes reader requires one)."""
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
    t_encode, encoded = timed(encode, EncodeConfig(home=home, modalities=(modality,), seed=settings.seed,
                                                   note_encoder=settings.note_encoder,
                                                   note_model_cache=settings.note_model_cache_dir))
    keys = as_encoder_keys(dict(encoded.encoder_keys))
    config = TrainStageConfig(home=home, encoder_keys=keys, strategy="frozen", seed=settings.seed)
    t_train, trained = timed(train, config)
    evaluation = evaluate(EvaluateConfig(home=home, model_dir=trained.model_dir, encoder_keys=keys,
                                         seed=settings.seed, n_boot=n_boot))
    held_out = held_out_set(home, keys, 0, settings.seed, HELD_OUT_FRACTION)
    return {"report": report, "evaluation": evaluation, "held_out": held_out, "training": trained.study.training,
            "p_model": TrainedModel.load(trained.model_dir).predict_risk(held_out), "secret": secret,
            "ingest_s": t_ingest, "encode_s": t_encode, "train_s": t_train}


Baseline = Callable[[list[str], list[str]], np.ndarray]
"""Fits on the training ids (the benchmark's own) and returns risks for the held-out ids, in order."""


def feature_baseline(features: dict[str, np.ndarray], labels: dict[str, int]) -> Baseline:
    """The standardised logistic regression of :func:`baseline_risk` on one fixed feature vector per patient."""
    def fit_score(train_ids: list[str], test_ids: list[str]) -> np.ndarray:
        return baseline_risk(np.stack([features[i] for i in train_ids]), np.asarray([labels[i] for i in train_ids]),
                             np.stack([features[i] for i in test_ids]))
    return fit_score


def compare(run: dict, baseline: Baseline, labels: dict[str, int], modality: str, n_items: int,
            n_boot: int) -> dict:
    """clinfuse's held-out figures beside the baseline's on the same patients (ids: the benchmark's own)."""
    from ingestion.deid.pseudonym import pseudonymise
    from benchmarks.realdata_trust import trust_figures
    from models.evaluation.metrics import MetricCI, bootstrap_metrics, paired_auroc_difference

    original = {pseudonymise(pid, run["secret"]): pid for pid in labels}
    train_ids = [original[p] for p in run["training"]]
    test_ids = [original[p] for p in run["held_out"].patient_ids]
    y_test = np.asarray(run["held_out"].labels, int)
    assert [labels[i] for i in test_ids] == y_test.tolist(), "held-out labels differ from the cohort table"
    p_model = run["p_model"]
    t_base, p_base = timed(baseline, train_ids, test_ids)
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
        "ingest_s": run["ingest_s"], "encode_s": run["encode_s"], "train_s": run["train_s"], "baseline_s": t_base,
        "ingest_s_per_item": run["ingest_s"] / n_items, "encode_s_per_item": run["encode_s"] / max(ok, 1),
        "trust": trust_figures(m), "load": os.getloadavg(),
    }


def run_bonn(realdata: Path, work: Path, subset: int = 0, n_boot: int = 1000) -> dict:
    """Convert, ingest, encode, train, evaluate; the baseline on the same split. Returns the figures."""
    segments = bonn_segments(realdata, subset)
    t_convert, cohort = timed(convert_bonn, segments, work / "source")
    run = run_stages(work / "source", cohort, work / "home", "eeg", n_boot)
    features = {s.patient: band_power_features(read_segment(s.path)) for s in segments}
    labels = {s.patient: s.label for s in segments}
    result = compare(run, feature_baseline(features, labels), labels, "eeg", len(segments), n_boot)
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


def indiana_table(realdata: Path, subset: int = 0) -> pd.DataFrame:
    """The reports with text: patient (``IU<uid>``), text (findings + impression), label (abnormal = 1).

    ``subset`` > 0 keeps a stratified ``subset`` of them (seed 0), in file order.
    """
    df = pd.read_csv(realdata / INDIANA_CSV, dtype=str, keep_default_na=False)
    text = (df["findings"].str.strip() + " " + df["impression"].str.strip()).str.strip()
    table = pd.DataFrame({"patient_id": "IU" + df["uid"].str.strip(), "text": text,
                          "label": (df["Problems"].str.strip() != "normal").astype(int)})
    table = table[table["text"].str.len() > 0].reset_index(drop=True)
    if subset and subset < len(table):
        from sklearn.model_selection import train_test_split

        keep, _ = train_test_split(table.index.to_numpy(), train_size=subset, stratify=table["label"],
                                   random_state=0)
        table = table.loc[np.sort(keep)].reset_index(drop=True)
    return table


def convert_indiana(table: pd.DataFrame, source: Path) -> Path:
    """``notes/indiana_reports.csv`` (one note per row) and ``cohort.csv`` under ``source``; returns the cohort."""
    (source / "notes").mkdir(parents=True, exist_ok=True)
    notes = table[["patient_id", "text"]].assign(date=NOTE_DATE, note_type="radiology report")
    notes[["patient_id", "date", "note_type", "text"]].to_csv(source / "notes" / "indiana_reports.csv", index=False)
    cohort = source / "cohort.csv"
    table[["patient_id", "label"]].to_csv(cohort, index=False)
    return cohort


def tfidf_baseline(texts: dict[str, str], labels: dict[str, int]) -> Baseline:
    """TF-IDF (1-2 grams) + logistic regression, fitted on the training patients' report texts only."""
    def fit_score(train_ids: list[str], test_ids: list[str]) -> np.ndarray:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        x_train = vec.fit_transform([texts[i] for i in train_ids])
        clf = LogisticRegression(C=4.0, max_iter=2000).fit(x_train, [labels[i] for i in train_ids])
        return clf.predict_proba(vec.transform([texts[i] for i in test_ids]))[:, 1]
    return fit_score


def run_indiana(realdata: Path, work: Path, subset: int = 0, n_boot: int = 1000) -> dict:
    """Normal vs abnormal report: the same stages on the ``note`` modality, and TF-IDF + LR on the same split."""
    table = indiana_table(realdata, subset)
    t_convert, cohort = timed(convert_indiana, table, work / "source")
    run = run_stages(work / "source", cohort, work / "home", "note", n_boot)
    labels = dict(zip(table["patient_id"], table["label"].astype(int)))
    baseline = tfidf_baseline(dict(zip(table["patient_id"], table["text"])), labels)
    result = compare(run, baseline, labels, "note", len(table), n_boot)
    n_all = len(pd.read_csv(realdata / INDIANA_CSV, usecols=["uid"]))
    return {**result, "convert_s": t_convert, "n_reports_in_file": n_all, "subset": subset}


def results_markdown(r: dict, clinfuse: str, baseline: str, positive: str, unit: str) -> list[str]:
    """Ingest tally, split, the two-row table, the paired difference and verdict, what the model says beside
    its risk, and the time per item."""
    from benchmarks import realdata_trust

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
        realdata_trust.INTRO,
        "",
        *realdata_trust.table([(clinfuse, r["trust"])]),
        "",
        f"Time (2 shared CPU cores, load {r['load'][0]:.1f} at the end): ingest {r['ingest_s']:.1f} s "
        f"({r['ingest_s_per_item']:.3f} s per {unit}), encode {r['encode_s']:.1f} s "
        f"({r['encode_s_per_item']:.3f} s per {unit}), train {r['train_s']:.1f} s"
        + (f"; the baseline (fit + score) {r['baseline_s']:.1f} s" if "baseline_s" in r else "")
        + f"; building the source folder {r['convert_s']:.1f} s (the benchmark's).",
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
    runs = [r["clinfuse_auroc"], *reruns]
    if r["met"] and all(a < r["baseline_auroc"] for a in runs):
        notes += (f" The target is met only through the interval's width: clinfuse's held-out AUROC is below the "
                  f"baseline's in every run ({len(runs)} of {len(runs)}).")
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


def indiana_markdown(r: dict) -> str:
    """The Indiana reports section's body."""
    chosen = (f"a stratified subset of {r['n_items']} (seed 0) of the reports with text" if r["subset"] else
              f"the {r['n_items']} reports with text")
    intro = (
        "Produced by `benchmarks/bench_realdata.py --write`. Indiana University chest X-ray reports (Open-i, "
        f"Demner-Fushman et al. 2016): {chosen}, of the {r['n_reports_in_file']} rows of "
        "`indiana_reports_subset.csv` (a report with neither findings nor impression is left out); one report "
        "per patient. Text: findings + impression; label abnormal = `Problems` is not \"normal\" (the MeSH "
        "coding of the report). The source folder holds one notes table (`patient_id, date, note_type, text`; "
        "every report gets one fixed date, the set has none) and the cohort table; then the same stages as "
        "the Bonn EEG and COVID X-ray sections on the `note` modality: ingest (PHI scrub, sections, negated "
        "findings), encode (the "
        "packaged MiniLM sentence encoder, int8, + the findings vector, as `clinfuse encode` runs it), train "
        "(frozen encoder, default fusion head and epochs, nothing tuned), evaluate on the study's held-out "
        "patients. Baseline: TF-IDF (1-2 grams, min_df 2, sublinear tf) + logistic regression (C = 4) on the "
        "report text, fitted on the same training patients, scored on the same held-out patients. The label "
        "is coded from the report itself, so both read the answer's wording: the task measures how well each "
        "path carries the text, not a diagnosis.")
    return "\n".join([intro, "", *results_markdown(r, "clinfuse (note encoder, frozen, fusion head)",
                                                    "TF-IDF + logistic regression", "abnormal", "report")])


SECTIONS = {"bonn": (BONN_HEADING, "eeg_bonn/labels.csv"), "cxr": (CXR_HEADING, "cxr_covid/metadata.csv"),
            "indiana": (INDIANA_HEADING, INDIANA_CSV),
            "ptbxl": ("## Real data: PTB-XL ECG + reports", "ecg_ptbxl/ptbxl_database.csv")}
RUNNERS = {"bonn": lambda a, work: run_bonn(a.realdata, work, a.subset, a.n_boot),
           "cxr": lambda a, work: _cxr().run(a.realdata, work, a.splits),
           "indiana": lambda a, work: run_indiana(a.realdata, work, a.notes_subset, a.n_boot),
           "ptbxl": lambda a, work: _ptbxl().run(a.realdata, work, a.n_boot, a.subset)}
MARKDOWN = {"bonn": bonn_markdown, "cxr": lambda r: _cxr().markdown(r), "indiana": indiana_markdown,
            "ptbxl": lambda r: _ptbxl().markdown(r)}


def _cxr():
    """The COVID X-ray + notes section (its own module: arms and repeated study splits)."""
    from benchmarks import realdata_cxr

    return realdata_cxr


def _ptbxl():
    """The PTB-XL ECG + reports section (its own module: ECG, report and fused arms, ECG baseline)."""
    from benchmarks import realdata_ptbxl

    return realdata_ptbxl


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--realdata", type=Path, default=DEFAULT)
    ap.add_argument("--sections", default="bonn,cxr,indiana", help="comma-separated: bonn, cxr, indiana, ptbxl")
    ap.add_argument("--subset", type=int, default=0, help="Bonn: first N segments of each set (0: all 250)")
    ap.add_argument("--notes-subset", type=int, default=0,
                    help="Indiana: a stratified N of the reports (0: all); stated in the section")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--reruns", type=int, default=1, help="extra fresh-home runs per section (run-to-run spread)")
    ap.add_argument("--splits", type=int, default=8, help="cxr: study splits (seeds 7, 8, ...) per arm")
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
        for _ in range(1 if name == "cxr" else 1 + args.reruns):  # cxr: its splits replace reruns
            with tempfile.TemporaryDirectory(prefix=f"clinfuse-{name}-") as tmp:
                runs.append(RUNNERS[name](args, Path(tmp)))
        result = {**runs[0], "rerun_clinfuse_auroc": [r["clinfuse_auroc"] for r in runs[1:]]}
        markdown = MARKDOWN[name](result)
        figures[name] = result
        print(f"{heading}\n\n{markdown}\n")
        if args.write:
            from benchmarks.markdown_section import write_section

            write_section(heading, markdown)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
