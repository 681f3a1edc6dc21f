"""Cross-profile imputation memory: does it stay flat as the batch and the training bank grow?

    .venv/bin/python benchmarks/bench_impute_memory.py --write

Why: every train and predict run rebuilds missing modalities with
``models.imputation.methods.CrossProfileImputer``, whose donor search needs the
distance of each patient to every training patient. Held as one patients x
bank matrix (plus a patients x bank x covariates difference and temporaries of
the matrix's size), that memory grows with batch x bank: train imputes its whole
training set against itself, and predict each 1,024-patient chunk against the
whole training set, so both grew with the cohort (issue 25: flat memory at
10,000 patients). The imputer now works ``TRANSFORM_ROWS`` patients at a time. This benchmark measures both ways in the
same run, each case in a fresh child process: the peak of Python-traced
allocations (tracemalloc; numpy's arrays included) while fitting on a bank of
N patients and while imputing a batch of M patients, with blocks of
``TRANSFORM_ROWS`` (the product) and with one block (before, the named
alternative). Embeddings: the simulator's five modalities at 128 dimensions,
30 % of the bank's and 50 % of the batch's modalities missing at random.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HEADING = "## Imputation memory"
DIM = 128


def _features(n: int, seed: int, missing: float):
    from models.features.missingness import apply_missingness
    from models.simulation.phantom_features import synthetic_cohort

    return apply_missingness(synthetic_cohort(n, dim=DIM, seed=seed).features, missing, "mcar", seed + 1)


def child(case: dict) -> dict:
    """One case in this (fresh) process: the traced peak of the fit or the transform, and its seconds."""
    from models.imputation import methods

    if case["one_block"]:
        methods.TRANSFORM_ROWS = 10 ** 9
    bank = _features(case["bank"], 11, 0.3)
    batch = _features(case["batch"], 12, 0.5) if case["stage"] == "transform" else None
    imputer = methods.CrossProfileImputer()
    if batch is not None:
        imputer.fit(bank)
    tracemalloc.start()
    t0 = time.perf_counter()
    if batch is None:
        imputer.fit(bank)
    else:
        out = imputer.transform(batch)
        assert out.imputed.sum() > 0
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {**case, "peak_mib": peak / 2 ** 20, "seconds": seconds}


def run_case(case: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(case)], capture_output=True, text=True,
                         cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def cases(banks: list[int], batches: list[int], transform_bank: int) -> list[dict]:
    found = []
    for one_block in (False, True):
        found += [{"stage": "fit", "bank": n, "batch": 0, "one_block": one_block} for n in banks]
        found += [{"stage": "transform", "bank": transform_bank, "batch": m, "one_block": one_block}
                  for m in batches]
    return found


def markdown(rows: list[dict], block_rows: int) -> str:
    import os

    by = {(r["stage"], r["bank"], r["batch"], r["one_block"]): r for r in rows}
    lines = [
        "Produced by `benchmarks/bench_impute_memory.py --write`. " + " ".join(__doc__.split("\n\n")[2].split()),
        "",
        f"| stage | training bank | batch | peak MiB, blocks of {block_rows} | seconds | peak MiB, one block "
        "(before) | seconds | one block / blocks (peak) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (stage, bank, batch, one_block), r in sorted(by.items()):
        if one_block:
            continue
        o = by[(stage, bank, batch, True)]
        lines.append(f"| {stage} | {bank:,} | {batch:,} | {r['peak_mib']:.0f} | {r['seconds']:.1f} | "
                     f"{o['peak_mib']:.0f} | {o['seconds']:.1f} | {o['peak_mib'] / r['peak_mib']:.1f}x |")
    for stage, key in (("fit", "bank"), ("transform", "batch")):
        mine = sorted((r for r in rows if r["stage"] == stage and not r["one_block"]), key=lambda r: r[key])
        if len(mine) >= 2:
            lo, hi = mine[0], mine[-1]
            lines += ["", f"{stage}: {key} {lo[key]:,} -> {hi[key]:,} ({hi[key] / lo[key]:.0f}x): traced peak "
                      f"{lo['peak_mib']:.0f} -> {hi['peak_mib']:.0f} MiB with blocks "
                      f"({hi['peak_mib'] / lo['peak_mib']:.2f}x)."]
    lines += ["", "What stays: the embeddings themselves (linear in patients: the batch's filled copy, the bank "
              "the imputer keeps) and, in fit, one ridge translation per modality pair. Load average "
              f"{os.getloadavg()[0]:.1f} at the end; peaks are traced allocations, not process RSS (the "
              "interpreter and libraries add a constant)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", default="1000,4000,8000", help="training bank sizes for the fit cases")
    ap.add_argument("--batches", default="1000,5000,10000", help="batch sizes for the transform cases")
    ap.add_argument("--transform-bank", type=int, default=4000, help="the bank the transform cases are fitted on")
    ap.add_argument("--write", action="store_true", help=f"replace '{HEADING}' in docs/BENCHMARKS.md")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    from models.imputation.methods import TRANSFORM_ROWS

    todo = cases([int(x) for x in args.banks.split(",")], [int(x) for x in args.batches.split(",")],
                 args.transform_bank)
    rows = []
    for i, case in enumerate(todo, 1):
        rows.append(run_case(case))
        r = rows[-1]
        print(f"[{i}/{len(todo)}] {case}: peak {r['peak_mib']:.0f} MiB, {r['seconds']:.1f} s", flush=True)
    text = markdown(rows, TRANSFORM_ROWS)
    print(text)
    if args.write:
        from benchmarks.markdown_section import write_section

        write_section(HEADING, text)


if __name__ == "__main__":
    main()
