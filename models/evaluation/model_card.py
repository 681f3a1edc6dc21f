"""The model card of one evaluated model: what it was tested on, how well, for whom, and what it is not for.

Why a card of its own beside ``report.md``: a held-out AUROC of 0.62 on 46
patients reads like a result unless something says plainly that it is not one.
The card states the data (patients per split, label balance, modality
availability, where the labels came from), the ROC and reliability plots, AUROC
per subgroup (sex, age band, site, modality availability pattern) with bootstrap
intervals and ``too few`` where a subgroup cannot support one, calibration,
abstention, how many candidates were compared on the same held-out patients, a
fixed statement of intended use and limitations, and a banner when the evidence
is too thin for any clinical claim.

Written as ``model_card.json`` (the numbers, which the dashboard reads),
``model_card.md`` (rendered from that JSON) and ``roc.png``; the reliability
diagram is the report's ``reliability.png`` in the same folder. Plain library
code: the number of candidates is filled in later by the caller that can see the
model registry (:func:`record_candidates`).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.features.feature_set import FeatureSet
from models.evaluation.metrics import bootstrap_metrics
from models.evaluation.report import md_table, plot_roc
from models.model_card_text import fmt_ci, fmt_pct, fmt_value, candidates_text, splits_table, subgroup_table

CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"
ROC_PNG = "roc.png"
RELIABILITY_PNG = "reliability.png"

AUROC_LOW_BAR = 0.75
"""Lower bound of the held-out AUROC's 95 % interval below which the card says "Not validated"."""
MIN_HELD_OUT = 200
"""Held-out patients below which the card says "Not validated", whatever the AUROC."""
MIN_SUBGROUP = 20
"""Patients a subgroup needs before its AUROC is reported ..."""
MIN_PER_CLASS = 5
"""... and positives and negatives each; otherwise the row says "too few"."""
BANNER = "Not validated for clinical use"
DEMOGRAPHICS = ("sex", "age", "site")
"""Cohort-table columns the subgroup table looks for; the card names the ones a cohort lacks."""
AGE_BANDS = ((0, 40, "<40"), (40, 60, "40-59"), (60, 75, "60-74"), (75, 200, "75+"))

INTENDED_USE = (
    "Research and engineering use only: to exercise the clinfuse pipeline (ingestion, encoding, multimodal "
    "fusion with missing modalities, calibration, abstention) and to compare modelling choices on held-out "
    "patients. It is not a medical device, has not been prospectively or externally validated, and must not "
    "inform the diagnosis or treatment of any patient.")
LIMITATIONS = (
    "Evaluated on one held-out split of one cohort; the phantom/demo cohorts are synthetic data drawn from a "
    "known latent model, so its numbers say how the software behaves, not how a disease presents.",
    "Intervals are patient-bootstrap percentiles on the held-out patients: they cover sampling noise of this "
    "split, not shifts in scanner, site, population or prevalence.",
    "Subgroup rows with few patients are reported as \"too few\"; an absent demographic column means no "
    "subgroup check at all for it.",
    "Training labels are the cohort table's or a clinician's confirmed outcome (see label provenance); held-out "
    "labels are the cohort table's only, since a confirmed outcome is entered beside the model's risk; label "
    "noise is not modelled.",
    "When several candidates were compared on the same held-out patients, the best one's held-out AUROC is "
    "optimistically biased by that selection.",
)


def validation_banner(auroc_low: float | None, n_held_out: int, bar: float = AUROC_LOW_BAR,
                      min_held_out: int = MIN_HELD_OUT) -> str | None:
    """``BANNER`` with its reasons when the held-out evidence is too weak, else None.

    The rule: the lower bound of the held-out AUROC's 95 % interval is below ``bar``
    (or undefined), or fewer than ``min_held_out`` patients were held out.
    """
    reasons = []
    if auroc_low is None or not math.isfinite(auroc_low):
        reasons.append("the held-out AUROC has no interval")
    elif auroc_low < bar:
        reasons.append(f"the held-out AUROC's 95 % interval reaches down to {auroc_low:.3f}, below {bar:.2f}")
    if n_held_out < min_held_out:
        reasons.append(f"only {n_held_out} patients were held out (fewer than {min_held_out})")
    return f"{BANNER}: {'; '.join(reasons)}." if reasons else None


