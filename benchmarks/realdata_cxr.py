"""COVID chest X-rays + clinical notes through the user's path, over repeated study splits, beside simple baselines.

Run by ``benchmarks/bench_realdata.py --sections cxr``. Why repeated splits: the set has 71 patients; the
study's 20 % held-out split holds about 16, of whom 2-5 are not COVID-19, so one split's AUROC moves by
±0.15 with the split alone (LR on the same embeddings: 0.25-0.91 over 40 split seeds). Each split here is
the study a user gets with ``clinfuse train --seed S``: the stage functions are called with ``seed=S``
(the split is the product's own keyed hash, never rebuilt here), and every baseline is fitted on that
split's training patients and scored on its held-out patients. The summary is the mean over splits and
the mean paired difference with the corrected resampled t interval of Nadeau & Bengio (2003): held-out
sets of repeated splits overlap, so the naive standard error of the mean is too small by the factor
``1/R + n_test/n_train`` on the variance.

Arms, each through ingest (once), encode (once: X-ray encoder and the packaged MiniLM note encoder),
then train (frozen strategy, default head and epochs) and evaluate per split:

* ``xray``: the X-ray embeddings only; baseline grey-level statistics + histogram + LR;
* ``note``: the notes (``clinical_notes``, scrubbed by ingestion) only; baseline TF-IDF + LR;
* ``fused``: both; baseline the two baselines' features concatenated + LR.

Beside each, a standardised logistic regression (C = 1) on clinfuse's own stored embeddings of the same
training patients (issue 24 item 6: the pipeline should not lose to it).

    .venv/bin/python -m benchmarks.realdata_cxr RUN.json [--write]

re-renders (and with ``--write`` rewrites) the section from a run saved by ``bench_realdata.py --json``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from benchmarks.bench_realdata import BENCH_SECRET, NOTE_DATE, convert_cxr, cxr_table, intensity_features, timed

ARMS = {"xray": ("xray",), "note": ("note",), "fused": ("xray", "note")}
ARM_NAMES = {"xray": "X-ray", "note": "clinical notes", "fused": "X-ray + notes"}
BASELINE_NAMES = {"xray": "intensity statistics + LR", "note": "TF-IDF + LR",
                  "fused": "intensity statistics and TF-IDF concatenated + LR"}
NAMES_DISEASE = re.compile(r"covid|sars-cov|2019-ncov|coronavirus", re.IGNORECASE)
FIRST_SEED = 7
"""The default seed (``Settings.seed``): split 1 is the study a user gets without ``--seed``."""

Fit = Callable[[list[str], list[str]], np.ndarray]
"""Fits on training ids (the benchmark's own) and returns risks for the held-out ids, in order."""


def cxr_notes(realdata: Path, table: pd.DataFrame) -> dict[str, str]:
    """One text per patient: the distinct ``clinical_notes`` of the patient's X-ray rows, in file order."""
    meta = pd.read_csv(realdata / "cxr_covid" / "metadata.csv", dtype={"patientid": str})
    meta = meta[meta["filename"].isin(set(table["filename"]))]
    notes = {}
    for pid, texts in meta.groupby("patientid", sort=False)["clinical_notes"]:
        kept = [t.strip() for t in dict.fromkeys(texts.dropna()) if t.strip()]
        notes[str(pid)] = " ".join(kept)
    return notes


def convert_fused(realdata: Path, table: pd.DataFrame, notes: dict[str, str], source: Path) -> Path:
    """:func:`convert_cxr`'s images, sidecar and cohort, plus ``notes/covid_notes.csv`` (one note a patient)."""
    cohort = convert_cxr(realdata, table, source)
    (source / "notes").mkdir(parents=True, exist_ok=True)
    rows = [(pid, NOTE_DATE, "clinical notes", text) for pid, text in notes.items() if text]
    pd.DataFrame(rows, columns=["patient_id", "date", "note_type", "text"]).to_csv(
        source / "notes" / "covid_notes.csv", index=False)
    return cohort


def corrected_interval(diffs: np.ndarray, n_test: float, n_train: float, level: float = 0.95
                       ) -> tuple[float, float, float]:
    """(mean, low, high) of per-split differences: Nadeau-Bengio corrected resampled t interval."""
    from scipy.stats import t

    d = np.asarray(diffs, float)
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return (float(d.mean()) if len(d) else float("nan")), float("nan"), float("nan")
    half = t.ppf(0.5 + level / 2, len(d) - 1) * np.sqrt((1 / len(d) + n_test / n_train) * d.var(ddof=1))
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)


