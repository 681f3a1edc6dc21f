"""Scale: N file-based phantom patients end to end through the `clinfuse` CLI, stage by stage.

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py --patients 200 1000 --write

For each cohort size, a fresh work folder and home (``CLINFUSE_HOME``), then the
five stages a user runs, each as its own whole ``clinfuse`` process: ``phantom``
(write the DICOM/EDF/text files), ``ingest``, ``encode``, ``train`` and
``predict`` (scoring the same cohort with the champion the train stage
registered). Each stage is started by a small monitor process (this file with
``--monitor``) so that its figures are that stage's alone:

* wall seconds of the command;
* CPU seconds, user + sys of the command and every process it waited for
  (``RUSAGE_CHILDREN`` of the monitor, which has no other children);
* peak RSS of the largest single process (``ru_maxrss`` of the children) and
  peak RSS of the whole process tree, summed over its live processes, sampled
  with psutil every 0.2 s (pool workers included).

Why per-stage monitors: ``RUSAGE_CHILDREN``'s ``ru_maxrss`` is a maximum over
every child a process ever reaped, so one process running all stages could not
tell which stage peaked. Target (issue 25): 10,000 patients end to end <= 60 min
on 2 cores, every stage's peak RSS <= 4 GiB and within 10 % between 1,000 and
10,000 patients. ``--write`` puts the table in docs/BENCHMARKS.md ("## Scale").
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO))

HEADING = "## Scale"
STAGES = ("phantom", "ingest", "encode", "train", "predict")
TARGET_MINUTES = 60.0
TARGET_RSS_GIB = 4.0
SAMPLE_S = 0.2
SECRET = "bench-scale-fixed-secret"
"""One fixed pseudonym secret: the held-out split follows the pseudonyms, so every run trains on the same patients."""


@dataclass
class StageResult:
    """One stage of one cohort size: what the monitor measured."""

    patients: int
    stage: str
    wall_s: float
    cpu_s: float
    max_process_rss_mib: float
    peak_tree_rss_mib: float
    returncode: int
    error: str = ""
    load_at_end: float = 0.0
    note: str = ""


def stage_command(stage: str, source: Path, patients: int, epochs: int, missing_rate: float = 0.0) -> list[str]:
    """The `clinfuse` arguments of one stage (what a user types)."""
    cohort, answers = source / "cohort.csv", source / "answers.parquet"
    if stage == "phantom":
        return ["phantom", "--patients", str(patients), "--out", str(source), "--seed", "7",
                "--missing-rate", str(missing_rate)]
    if stage == "ingest":
        return ["ingest", "--source", str(source), "--cohort", str(cohort), "--exclude", str(answers)]
    if stage == "encode":
        return ["encode", "--modality", "all"]
    if stage == "train":
        return ["train", "--epochs", str(epochs)]
    if stage == "predict":
        return ["predict", "--source", str(source), "--cohort", str(cohort)]
    raise ValueError(f"unknown stage {stage!r}")


def _tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of a process and all its live descendants (processes that vanish mid-walk count 0)."""
    import psutil

    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.Error:
            continue
    return total


