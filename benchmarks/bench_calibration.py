"""Calibration, coverage and abstention before/after issue 24 items 3-4, on the same held-out patients: simulator
and files.

"Before" is the recipe this change replaced, on the same trained network: the calibrator with the lowest
cross-fitted ECE among Platt, Venn-Abers and none (``choose_calibrator(alpha=1)``), and abstention whenever
the conformal set holds both classes (or none, or one that disagrees with the thresholded risk, or imputed
modalities decide the class). "After" is the default: a fitted map is kept only when it beats none on the
cross-fitted folds beyond its patient-bootstrap noise, and a patient abstains when its risk range straddles
the threshold (or the set is empty, or imputed modalities decide, or nothing was measured); the conformal
set is reported, not an abstain reason by itself. The folds are the out-of-fold scores of every training
patient on a small validation split (whose folds also pick the epoch count and the head), else folds of
the validation scores.

Data: (1) the simulator (``models.features.synthetic.synthetic_cohort``, the phantom's latent model embedded
directly); (2) a files phantom built by ``benchmarks/quality_cache.py`` (DICOM/EDF/notes generated, ingested
and encoded by the library's own stages; ``--cache`` is its folder), with 20 % of each modality hidden
completely at random (the demo's missingness, the phantom's own draw) and split by row order into training
and held-out patients. The phantom's latents give the Bayes-optimal risk given exactly the modalities each
held-out patient has: read for the ECE floor and the range's coverage only; it never reaches a feature or a
fitted step.

``--write`` replaces the "## Calibration (issue 24)" section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
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
from models.training import calibration  # noqa: E402
from models.features.synthetic import synthetic_cohort  # noqa: E402
from models.training.train import TrainConfig, train  # noqa: E402
from models.training.uncertainty import level_text  # noqa: E402

HEADING = "## Calibration (issue 24)"
FILES_MISSING = 0.2
"""Share of each modality hidden (MCAR) in the files cohort: the demo's missingness."""
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
- ECE uncalibrated: the same patients' ECE of the network's own probabilities (no calibrator).
- Abstention "before" abstains whenever the conformal set holds both classes (or none, or one that disagrees
  with the thresholded risk, or imputed modalities decide the class); "after" abstains when the Venn-Abers
  range at the patient's own scores straddles the threshold, or more than 10 % (1 - level) of the imputation
  redraws give the other class, or the set is empty, or imputed modalities decide, or nothing was measured
  (`models/training/uncertainty.py`). Both are computed from the same network's predictions; neither rule
  has a target rate. "Why" counts the after rule's held-out abstentions by reason."""


def cohort_simulator(n_train: int, n_held: int, seed: int):
    c = synthetic_cohort(n_train + n_held, dim=32, missing_rate=0.2, seed=seed)
    fs = c.features
    return (fs.subset(np.arange(n_train)), fs.subset(np.arange(n_train, n_train + n_held)),
            c.answers.iloc[n_train:].reset_index(drop=True))


def cohort_files(cache: Path, n_train: int, seed: int):
    """Training and held-out FeatureSets of a quality_cache folder, 20 % MCAR per modality, with the Bayes risk
    given what each held-out patient has (``oracle_risk_available`` of the masked cohort)."""
    from dataclasses import replace

    from benchmarks.quality_cache import load_cached_features
    from benchmarks.quality_scenarios import available_oracle, scenario_mask
    from ingestion.phantom import SignalModel

    fs = load_cached_features(cache / "features.npz")
    build = json.loads((cache / "build.json").read_text())
    answers = pd.read_parquet(cache / "answers.parquet").set_index("patient_id").loc[list(fs.patient_ids)]
    answers = answers.reset_index()
    model = SignalModel(shared=float(build["shared"]))
    mask = scenario_mask(fs, answers, model, FILES_MISSING, "mcar", None, seed)
    answers["oracle_risk_available"] = available_oracle(answers, mask, model, FILES_MISSING, "mcar")
    fs = replace(fs, mask=mask)
    n = len(fs)
    return fs.subset(np.arange(n_train)), fs.subset(np.arange(n_train, n)), answers.iloc[n_train:].reset_index(drop=True)


def truth_of(answers: pd.DataFrame) -> np.ndarray:
    return answers["oracle_risk_available" if "oracle_risk_available" in answers else "oracle_risk"].to_numpy()


def old_abstain(pred: pd.DataFrame, in_set: tuple[np.ndarray, np.ndarray], threshold: float) -> np.ndarray:
    """The replaced rule on the same predictions: the new rule's reasons other than the range, plus a set holding
    both classes or one class that disagrees with the thresholded risk (both orders put the imputation and
    no-modality rules first, and both abstain on an empty set)."""
    has_neg, has_pos = in_set
    cls = pred["risk"].to_numpy() >= threshold
    kept_reasons = pred["abstain"].to_numpy() & ~pred["abstain_reason"].str.startswith("uncertain").to_numpy()
    one_class_disagrees = (has_neg ^ has_pos) & (has_pos != cls)
    return kept_reasons | (has_neg & has_pos) | one_class_disagrees


REASONS = (("calibration range", "uncertain: the calibration range"), ("redraws", "uncertain: "),
           ("imputed decide", "class flips"), ("imputed decide", "imputed modalities"),
           ("empty set", "atypical"), ("no modality", "no modality"))