def held_out_key(patient_ids: Sequence[str], labels: np.ndarray | None) -> str:
    """SHA-256 of the held-out pseudonyms and labels (sorted): two evaluations with the same key were
    scored on the same patients and outcomes, whatever encoders made their features."""
    pairs = sorted(zip(map(str, patient_ids), [] if labels is None else np.asarray(labels).astype(int).tolist()))
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()


def age_band(age: float) -> str:
    """The age band of ``age`` in years ("unknown" when missing)."""
    if age is None or not math.isfinite(float(age)):
        return "unknown"
    return next((name for lo, hi, name in AGE_BANDS if lo <= float(age) < hi), "unknown")


def availability_pattern(mask: np.ndarray, modalities: Sequence[str]) -> list[str]:
    """Per patient, the modalities present joined by "+" ("none" when none)."""
    return ["+".join(m for m, on in zip(modalities, row) if on) or "none" for row in np.asarray(mask, bool)]


def split_summary(labels: np.ndarray, mask: np.ndarray, modalities: Sequence[str]) -> dict[str, Any]:
    """Patients, positives, positive share and per-modality availability share of one split."""
    y = np.asarray(labels).astype(int)
    m = np.asarray(mask, bool)
    n = int(len(y))
    return {"n": n, "positives": int(y.sum()), "positive_rate": float(y.mean()) if n else None,
            "availability": {mod: (float(m[:, i].mean()) if n else None) for i, mod in enumerate(modalities)}}


def _level_order(level: object) -> tuple[int, int, str]:
    """Age bands in age order, "unknown"/"none" last, other levels alphabetically."""
    bands = [name for _, _, name in AGE_BANDS]
    text = str(level)
    return (text in ("unknown", "none"), bands.index(text) if text in bands else len(bands), text)


def subgroup_rows(labels: np.ndarray, risk: np.ndarray, groups: Mapping[str, Sequence[str]], n_boot: int,
                  seed: int) -> list[dict[str, Any]]:
    """AUROC with a patient-bootstrap 95 % interval per level of each grouping; "too few" rows have none.

    A level is reported only with at least ``MIN_SUBGROUP`` patients and ``MIN_PER_CLASS``
    of each class: below that the interval is too wide (or undefined) to mean anything.
    """
    y, p = np.asarray(labels).astype(int), np.asarray(risk, float)
    rows = []
    for attribute, values in groups.items():
        values = np.asarray(values, dtype=object)
        for level in sorted(set(values), key=_level_order):
            rows_in = values == level
            yi, pi = y[rows_in], p[rows_in]
            n, pos = int(rows_in.sum()), int(yi.sum())
            row = {"attribute": attribute, "group": str(level), "n": n, "positives": pos,
                   "auroc": None, "auroc_low": None, "auroc_high": None, "status": "too few"}
            if n >= MIN_SUBGROUP and min(pos, n - pos) >= MIN_PER_CLASS:
                ci = bootstrap_metrics(yi, pi, n_boot, seed)["auroc"]
                row.update(auroc=ci.value, auroc_low=ci.low, auroc_high=ci.high, status="ok")
            rows.append(row)
    return rows


def subgroups(demographics: pd.DataFrame | None, mask: np.ndarray, modalities: Sequence[str]
              ) -> tuple[dict[str, list[str]], list[str]]:
    """``({attribute: level per patient}, absent demographic columns)`` for the held-out patients.

    ``demographics`` has one row per held-out patient in the same order (or is None).
    """
    groups: dict[str, list[str]] = {}
    absent = []
    for column in DEMOGRAPHICS:
        if demographics is None or column not in demographics.columns or demographics[column].isna().all():
            absent.append(column)
            continue
        values = demographics[column]
        if column == "age":
            groups["age band"] = [age_band(v) for v in pd.to_numeric(values, errors="coerce")]
        else:
            groups[column] = ["unknown" if pd.isna(v) else str(v).strip() for v in values]
    complete = np.asarray(mask, bool).all(1)
    groups["availability"] = ["all modalities" if c else "some missing" for c in complete]
    groups["modalities present"] = availability_pattern(mask, modalities)
    return groups, absent


def _num(metrics: Mapping[str, float], key: str) -> float | None:
    value = metrics.get(key)
    return float(value) if value is not None and math.isfinite(float(value)) else None


