"""Fusion and cross-profiling benchmark on the synthetic latent-variable cohort (fixed seeds).

    .venv/bin/python benchmarks/bench_fusion.py [--n 500] [--holdout 2000] [--out DIR] [--quick]

Trains every fusion type, the unimodal baselines and the MCAR/MNAR sweeps
(0/25/50/70 % per modality) per imputation method through
``models.evaluation_study.run_study``, writes ``report.md`` + PNGs into
``--out`` and prints the target checks of docs/BENCHMARKS.md ("Fusion and
cross-profiling"). The features are synthetic (``models.synthetic_features``),
not encoder outputs of the phantom's files.

``--holdout N`` draws N more patients from the same latent model and scores
every fusion type (trained on the study's training split, three training
seeds) on them too: the study's 150-patient test split puts ECE's sampling
noise (~0.04-0.06) near the 0.05 target, and its interaction subset has only
~45 patients.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from models.evaluation import bootstrap_metrics
from models.evaluation_study import StudyConfig, run_study, write_study_report
from models.feature_set import FeatureSet
from models.synthetic_features import synthetic_cohort
from models.train import patient_split, train


def holdout_table(study: FeatureSet, holdout: FeatureSet, answers: pd.DataFrame, config: StudyConfig,
                  seeds: tuple[int, ...] = (7, 8, 9)) -> pd.DataFrame:
    """Each fusion trained on the study's training split (per seed), scored on ``holdout``."""
    train_idx, _ = patient_split(study, config.test_fraction, config.seed + 1)
    train_fs = study.subset(train_idx)
    y = np.asarray(holdout.labels).astype(int)
    inter = answers["interaction"].to_numpy(bool)
    oracle, oracle_inter = roc_auc_score(y, answers["oracle_risk"]), roc_auc_score(y[inter], answers["oracle_risk"][inter])
    rows = []
    for kind in config.fusions:
        for seed in seeds:
            model = train(train_fs, replace(config.train, fusion=kind, impute=config.impute, seed=seed))
            risk = model.predict_risk(holdout)
            m = bootstrap_metrics(y, risk, 200, seed)
            rows.append({"model": kind, "seed": seed, "auroc_over_oracle": m["auroc"].value / oracle,
                         "interaction_over_oracle": roc_auc_score(y[inter], risk[inter]) / oracle_inter,
                         "ece": m["ece"].value, "ece_low": m["ece"].low, "ece_high": m["ece"].high})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="patients")
    ap.add_argument("--seed", type=int, default=0, help="cohort seed")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "clinfuse-bench-fusion",
                    help="report folder")
    ap.add_argument("--holdout", type=int, default=2000, help="extra held-out patients (0: skip)")
    ap.add_argument("--quick", action="store_true", help="fewer epochs/bootstraps, MCAR only (smoke run)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    drawn = synthetic_cohort(args.n + args.holdout, dim=32, seed=args.seed)  # one population, one mixing
    cohort = replace(drawn, features=drawn.features.subset(np.arange(args.n)), answers=drawn.answers.iloc[:args.n])
    config = StudyConfig(n_boot=200 if args.quick else 1000, seed=7)
    config.train = replace(config.train, epochs=40 if args.quick else 150)
    if args.quick:
        config.mechanisms, config.rates = ("mcar",), (0.0, 0.5)
    result = run_study(cohort.features, cohort.answers, config,
                       progress=lambda msg: print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", flush=True))
    path = write_study_report(result, args.out, title=f"Fusion benchmark, synthetic cohort n={args.n}")
    elapsed = time.perf_counter() - t0
    cols = ["model", "auroc", "auroc_low", "auroc_high", "ece_uncalibrated", "ece", "ece_low", "ece_high", "auroc_over_oracle",
            "interaction_auroc"]
    print(result.fusion_table[[c for c in cols if c in result.fusion_table]].round(3).to_string(index=False))
    print(result.unimodal_table[["model", "auroc", "auroc_low", "auroc_high"]].round(3).to_string(index=False))
    print(result.sweep_table.round(3).to_string(index=False))
    if args.holdout:
        hold = drawn.features.subset(np.arange(args.n, args.n + args.holdout))
        table = holdout_table(cohort.features, hold, drawn.answers.iloc[args.n:].reset_index(drop=True), config)
        print(f"held-out {args.holdout} patients, per training seed:")
        print(table.round(3).to_string(index=False))
        print(table.drop(columns="seed").groupby("model").mean().round(3).to_string())
    print(json.dumps({k: round(v, 4) for k, v in result.checks.items()}, indent=1))
    print(f"report {path}; {elapsed:.0f} s on {platform.machine()} ({platform.processor() or 'cpu'})")


if __name__ == "__main__":
    main()
