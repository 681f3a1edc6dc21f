"""Calibration, coverage and abstention before/after issue 24, on the same held-out patients: simulator and files.

"Before" is the previous recipe, still reachable with ``n_calibrators=0``: Platt scaling fitted on the 20 %
validation slice, and (computed here, from the same risks) the old abstain rule "risk within 2 % of the
threshold". "After" is the default: the calibrator chosen on folds (Platt, Venn-Abers or none: lowest
cross-fitted ECE) of the validation scores or, on a small validation split, of out-of-fold scores of every
training patient (whose folds also pick the epoch count and the head, network or logistic regression), the
Venn-Abers range, label-conditional conformal class sets at the model's ``interval_level`` and abstention when
the set holds both classes.

Data: (1) the simulator (``models.features.synthetic.synthetic_cohort``, the phantom's latent model embedded
directly); (2) a small files phantom built by ``benchmarks/quality_cache.py`` (DICOM/EDF/notes generated,
ingested and encoded by the library's own stages; ``--cache``), split by row order into training and held-out
patients. The phantom's answers table (Bayes-optimal risk given what each patient has) is read for the ECE
floor and the range's coverage only; it never reaches a feature or a fitted step.

``--write`` replaces the "## Calibration (issue 24)" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.markdown_section import write_section  # noqa: E402
from models.evaluation.metrics import bootstrap_metrics, set_coverage  # noqa: E402
from models.features.synthetic import synthetic_cohort  # noqa: E402
from models.training.train import TrainConfig, train  # noqa: E402
from models.training.uncertainty import level_text  # noqa: E402

HEADING = "## Calibration (issue 24)"
OLD_BAND = 0.02
NOTES = """Reading the table:

- ECE floor: the same 10-bin ECE of the phantom's Bayes-optimal risk on the same held-out patients. A perfect
  model reaches about this number at this many patients; an ECE inside the floor's interval is as calibrated
  as can be measured here.
- Class-set coverage: share of held-out patients whose true class is in the model's conformal set; the
  nominal level is the model's `interval_level`. The guarantee is marginal (over calibration draws); with a
  few hundred calibration patients one draw varies by a few points per class.
- Range coverage: share whose Bayes-optimal risk lies in the Venn-Abers range `[risk_low, risk_high]`. The
  range is how far the calibrated risk moves with the calibration patients (and imputation redraws); it is
  not a confidence interval of the true risk, which labels cannot identify, so it has no nominal level.