def build_card(*, title: str, config: Mapping[str, Any], metrics: Mapping[str, float], labels: np.ndarray,
               risk: np.ndarray, mask: np.ndarray, modalities: Sequence[str], splits: Mapping[str, dict],
               label_provenance: Mapping[str, Any], demographics: pd.DataFrame | None, held_out_sha256: str,
               n_boot: int, seed: int) -> dict[str, Any]:
    """Every number of the card as JSON-ready data (the dashboard and :func:`render_markdown` read this)."""
    groups, absent = subgroups(demographics, mask, modalities)
    n = int(len(labels))
    return {
        "title": title,
        "config": {k: str(v) for k, v in config.items()},
        "banner": validation_banner(_num(metrics, "auroc_low"), n),
        "banner_rule": {"auroc_low_bar": AUROC_LOW_BAR, "min_held_out": MIN_HELD_OUT},
        "held_out_sha256": held_out_sha256,
        "data": {"splits": dict(splits), "label_provenance": dict(label_provenance), "modalities": list(modalities)},
        "performance": {k: _num(metrics, k) for k in ("auroc", "auroc_low", "auroc_high", "auprc", "auprc_low",
                                                       "auprc_high", "brier", "oracle_auroc", "auroc_over_oracle")},
        "calibration": {k: _num(metrics, k) for k in ("ece", "ece_low", "ece_high", "ece_uncalibrated",
                                                       "temperature", "interval_coverage")},
        "abstention": {"abstain_rate": _num(metrics, "abstain_rate"),
                       "answered_auroc": _num(metrics, "auroc_not_abstained")},
        "subgroups": subgroup_rows(labels, risk, groups, n_boot, seed),
        "subgroup_rule": {"min_patients": MIN_SUBGROUP, "min_per_class": MIN_PER_CLASS},
        "demographics_absent": absent,
        "candidates": {"count": None, "how": "not counted: this evaluation was not compared in a model registry"},
        "intended_use": INTENDED_USE,
        "limitations": list(LIMITATIONS),
        "plots": {"roc": ROC_PNG, "reliability": RELIABILITY_PNG},
    }


def write_card_for_evaluation(out: Path, *, title: str, config: Mapping[str, Any], metrics: Mapping[str, float],
                              train: FeatureSet, held_out: FeatureSet, risk: np.ndarray,
                              demographics: pd.DataFrame | None, label_provenance: Mapping[str, Any],
                              n_boot: int, seed: int) -> Path:
    """The card of a model evaluated on ``held_out`` after training on ``train``; returns ``model_card.md``.

    ``demographics`` is indexed by patient id (cohort-table columns; rows for other patients are ignored).
    """
    rows = None if demographics is None else demographics.reindex(list(held_out.patient_ids))
    card = build_card(
        title=title, config=config, metrics=metrics, labels=np.asarray(held_out.labels), risk=risk,
        mask=held_out.mask, modalities=held_out.modalities,
        splits={"training": split_summary(np.asarray(train.labels), train.mask, train.modalities),
                "held-out": split_summary(np.asarray(held_out.labels), held_out.mask, held_out.modalities)},
        label_provenance=label_provenance, demographics=rows, held_out_sha256=held_out_key(held_out.patient_ids, held_out.labels),
        n_boot=n_boot, seed=seed)
    return write_model_card(out, card, np.asarray(held_out.labels), risk)


def write_stage_card(config: Any, model: Any, features: FeatureSet, held_out: FeatureSet, answers: pd.DataFrame | None,
                     result: Mapping[str, Any]) -> Path:
    """The evaluate stage's card: ``config`` is its ``EvaluateConfig`` (home, synthetic, review labels, n_boot,
    seed), ``features`` every labelled patient, ``result`` what ``evaluate_model`` returned.

    Demographics come from the home's cohort table (a synthetic cohort: its answers table). Every held-out
    label is the cohort table's; provenance also counts the held-out patients with a clinician-confirmed
    outcome, which the report compares with the model apart from the metrics (never used as their label).
    """
    held = set(held_out.patient_ids)
    train = features.subset(np.array([p not in held for p in features.patient_ids], dtype=bool))
    if config.synthetic:
        demographics, provenance = answers, {"synthetic cohort (generator's latent model)": len(held_out)}
    else:
        from ingestion.cohort import load_cohort
        from ingestion.home_layout import HomeLayout

        demographics = load_cohort(HomeLayout.at(config.home).cohort_path)
        reviewed = dict(config.review_labels)
        n_reviewed = sum(p in reviewed for p in held_out.patient_ids)
        provenance = {"cohort table": len(held_out), "clinician-confirmed, agreement only": n_reviewed}
    table = (None if demographics is None or "patient_id" not in demographics.columns
             else demographics.drop_duplicates("patient_id").set_index("patient_id"))
    mc = model.config
    return write_card_for_evaluation(
        Path(result["out_dir"]), title=f"{mc.fusion} fusion, {mc.impute} imputation ({Path(config.model_dir).name})",
        config=mc.as_dict(), metrics=result["metrics"], train=train, held_out=held_out,
        risk=result["predictions"]["risk"].to_numpy(), demographics=table, label_provenance=provenance,
        n_boot=config.n_boot, seed=config.seed)


