"""Calibration, coverage and abstention before/after the out-of-fold abstain policy, on the same held-out
patients: simulator and files.

One network per cohort; "before", "passing" and "after" differ only in the abstain rule applied to the same
predictions.
"Before" is the landed rule (:class:`models.training.uncertainty.AbstainPolicy` default): every rule (no
modality, imputed modalities decide: class flips when removed or carry > ``abstain_share`` of the
contribution, empty conformal set, the Venn-Abers range at the patient's own scores straddles the threshold,
> ``1 - level`` of the imputation redraws give the other class). "After" is the model's own policy, fitted by
``train`` on out-of-fold training patients (:mod:`models.training.abstain_policy`): a rule is kept only when
the patients it flags there have a higher Brier score than the rest beyond bootstrap noise, and the redraw
tolerance is the smallest that passes, and the passing rules enter only while together they flag at most
``abstain_budget`` (10 %) of those patients. "Passing" is the same fit without the budget (every rule that
passes, read back from the policy's record). The calibrator is the model's (kept only when it beats none on the
cross-fitted folds beyond bootstrap noise); its ECE is shown beside the Bayes-optimal risk's ECE on the same
patients (the floor) and their paired bootstrap difference, which says whether the gap is binning noise.

Data: (1) the simulator (``models.simulation.phantom_features.synthetic_cohort``, the phantom's latent model embedded
directly); (2) a files phantom built by ``benchmarks/quality_cache.py`` (DICOM/EDF/notes generated, ingested
and encoded by the library's own stages; ``--cache`` is its folder), with 20 % of each modality hidden
completely at random (the demo's missingness, the phantom's own draw) and split by row order into training
and held-out patients. The phantom's latents give the Bayes-optimal risk given exactly the modalities each
held-out patient has: read for the ECE floor, the range's coverage and the "who abstains" table only; it
never reaches a feature or a fitted step.

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
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.markdown_section import write_section  # noqa: E402
from models.evaluation.metrics import bootstrap_metrics, set_coverage  # noqa: E402
from models.training import calibration  # noqa: E402
from models.simulation.phantom_features import synthetic_cohort  # noqa: E402
from models.training.train import TrainConfig, train  # noqa: E402
from models.training.uncertainty import (  # noqa: E402
    RULES,
    SAFETY_RULES,
    AbstainPolicy,
    abstain_decisions,
    level_text,
)

HEADING = "## Calibration (issue 24)"
FILES_MISSING = 0.2
"""Share of each modality hidden (MCAR) in the files cohort: the demo's missingness."""
NOTES = """Reading the tables:

- ECE floor: the same 10-bin ECE of the phantom's Bayes-optimal risk on the same held-out patients. A perfect
  model reaches about this number at this many patients. "ECE - floor" is the paired patient-bootstrap
  difference (same resampled patients): an interval that holds 0 means the gap is within binning noise here.
- Class-set coverage: share of held-out patients whose true class is in the model's conformal set; the
  nominal level is the model's `interval_level`. The guarantee is marginal (over calibration draws); with a
  few hundred calibration patients one draw varies by a few points per class.
- Range coverage: share whose Bayes-optimal risk lies in the Venn-Abers range `[risk_low, risk_high]`. The
  range is how far the calibrated risk moves with the calibration patients (and imputation redraws); it is
  not a confidence interval of the true risk, which labels cannot identify, so it has no nominal level.
- ECE uncalibrated: the same patients' ECE of the network's own probabilities (no calibrator).
- Abstention "before" applies every rule at redraw tolerance 1 - level; "passing" every rule whose flagged
  out-of-fold training patients have a higher Brier score than the rest beyond bootstrap noise; "after" the
  rules the model kept (`models/training/abstain_policy.py`, "rules applied" column): the passing ones, while
  together they flag at most the model's abstain budget of the out-of-fold patients. All are computed from
  the same network's predictions, and nothing of them saw a held-out patient. "Why" counts held-out abstentions by reason (first rule that applies).
- Who abstains: per recipe and reason, the held-out patients' mean number of missing modalities, their
  misclassification rate, Brier score and AUROC (10+ patients of both classes), and |risk - Bayes-optimal risk| (how wrong the model's risk is for
  them, read from the phantom's latents), beside the answered patients'."""


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
    answers["oracle_risk_available"] = available_oracle(answers, _by_modality(mask, fs.modalities), model,
                                                        FILES_MISSING, "mcar")
    fs = replace(fs, mask=mask)
    n = len(fs)
    return fs.subset(np.arange(n_train)), fs.subset(np.arange(n_train, n)), answers.iloc[n_train:].reset_index(drop=True)


def _by_modality(mask: np.ndarray, modalities) -> np.ndarray:
    """The mask with one column per modality the phantom knows (``ingestion.modalities.MODALITIES``), False for a
    modality the cached cohort was built without (a cache older than a newly added modality)."""
    from ingestion.modalities import MODALITIES

    out = np.zeros((len(mask), len(MODALITIES)), bool)
    for i, m in enumerate(MODALITIES):
        if m in modalities:
            out[:, i] = mask[:, list(modalities).index(m)]
    return out