def monitor(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd`` (output to ``log``) and measure it; called in a fresh monitor process (``--monitor``)."""
    import psutil

    peak = 0
    done = threading.Event()
    with log.open("w") as out:
        t0 = time.perf_counter()
        child = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        proc = psutil.Process(child.pid)

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(proc))
                done.wait(SAMPLE_S)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rc = child.wait()
        wall = time.perf_counter() - t0
        done.set()
        sampler.join()
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "max_process_rss_mib": usage.ru_maxrss / 1024,
            "peak_tree_rss_mib": peak / 2**20, "returncode": rc}


def run_stage(stage: str, patients: int, work: Path, epochs: int, missing_rate: float = 0.0) -> StageResult:
    """One stage in its own monitor process; a failure is recorded with the log's last line, never raised."""
    source, log = work / "cohort", work / f"{stage}.log"
    env = {**os.environ, "CLINFUSE_HOME": str(work / "home"), "CLINFUSE_PSEUDONYM_SECRET": SECRET}
    cmd = [str(BIN / "clinfuse"), *stage_command(stage, source, patients, epochs, missing_rate)]
    spec = json.dumps({"cmd": cmd, "log": str(log)})
    out = subprocess.run([sys.executable, __file__, "--monitor", spec], cwd=REPO, env=env, capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        return StageResult(patients, stage, 0.0, 0.0, 0.0, 0.0, out.returncode, out.stderr.strip()[-200:])
    got = json.loads(out.stdout.strip().splitlines()[-1])
    error = ""
    if got["returncode"] != 0:
        error = last_line(log.read_text(errors="replace")) or f"exit {got['returncode']}"
    return StageResult(patients, stage, error=error, load_at_end=os.getloadavg()[0], **got)


def last_line(text: str) -> str:
    """The last non-empty line of a command's output, progress-bar redraws (carriage returns) split off."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def run_cohort(patients: int, work: Path, epochs: int, on_stage: Callable[[StageResult], None] = lambda _: None,
               stages: tuple[str, ...] = STAGES, missing_rate: float = 0.0) -> list[StageResult]:
    """Every stage in order on one fresh work folder; stops after the first failed stage (the next needs it).

    ``on_stage`` sees each result as it comes (the caller saves it: a long run stopped midway keeps its stages).
    """
    work.mkdir(parents=True, exist_ok=True)
    results = []
    for stage in stages:
        result = run_stage(stage, patients, work, epochs, missing_rate)
        results.append(result)
        on_stage(result)
        print(f"{patients} patients, {stage}: {result.wall_s:.1f} s wall, {result.cpu_s:.1f} s CPU, "
              f"{result.peak_tree_rss_mib:.0f} MiB tree peak, rc {result.returncode} {result.error}",
              file=sys.stderr, flush=True)
        if result.returncode != 0:
            break
    return results


def stage_rates(results: list[StageResult]) -> dict[str, tuple[int, float, float]]:
    """Per stage, (patients, wall s per patient, CPU s per patient) of the largest size where it succeeded."""
    rates: dict[str, tuple[int, float, float]] = {}
    for r in sorted((r for r in results if r.returncode == 0), key=lambda r: r.patients):
        rates[r.stage] = (r.patients, r.wall_s / r.patients, r.cpu_s / r.patients)
    return rates


def projection(results: list[StageResult], target_patients: int) -> tuple[float, float] | None:
    """(minutes by the measured wall rates, minutes by CPU rates on every core) for ``target_patients``.

    Linear in patients, each stage's rate from the largest size where it ran; None unless every stage ran.
    The wall figure carries this run's load; the CPU figure is what an idle machine's cores would allow.
    """
    rates = stage_rates(results)
    if set(rates) != set(STAGES):
        return None
    wall = sum(w for _, w, _ in rates.values()) * target_patients / 60
    cpu = sum(c for _, _, c in rates.values()) * target_patients / 60 / (os.cpu_count() or 1)
    return wall, cpu


def table(results: list[StageResult], load_start: float, epochs: int, not_run: list[int],
          missing_rate: float = 0.0) -> str:
    """The Markdown section: one row per (size, stage), totals per size, the RSS growth and what was not run."""
    sizes = sorted({r.patients for r in results})
    load_end = results[-1].load_at_end if results else load_start
    lines = [
        f"`benchmarks/bench_scale.py`: file-based phantom cohorts of {' and '.join(f'{n:,}' for n in sizes)} "
        f"patients (seed 7, "
        + (f"{100 * missing_rate:g} % of each modality missing at random" if missing_rate else "no missingness")
        + "), each stage one whole `clinfuse` process in a fresh home "
        f"(`train --epochs {epochs}`; `predict` scores the same cohort with the champion `train` registered). "
        f"CPU s = user + sys of the command and every process it waited for; max process RSS = the largest "
        f"single process (`ru_maxrss`); tree RSS = the command and its workers summed, sampled every "
        f"{SAMPLE_S} s. {os.cpu_count()} cores, load average (1 min) {load_start:.1f} at the start and "
        f"{load_end:.1f} at the end, and after each stage in the last column"
        + (": the machine was shared with other jobs, so wall times are inflated and CPU seconds are the "
           "steadier figure." if max([load_start, *(r.load_at_end for r in results)]) > 1.0 else "."),
        "",
        "| patients | stage | wall s | CPU s | CPU ms / patient | max process RSS MiB | peak tree RSS MiB | result "
        "| load after |",
        "|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        lines.append(f"| {r.patients:,} | `clinfuse {r.stage}` | {r.wall_s:.1f} | {r.cpu_s:.1f} | "
                     f"{1000 * r.cpu_s / r.patients:.0f} | {r.max_process_rss_mib:.0f} | {r.peak_tree_rss_mib:.0f} | "
                     f"{'ok' if r.returncode == 0 else 'failed: ' + r.error.replace('|', '/')}"
                     f"{f' ({r.note})' if r.note else ''} | "
                     f"{r.load_at_end:.1f} |")
    lines.append("")
    latest = {(r.patients, r.stage): r for r in results}  # a stage re-run (e.g. after a fix) replaces its first run
    for n in sizes:
        mine = [r for (p, _), r in latest.items() if p == n]
        wall, cpu = sum(r.wall_s for r in mine), sum(r.cpu_s for r in mine)
        worst = max(r.peak_tree_rss_mib for r in mine) / 1024
        missing = [st for st in STAGES if st not in {r.stage for r in mine if r.returncode == 0}]
        scope = "end to end" if not missing else f"stages run ({', '.join(missing)} not completed)"
        lines.append(f"- {n:,} patients, {scope}: {wall / 60:.1f} min wall ({1000 * wall / n:.0f} ms per patient), "
                     f"{cpu / 60:.1f} min CPU; largest stage peak {worst:.2f} GiB (target <= {TARGET_RSS_GIB:g} GiB: "
                     f"{'held' if worst <= TARGET_RSS_GIB else '**missed**'}).")
    if len(latest) < len(results):
        lines.append("- Where a stage was run twice, the totals, the growth and the projection use its later run.")
    lines += _growth(results, sizes)
    for n in not_run:
        lines.append(f"- {n:,} patients: **not run in this session**; {_predicted(results, n)}.")
    return "\n".join(lines) + "\n"


def _predicted(results: list[StageResult], n: int) -> str:
    """What the measured per-patient rates predict for ``n`` patients, against the 60-minute target."""
    minutes = projection(results, n)
    if minutes is None:
        return "not every stage ran here, so there is no rate to predict it from"
    wall, cpu = minutes
    if cpu > TARGET_MINUTES:
        verdict = "would miss even on an idle machine"
    elif wall > TARGET_MINUTES:
        verdict = "within reach only on an idle machine"
    else:
        verdict = "would hold"
    return (f"linear in patients from the largest run of each stage, {wall:.0f} min at this run's wall rates and "
            f"{cpu:.0f} min if its CPU seconds were spread over all {os.cpu_count()} cores of an idle machine "
            f"(target <= {TARGET_MINUTES:g} min: {verdict})")


def _growth(results: list[StageResult], sizes: list[int]) -> list[str]:
    """Per stage, the peak tree RSS of the largest size over the smallest (target: within 10 %)."""
    if len(sizes) < 2:
        return []
    lo, hi = sizes[0], sizes[-1]
    by = {(r.patients, r.stage): r for r in results if r.returncode == 0}
    parts = []
    for stage in STAGES:
        if (lo, stage) in by and (hi, stage) in by:
            a, b = by[(lo, stage)].peak_tree_rss_mib, by[(hi, stage)].peak_tree_rss_mib
            parts.append(f"{stage} {a:.0f} -> {b:.0f} MiB ({100 * (b - a) / a:+.0f} %)")
    return [f"- Peak tree RSS from {lo:,} to {hi:,} patients: " + "; ".join(parts) + "."] if parts else []


def write_section(markdown: str, path: Path | None = None) -> None:
    """This benchmark's section of docs/BENCHMARKS.md (the shared writer keeps every other section)."""
    from benchmarks.markdown_section import BENCHMARKS_MD, write_section as replace_section

    replace_section(HEADING, f"Produced by `benchmarks/bench_scale.py --write`.\n\n{markdown}", path or BENCHMARKS_MD)


def report(markdown: str, write: bool) -> None:
    """Print the section and, with ``--write``, put it in docs/BENCHMARKS.md."""
    print(markdown, flush=True)
    if write:
        write_section(markdown)


def load_results(paths: list[Path]) -> tuple[list[StageResult], float, int, float]:
    """Results, first start load, epochs and missing rate of ``--json`` files (e.g. one per cohort size)."""
    results: list[StageResult] = []
    loads, epochs, rates = [], set(), set()
    for path in paths:
        saved = json.loads(path.read_text())
        results += [StageResult(**r) for r in saved["results"]]
        loads.append(saved["load_start"])
        epochs.add(saved["epochs"])
        rates.add(saved.get("missing_rate", 0.0))
    if len(epochs) != 1 or len(rates) != 1:
        raise SystemExit(f"the files were run with different --epochs {sorted(epochs)} or --missing-rate "
                         f"{sorted(rates)}; render them apart")
    return results, loads[0], epochs.pop(), rates.pop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[1000, 10000], help="cohort sizes, in order")
    parser.add_argument("--not-run", type=int, nargs="*", default=[],
                        help="sizes to list as not run, with the time the measured rates predict for them")
    parser.add_argument("--epochs", type=int, default=30, help="`clinfuse train --epochs`")
    parser.add_argument("--missing-rate", type=float, default=0.0,
                        help="`clinfuse phantom --missing-rate`: > 0 makes predict redraw imputed modalities")
    parser.add_argument("--note", default="", help="a remark shown with this run's rows (e.g. which change it measures)")
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES),
                        help="run only these stages, in the pipeline's order (each needs the ones before it)")
    parser.add_argument("--workdir", type=Path, help="keep cohorts and homes here (default: a temp folder, removed)")
    parser.add_argument("--json", type=Path, help="save the raw results here after every stage")
    parser.add_argument("--from-json", type=Path, nargs="+",
                        help="render the table from --json files of earlier runs (e.g. one per size) instead of running")
    parser.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    parser.add_argument("--monitor", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.monitor:
        spec = json.loads(args.monitor)
        print(json.dumps(monitor(spec["cmd"], dict(os.environ), Path(spec["log"]))))
        return
    if args.from_json:
        results, load_start, epochs, missing_rate = load_results(args.from_json)
        done = {r.patients for r in results}
        report(table(results, load_start, epochs, [m for m in args.not_run if m not in done], missing_rate),
               args.write)
        return
    load_start = os.getloadavg()[0]
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_scale_"))
    results: list[StageResult] = []

    def save(result: StageResult) -> None:
        results.append(replace(result, note=args.note))
        if args.json:
            args.json.write_text(json.dumps({"load_start": load_start, "epochs": args.epochs,
                                             "missing_rate": args.missing_rate,
                                             "results": [asdict(r) for r in results]}, indent=1))

    try:
        for n in args.patients:
            run_cohort(n, root / f"n{n}", args.epochs, save, tuple(st for st in STAGES if st in args.stages),
                       args.missing_rate)
            # after every size: a run stopped during the next size still leaves this table
            report(table(results, load_start, args.epochs, [m for m in [*args.patients, *args.not_run]
                                                            if m not in {r.patients for r in results}],
                         args.missing_rate), args.write)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
