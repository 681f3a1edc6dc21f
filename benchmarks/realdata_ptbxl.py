"""PTB-XL 12-lead ECG + the validated report through the user's path, beside simple baselines, per modality and fused.

Run by ``benchmarks/bench_realdata.py --sections ptbxl``. The source folder a user would have: the WFDB
records (``.hea`` + ``.dat``, 100 Hz) under ``records/``, an ``ecg.csv`` sidecar mapping each record to its
PTB-XL ``patient_id``, one notes table (the ``report`` text, mostly German) and the cohort table. One record
per patient (the first by ``ecg_id``). Label: 1 when the record carries any diagnostic SCP statement other
than NORM (``scp_statements.csv``, ``diagnostic == 1``), 0 for NORM alone; a record with no diagnostic
statement is left out.

Split: the study's own held-out split (the product's keyed hash of the pseudonym, under the fixed
benchmark secret), not PTB-XL's ``strat_fold``: the stage functions choose their held-out patients
themselves and a benchmark must run what a user runs. Arms, after one ingest and one encode (ECG
encoder and the packaged MiniLM note encoder): ``ecg`` alone, ``note`` alone, ``fused`` (both), each
trained (frozen encoders, default head and epochs) and evaluated through the stages, beside a baseline
fitted on the same training patients and scored on the same held-out patients: log Welch band power per
lead + LR (ECG), TF-IDF + LR (report), both feature sets concatenated + LR (fused).
"""

from __future__ import annotations

import ast
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from benchmarks.bench_realdata import BENCH_SECRET, NOTE_DATE, baseline_risk, timed

HEADING = "## Real data: PTB-XL ECG + reports"
NEEDED = "ecg_ptbxl/ptbxl_database.csv"
ARMS = {"ecg": ("ecg",), "note": ("note",), "fused": ("ecg", "note")}
ARM_NAMES = {"ecg": "ECG", "note": "report", "fused": "ECG + report"}
BASELINE_NAMES = {"ecg": "log band power per lead + LR", "note": "TF-IDF + LR",
                  "fused": "band powers and TF-IDF concatenated + LR"}
BANDS = ((0.5, 3.0), (3.0, 8.0), (8.0, 15.0), (15.0, 25.0), (25.0, 40.0))
"""The baseline's bands (Hz), per lead, on the raw record (no clinfuse preprocessing)."""

Fit = Callable[[list[str], list[str]], np.ndarray]


def ptbxl_table(realdata: Path) -> pd.DataFrame:
    """One row per patient: record path, report, label (see the module docstring)."""
    root = realdata / "ecg_ptbxl"
    db = pd.read_csv(root / "ptbxl_database.csv").sort_values("ecg_id")
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    diagnostic = set(statements.index[statements["diagnostic"] == 1])
    codes = db["scp_codes"].map(lambda text: set(ast.literal_eval(text)) & diagnostic)
    db = db.assign(label=codes.map(lambda c: int(bool(c - {"NORM"}))), has_dx=codes.map(bool))
    db = db[db["has_dx"] & db["filename_lr"].map(lambda f: (root / f"{f}.hea").is_file())]
    db = db.drop_duplicates("patient_id", keep="first")
    db = db.assign(patient_id=db["patient_id"].astype(int).map(lambda p: f"PTBXL{p:06d}"),
                   record=db["filename_lr"].map(lambda f: root / f), text=db["report"].fillna("").str.strip())
    return db[["patient_id", "record", "text", "label", "strat_fold"]].reset_index(drop=True)