def lr_risk(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, c: float = 1.0) -> np.ndarray:
    """Standardised L2 logistic regression (fixed C): the simple model every arm is compared with."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler(with_mean=not hasattr(x_train, "tocsr")).fit(x_train)
    clf = LogisticRegression(C=c, max_iter=5000).fit(scaler.transform(x_train), y_train)
    return clf.predict_proba(scaler.transform(x_test))[:, 1]


def baselines(pixels: dict[str, np.ndarray], notes: dict[str, str], labels: dict[str, int]) -> dict[str, Fit]:
    """Per arm, the simple baseline fitted on one split's training ids (benchmark ids)."""
    def tfidf(train_ids: list[str], test_ids: list[str]):
        from sklearn.feature_extraction.text import TfidfVectorizer

        vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        return vec.fit_transform([notes[i] for i in train_ids]), vec.transform([notes[i] for i in test_ids])

    def y(ids: list[str]) -> np.ndarray:
        return np.asarray([labels[i] for i in ids])

    def pix(ids: list[str]) -> np.ndarray:
        return np.stack([pixels[i] for i in ids])

    def xray(tr: list[str], te: list[str]) -> np.ndarray:
        return lr_risk(pix(tr), y(tr), pix(te))

    def note(tr: list[str], te: list[str]) -> np.ndarray:
        from sklearn.linear_model import LogisticRegression

        a, b = tfidf(tr, te)
        return LogisticRegression(C=4.0, max_iter=5000).fit(a, y(tr)).predict_proba(b)[:, 1]

    def fused(tr: list[str], te: list[str]) -> np.ndarray:
        from scipy.sparse import csr_matrix, hstack
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        a, b = tfidf(tr, te)
        scale = StandardScaler().fit(pix(tr))
        # the pixel block scaled to the TF-IDF rows' unit norm, so neither block dominates by its scale alone
        k = 1.0 / np.sqrt(pix(tr).shape[1])
        xa = hstack([a, csr_matrix(scale.transform(pix(tr)) * k)]).tocsr()
        xb = hstack([b, csr_matrix(scale.transform(pix(te)) * k)]).tocsr()
        return LogisticRegression(C=4.0, max_iter=5000).fit(xa, y(tr)).predict_proba(xb)[:, 1]

    return {"xray": xray, "note": note, "fused": fused}


@dataclass(frozen=True)
class Prepared:
    """The ingested, encoded home and what the baselines read (benchmark ids)."""

    home: Path
    keys: dict
    labels: dict[str, int]
    fits: dict[str, Fit]
    report: object
    n_images: int
    n_notes: int
    named: tuple[int, int]
    """(COVID-19, other) patients whose notes name the disease (the text partly states the label)"""
    ingest_s: float
    encode_s: float
    convert_s: float


def prepare(realdata: Path, work: Path) -> Prepared:
    """Source folder, then ``ingest`` and ``encode`` (X-ray and note) once on a fresh home."""
    from flows.settings import Settings
    from ingestion.driver.ingest import ingest
    from models.stages import EncodeConfig, encode

    table = cxr_table(realdata)
    notes = cxr_notes(realdata, table)
    t_convert, cohort = timed(convert_fused, realdata, table, notes, work / "source")
    home = work / "home"
    settings = Settings(home=home, pseudonym_secret=BENCH_SECRET)
    settings.ensure_dirs()
    secret = settings.pseudonym_secret.get_secret_value()
    t_ingest, report = timed(ingest, work / "source", cohort, home, secret, settings.reader_config(), workers=2)
    t_encode, encoded = timed(encode, EncodeConfig(home=home, modalities=("xray", "note"), seed=settings.seed,
                                                   note_encoder=settings.note_encoder,
                                                   note_model_cache=settings.note_model_cache_dir))
    per_image = [intensity_features(realdata / "cxr_covid" / "images" / f) for f in table["filename"]]
    pixels = {str(pid): np.mean([per_image[i] for i in rows], axis=0)
              for pid, rows in table.groupby("patientid").indices.items()}
    labels = {str(k): int(v) for k, v in table.groupby("patientid")["label"].max().items()}
    named = [p for p, t in notes.items() if NAMES_DISEASE.search(t)]
    return Prepared(home, dict(encoded.encoder_keys), labels, baselines(pixels, notes, labels), report,
                    len(table), sum(bool(t) for t in notes.values()),
                    (sum(labels[p] for p in named), sum(1 - labels[p] for p in named)), t_ingest, t_encode, t_convert)