- Abstention "before" is the old rule (risk within 2 % of the threshold) applied to the old recipe's risks;
  "after" abstains when the conformal set holds both classes (or none, or disagrees with the threshold, or
  imputed modalities decide the class)."""


def cohort_simulator(n_train: int, n_held: int, seed: int):
    c = synthetic_cohort(n_train + n_held, dim=32, missing_rate=0.2, seed=seed)
    fs = c.features
    return (fs.subset(np.arange(n_train)), fs.subset(np.arange(n_train, n_train + n_held)),
            c.answers.iloc[n_train:].reset_index(drop=True))


def cohort_files(cache: Path, n_train: int):
    from benchmarks.quality_cache import load_cached_features

    fs = load_cached_features(cache / "features.npz")
    answers = pd.read_parquet(cache / "answers.parquet").set_index("patient_id").loc[list(fs.patient_ids)]
    n = len(fs)
    return fs.subset(np.arange(n_train)), fs.subset(np.arange(n_train, n)), answers.iloc[n_train:].reset_index()


def truth_of(answers: pd.DataFrame) -> np.ndarray:
    return answers["oracle_risk_available" if "oracle_risk_available" in answers else "oracle_risk"].to_numpy()


def score(data: str, recipe: str, model, held, answers, n_boot: int, old_rule: bool) -> dict:
    y = np.asarray(held.labels).astype(int)
    pred = model.predict(held, n_mc=10)
    risk = pred["risk"].to_numpy()
    m = bootstrap_metrics(y, risk, n_boot=n_boot, seed=0)
    floor = bootstrap_metrics(y, truth_of(answers), n_boot=n_boot, seed=0)["ece"]
    truth = truth_of(answers)
    covered = (pred["risk_low"].to_numpy() <= truth) & (truth <= pred["risk_high"].to_numpy())
    abstain = (np.abs(risk - model.config.threshold) < OLD_BAND) if old_rule else pred["abstain"].to_numpy()
    kept = ~abstain
    answered = bootstrap_metrics(y[kept], risk[kept], n_boot=n_boot, seed=0)["auroc"] if kept.sum() > 10 else None
    row = {"data": data, "recipe": recipe, "ece": m["ece"],
           "floor": floor, "auroc": m["auroc"], "abstain": float(abstain.mean()), "answered": answered,
           "calibrator": model.metrics.get("calibration", {}).get("chosen", "?"),
           "head": model.metrics.get("selection", {}).get("head", "network"),
           "small": bool(model.metrics.get("selection", {}).get("small_cohort", False))}
    if not old_rule:
        row.update(set_coverage(y, model.class_sets(risk)), range_coverage=float(covered.mean()),
                   width=float((pred["risk_high"] - pred["risk_low"]).mean()), level=model.config.interval_level)
    return row


def _ci(ci) -> str:
    return "-" if ci is None else f"{ci.value:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def table_md(rows: list[dict]) -> str:
    lines = ["| data | recipe | calibrator (head) | ECE [95 % CI] | ECE floor [95 % CI] | AUROC [95 % CI] "
             "| class-set coverage (neg / pos) | range coverage, mean width | abstain | AUROC answered [95 % CI] |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sets = ("-" if "set_coverage" not in r else
                f"{r['set_coverage']:.1%} ({r['set_coverage_negative']:.1%} / {r['set_coverage_positive']:.1%}) "
                f"at {level_text(r['level'])}")
        rng = "-" if "range_coverage" not in r else f"{r['range_coverage']:.1%}, {r['width']:.3f}"
        head = f"{r['calibrator']} ({r['head']}{', small-cohort folds' if r['small'] else ''})"
        lines.append(f"| {r['data']} | {r['recipe']} | {head} | {_ci(r['ece'])} | {_ci(r['floor'])} "
                     f"| {_ci(r['auroc'])} | {sets} | {rng} | {r['abstain']:.1%} | {_ci(r['answered'])} |")
    return "\n".join(lines)


def run(data: str, train_fs, held, answers, epochs: int, n_boot: int, t0: float) -> list[dict]:
    rows = []
    for recipe, config, old in (("before: Platt on the validation slice, band abstain", TrainConfig(
            epochs=epochs, n_calibrators=0), True), ("after: calibrator chosen on folds, conformal sets", TrainConfig(epochs=epochs),
                                                     False)):
        model = train(train_fs, config)
        rows.append(score(data, recipe, model, held, answers, n_boot, old))
        print(f"[{time.perf_counter() - t0:5.0f}s] {data} / {recipe}: ece {rows[-1]['ece']}, "
              f"abstain {rows[-1]['abstain']:.3f}, {rows[-1].get('set_coverage')}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=800, help="simulator training patients (validation inside)")
    ap.add_argument("--held-out", type=int, default=600, help="simulator held-out patients")
    ap.add_argument("--small-train", type=int, default=160, help="simulator small cohort: training patients")
    ap.add_argument("--cache", type=Path, help="a quality_cache.py folder (files phantom); skipped when absent")
    ap.add_argument("--files-train", type=int, default=240, help="files phantom: first N patients train")
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--n-boot", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    args = ap.parse_args()
    t0 = time.perf_counter()
    load = os.getloadavg()[0]
    rows, sizes = [], []
    tr, ho, ans = cohort_simulator(args.train, args.held_out, args.seed)
    rows += run(f"simulator, {args.train} train", tr, ho, ans, args.epochs, args.n_boot, t0)
    sizes.append(f"simulator: {args.train} training / {len(ho)} held-out patients (prevalence "
                 f"{np.mean(ho.labels):.0%}); small cohort: the first {args.small_train} of the same training patients")
    rows += run(f"simulator, {args.small_train} train", tr.subset(np.arange(args.small_train)), ho, ans,
                args.epochs, args.n_boot, t0)
    if args.cache and (args.cache / "features.npz").exists():
        ftr, fho, fans = cohort_files(args.cache, args.files_train)
        rows += run(f"files phantom, {len(ftr)} train", ftr, fho, fans, args.epochs, args.n_boot, t0)
        sizes.append(f"files phantom ({args.cache.name}): {len(ftr)} training / {len(fho)} held-out patients "
                     f"(prevalence {np.mean(fho.labels):.0%})")
    else:
        sizes.append("files phantom: not run (no `--cache` folder from `benchmarks/quality_cache.py` given)")
    cache_arg = f" --files-train {args.files_train} --cache {args.cache}" if args.cache else ""
    body = (f"`python benchmarks/bench_calibration.py --train {args.train} --held-out {args.held_out} "
            f"--small-train {args.small_train}{cache_arg} --epochs {args.epochs} --n-boot {args.n_boot} --write` "
            f"({time.perf_counter() - t0:.0f} s on {platform.machine()}, "
            f"shared 2-core machine, load average {load:.1f} at start). " + "; ".join(sizes) + ". ECE: 10 "
            "equal-width bins, patient bootstrap 95 % interval.\n\n" + table_md(rows) + "\n\n" + NOTES)
    print(body)
    if args.write:
        write_section(HEADING, body)


if __name__ == "__main__":
    main()
