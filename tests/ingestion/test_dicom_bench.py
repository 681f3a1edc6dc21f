"""The CT-read benchmark runs end to end on a tiny series and writes only its own section."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_ct_read.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_ct_read", BENCH)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_tiny_benchmark_run_and_table() -> None:
    bench = _bench_module()
    rows, volume_bytes = bench.run(3, 16, 1, ["clinfuse_raw", "sitk"])
    assert volume_bytes == 3 * 16 * 16 * 4
    assert [r["method"] for r in rows] == ["clinfuse_raw", "sitk"]
    assert all(r["median_s"] > 0 and r["cpu_s"] >= 0 for r in rows)
    markdown = bench.table(rows, volume_bytes, 3, 16, 1, 0.5)
    assert "| clinfuse read_ct_series (sort + decode + HU) |" in markdown and "1.00x" in markdown
    assert "faster by wall time" in markdown


def test_section_replaced_without_touching_others(tmp_path: Path) -> None:
    bench = _bench_module()
    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\n## EEG ingestion\n\neeg table\n")
    bench.write_section("first table\n", doc)
    doc.write_text(doc.read_text() + "\n## Dashboard\n\ndash table\n")
    bench.write_section("second table\n", doc)
    text = doc.read_text()
    assert "eeg table" in text and "dash table" in text and "second table" in text
    assert "first table" not in text and text.count("## CT series read") == 1


def test_rounds_take_turns_and_pool_every_repeat() -> None:
    bench = _bench_module()
    rows, _ = bench.run(3, 16, 2, ["raw_bytes", "clinfuse_raw"], rounds=2)
    assert [r["method"] for r in rows] == ["raw_bytes", "clinfuse_raw"]
    for row in rows:
        assert len(row["times_s"]) == 4 and len(row["cpu_times_s"]) == 4  # 2 rounds x 2 repeats
        assert row["median_s"] == pytest.approx((sorted(row["times_s"])[1] + sorted(row["times_s"])[2]) / 2)
    markdown = bench.table(rows, 3 * 16 * 16 * 4, 3, 16, 2, 0.5, rounds=2, load_end=0.7)
    assert "median of 4 runs (2 rounds of 2, the readers taking turns)" in markdown
    assert "when it ended: 0.7" in markdown