def why_abstained(reasons: pd.Series) -> str:
    """Abstentions counted by rule (the first matching prefix of each reason), e.g. "calibration range 12"."""
    counts: dict[str, int] = {}
    for text in reasons[reasons.str.len() > 0]:
        name = next((n for n, prefix in REASONS if text.startswith(prefix)), "other")
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def score(data: str, recipe: str, model, held, answers, n_boot: int, old_rule: bool) -> dict:
    y = np.asarray(held.labels).astype(int)
    pred = model.predict(held, n_mc=10)
    risk = pred["risk"].to_numpy()
    raw = 1.0 / (1.0 + np.exp(-model.logits(held)))
    m = bootstrap_metrics(y, risk, n_boot=n_boot, seed=0)
    truth = truth_of(answers)
    floor = bootstrap_metrics(y, truth, n_boot=n_boot, seed=0)["ece"]
    covered = (pred["risk_low"].to_numpy() <= truth) & (truth <= pred["risk_high"].to_numpy())
    in_set = model.class_sets(risk)
    abstain = old_abstain(pred, in_set, model.config.threshold) if old_rule else pred["abstain"].to_numpy()
    kept = ~abstain
    answered = (bootstrap_metrics(y[kept], risk[kept], n_boot=n_boot, seed=0)["auroc"]
                if kept.sum() > 10 and len(np.unique(y[kept])) == 2 else None)
    row = {"data": data, "recipe": recipe, "ece": m["ece"], "ece_uncalibrated": calibration.expected_calibration_error(y, raw),
           "floor": floor, "auroc": m["auroc"], "abstain": float(abstain.mean()), "answered": answered,
           "calibrator": model.metrics.get("calibration", {}).get("chosen", "?"),
           "head": model.metrics.get("selection", {}).get("head", "network"),
           "small": bool(model.metrics.get("selection", {}).get("small_cohort", False))}
    if not old_rule:
        row["why"] = why_abstained(pred["abstain_reason"])
    row.update(set_coverage(y, in_set), range_coverage=float(covered.mean()),
               width=float((pred["risk_high"] - pred["risk_low"]).mean()), level=model.config.interval_level)
    return row


def _ci(ci) -> str:
    return "-" if ci is None else f"{ci.value:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def table_md(rows: list[dict]) -> str:
    lines = ["| data | recipe | calibrator kept (head) | ECE [95 % CI] | ECE uncalibrated | ECE floor [95 % CI] "
             "| AUROC [95 % CI] | class-set coverage (neg / pos) | range coverage, mean width | abstain "
             "| AUROC answered [95 % CI] | why (after) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sets = (f"{r['set_coverage']:.1%} ({r['set_coverage_negative']:.1%} / {r['set_coverage_positive']:.1%}) "
                f"at {level_text(r['level'])}")
        rng = f"{r['range_coverage']:.1%}, {r['width']:.3f}"
        head = f"{r['calibrator']} ({r['head']}{', small-cohort folds' if r['small'] else ''})"
        lines.append(f"| {r['data']} | {r['recipe']} | {head} | {_ci(r['ece'])} | {r['ece_uncalibrated']:.3f} "
                     f"| {_ci(r['floor'])} | {_ci(r['auroc'])} | {sets} | {rng} | {r['abstain']:.1%} "
                     f"| {_ci(r['answered'])} | {r.get('why', '-')} |")
    return "\n".join(lines)


def run(data: str, train_fs, held, answers, epochs: int, n_boot: int, t0: float) -> list[dict]:
    """Train twice with the same seed (the networks are identical; only the calibrator choice differs) and score
    the same held-out patients under the replaced and the current rules."""
    from unittest import mock

    rows = []
    for recipe, alpha, old in (("before: lowest cross-fitted ECE kept, abstain on a two-class set", 1.0, True),
                               ("after: calibrator kept beyond bootstrap noise, abstain on a straddling range",
                                None, False)):
        with mock.patch.object(calibration, "CALIBRATION_ALPHA", alpha if alpha is not None
                               else calibration.CALIBRATION_ALPHA):
            model = train(train_fs, TrainConfig(epochs=epochs))
        rows.append(score(data, recipe, model, held, answers, n_boot, old))
        print(f"[{time.perf_counter() - t0:5.0f}s] {data} / {recipe}: ece {rows[-1]['ece']}, uncalibrated "
              f"{rows[-1]['ece_uncalibrated']:.3f}, abstain {rows[-1]['abstain']:.3f}, answered {rows[-1]['answered']}",
              flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=800, help="simulator training patients (validation inside)")
    ap.add_argument("--held-out", type=int, default=600, help="simulator held-out patients")
    ap.add_argument("--small-train", type=int, default=160, help="simulator small cohort: training patients")
    ap.add_argument("--cache", type=Path, help="a quality_cache.py folder (files phantom); skipped when absent")
    ap.add_argument("--files-train", type=int, default=300, help="files phantom: first N patients train")
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
        ftr, fho, fans = cohort_files(args.cache, args.files_train, args.seed)
        rows += run(f"files phantom, {len(ftr)} train", ftr, fho, fans, args.epochs, args.n_boot, t0)
        b = json.loads((args.cache / "build.json").read_text())
        sizes.append(f"files phantom (`benchmarks/quality_cache.py --patients {b['patients']} --seed {b['seed']} "
                     f"--shared {b['shared']:g}`: DICOM, EDF and notes written, ingested and encoded; "
                     f"{FILES_MISSING:.0%} MCAR per modality): {len(ftr)} training / {len(fho)} held-out patients "
                     f"(prevalence {np.mean(fho.labels):.0%})")
    else:
        sizes.append("files phantom: not run (no `--cache` folder from `benchmarks/quality_cache.py` given)")
    cache_arg = f" --files-train {args.files_train} --cache CACHE/{args.cache.name}" if args.cache else ""
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
