"""The quality benchmark's pieces: data, the missingness scenarios, the methods, and the metrics of one fit.

Kept apart from ``bench_quality.py`` (which runs and writes) so each stays small.
Every method is trained on the training patients alone and scored on held-out
patients; the answers (latent severity, oracle risks, interaction flag) only
decide which modalities are hidden (the phantom's own missingness mechanism)
and score the predictions -- they never reach a feature.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ingestion.modalities import MODALITIES
from ingestion.phantom.signal_model import SignalModel, draw_missingness, oracle_risk
from models.evaluation.metrics import bootstrap_metrics, paired_auroc_difference
from models.features.feature_set import FeatureSet
from models.imputation.latent import LatentCrossProfileClassifier
from models.imputation.registry import build_imputer
from models.peers.m3care import M3CareClassifier
from models.peers.muse import MuseClassifier
from models.training.train import TrainConfig, train

BASE = TrainConfig(epochs=40, patience=10, hidden=32, n_calibrators=0, threads=1)
"""One recipe for every method (shorter than the CLI default: dozens of fits on two shared cores)."""
METHODS = {
    "zero-fill + mask": dict(impute="zero", modality_dropout=0.0),
    "complete-case": dict(impute="complete_case", modality_dropout=0.0),
    "cohort mean": dict(impute="mean"),
    "modality dropout": dict(impute="zero", modality_dropout=0.3),
    "cross-profiling": dict(impute="cross_profile"),
    "auto (nested selection, the default)": dict(impute="auto"),
    "latent cross-profiling (M3Care-style)": None,
    "M3Care (peer, reimplemented)": None,
    "MUSE (peer, reimplemented)": None,
}
NETWORKS = {
    "latent cross-profiling (M3Care-style)": LatentCrossProfileClassifier,
    "M3Care (peer, reimplemented)": M3CareClassifier,
    "MUSE (peer, reimplemented)": MuseClassifier,
}
"""Methods that are whole networks of their own (``MaskedTorchClassifier``): the fusion kind does not apply."""
PEERS = tuple(m for m in NETWORKS if "peer" in m)


@dataclass(frozen=True)
class Scenario:
    """Which modalities each patient has in training and in deployment."""

    name: str
    train_rate: float = 0.0
    deploy_rate: float = 0.0
    mechanism: str = "mcar"
    site_missing: str | None = None  # this modality is absent for every patient of site 0 (a third)


SCENARIOS = {
    "full data": Scenario("full data"),
    "(a) MCAR 25 %": Scenario("(a) MCAR 25 %", 0.25, 0.25),
    "(a) MCAR 50 %": Scenario("(a) MCAR 50 %", 0.5, 0.5),
    "(a) MCAR 70 %": Scenario("(a) MCAR 70 %", 0.7, 0.7),
    "(a) MNAR 25 %": Scenario("(a) MNAR 25 %", 0.25, 0.25, "mnar"),
    "(a) MNAR 50 %": Scenario("(a) MNAR 50 %", 0.5, 0.5, "mnar"),
    "(a) MNAR 70 %": Scenario("(a) MNAR 70 %", 0.7, 0.7, "mnar"),
    "(b) complete training, 50 % missing at deployment": Scenario("(b)", 0.0, 0.5),
    "(c) no EEG at one site (a third of patients)": Scenario("(c)", site_missing="eeg"),
}


def site_of(patient_ids: tuple[str, ...]) -> np.ndarray:
    """A stable site number 0-2 per pseudonym (its hex digits), standing in for the hospital it came from."""
    return np.array([int(p[-4:], 16) % 3 for p in patient_ids])


def scenario_mask(fs: FeatureSet, answers: pd.DataFrame, model: SignalModel, rate: float, mechanism: str,
                  site_missing: str | None, seed: int) -> np.ndarray:
    """The phantom's own missingness (MCAR, or MNAR on severity) on top of what is already missing."""
    mask = fs.mask.copy()
    if rate > 0:
        rng = np.random.default_rng([seed, 31])
        mask &= draw_missingness(rng, answers["z"].to_numpy(float), model, rate, mechanism)
    if site_missing:
        mask[site_of(fs.patient_ids) == 0, list(fs.modalities).index(site_missing)] = False
        mask[~mask.any(1), list(fs.modalities).index("note")] = fs.mask[~mask.any(1), -1]
    return mask


def available_oracle(answers: pd.DataFrame, mask: np.ndarray, model: SignalModel, rate: float,
                     mechanism: str) -> np.ndarray:
    """Bayes risk given exactly the modalities each patient has in this scenario (exact, MNAR included)."""
    frame = answers.copy()
    for i, m in enumerate(MODALITIES):
        frame[f"present_{m}"] = mask[:, i]
    mech = mechanism if rate > 0 else None
    return oracle_risk(model, frame, use_present=True, mechanism=mech, missing_rate=rate)


