"""The model card: subgroup AUROC with bootstrap intervals, the "Not validated" banner rule, the files written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from models.evaluation import model_card as mc
from models.evaluation.metrics import bootstrap_metrics, flat
from models.simulation.phantom_features import synthetic_cohort


def _scores(n: int, signal: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    risk = 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(0, 1, n))))
    return y, risk


def test_subgroup_rows_give_the_subgroups_own_auroc_and_an_interval_around_it() -> None:
    y, risk = _scores(300, 1.0, 0)
    groups = {"sex": np.where(np.arange(300) % 2 == 0, "F", "M")}
    rows = {r["group"]: r for r in mc.subgroup_rows(y, risk, groups, n_boot=200, seed=1)}
    assert set(rows) == {"F", "M"}
    for sex, row in rows.items():
        inside = groups["sex"] == sex
        assert row["n"] == inside.sum() and row["positives"] == y[inside].sum()
        assert row["auroc"] == pytest.approx(roc_auc_score(y[inside], risk[inside]))
        assert row["auroc_low"] < row["auroc"] < row["auroc_high"]
        assert row["status"] == "ok"
    # A subgroup's interval is wider than the whole cohort's (half the patients).
    whole = bootstrap_metrics(y, risk, 200, 1)["auroc"]
    assert rows["F"]["auroc_high"] - rows["F"]["auroc_low"] > whole.high - whole.low


def test_small_or_one_class_subgroups_say_too_few() -> None:
    y, risk = _scores(120, 1.0, 2)
    site = np.array(["A"] * 100 + ["B"] * 12 + ["C"] * 8, dtype=object)
    y[100:112] = 1  # site B: one class only (and few patients)
    rows = {r["group"]: r for r in mc.subgroup_rows(y, risk, {"site": site}, n_boot=100, seed=0)}
    assert rows["A"]["status"] == "ok" and rows["A"]["auroc"] is not None
    assert rows["B"]["status"] == "too few" and rows["B"]["auroc"] is None
    assert rows["C"]["status"] == "too few" and rows["C"]["n"] == 8
    table = mc.subgroup_table({"subgroups": list(rows.values())})
    assert list(table["AUROC [95 % CI]"])[1:] == ["too few", "too few"]


def test_banner_rule_both_ways() -> None:
    assert mc.validation_banner(0.80, 250) is None
    low = mc.validation_banner(0.437, 250)
    assert low.startswith(mc.BANNER) and "0.437" in low and "0.75" in low
    small = mc.validation_banner(0.80, 46)
    assert small.startswith(mc.BANNER) and "only 46 patients" in small
    assert "0.437" in mc.validation_banner(0.437, 46) and "46" in mc.validation_banner(0.437, 46)
    assert mc.validation_banner(float("nan"), 500).startswith(mc.BANNER)
    assert mc.validation_banner(0.75, 200) is None  # the bar itself passes: "below" is strict


def test_age_bands_and_availability_patterns() -> None:
    assert [mc.age_band(a) for a in (17, 40, 59.9, 60, 74, 75, float("nan"))] == \
        ["<40", "40-59", "40-59", "60-74", "60-74", "75+", "unknown"]
    mask = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0]], bool)
    assert mc.availability_pattern(mask, ("ct", "xray", "eeg", "note")) == ["ct+xray+eeg+note", "ct+eeg", "none"]


def _card_folder(tmp_path: Path, n: int, signal: float) -> tuple[Path, dict]:
    """A card written for a synthetic cohort's last third, with a scorer of known strength."""
    cohort = synthetic_cohort(n, dim=4, missing_rate=0.3, seed=5)
    fs = cohort.features
    held = np.arange(n) >= 2 * n // 3
    train, held_out = fs.subset(~held), fs.subset(held)
    y = np.asarray(held_out.labels).astype(int)
    risk = 1 / (1 + np.exp(-(signal * (2 * y - 1) + np.random.default_rng(0).normal(0, 1, len(y)))))
    metrics = {**flat(bootstrap_metrics(y, risk, 200, 0)), "ece_uncalibrated": 0.2, "abstain_rate": 0.1,
               "auroc_not_abstained": 0.9, "n": float(len(y))}
    demographics = cohort.answers[["patient_id", "age", "sex"]].set_index("patient_id")
    path = mc.write_card_for_evaluation(
        tmp_path, title="early fusion, zero imputation (test)", config={"fusion": "early"}, metrics=metrics,
        train=train, held_out=held_out, risk=risk, demographics=demographics,
        label_provenance={"cohort table": len(y), "clinician review": 0}, n_boot=100, seed=0)
    return path, metrics