def convert(table: pd.DataFrame, source: Path) -> Path:
    """Records + ``ecg.csv`` sidecar + notes table + cohort table, as a site would export them."""
    (source / "records").mkdir(parents=True, exist_ok=True)
    (source / "notes").mkdir(parents=True, exist_ok=True)
    rows = []
    for pid, record in zip(table["patient_id"], table["record"]):
        for ext in (".hea", ".dat"):
            shutil.copyfile(record.with_suffix(ext), source / "records" / f"{record.name}{ext}")
        rows.append({"file": f"records/{record.name}.hea", "patient_id": pid})
    pd.DataFrame(rows).to_csv(source / "ecg.csv", index=False)
    notes = table[["patient_id", "text"]].assign(date=NOTE_DATE, note_type="ECG report")
    notes[["patient_id", "date", "note_type", "text"]].to_csv(source / "notes" / "ecg_reports.csv", index=False)
    cohort = source / "cohort.csv"
    table[["patient_id", "label"]].to_csv(cohort, index=False)
    return cohort


def band_features(record: Path) -> np.ndarray:
    """log10 mean Welch power per lead and band of the raw record (all its signals, header order)."""
    import wfdb
    from scipy.signal import welch

    rec = wfdb.rdrecord(str(record))
    x = np.nan_to_num(np.asarray(rec.p_signal, float).T)
    freqs, psd = welch(x - x.mean(axis=1, keepdims=True), fs=float(rec.fs), nperseg=min(256, x.shape[1]))
    return np.log10(np.stack([psd[:, (freqs >= lo) & (freqs < hi)].mean(axis=1) for lo, hi in BANDS], 1)
                    + 1e-12).reshape(-1)