def arm_keys(keys: dict, arm: str) -> tuple:
    """The encoder keys of the arm's modalities (the others ``None``: trained without them)."""
    from models.features.stage_inputs import as_encoder_keys

    return as_encoder_keys({m: (k if m in ARMS[arm] else None) for m, k in keys.items()})


def run_arm(prep: Prepared, arm: str, seed: int, n_boot: int) -> dict:
    """One split (``seed``) of one arm: train + evaluate through the stages, and the same split's comparators."""
    from benchmarks.realdata_trust import trust_figures
    from ingestion.deid.pseudonym import pseudonymise
    from models.held_out import HELD_OUT_FRACTION
    from models.stages import (EvaluateConfig, TrainStageConfig, define_run_study, evaluate, stage_features,
                               train)
    from models.training.trained_model import TrainedModel

    keys = arm_keys(prep.keys, arm)
    t_train, trained = timed(train, TrainStageConfig(home=prep.home, encoder_keys=keys, seed=seed))
    evaluation = evaluate(EvaluateConfig(home=prep.home, model_dir=trained.model_dir, encoder_keys=keys, seed=seed,
                                         n_boot=n_boot))
    features = stage_features(prep.home, keys, 0, seed)
    study = define_run_study(prep.home, features, 0, seed, HELD_OUT_FRACTION)
    train_fs, held = study.training_features(features), study.held_out_features(features)
    original = {pseudonymise(pid, BENCH_SECRET): pid for pid in prep.labels}
    y = np.asarray(held.labels, int)
    assert [prep.labels[original[p]] for p in held.patient_ids] == y.tolist(), "held-out labels differ"
    emb = lambda fs: np.hstack([fs.embeddings[m] for m in ARMS[arm]])  # noqa: E731
    risks = {
        "clinfuse": TrainedModel.load(trained.model_dir).predict_risk(held),
        "lr_embeddings": lr_risk(emb(train_fs), np.asarray(train_fs.labels, int), emb(held)),
        "baseline": prep.fits[arm]([original[p] for p in train_fs.patient_ids],
                                   [original[p] for p in held.patient_ids]),
    }
    selection = TrainedModel.load(trained.model_dir).metrics.get("selection", {})
    return {"seed": seed, "y": y, "risks": risks, "evaluate_auroc": evaluation.metrics["auroc"],
            "n_train": len(train_fs), "n_held_out": len(held), "train_s": t_train,
            "head": selection.get("head", "network"), "epochs": selection.get("epochs"),
            "trust": trust_figures(evaluation.metrics)}


def summarise(splits: list[dict]) -> dict:
    """Per model: AUROC/ECE per split, their means; per comparator: the paired difference's corrected interval."""
    from benchmarks.realdata_trust import pooled
    from models.evaluation.metrics import binary_metrics

    usable = [s for s in splits if len(np.unique(s["y"])) == 2]
    per = {name: [binary_metrics(s["y"], s["risks"][name]) for s in usable] for name in splits[0]["risks"]}
    auroc = {name: np.array([m["auroc"] for m in rows]) for name, rows in per.items()}
    ece = {name: np.array([m["ece"] for m in rows]) for name, rows in per.items()}
    n_test = float(np.mean([s["n_held_out"] for s in usable]))
    n_train = float(np.mean([s["n_train"] for s in usable]))
    diff = {other: corrected_interval(auroc["clinfuse"] - auroc[other], n_test, n_train)
            for other in ("baseline", "lr_embeddings")}
    return {"n_splits": len(splits), "n_usable": len(usable), "auroc": auroc, "ece": ece, "diff": diff,
            "n_test": n_test, "n_train": n_train,
            "minority": [int(min(s["y"].sum(), len(s["y"]) - s["y"].sum())) for s in usable],
            "wins": {o: int(np.sum(auroc["clinfuse"] >= auroc[o])) for o in ("baseline", "lr_embeddings")},
            "heads": [s["head"] for s in usable], "trust": pooled([s["trust"] for s in splits]), "train_s": float(np.mean([s["train_s"] for s in splits])),
            "first": splits[0]}