def truth_of(answers: pd.DataFrame) -> np.ndarray:
    return answers["oracle_risk_available" if "oracle_risk_available" in answers else "oracle_risk"].to_numpy()


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


def paired_ece_gap(y: np.ndarray, risk: np.ndarray, truth: np.ndarray, n_boot: int, seed: int = 0):
    """ECE(risk) - ECE(truth) with a percentile interval over the same resampled patients."""
    from models.evaluation.metrics import MetricCI

    rng = np.random.default_rng([seed, 24])
    ece = calibration.expected_calibration_error
    draws = [ece(y[i], risk[i]) - ece(y[i], truth[i]) for i in (rng.integers(0, len(y), len(y)) for _ in range(n_boot))]
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return MetricCI(ece(y, risk) - ece(y, truth), float(lo), float(hi))


def who_abstains(data: str, recipe: str, y, risk, truth, missing, reasons: list[str], threshold: float) -> list[dict]:
    """One row per reason group (and the answered patients): size, missing modalities, error, Brier, |risk - Bayes|."""
    groups = np.array([next((n for n, p in REASONS if t.startswith(p)), "other") if t else "answered"
                       for t in reasons])
    rows = []
    for g in ["answered"] + sorted(set(groups) - {"answered"}):
        k = groups == g
        if k.any():
            rows.append({"data": data, "recipe": recipe, "group": g, "n": int(k.sum()),
                         "missing": float(missing[k].mean()), "error": float(((risk[k] >= threshold) != y[k]).mean()),
                         "brier": float(((risk[k] - y[k]) ** 2).mean()), "gap": float(np.abs(risk[k] - truth[k]).mean()),
                         "auroc": (float(roc_auc_score(y[k], risk[k])) if k.sum() >= 10 and len(np.unique(y[k])) == 2
                                   else None)})
    return rows


def passing_policy(policy: AbstainPolicy, level: float) -> AbstainPolicy:
    """The model's policy without its abstain budget: every rule that passed the out-of-fold test, as
    :func:`models.training.abstain_policy.fit_policy` recorded it before applying the budget."""
    rec = policy.record
    tolerance = rec.get("passing_tolerance")
    rules = set(SAFETY_RULES) | set(rec.get("passing_rules", [])) | ({"redraws"} if tolerance is not None else set())
    return AbstainPolicy(tuple(r for r in RULES if r in rules), tolerance if tolerance is not None else 1 - level, rec)


def score(data: str, model, held, answers, n_boot: int) -> tuple[list[dict], list[dict]]:
    """(table rows, who-abstains rows): the same predictions under the landed rule and the fitted policy."""
    y = np.asarray(held.labels).astype(int)
    _, _, ev = model.evidence(held, n_mc=10)
    risk, spread = ev["risk"], ev["spread"]
    raw = 1.0 / (1.0 + np.exp(-model.logits(held)))
    m = bootstrap_metrics(y, risk, n_boot=n_boot, seed=0)
    truth = truth_of(answers)
    floor = bootstrap_metrics(y, truth, n_boot=n_boot, seed=0)["ece"]
    covered = (spread.low <= truth) & (truth <= spread.high)
    in_set = model.class_sets(risk)
    cfg = model.config
    policy = model.abstain_policy
    rows, who = [], []
    budget = policy.record.get("budget")
    for recipe, pol in (("before: every rule, redraw tolerance 1 - level", AbstainPolicy()),
                        ("passing: rules that pass on out-of-fold training patients, no budget",
                         passing_policy(policy, cfg.interval_level)),
                        (f"after: passing rules within the {budget:.0%} abstain budget" if budget is not None
                         else "after: rules kept on out-of-fold training patients", policy)):
        abstain, reasons = abstain_decisions(**ev, modalities=model.modalities, threshold=cfg.threshold,
                                             share=cfg.abstain_share, level=cfg.interval_level, policy=pol)
        kept = ~abstain
        answered = (bootstrap_metrics(y[kept], risk[kept], n_boot=n_boot, seed=0)["auroc"]
                    if kept.sum() > 10 and len(np.unique(y[kept])) == 2 else None)
        row = {"data": data, "recipe": recipe, "ece": m["ece"], "ece_uncalibrated":
               calibration.expected_calibration_error(y, raw), "floor": floor,
               "gap": paired_ece_gap(y, risk, truth, n_boot), "auroc": m["auroc"], "abstain": float(abstain.mean()),
               "answered": answered, "calibrator": model.metrics.get("calibration", {}).get("chosen", "?"),
               "head": model.metrics.get("selection", {}).get("head", "network"),
               "small": bool(model.metrics.get("selection", {}).get("small_cohort", False)),
               "why": why_abstained(pd.Series(reasons)),
               "kept": (", ".join(r for r in pol.rules) + (f" (redraws > {pol.tolerance(cfg.interval_level):.0%})"
                                                           if "redraws" in pol.rules else ""))}
        row.update(set_coverage(y, in_set), range_coverage=float(covered.mean()),
                   width=float((spread.high - spread.low).mean()), level=cfg.interval_level)
        rows.append(row)
        who += who_abstains(data, recipe.split(":")[0], y, risk, truth, (~held.mask).sum(1), reasons, cfg.threshold)
    return rows, who