def baselines(bands: dict[str, np.ndarray], texts: dict[str, str], labels: dict[str, int]) -> dict[str, Fit]:
    """The three baselines, each fitted on training ids only (TF-IDF vocabulary included)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    def tfidf(train_ids: list[str], test_ids: list[str]):
        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        return vec.fit_transform([texts[i] for i in train_ids]), vec.transform([texts[i] for i in test_ids])

    def y(ids: list[str]) -> np.ndarray:
        return np.asarray([labels[i] for i in ids])

    def ecg(train_ids: list[str], test_ids: list[str]) -> np.ndarray:
        return baseline_risk(np.stack([bands[i] for i in train_ids]), y(train_ids),
                             np.stack([bands[i] for i in test_ids]))

    def note(train_ids: list[str], test_ids: list[str]) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        x_train, x_test = tfidf(train_ids, test_ids)
        return LogisticRegression(C=4.0, max_iter=2000).fit(x_train, y(train_ids)).predict_proba(x_test)[:, 1]

    def fused(train_ids: list[str], test_ids: list[str]) -> np.ndarray:
        from scipy.sparse import csr_matrix, hstack
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        t_train, t_test = tfidf(train_ids, test_ids)
        scaler = StandardScaler().fit(np.stack([bands[i] for i in train_ids]))
        b = {n: csr_matrix(scaler.transform(np.stack([bands[i] for i in ids])) / 10.0)
             for n, ids in (("train", train_ids), ("test", test_ids))}
        clf = LogisticRegression(C=4.0, max_iter=4000).fit(hstack([t_train, b["train"]]).tocsr(), y(train_ids))
        return clf.predict_proba(hstack([t_test, b["test"]]).tocsr())[:, 1]

    return {"ecg": ecg, "note": note, "fused": fused}


@dataclass
class Prepared:
    home: Path
    keys: dict
    labels: dict[str, int]
    fits: dict[str, Fit]
    report: object
    n_items: int
    ingest_s: float
    encode_s: float
    convert_s: float


def prepare(realdata: Path, work: Path, subset: int = 0) -> Prepared:
    """Source folder, then ``ingest`` and ``encode`` (ECG and note) once on a fresh home."""
    from flows.settings import Settings
    from ingestion.driver.ingest import ingest
    from models.stages import EncodeConfig, encode

    table = ptbxl_table(realdata)
    if subset:
        keep = [g.head(max(1, subset * len(g) // len(table))) for _, g in table.groupby("label")]
        table = pd.concat(keep).sort_index().reset_index(drop=True)  # stratified: first records of each class
    t_convert, cohort = timed(convert, table, work / "source")
    home = work / "home"
    settings = Settings(home=home, pseudonym_secret=BENCH_SECRET)
    settings.ensure_dirs()
    secret = settings.pseudonym_secret.get_secret_value()
    t_ingest, report = timed(ingest, work / "source", cohort, home, secret, settings.reader_config(), workers=2)
    t_encode, encoded = timed(encode, EncodeConfig(home=home, modalities=("ecg", "note"), seed=settings.seed,
                                                   note_encoder=settings.note_encoder,
                                                   note_model_cache=settings.note_model_cache_dir))
    labels = dict(zip(table["patient_id"], table["label"].astype(int)))
    bands = {pid: band_features(rec) for pid, rec in zip(table["patient_id"], table["record"])}
    fits = baselines(bands, dict(zip(table["patient_id"], table["text"])), labels)
    return Prepared(home, dict(encoded.encoder_keys), labels, fits, report, 2 * len(table),
                    t_ingest, t_encode, t_convert)


def run_arm(prep: Prepared, arm: str, n_boot: int) -> dict:
    """Train + evaluate one arm through the stages; its baseline on the same split; paired bootstrap."""
    from benchmarks.realdata_trust import trust_figures
    from ingestion.deid.pseudonym import pseudonymise
    from models.evaluation.metrics import bootstrap_metrics, paired_auroc_difference
    from models.features.stage_inputs import as_encoder_keys
    from models.held_out import HELD_OUT_FRACTION
    from models.stages import EvaluateConfig, TrainStageConfig, define_run_study, evaluate, stage_features, train
    from models.training.trained_model import TrainedModel

    seed = 7  # Settings.seed: the study a user gets without --seed
    keys = as_encoder_keys({m: (k if m in ARMS[arm] else None) for m, k in prep.keys.items()})
    t_train, trained = timed(train, TrainStageConfig(home=prep.home, encoder_keys=keys, strategy="frozen", seed=seed))
    evaluation = evaluate(EvaluateConfig(home=prep.home, model_dir=trained.model_dir, encoder_keys=keys, seed=seed,
                                         n_boot=n_boot))
    features = stage_features(prep.home, keys, 0, seed)
    study = define_run_study(prep.home, features, 0, seed, HELD_OUT_FRACTION)
    train_fs, held = study.training_features(features), study.held_out_features(features)
    original = {pseudonymise(pid, BENCH_SECRET): pid for pid in prep.labels}
    y = np.asarray(held.labels, int)
    assert [prep.labels[original[p]] for p in held.patient_ids] == y.tolist(), "held-out labels differ"
    p_model = TrainedModel.load(trained.model_dir).predict_risk(held)
    t_base, p_base = timed(prep.fits[arm], [original[p] for p in train_fs.patient_ids],
                           [original[p] for p in held.patient_ids])
    model_ci, base_ci = bootstrap_metrics(y, p_model, n_boot, 0), bootstrap_metrics(y, p_base, n_boot, 0)
    diff = paired_auroc_difference(y, p_model, p_base, n_boot, 0)
    return {"n_train": len(train_fs), "n_held_out": len(held), "n_held_out_positive": int(y.sum()),
            "evaluate_auroc": evaluation.metrics["auroc"],
            "clinfuse": (model_ci["auroc"].value, model_ci["auroc"].low, model_ci["auroc"].high),
            "clinfuse_ece": model_ci["ece"].value,
            "baseline": (base_ci["auroc"].value, base_ci["auroc"].low, base_ci["auroc"].high),
            "baseline_ece": base_ci["ece"].value, "diff": (diff.value, diff.low, diff.high),
            "train_s": t_train, "baseline_s": t_base, "trust": trust_figures(evaluation.metrics)}


def run(realdata: Path, work: Path, n_boot: int = 1000, subset: int = 0) -> dict:
    """Prepare once; the three arms on the study split. Returns the figures."""
    prep = prepare(realdata, work, subset)
    arms = {arm: run_arm(prep, arm, n_boot) for arm in ARMS}
    r = prep.report
    ok = {m: int(r.counts.get(m, {}).get("ok", 0)) for m in ("ecg", "note")}
    return {"arms": arms, "n_patients": len(prep.labels), "n_positive": int(sum(prep.labels.values())),
            "n_items": prep.n_items, "ok": ok, "n_quarantined": r.n_quarantined,
            "quarantine_reasons": sorted({q.reason[:160] for q in r.quarantined}),
            "lost": prep.n_items - sum(ok.values()) - r.n_quarantined, "ingest_s": prep.ingest_s,
            "encode_s": prep.encode_s, "convert_s": prep.convert_s, "subset": subset,
            "clinfuse_auroc": arms["fused"]["clinfuse"][0], "load": os.getloadavg()}


def _verdict(arm: str, diff: tuple[float, float, float]) -> str:
    if arm == "fused":
        return "met (beats it)" if diff[1] > 0 else ("not met (reaches it, does not beat it)" if diff[2] >= 0
                                                     else "NOT met (below it)")
    return "met" if diff[2] >= 0 else "NOT met"


def markdown(r: dict) -> str:
    """The section body: task, tally, one table of the three arms beside their baselines, verdicts, times."""
    intro = (
        "Produced by `benchmarks/bench_realdata.py --sections ptbxl --write`. PTB-XL (Wagner et al. 2020, "
        f"CC BY 4.0): {r['n_patients']} patients, one 12-lead record each (100 Hz, 10 s, WFDB) with its "
        f"validated report (mostly German); label abnormal = any diagnostic SCP statement other than NORM "
        f"({r['n_positive']} abnormal). " + __doc__.split("\n\n")[2].replace("\n", " ") + " 95 % intervals: "
        "patient bootstrap; the difference is paired. Targets: each single modality reaches its baseline "
        "(paired interval includes or exceeds 0); fused beats its baseline (interval above 0). The report is "
        "the cardiologist's reading of this ECG, so the text arm reads the answer's wording.")
    rows = ["| arm | clinfuse held-out AUROC [95 % CI] | ECE | baseline | baseline AUROC [95 % CI] | ECE "
            "| clinfuse - baseline (paired) | target |", "|---|---|---|---|---|---|---|---|"]
    for arm, a in r["arms"].items():
        c, b, d = a["clinfuse"], a["baseline"], a["diff"]
        rows.append(f"| {ARM_NAMES[arm]} | {c[0]:.3f} [{c[1]:.3f}, {c[2]:.3f}] | {a['clinfuse_ece']:.3f} | "
                    f"{BASELINE_NAMES[arm]} | {b[0]:.3f} [{b[1]:.3f}, {b[2]:.3f}] | {a['baseline_ece']:.3f} | "
                    f"{d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}] | {_verdict(arm, d)} |")
    first = next(iter(r["arms"].values()))
    n_patients = r["n_patients"]
    tally = (f"Ingest: {r['ok']['ecg']} ECG records and {r['ok']['note']} reports ok, {r['n_quarantined']} "
             f"quarantined, {r['lost']} lost of {r['n_items']} items. Split: {first['n_train']} training, "
             f"{first['n_held_out']} held-out patients ({first['n_held_out_positive']} abnormal)."
             + "".join(f" Quarantined: {q}" for q in r["quarantine_reasons"]))
    times = (f"Time (2 shared CPU cores, load {r['load'][0]:.1f} at the end): ingest {r['ingest_s']:.1f} s "
             f"({r['ingest_s'] / r['n_items']:.3f} s per item), encode ECG + reports {r['encode_s']:.1f} s "
             f"({r['encode_s'] / r['n_items']:.3f} s per item), train "
             + ", ".join(f"{ARM_NAMES[k]} {a['train_s']:.1f} s" for k, a in r["arms"].items())
             + f"; building the source folder {r['convert_s']:.1f} s (the benchmark's)."
             + (f" Subset: {n_patients} patients (stratified), not the whole set." if r["subset"] else ""))
    from benchmarks import realdata_trust

    trust = realdata_trust.table([(ARM_NAMES[k], a["trust"]) for k, a in r["arms"].items()])
    return "\n".join([intro, "", tally, "", *rows, "", realdata_trust.INTRO, "", *trust, "", times])
