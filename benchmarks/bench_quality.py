"""Quality on files at scale: fusion kinds x imputation methods under the missingness people meet.

    .venv/bin/python benchmarks/bench_quality.py --cache DIR [--patients 2000] [--shared 0.5] [--run] [--write]

Data: (1) **files** -- the phantom cohort of ``--patients`` at ``--shared``,
generated, ingested and encoded once into ``--cache`` by
``benchmarks/quality_cache.py`` (the library calls users run); (2) the
**feature-level simulator** (``models.simulation.phantom_features``, drawn from the same
signal model) for the range of the shared-information parameter, where
generating files at every value would take hours. Every scenario trains on
training patients with the scenario's training missingness and scores the
held-out patients (keyed hash of the pseudonym, as the train flow splits)
under its deployment missingness, hiding embeddings with the phantom's own
missingness mechanism. Oracle = Bayes risk given exactly the modalities each
held-out patient has (``oracle_risk_available``, exact under MNAR too).

``--run`` computes cells in priority order and appends each to
``<cache>/results/*.parquet`` as it finishes (an interrupted run keeps what it
did; a re-run skips done cells); ``--write`` renders whatever is done into
docs/BENCHMARKS.md ("Quality on files at scale"), marking cells not run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from quality_cache import build, cache_dir, load_cached_features, patients_on_disk, peak_rss_mib  # noqa: E402
from quality_scenarios import METHODS, PEERS, SCENARIOS, imputation_quality, run_cell  # noqa: E402

from ingestion.phantom import SignalModel  # noqa: E402
from models.evaluation.metrics import paired_auroc_difference  # noqa: E402

ZERO = "zero-fill + mask"
AUTO = "auto (nested selection, the default)"
CORE = (ZERO, "cohort mean", "cross-profiling", "latent cross-profiling (M3Care-style)")
FUSIONS = ("early", "late", "cross_attention")


def plan(files: bool, shared: float, shared_range: tuple[float, ...]) -> list[tuple]:
    """(source, shared, scenario, method, fusion) in priority order: what matters most runs first."""
    out = []
    src = "files" if files else "simulated"
    out += [(src, shared, "full data", "cross-profiling", f) for f in FUSIONS]
    for sc in ("(b) complete training, 50 % missing at deployment", "(a) MCAR 50 %"):
        out += [(src, shared, sc, m, "early") for m in METHODS]
    out += [(src, shared, "(a) MCAR 50 %", m, f) for f in FUSIONS[1:] for m in CORE[:3]]
    for rho in shared_range:
        if rho != shared or files:
            for sc in ("(b) complete training, 50 % missing at deployment", "(a) MCAR 50 %"):
                out += [("simulated", rho, sc, m, "early") for m in CORE]
    for sc in ("(a) MNAR 50 %", "(c) no EEG at one site (a third of patients)", "(a) MCAR 25 %", "(a) MCAR 70 %",
               "(a) MNAR 25 %", "(a) MNAR 70 %"):
        out += [(src, shared, sc, m, "early") for m in (*CORE[:3], *(PEERS if sc == "(a) MNAR 50 %" else ()))]
    if files:  # the simulator's fusion kinds at the files cohort's value, for the fusion targets without encoders
        out += [("simulated", shared, sc, m, "early") for sc in ("(b) complete training, 50 % missing at deployment",
                                                                 "(a) MCAR 50 %") for m in (AUTO, "complete-case", "modality dropout")]
        out += [("simulated", shared, "full data", "cross-profiling", f) for f in FUSIONS]
        out += [("simulated", shared, "(a) MCAR 50 %", m, f) for f in FUSIONS[1:] for m in CORE[:3]]
    for rho in shared_range:  # the peers across the shared-information range, last (the slowest fits)
        out += [("simulated", rho, sc, m, "early") for sc in ("(b) complete training, 50 % missing at deployment",
                                                              "(a) MCAR 50 %") for m in PEERS]
    return out


def load_data(source: str, rho: float, args) -> tuple:  # noqa: ANN001
    """(FeatureSet, answers aligned to it, held-out bool, signal model)."""
    from models.study_definition import study_for_features

    model = SignalModel(shared=rho)
    if source.startswith("files"):
        out = cache_dir(args.cache, args.patients, args.seed, rho)
        fs = load_cached_features(out / "features.npz")
        answers = pd.read_parquet(out / "answers.parquet").set_index("patient_id").loc[list(fs.patient_ids)]
        fraction = args.held_out_fraction_files
    else:
        from models.simulation.phantom_features import synthetic_cohort

        cohort = synthetic_cohort(args.sim_patients, dim=32, shared=rho, seed=args.seed)
        fs, answers = cohort.features, cohort.answers.set_index("patient_id")
        fraction = args.held_out_fraction
    study = study_for_features(fs, held_out_fraction=fraction, seed=args.seed)  # the study's held-out patients
    return fs, answers.reset_index(), np.isin(fs.patient_ids, study.held_out), model


def _slug(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _risk(results: Path, key: str) -> np.ndarray | None:
    """The held-out risks a finished cell saved (the reference of paired differences), or None."""
    path = results / "risks" / f"{_slug(key)}.npy"
    return np.load(path) if path.exists() else None


def run(args) -> None:  # noqa: ANN001
    results = Path(args.cache) / "results"
    (results / "risks").mkdir(parents=True, exist_ok=True)
    done_path = results / "cells.parquet"
    done = pd.read_parquet(done_path) if done_path.exists() else pd.DataFrame()
    out = cache_dir(args.cache, args.patients, args.seed, args.shared)
    files = (out / "features.npz").exists()
    n_files = patients_on_disk(out) if files else 0
    data: dict = {}
    for source, rho, sc, method, fusion in plan(files, args.shared, args.shared_range):
        # the cohort size is part of the source: a cohort finished later, or another --sim-patients, is another run
        source = f"files-n{n_files}" if source == "files" else f"{source}-n{args.sim_patients}"
        key = f"{source}|{rho:g}|{sc}|{method}|{fusion}"
        if len(done) and key in set(done["key"]):
            continue
        if (source, rho) not in data:
            data[(source, rho)] = load_data(source, rho, args)
            qpath = results / f"imputation_{source}_{rho:g}.parquet"
            if not qpath.exists():
                fs, answers, held, model = data[(source, rho)]
                rows = [r for m in ("mean", "cross_profile") for r in
                        imputation_quality(fs, held, m, 0.5, model, answers, args.seed)]
                pd.DataFrame(rows).to_parquet(qpath)
        fs, answers, held, model = data[(source, rho)]
        ref = _risk(results, f"{source}|{rho:g}|{sc}|{ZERO}|{fusion}") if method != ZERO else None
        row, risk = run_cell(fs, answers, held, model, SCENARIOS[sc], method, fusion, args.seed, args.n_boot, ref)
        np.save(results / "risks" / f"{_slug(key)}.npy", risk)
        y_held = np.asarray(fs.labels)[held]
        mean = _risk(results, f"{source}|{rho:g}|{sc}|cohort mean|{fusion}")
        if method not in (ZERO, "cohort mean") and mean is not None:  # paired difference to the cohort mean too
            d = paired_auroc_difference(y_held, risk, mean, args.n_boot, args.seed)
            row.update({"minus_mean": d.value, "minus_mean_low": d.low, "minus_mean_high": d.high})
        for ours, col in (("cross-profiling", "cp_minus_peer"), (CORE[3], "latent_minus_peer")):
            theirs = _risk(results, f"{source}|{rho:g}|{sc}|{ours}|{fusion}") if method in PEERS else None
            if theirs is not None:  # how far our methods are ahead of (or behind) the published peer
                d = paired_auroc_difference(y_held, theirs, risk, args.n_boot, args.seed)
                row.update({col: d.value, f"{col}_low": d.low, f"{col}_high": d.high})
        row.update({"key": key, "source": source, "shared": rho, "peak_rss_mib": peak_rss_mib(),
                    "load1": os.getloadavg()[0]})
        done = pd.concat([done, pd.DataFrame([row])], ignore_index=True)
        done.to_parquet(done_path)
        print(f"[{time.strftime('%H:%M:%S')}] {key}: AUROC {row['auroc']:.3f} ({row['seconds']:.0f} s)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "clinfuse-quality-cache")
    ap.add_argument("--patients", type=int, default=2000, help="phantom patients on files")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--shared", type=float, default=0.5, help="shared information of the files cohort")
    ap.add_argument("--shared-range", type=lambda s: tuple(float(v) for v in s.split(",")), default=(0.0, 0.5, 0.9))
    ap.add_argument("--sim-patients", type=int, default=2000)
    ap.add_argument("--held-out-fraction", type=float, default=0.3, help="simulator (2,000 -> ~600 held out)")
    ap.add_argument("--held-out-fraction-files", type=float, default=0.3)
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--build", action="store_true", help="build the files cache first (hours on 2 cores)")
    ap.add_argument("--run", action="store_true", help="compute the cells not yet done")
    ap.add_argument("--write", action="store_true", help="render the results into docs/BENCHMARKS.md")
    args = ap.parse_args()
    if args.build:
        build(args.cache, args.patients, args.seed, args.shared, workers=2)
    if args.run:
        run(args)
    if args.write:
        from quality_report import write_report

        write_report(args)
    if not (args.build or args.run or args.write):
        ap.print_help()


if __name__ == "__main__":
    main()
