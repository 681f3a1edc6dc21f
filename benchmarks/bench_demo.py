"""`make demo` timed as a user runs it, stage by stage: where the demo's minutes go.

    .venv/bin/python benchmarks/bench_demo.py --patients 200 --write

Runs ``scripts/demo.sh`` (what ``make demo`` runs after installation) as one
process in a fresh folder and home, and timestamps its output lines as they
arrive: the two demo stages (``==> 1/2`` phantom cohort, ``==> 2/2`` pipeline)
and, inside the pipeline, every Prefect flow run ("Beginning flow run ... for
flow 'encode'" to "Finished in state"). The install step is reported separately: ``make
install`` is timed only when its stamp says it is a no-op (a real install into
a shared venv is not something a benchmark should start). Target
(issue 17): demo <= 120 s after installation on an idle 2-core machine, 200
patients. ``--write`` puts the table in docs/BENCHMARKS.md ("## make demo stages").
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BEGIN = re.compile(r"Beginning (?:sub)?flow run '([^']+)' for flow '([^']+)'")
END = re.compile(r"Flow run '([^']+)' - Finished in state (\w+)")


def note_cache_state(env: dict[str, str]) -> str:
    """Whether the machine's int8 note model cache already holds a complete model (a first demo builds it)."""
    from flows.settings import Settings
    from models.encoders.note_onnx import is_complete

    folder = Settings(_env_file=None, **({"note_model_cache": env["CLINFUSE_NOTE_MODEL_CACHE"]}
                                         if env.get("CLINFUSE_NOTE_MODEL_CACHE") else {})).note_model_cache_dir
    built = [p for p in folder.glob("minilm-*.onnx") if is_complete(p)] if folder.is_dir() else []
    return "present (not rebuilt)" if built else "absent: this run exports it (~14 s)"


def prefect_template_state(env: dict[str, str]) -> str:
    """Whether the machine's Prefect database template exists (a first demo migrates an empty database)."""
    from flows.prefect_template import template_paths
    from flows.settings import Settings

    folder = Settings(_env_file=None, **({"prefect_template": env["CLINFUSE_PREFECT_TEMPLATE"]}
                                         if env.get("CLINFUSE_PREFECT_TEMPLATE") else {})).prefect_template_dir
    paths = template_paths(folder)
    return ("present: the home's database is copied from it" if paths and paths[0].is_file() else
            "absent: this run migrates an empty database (~15 s) and leaves the template")