def render_markdown(card: Mapping[str, Any]) -> str:
    """``model_card.md`` from the card's JSON (no number here that the JSON lacks)."""
    perf, cal, ab = card["performance"], card["calibration"], card["abstention"]
    rule = card["subgroup_rule"]
    prov = ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in card["data"]["label_provenance"].items())
    n_held_out = card["data"]["splits"].get("held-out", {}).get("n", "?")
    text = [f"# Model card: {card['title']}", ""]
    if card["banner"]:
        text += [f"> **{card['banner']}**", ""]
    text += ["## Intended use", "", card["intended_use"], "",
             "## Data", "", md_table(splits_table(card)), "", f"Label provenance (held-out patients): {prov}.", "",
             "## Performance on the held-out patients", "",
             f"AUROC {fmt_ci(perf, 'auroc')} on {n_held_out} patients (95 % patient bootstrap); "
             f"AUPRC {fmt_ci(perf, 'auprc')}; Brier {fmt_value(perf['brier'])}."
             + (f" Best possible (oracle) AUROC on the same patients {fmt_value(perf['oracle_auroc'])}; the model "
                f"reaches {fmt_pct(perf['auroc_over_oracle'])} of it." if perf.get("oracle_auroc") is not None else ""),
             "", candidates_text(card), "", f"![ROC]({card['plots']['roc']})", "",
             "## Calibration and abstention", "",
             f"ECE {fmt_ci(cal, 'ece')} calibrated; {fmt_value(cal['ece_uncalibrated'])} uncalibrated. "
             f"Abstained on {fmt_pct(ab['abstain_rate'])} of held-out patients; AUROC of the answered patients "
             f"{fmt_value(ab['answered_auroc'])}.", "", f"![reliability]({card['plots']['reliability']})", "",
             "## Subgroups", "",
             f"AUROC per subgroup with 95 % patient-bootstrap intervals; \"too few\" below {rule['min_patients']} "
             f"patients or {rule['min_per_class']} of either class.", "", md_table(subgroup_table(card)), ""]
    if card["demographics_absent"]:
        text += [f"Not in the cohort table, so not checked: {', '.join(card['demographics_absent'])}.", ""]
    text += ["## Limitations", "", *[f"- {line}" for line in card["limitations"]], ""]
    return "\n".join(text)


def json_ready(value: Any) -> Any:
    """``value`` with every non-finite float (and NumPy scalar) made JSON-safe: NaN/inf become None."""
    if isinstance(value, Mapping):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_model_card(out: Path, card: Mapping[str, Any], labels: np.ndarray, risk: np.ndarray) -> Path:
    """``model_card.json``, ``model_card.md`` and ``roc.png`` into ``out``; returns the Markdown's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_roc(np.asarray(labels).astype(int), np.asarray(risk, float), out / ROC_PNG,
             f"held-out AUROC {fmt_ci(card['performance'], 'auroc')}")
    card = json_ready(card)
    (out / CARD_JSON).write_text(json.dumps(card, indent=2, allow_nan=False))
    path = out / CARD_MD
    path.write_text(render_markdown(card))
    return path


def read_card(out: Path) -> dict[str, Any]:
    """The card's JSON from a report folder."""
    return json.loads((Path(out) / CARD_JSON).read_text())


def record_candidates(out: Path, count: int, how: str) -> dict[str, Any]:
    """Set how many candidates were compared on the card's held-out patients; rewrite JSON and Markdown."""
    card = read_card(out)
    card["candidates"] = {"count": int(count), "how": how}
    (Path(out) / CARD_JSON).write_text(json.dumps(card, indent=2, allow_nan=False))
    (Path(out) / CARD_MD).write_text(render_markdown(card))
    return card
