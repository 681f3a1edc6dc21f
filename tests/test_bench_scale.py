"""benchmarks/bench_scale.py: its per-stage measurements are real, its table says what was and was not run."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from benchmarks import bench_scale as bench

REPO = Path(__file__).resolve().parents[1]


def test_monitor_measures_cpu_and_memory_of_the_whole_process_tree(tmp_path: Path) -> None:
    # a parent that starts a child holding 300 MiB and burning CPU: only a tree-wide measure sees both
    child = ("import numpy as np, time; a = np.ones(200 * 2**20 // 8); t = time.process_time()\n"
             "while time.process_time() - t < 0.2: a.sum()\n")
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    got = bench.monitor([sys.executable, "-c", parent], {}, tmp_path / "log")
    assert got["returncode"] == 0
    assert got["cpu_s"] >= 0.2  # the grandchild's CPU, reaped by its parent, reaches the monitor
    assert got["max_process_rss_mib"] >= 200
    assert got["peak_tree_rss_mib"] >= 200
    assert got["wall_s"] >= 0.2


def test_failed_command_is_recorded_with_its_last_line(tmp_path: Path) -> None:
    got = bench.monitor([sys.executable, "-c", "import sys; print('step 1', flush=True); sys.exit('disk full\\r')"], {},
                        tmp_path / "log")
    assert got["returncode"] == 1
    assert bench.last_line((tmp_path / "log").read_text()) == "disk full"
    assert bench.last_line("progress 10%\rprogress 100%\r\n") == "progress 100%"


def _result(patients: int, stage: str, wall: float, cpu: float, rss: float, rc: int = 0) -> bench.StageResult:
    return bench.StageResult(patients, stage, wall, cpu, rss, rss, rc, "" if rc == 0 else "boom", load_at_end=1.5)


def test_table_reports_growth_projection_and_unrun_sizes() -> None:
    results = [_result(100, s, 10.0, 8.0, 500.0) for s in bench.STAGES]
    results += [_result(1000, s, 100.0, 80.0, 550.0) for s in bench.STAGES[:-1]]
    results.append(_result(1000, "predict", 5.0, 4.0, 700.0, rc=1))
    text = bench.table(results, 0.5, 30, [10000])
    assert "| 1,000 | `clinfuse predict` | 5.0 | 4.0 | 4 | 700 | 700 | failed: boom | 1.5 |" in text
    assert "1,000 patients, stages run (predict not completed)" in text
    assert "train 500 -> 550 MiB (+10 %)" in text and "predict" not in text.split("Peak tree RSS")[1]
    # predict's rate comes from the 100-patient run (the largest where it succeeded): 0.1 s/patient
    wall, cpu = bench.projection(results, 10000)
    assert wall == pytest.approx((4 * 0.1 + 0.1) * 10000 / 60)
    assert cpu == pytest.approx((4 * 0.08 + 0.08) * 10000 / 60 / (bench.os.cpu_count() or 1))
    assert "10,000 patients: **not run in this session**" in text
    noted = bench.table([bench.StageResult(8, "ingest", 1.0, 1.0, 9.0, 9.0, 0, note="re-run")], 0.1, 3, [])
    assert "| ok (re-run) |" in noted
    rerun = [_result(8, "ingest", 50.0, 5.0, 100.0), replace(_result(8, "ingest", 10.0, 4.0, 90.0), note="fixed")]
    text_rerun = bench.table(rerun, 0.1, 3, [])
    assert "0.2 min wall" in text_rerun and "later run" in text_rerun  # 10 s, not 60 s
    assert "no missingness" in text and "20 % of each modality missing" in bench.table(results, 0.5, 30, [], 0.2)


def test_written_section_keeps_other_sections(tmp_path: Path) -> None:
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## Other\n\nkeep me\n")
    bench.write_section(bench.table([_result(8, "phantom", 1.0, 1.0, 100.0)], 0.2, 3, []), md)
    text = md.read_text()
    assert "keep me" in text and "## Scale" in text and "| 8 | `clinfuse phantom` |" in text


@pytest.mark.slow
@pytest.mark.server
def test_small_cohort_phantom_and_ingest_through_the_cli(tmp_path: Path) -> None:
    """Two real stages on 6 patients (train needs more patients than a quick test should take)."""
    out = tmp_path / "r.json"
    run = subprocess.run([sys.executable, "benchmarks/bench_scale.py", "--patients", "6", "--stages", "phantom",
                          "ingest", "--epochs", "2", "--workdir", str(tmp_path / "w"), "--json", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stderr[-2000:]
    saved = json.loads(out.read_text())
    assert [(r["stage"], r["returncode"]) for r in saved["results"]] == [("phantom", 0), ("ingest", 0)]
    assert all(r["cpu_s"] > 0 and r["max_process_rss_mib"] > 50 for r in saved["results"])
    assert len(list((tmp_path / "w" / "n6" / "cohort" / "dicom").iterdir())) == 12  # a CT and an X-ray folder each
    assert (tmp_path / "w" / "n6" / "home").is_dir()
    rendered = subprocess.run([sys.executable, "benchmarks/bench_scale.py", "--from-json", str(out),
                               "--not-run", "10000"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert "6 patients, stages run (encode, train, predict not completed)" in rendered.stdout
    assert "10,000 patients: **not run in this session**; not every stage ran here" in rendered.stdout