def run_demo(patients: int, work: Path, env_extra: dict[str, str]) -> tuple[float, list[tuple[str, float, float]],
                                                                          dict[str, float]]:
    """(total seconds, [(stage, start s, end s)], flow seconds by flow name) of one demo run."""
    env = {**os.environ, "CLINFUSE_HOME": str(work / "home"), "PREFECT_LOGGING_LEVEL": "INFO", **env_extra}
    cmd = ["bash", "scripts/demo.sh", str(work / "demo-cohort"), str(patients)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stages: list[list] = []
    started: dict[str, tuple[str, float]] = {}
    flows: dict[str, float] = {}
    log = []
    for line in proc.stdout:  # type: ignore[union-attr]
        now = time.perf_counter() - t0
        log.append(line)
        if line.startswith("==> "):
            if stages:
                stages[-1][2] = now
            stages.append([line[4:].strip(), now, now])
        if m := BEGIN.search(line):
            started[m.group(1)] = (m.group(2), now)
        if (m := END.search(line)) and m.group(1) in started:
            name, since = started.pop(m.group(1))
            flows[name] = flows.get(name, 0.0) + now - since
    total = time.perf_counter() - t0
    if proc.wait() != 0:
        raise RuntimeError("scripts/demo.sh failed:\n" + "".join(log[-60:]))
    if stages:
        stages[-1][2] = total
    return total, [(s, a, b) for s, a, b in stages], flows


def prefect_breakdown(home: Path) -> tuple[float, list[tuple[str, float]]]:
    """(wall clock at which the pipeline flow began, [(what, seconds)]) from the home's own Prefect database:
    each top-level task (ingest, encode, train, evaluate, register, predict, outbox) from its start
    to its end, and the flow's time outside those tasks. The flows print progress bars, not Prefect's "Beginning
    flow run" lines, so the log alone no longer says where the pipeline's minutes go."""
    import sqlite3

    db = home / "prefect" / "prefect.db"
    if not db.is_file():
        return 0.0, []
    with sqlite3.connect(db) as con:
        flows = con.execute("SELECT f.name, fr.id, fr.start_time, fr.end_time FROM flow_run fr JOIN flow f "
                            "ON f.id = fr.flow_id WHERE fr.parent_task_run_id IS NULL ORDER BY fr.start_time").fetchall()
        tasks = con.execute("SELECT tr.name, tr.start_time, tr.end_time, tr.flow_run_id FROM task_run tr "
                            "ORDER BY tr.start_time").fetchall()
    if not flows:
        return 0.0, []
    from datetime import datetime, timezone

    def t(value: str) -> float:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()  # Prefect stores UTC

    name, top_id, f0, f1 = flows[0]
    rows, inside = [], 0.0
    for task, a, b, flow_run in tasks:
        if flow_run == top_id and a and b:
            rows.append((f"task `{task.rsplit('-', 1)[0]}`", t(b) - t(a)))
            inside += t(b) - t(a)
    rows.append((f"flow `{name}` outside those tasks", t(f1) - t(f0) - inside))
    return t(f0), rows


def pipeline_rows(work: Path, stages: list[tuple[str, float, float]], started_at: float) -> list[tuple[str, float]]:
    """The breakdown rows, led by the start-up: from the pipeline stage's first output line (``started_at`` is
    the demo's wall clock at its start) to its flow's start."""
    flow_start, rows = prefect_breakdown(work / "home")
    pipeline = [s for s in stages if s[0].startswith("2/2")]
    if not rows or not pipeline:
        return rows
    return [("`clinfuse pipeline` start-up before its flow began (imports, Prefect, no-op check)",
             flow_start - (started_at + pipeline[0][1]))] + rows


def make_install() -> float | None:
    """Seconds of ``make install`` when its stamp says it is a no-op; None when it would really install.

    A real install (pip into the shared venv) is not something a benchmark should
    trigger on a machine others use: it is reported as not measured.
    """
    if subprocess.run(["make", "-q", "install"], cwd=REPO, capture_output=True).returncode != 0:
        return None
    t0 = time.perf_counter()
    subprocess.run(["make", "install"], cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - t0


def table(patients: int, install: float | None, total: float, stages, flows, loads: tuple[float, float],
          cpu: float, note_cache: str, breakdown: list[tuple[str, float]] = (), template: str = "") -> str:
    lines = [f"`benchmarks/bench_demo.py --patients {patients}`: `scripts/demo.sh` (what `make demo` runs after "
             "installing) as one process in a fresh folder and home; stage times from its output lines as they "
             f"arrived. Load average (1 min) {loads[0]:.1f} at the start and {loads[1]:.1f} at the end, on 2 cores"
             + (" shared with other engineers' jobs: wall times are inflated, and the idle-machine target cannot be "
                "judged from this run." if loads[0] > 1.5 else " (otherwise idle at the start; the end figure includes the demo's own load)."), "",
             "| step | wall s | note |", "|---|---|---|",
             (f"| `make install` | {install:.1f} | venv stamp current: a no-op; a fresh install is not redone here |"
              if install is not None else
              "| `make install` | not measured | the venv stamp is not current, so it would reinstall into the shared "
              "venv; not run by this benchmark |")]
    lines.append(f"| machine's note model cache before the run | - | {note_cache} |")
    if template:
        lines.append(f"| machine's Prefect database template before the run | - | {template} |")
    for stage, a, b in stages:
        lines.append(f"| {stage} | {b - a:.1f} | |")
    for name, seconds in sorted(flows.items(), key=lambda kv: -kv[1]):
        lines.append(f"| &nbsp;&nbsp;Prefect flow `{name}` | {seconds:.1f} | inside the pipeline stage |")
    for what, seconds in breakdown:
        lines.append(f"| &nbsp;&nbsp;{what} | {seconds:.1f} | inside the pipeline stage (the home's Prefect database) |")
    verdict = "held" if total <= 120 else "**missed**"
    lines.append(f"| **demo after installation** | **{total:.1f}** | target <= 120 s on an idle machine: {verdict}"
                 f" (CPU of the demo's processes: {cpu:.0f} s) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=200)
    parser.add_argument("--cold-note-cache", action="store_true",
                        help="an empty note model cache, as on a machine that never ran clinfuse")
    parser.add_argument("--cold-prefect-template", action="store_true",
                        help="no Prefect database template, as on a machine that never ran clinfuse")
    parser.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    install = make_install()
    work = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    env_extra = {"CLINFUSE_NOTE_MODEL_CACHE": str(work / "note-model")} if args.cold_note_cache else {}
    if args.cold_prefect_template:
        env_extra["CLINFUSE_PREFECT_TEMPLATE"] = str(work / "prefect-db")
    note_cache = note_cache_state({**os.environ, **env_extra})
    template = prefect_template_state({**os.environ, **env_extra})
    before, started_at = os.times(), time.time()
    total, stages, flows = run_demo(args.patients, work, env_extra)
    after = os.times()
    cpu = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    markdown = table(args.patients, install, total, stages, flows, (load, os.getloadavg()[0]), cpu, note_cache,
                     pipeline_rows(work, stages, started_at), template)
    print(markdown)
    if args.write:
        from benchmarks.markdown_section import write_section

        write_section("## make demo stages", "Produced by `benchmarks/bench_demo.py --write`.\n\n" + markdown)


if __name__ == "__main__":
    main()