def run(realdata: Path, work: Path, n_splits: int = 10, n_boot: int = 200,
        arms: tuple[str, ...] = tuple(ARMS)) -> dict:
    """Prepare once; every arm on ``n_splits`` study splits (seeds 7, 8, ...). Returns the figures."""
    prep = prepare(realdata, work)
    out = {}
    for arm in arms:
        out[arm] = summarise([run_arm(prep, arm, FIRST_SEED + k, n_boot) for k in range(n_splits)])
    r = prep.report
    ok = {m: int(r.counts.get(m, {}).get("ok", 0)) for m in ("xray", "note")}
    return {"arms": out, "n_images": prep.n_images, "n_notes": prep.n_notes, "n_patients": len(prep.labels),
            "n_positive": int(sum(prep.labels.values())), "ok": ok, "n_quarantined": r.n_quarantined,
            "quarantine_reasons": sorted({q.reason[:160] for q in r.quarantined}),
            "lost": prep.n_images + prep.n_notes - sum(ok.values()) - r.n_quarantined,
            "ingest_s": prep.ingest_s, "encode_s": prep.encode_s, "convert_s": prep.convert_s,
            "n_splits": n_splits, "named": prep.named, "load": os.getloadavg()}


MODEL_ROWS = (("clinfuse", "clinfuse (frozen encoder{s}, fusion head)"),
              ("lr_embeddings", "LR on clinfuse's own embeddings"), ("baseline", None))


def _first_split(split: dict, name: str, n_boot: int = 1000) -> str:
    from models.evaluation.metrics import bootstrap_metrics

    if len(np.unique(split["y"])) < 2:
        return "n/a (one class held out)"
    ci = bootstrap_metrics(split["y"], split["risks"][name], n_boot, 0)["auroc"]
    return f"{ci.value:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def _verdict(diff: tuple[float, float, float], beat: bool) -> str:
    mean, low, high = diff
    if not np.isfinite(high):
        return "not measurable"
    if beat:
        return "**met**" if low > 0 else ("**NOT met** (ahead on average, not beyond the interval)" if mean > 0
                                          else "**NOT met**")
    return "**met**" if high >= 0 else "**NOT met**"