def test_card_files_written_with_banner_subgroups_and_absent_columns(tmp_path: Path) -> None:
    path, metrics = _card_folder(tmp_path, 150, 0.4)
    card = json.loads((tmp_path / mc.CARD_JSON).read_text())
    assert card["banner"].startswith(mc.BANNER)  # 50 held-out patients
    assert card["performance"]["auroc"] == pytest.approx(metrics["auroc"])
    assert card["data"]["splits"]["training"]["n"] == 100 and card["data"]["splits"]["held-out"]["n"] == 50
    assert set(card["data"]["splits"]["held-out"]["availability"]) == {"ct", "xray", "eeg", "note"}
    assert {r["attribute"] for r in card["subgroups"]} == {"sex", "age band", "availability", "modalities present"}
    assert card["demographics_absent"] == ["site"]
    bands = [r["group"] for r in card["subgroups"] if r["attribute"] == "age band"]
    assert bands == sorted(bands, key=["<40", "40-59", "60-74", "75+", "unknown"].index)
    assert sum(r["n"] for r in card["subgroups"] if r["attribute"] == "sex") == 50
    assert card["candidates"]["count"] is None
    text = path.read_text()
    assert f"**{card['banner']}**" in text and "Research and engineering use only" in text
    assert "too few" in text and "not checked: site" in text and "![ROC](roc.png)" in text
    assert (tmp_path / mc.ROC_PNG).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    updated = mc.record_candidates(tmp_path, 3, "registered versions scored on these held-out patients")
    assert updated["candidates"]["count"] == 3
    assert json.loads((tmp_path / mc.CARD_JSON).read_text())["candidates"]["count"] == 3
    assert "3 candidate(s) compared on these held-out patients" in path.read_text()


def test_a_strong_model_on_many_patients_has_no_banner(tmp_path: Path) -> None:
    path, metrics = _card_folder(tmp_path, 900, 3.0)
    assert metrics["auroc_low"] > mc.AUROC_LOW_BAR
    card = mc.read_card(tmp_path)
    assert card["banner"] is None and mc.BANNER not in path.read_text()
    assert any(r["status"] == "ok" for r in card["subgroups"] if r["attribute"] == "sex")


def test_held_out_key_depends_on_patients_and_labels_not_order() -> None:
    a = mc.held_out_key(("p1", "p2"), np.array([0, 1]))
    assert a == mc.held_out_key(("p2", "p1"), np.array([1, 0]))
    assert a != mc.held_out_key(("p1", "p2"), np.array([1, 1]))
    assert a != mc.held_out_key(("p1", "p3"), np.array([0, 1]))
    assert len(a) == 64


def test_stage_card_reads_the_home_cohort_sites_and_review_provenance(tmp_path: Path) -> None:
    """A home's card: demographics (with a site column) from cohort.parquet; confirmed reviews never label held-out."""
    from dataclasses import replace
    from types import SimpleNamespace

    from ingestion.cohort import write_cohort
    from ingestion.deid.pseudonym import pseudonymise
    from ingestion.home_layout import HomeLayout
    from models.stages import EvaluateConfig
    from models.training.config import TrainConfig

    cohort = synthetic_cohort(120, dim=4, missing_rate=0.2, seed=9)
    ids = tuple(pseudonymise(f"MRN{i}", "s") for i in range(120))
    fs = replace(cohort.features, patient_ids=ids)
    held_out = fs.subset(np.arange(120) >= 60)
    layout = HomeLayout.at(tmp_path / "home").ensure()
    table = pd.DataFrame({"patient_id": list(ids), "label": pd.array(fs.labels, dtype="Int8"),
                          "age": cohort.answers["age"].to_numpy(), "sex": cohort.answers["sex"].to_numpy(),
                          "site": ["north" if i % 3 else "south" for i in range(120)]})
    write_cohort(table, layout.cohort_path)
    y = np.asarray(held_out.labels).astype(int)
    risk = np.clip(0.5 + 0.3 * (2 * y - 1) + np.random.default_rng(1).normal(0, 0.2, len(y)), 0, 1)
    config = EvaluateConfig(home=layout.root, model_dir=tmp_path / "m1", n_boot=50,
                            review_labels=((held_out.patient_ids[0], 1), (ids[0], 0)))
    result = {"out_dir": str(tmp_path / "report"), "metrics": flat(bootstrap_metrics(y, risk, 50, 0)),
              "predictions": pd.DataFrame({"patient_id": held_out.patient_ids, "risk": risk})}
    model = SimpleNamespace(config=TrainConfig(fusion="late", impute="zero"))
    mc.write_stage_card(config, model, fs, held_out, None, result)
    card = mc.read_card(tmp_path / "report")
    assert card["title"].startswith("late fusion, zero imputation (m1)")
    # every held-out label is the cohort's; the one confirmed held-out outcome is counted apart (ids[0] is not held out)
    assert card["data"]["label_provenance"] == {"cohort table": 60, "clinician-confirmed, agreement only": 1}
    assert card["data"]["splits"]["training"]["n"] == 60 and card["demographics_absent"] == []
    sites = {r["group"]: r["n"] for r in card["subgroups"] if r["attribute"] == "site"}
    assert sites == {"north": sum(i % 3 != 0 for i in range(60, 120)), "south": sum(i % 3 == 0 for i in range(60, 120))}


def test_json_ready_turns_nan_and_numpy_scalars_into_plain_json() -> None:
    """A NaN anywhere in a card (an undefined interval, say) must not crash the evaluate stage's JSON write."""
    out = mc.json_ready({"a": float("nan"), "b": [np.float32(0.5), np.int64(3), float("inf")], "c": {"d": None}})
    assert out == {"a": None, "b": [0.5, 3, None], "c": {"d": None}}
