"""No-op re-runs: `clinfuse ingest` / `encode` / `pipeline` on unchanged input, as a user runs them.

    .venv/bin/python benchmarks/bench_noop.py --patients 16 --write
    .venv/bin/python benchmarks/bench_noop.py --patients 200 --steps pipeline --write

Every figure is the wall time of the whole `clinfuse` process (interpreter start,
imports, Prefect, the work), started with subprocess in a fresh home
(``CLINFUSE_HOME``) on a phantom cohort. Each step runs twice: cold (the work)
and warm (nothing changed, so nothing should be done). The interpreter-start
baselines, ``python -c pass`` and ``clinfuse --help``, are measured in the same
run. Targets (issue 17): a warm `ingest`/`encode`/`pipeline` at 16 patients
<= 2 s plus interpreter start; the pipeline's warm run <= 3 % of its cold run at
200 patients. ``--write`` puts the table in docs/BENCHMARKS.md ("## No-op re-runs").
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO))


def timed(cmd: list[str], env: dict[str, str] | None = None, check: bool = True) -> float:
    """Wall seconds of one whole process; its output goes to a log, a failure stops the benchmark."""
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return elapsed


def baseline(repeats: int) -> dict[str, float]:
    """Median wall time of an empty interpreter and of `clinfuse --help` (imports of the CLI)."""
    return {"python -c pass": statistics.median(timed([str(BIN / "python"), "-c", "pass"]) for _ in range(repeats)),
            "clinfuse --help": statistics.median(timed([str(BIN / "clinfuse"), "--help"]) for _ in range(repeats))}


def phantom(patients: int, out: Path) -> Path:
    if not (out / "cohort.csv").is_file():
        timed([str(BIN / "clinfuse"), "phantom", "--patients", str(patients), "--out", str(out), "--seed", "7"])
    return out


def commands(source: Path, step: str) -> list[str]:
    cohort, answers = source / "cohort.csv", source / "answers.parquet"
    if step == "ingest":
        return ["ingest", "--source", str(source), "--cohort", str(cohort), "--exclude", str(answers)]
    if step == "encode":
        return ["encode", "--modality", "all"]
    return ["pipeline", "--source", str(source), "--cohort", str(cohort), "--answers", str(answers)]


def cold_warm(source: Path, steps: list[str], work: Path) -> dict[str, tuple[float, float]]:
    """(cold, warm) wall seconds per step. ingest and encode share one home (encode needs the manifest)."""
    results: dict[str, tuple[float, float]] = {}
    for step in steps:
        home = work / ("home-pipeline" if step == "pipeline" else "home")
        env = {**os.environ, "CLINFUSE_HOME": str(home)}
        if step == "encode" and not (home / "manifest.parquet").exists():
            timed([str(BIN / "clinfuse"), *commands(source, "ingest")], env)
        cmd = [str(BIN / "clinfuse"), *commands(source, step)]
        cold = timed(cmd, env)
        warm = timed(cmd, env)
        results[step] = (cold, warm)
        print(f"{step}: cold {cold:.1f} s, warm {warm:.1f} s", file=sys.stderr)
    return results


def table(base: dict[str, float], results: dict[str, tuple[float, float]], patients: int, load: float) -> str:
    start = base["python -c pass"]
    lines = [f"`benchmarks/bench_noop.py --patients {patients}`: each `clinfuse` command run as a whole process "
             f"(subprocess; interpreter start, imports, Prefect and the work) in a fresh home on a {patients}-patient "
             f"phantom, cold then warm (unchanged input). Load average when it started: {load:.1f} on 2 cores "
             "(other jobs shared the machine, so every wall time here is inflated).", "",
             "| process | cold s | warm s | warm / cold | warm - interpreter start s | target |",
             "|---|---|---|---|---|---|"]
    for name, seconds in base.items():
        lines.append(f"| `{name}` (baseline) | - | {seconds:.2f} | - | - | - |")
    for step, (cold, warm) in results.items():
        over = warm - start
        if step == "pipeline" and patients >= 200:
            target = f"warm <= 3 % of cold: {'held' if warm / cold <= 0.03 else '**missed**'}"
        else:
            target = f"<= 2 s + start: {'held' if over <= 2.0 else '**missed**'}"
        lines.append(f"| `clinfuse {step}` | {cold:.1f} | {warm:.2f} | {100 * warm / cold:.1f} % | {over:.2f} | "
                     f"{target} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--steps", default="ingest,encode,pipeline", help="comma-separated: ingest,encode,pipeline")
    parser.add_argument("--source", type=Path, help="an existing phantom cohort folder (else one is generated)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each baseline (median)")
    parser.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench_noop_"))
    source = args.source or phantom(args.patients, work / "cohort")
    base = baseline(args.repeats)
    results = cold_warm(source, [s for s in args.steps.split(",") if s], work)
    markdown = table(base, results, args.patients, load)
    print(markdown)
    if args.write:
        from benchmarks.markdown_section import write_section

        write_section("## No-op re-runs", "Produced by `benchmarks/bench_noop.py --write`.\n\n" + markdown)


if __name__ == "__main__":
    main()