def fit_method(method: str, train_fs: FeatureSet, fusion: str, seed: int):
    """A fitted model with ``predict_risk`` for one method (training patients only)."""
    if method in NETWORKS:
        return NETWORKS[method](epochs=BASE.epochs, patience=BASE.patience, seed=seed).fit(train_fs)
    return train(train_fs, replace(BASE, fusion=fusion, seed=seed, **METHODS[method]))


def score(y: np.ndarray, risk: np.ndarray, reference: np.ndarray | None, oracle: np.ndarray,
          interaction: np.ndarray, n_boot: int, seed: int) -> dict:
    """AUROC [CI], paired difference to the reference, AUROC / oracle, interaction-subset AUROC, ECE."""
    m = bootstrap_metrics(y, risk, n_boot, seed)
    row = {"auroc": m["auroc"].value, "auroc_low": m["auroc"].low, "auroc_high": m["auroc"].high,
           "ece": m["ece"].value, "oracle_auroc": float(roc_auc_score(y, oracle))}
    row["auroc_over_oracle"] = row["auroc"] / row["oracle_auroc"]
    inter = interaction.astype(bool)
    if len(np.unique(y[inter])) == 2:
        row["interaction_auroc"] = float(roc_auc_score(y[inter], risk[inter]))
        row["interaction_oracle_auroc"] = float(roc_auc_score(y[inter], oracle[inter]))
    if reference is not None:
        d = paired_auroc_difference(y, risk, reference, n_boot, seed)
        row.update({"minus_zero": d.value, "minus_zero_low": d.low, "minus_zero_high": d.high})
    return row


def run_cell(fs: FeatureSet, answers: pd.DataFrame, held: np.ndarray, model: SignalModel, scenario: Scenario,
             method: str, fusion: str, seed: int, n_boot: int, reference: np.ndarray | None) -> tuple[dict, np.ndarray]:
    """Train on the training patients under the scenario's training mask; score held-out under its deployment mask."""
    t0 = time.perf_counter()
    train_mask = scenario_mask(fs, answers, model, scenario.train_rate, scenario.mechanism, scenario.site_missing,
                               seed)
    deploy_mask = scenario_mask(fs, answers, model, scenario.deploy_rate, scenario.mechanism,
                                scenario.site_missing, seed + 1)
    train_fs = fs.with_mask(train_mask).subset(~held)
    test_fs = fs.with_mask(deploy_mask).subset(held)
    fitted = fit_method(method, train_fs, fusion, seed)
    risk = fitted.predict_risk(test_fs)
    ans = answers[held].reset_index(drop=True)
    oracle = available_oracle(ans, deploy_mask[held], model, scenario.deploy_rate, scenario.mechanism)
    row = score(np.asarray(test_fs.labels), risk, reference, oracle, ans["interaction"].to_numpy(), n_boot, seed)
    if scenario.deploy_rate == 0 and not scenario.site_missing and "oracle_risk_no_sides" in ans:
        # the best possible without the CT x EEG lesion-side interaction: how much of the gap is that interaction
        row["oracle_no_sides_auroc"] = float(roc_auc_score(np.asarray(test_fs.labels), ans["oracle_risk_no_sides"]))
    chosen = getattr(fitted, "metrics", {}).get("impute_selection", {}).get("chosen")
    row.update({"scenario": scenario.name, "method": method, "fusion": fusion, "n_train": len(train_fs),
                "n_held_out": len(test_fs), "seconds": time.perf_counter() - t0, "chosen": chosen})
    return row, risk


def imputation_quality(fs: FeatureSet, held: np.ndarray, method: str, train_rate: float, model: SignalModel,
                       answers: pd.DataFrame, seed: int) -> list[dict]:
    """R^2 and cosine of the rebuilt embedding per (available -> missing) pair, on held-out patients who have both.

    The imputer is fitted on the training patients with the scenario's missingness; each held-out patient
    then keeps only the source modality (plus covariates) and the target's true embedding is the answer.
    """
    train_mask = scenario_mask(fs, answers, model, train_rate, "mcar", None, seed)
    imputer = build_imputer(method).fit(fs.with_mask(train_mask).subset(~held))
    test = fs.subset(held)
    rows = []
    for i, src in enumerate(fs.modalities):
        for j, tgt in enumerate(fs.modalities):
            both = test.mask[:, i] & test.mask[:, j]
            if i == j or both.sum() < 10:
                continue
            only = np.zeros_like(test.mask)
            only[:, i] = True
            sub = test.subset(both)
            out = imputer.transform(sub.with_mask(only[both])).features.embeddings[tgt]
            truth = sub.embeddings[tgt]
            centre = fs.embeddings[tgt][~held & train_mask[:, j]].mean(0)
            r2 = 1.0 - ((out - truth) ** 2).sum() / ((truth - centre) ** 2).sum()
            cos = (out * truth).sum(1) / (np.linalg.norm(out, axis=1) * np.linalg.norm(truth, axis=1) + 1e-9)
            rows.append({"method": method, "pair": f"{src} -> {tgt}", "r2": float(r2), "cosine": float(cos.mean()),
                         "n": int(both.sum())})
    return rows
