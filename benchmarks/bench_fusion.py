"""Fusion and cross-profiling benchmark on the synthetic latent-variable cohort (fixed seeds).

    .venv/bin/python benchmarks/bench_fusion.py [--n 500] [--out DIR] [--quick]

Trains every fusion type, the unimodal baselines and the MCAR/MNAR sweeps
(0/25/50/70 % per modality) per imputation method through
``models.evaluation_study.run_study``, writes ``report.md`` + PNGs into
``--out`` and prints the target checks of docs/BENCHMARKS.md ("Fusion and
cross-profiling"). The features are synthetic (``models.synthetic_features``),
not encoder outputs of the phantom's files.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from models.evaluation_study import StudyConfig, run_study, write_study_report
from models.synthetic_features import synthetic_cohort


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="patients")
    ap.add_argument("--seed", type=int, default=0, help="cohort seed")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "clinfuse-bench-fusion",
                    help="report folder")
    ap.add_argument("--quick", action="store_true", help="fewer epochs/bootstraps, MCAR only (smoke run)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    cohort = synthetic_cohort(args.n, dim=32, seed=args.seed)
    config = StudyConfig(n_boot=200 if args.quick else 1000, seed=7)
    config.train = replace(config.train, epochs=40 if args.quick else 150)
    if args.quick:
        config.mechanisms, config.rates = ("mcar",), (0.0, 0.5)
    result = run_study(cohort.features, cohort.answers, config,
                       progress=lambda msg: print(f"[{time.perf_counter() - t0:6.0f}s] {msg}", flush=True))
    path = write_study_report(result, args.out, title=f"Fusion benchmark, synthetic cohort n={args.n}")
    elapsed = time.perf_counter() - t0
    cols = ["model", "auroc", "auroc_low", "auroc_high", "ece_uncalibrated", "ece", "auroc_over_oracle",
            "interaction_auroc"]
    print(result.fusion_table[[c for c in cols if c in result.fusion_table]].round(3).to_string(index=False))
    print(result.unimodal_table[["model", "auroc", "auroc_low", "auroc_high"]].round(3).to_string(index=False))
    print(result.sweep_table.round(3).to_string(index=False))
    print(json.dumps({k: round(v, 4) for k, v in result.checks.items()}, indent=1))
    print(f"report {path}; {elapsed:.0f} s on {platform.machine()} ({platform.processor() or 'cpu'})")


if __name__ == "__main__":
    main()