def _ci(ci) -> str:
    return "-" if ci is None else f"{ci.value:.3f} [{ci.low:.3f}, {ci.high:.3f}]"


def table_md(rows: list[dict]) -> str:
    lines = ["| data | recipe | calibrator kept (head) | ECE [95 % CI] | ECE uncalibrated | ECE floor [95 % CI] "
             "| ECE - floor [paired 95 % CI] | AUROC [95 % CI] | class-set coverage (neg / pos) "
             "| range coverage, mean width | rules applied | abstain | AUROC answered [95 % CI] | why |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sets = (f"{r['set_coverage']:.1%} ({r['set_coverage_negative']:.1%} / {r['set_coverage_positive']:.1%}) "
                f"at {level_text(r['level'])}")
        rng = f"{r['range_coverage']:.1%}, {r['width']:.3f}"
        head = f"{r['calibrator']} ({r['head']}{', small-cohort folds' if r['small'] else ''})"
        gap = r["gap"]
        lines.append(f"| {r['data']} | {r['recipe']} | {head} | {_ci(r['ece'])} | {r['ece_uncalibrated']:.3f} "
                     f"| {_ci(r['floor'])} | {gap.value:+.3f} [{gap.low:+.3f}, {gap.high:+.3f}] | {_ci(r['auroc'])} "
                     f"| {sets} | {rng} | {r['kept']} | {r['abstain']:.1%} | {_ci(r['answered'])} | {r['why']} |")
    return "\n".join(lines)


def who_md(rows: list[dict]) -> str:
    lines = ["| data | recipe | patients | n | missing modalities (mean) | misclassified | Brier | AUROC "
             "| mean abs(risk - Bayes risk) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['recipe']} | {r['group']} | {r['n']} | {r['missing']:.2f} | {r['error']:.1%} "
                     f"| {r['brier']:.3f} | {'-' if r['auroc'] is None else format(r['auroc'], '.3f')} | {r['gap']:.3f} |")
    return "\n".join(lines)


def run(data: str, train_fs, held, answers, epochs: int, n_boot: int, t0: float) -> tuple[list[dict], list[dict]]:
    """Train once and score the same held-out patients under both rules."""
    c0 = time.process_time()
    model = train(train_fs, TrainConfig(epochs=epochs))
    rows, who = score(data, model, held, answers, n_boot)
    for r in rows:
        print(f"[{time.perf_counter() - t0:5.0f}s, {time.process_time() - c0:.0f} s CPU] {data} / {r['recipe']}: "
              f"ece {r['ece']}, gap {r['gap']}, abstain {r['abstain']:.3f}, answered {r['answered']}, kept "
              f"{r['kept']}, why {r['why']}", flush=True)
    return rows, who


def _add(rows: list, who: list, result: tuple[list[dict], list[dict]]) -> None:
    rows += result[0]
    who += result[1]


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
    t0, c0 = time.perf_counter(), time.process_time()
    load = os.getloadavg()[0]
    rows, who, sizes = [], [], []
    tr, ho, ans = cohort_simulator(args.train, args.held_out, args.seed)
    _add(rows, who, run(f"simulator, {args.train} train", tr, ho, ans, args.epochs, args.n_boot, t0))
    sizes.append(f"simulator: {args.train} training / {len(ho)} held-out patients (prevalence "
                 f"{np.mean(ho.labels):.0%}); small cohort: the first {args.small_train} of the same training patients")
    _add(rows, who, run(f"simulator, {args.small_train} train", tr.subset(np.arange(args.small_train)), ho, ans,
                        args.epochs, args.n_boot, t0))
    if args.cache and (args.cache / "features.npz").exists():
        ftr, fho, fans = cohort_files(args.cache, args.files_train, args.seed)
        _add(rows, who, run(f"files phantom, {len(ftr)} train", ftr, fho, fans, args.epochs, args.n_boot, t0))
        b = json.loads((args.cache / "build.json").read_text())
        prefix = (f"the first {len(ftr) + len(fho)} patients of " if b["patients"] != len(ftr) + len(fho) else "")
        sizes.append(f"files phantom ({prefix}`benchmarks/quality_cache.py --patients {b['patients']} --seed {b['seed']} "
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
            f"equal-width bins, patient bootstrap 95 % interval; {time.process_time() - c0:.0f} s CPU in this "
            "process.\n\n" + table_md(rows) + "\n\nWho abstains (held-out patients):\n\n" + who_md(who) + "\n\n" + NOTES)
    print(body)
    if args.write:
        write_section(HEADING, body)


if __name__ == "__main__":
    main()