def markdown(r: dict) -> str:
    """The section's body, every figure from ``r``."""
    arms, R = r["arms"], r["n_splits"]
    named_pos, named_neg = r["named"]
    intro = (
        "Produced by `benchmarks/bench_realdata.py --sections cxr --write` (`benchmarks/realdata_cxr.py`). "
        f"COVID-19 image data collection (Cohen et al. 2020): the {r['n_images']} X-ray rows of `metadata.csv` "
        f"(CT rows left out) of {r['n_patients']} patients, {r['n_positive']} COVID-19 (finding starts with "
        "COVID-19 on any film) vs other pneumonias / no finding. Source folder: the PNG/JPEG files with an "
        "`images.csv` sidecar (file, patient, view), and one notes table holding each patient's distinct "
        "`clinical_notes` joined (one fixed date: the set gives years only), ingested as the `note` modality "
        "(PHI scrub, sections, negations). Ingest and encode once (the X-ray encoder; the packaged MiniLM "
        "note encoder), then per split the stage functions `clinfuse train --seed S` runs (frozen strategy, "
        "default head and epochs, nothing tuned here) and evaluate on that study's held-out patients. "
        f"**{R} study splits** (seeds {FIRST_SEED}-{FIRST_SEED + R - 1}: the product's own held-out hash, 20 %; "
        "split 1 is the default seed): one split holds out ~16 patients with 2-5 of the smaller class, and "
        "its AUROC moves by more than the gaps measured here. Every comparator is fitted on the same split's "
        "training patients and scored on its held-out patients: the baseline of each arm (grey-level "
        "statistics + 16-bin histogram per image at 256x256, averaged per patient, + standardised LR C = 1; "
        "TF-IDF 1-2 grams + LR C = 4 on the note; both blocks concatenated + LR C = 4) and a standardised LR "
        "(C = 1) on clinfuse's own stored embeddings. Differences are paired per split; their interval is the "
        "corrected resampled t interval (Nadeau & Bengio 2003), since repeated held-out sets overlap. "
        f"Caveat: the notes of {named_pos} of the {r['n_positive']} COVID-19 patients (and {named_neg} others) "
        "name the disease (COVID / SARS-CoV / coronavirus): the note arms partly read the label's wording.")
    lines = [intro, "",
             f"Ingest: {r['ok']['xray']} images and {r['ok']['note']} notes ok, {r['n_quarantined']} quarantined, "
             f"{r['lost']} lost of {r['n_images']} images and {r['n_notes']} notes."
             + "".join(f" Quarantined: {q}" for q in r["quarantine_reasons"]), "",
             f"| arm | model | split 1: held-out AUROC [95 % CI] | mean AUROC over {R} splits (SD) | mean ECE |",
             "|---|---|---|---|---|"]
    for arm, s in arms.items():
        for name, label in MODEL_ROWS:
            label = (label or BASELINE_NAMES[arm]).format(s="s" if arm == "fused" else "")
            lines.append(f"| {ARM_NAMES[arm]} | {label} | {_first_split(s['first'], name)} | "
                         f"{s['auroc'][name].mean():.3f} ({s['auroc'][name].std(ddof=1):.3f}) | "
                         f"{s['ece'][name].mean():.3f} |")
    lines += ["", "| arm | clinfuse - baseline: mean [95 % CI] | splits clinfuse >= baseline | target | "
              "clinfuse - LR on its embeddings: mean [95 % CI] | never worse than that LR | head chosen "
              "(linear / network) |", "|---|---|---|---|---|---|---|"]
    for arm, s in arms.items():
        b, e, n = s["diff"]["baseline"], s["diff"]["lr_embeddings"], s["n_usable"]
        target = "beats the baseline" if arm == "fused" else "reaches the baseline"
        lines.append(f"| {ARM_NAMES[arm]} | {b[0]:+.3f} [{b[1]:+.3f}, {b[2]:+.3f}] | {s['wins']['baseline']} of {n} "
                     f"| {target}: {_verdict(b, arm == 'fused')} | {e[0]:+.3f} [{e[1]:+.3f}, {e[2]:+.3f}] | "
                     f"{_verdict(e, False)} | {s['heads'].count('linear')} / {s['heads'].count('network')} |")
    for arm, s in arms.items():
        b, n = s["diff"]["baseline"], s["n_usable"]
        if np.isfinite(b[2]) and b[2] >= 0 and b[0] < 0 and arm != "fused":
            lines += ["", f"{ARM_NAMES[arm]}: the target is met only through the interval's width: clinfuse is "
                      f"below the baseline on average ({b[0]:+.3f}) and on {n - s['wins']['baseline']} of {n} splits."]
    from benchmarks import realdata_trust

    lines += ["", realdata_trust.INTRO + f" Pooled over the {R} splits: rates weighted by held-out patients "
              "(a patient held out by several splits counts each time), ECE and AUROCs their mean over the splits "
              "that have them.", "",
              *realdata_trust.table([(ARM_NAMES[a], s["trust"]) for a, s in arms.items()])]
    s0 = next(iter(arms.values()))
    lines += ["", f"Splits: {s0['n_train']:.0f} training and {s0['n_test']:.1f} held-out patients on average, "
              f"smaller class held out {min(s0['minority'])}-{max(s0['minority'])}; "
              f"{s0['n_usable']} of {R} splits held out both classes. Time (2 shared CPU cores, load "
              f"{r['load'][0]:.1f} at the end): ingest {r['ingest_s']:.1f} s "
              f"({r['ingest_s'] / (r['n_images'] + r['n_notes']):.3f} s per item), encode {r['encode_s']:.1f} s, "
              "train per split " + ", ".join(f"{ARM_NAMES[a]} {s['train_s']:.1f} s" for a, s in arms.items())
              + f"; building the source folder {r['convert_s']:.1f} s (the benchmark's)."]
    return "\n".join(lines)


def from_json(path: Path) -> dict:
    """A run's figures back from ``bench_realdata.py --json`` (arrays were written as their text)."""
    import json

    def arr(text: str) -> np.ndarray:
        return np.array(text.strip("[]").split(), float)

    r = json.loads(path.read_text())["cxr"]
    for s in r["arms"].values():
        s["auroc"] = {k: arr(v) for k, v in s["auroc"].items()}
        s["ece"] = {k: arr(v) for k, v in s["ece"].items()}
        s["first"]["y"] = arr(s["first"]["y"]).astype(int)
        s["first"]["risks"] = {k: arr(v) for k, v in s["first"]["risks"].items()}
    return r


def main() -> None:
    """Re-render the section from a saved run (``--json`` of bench_realdata.py); ``--write`` replaces it."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("json", type=Path)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    text = markdown(from_json(args.json))
    print(text)
    if args.write:
        from benchmarks.bench_realdata import CXR_HEADING
        from benchmarks.markdown_section import write_section

        write_section(CXR_HEADING, text)


if __name__ == "__main__":
    main()
