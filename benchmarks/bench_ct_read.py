"""Benchmark: reading one CT series with clinfuse vs SimpleITK vs MONAI LoadImage.

One series (default 64 slices of 256x256, int16, shuffled file names) is
written to a temporary folder; each reader runs in its own subprocess (so one
reader's freed memory cannot hide another's peak) and reports the median of
several timed repeats and the peak resident-memory growth of its first call,
next to the size of the float32 volume. The markdown table is printed and, with
``--write``, put under "## CT series read" in docs/BENCHMARKS.md.

    .venv/bin/python benchmarks/bench_ct_read.py --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = {
    "raw bytes only (read every file whole, no parse: the floor)": "raw_bytes",
    "clinfuse read_ct_series (sort + decode + HU)": "clinfuse_raw",
    "clinfuse read_ct_series + resample/crop (MONAI Spacing)": "clinfuse_resampled",
    "SimpleITK ImageSeriesReader (GDCM sort + read)": "sitk",
    "MONAI LoadImage (default reader)": "monai",
}
HEADING = "## CT series read"
NOTES = (
    "Notes: every reader gets the same shuffled folder; the ratios are from the same run. clinfuse parses each\n"
    "header with pydicom from the file's first 64 KiB in memory and stops before the pixel data (for native\n"
    "little-endian files one pass of pydicom's read_dataset for the file meta and one for the body, with the\n"
    "cyclic garbage collector paused while headers are parsed), checks and\n"
    "sorts the series on headers alone, then reads each slice's native little-endian pixels at their offset\n"
    "into a per-thread buffer and rescales them into the float32 volume on every core (file reads and numpy\n"
    "release the GIL); the volume is allocated and its pages faulted in on a second thread while the headers\n"
    "are parsed. Compressed or unusual slices go through pydicom's handlers. Its peak is the volume plus\n"
    "per-thread buffers. What is left is mostly pydicom's header parse (one core, GIL-bound).\n"
    "MONAI's default reader here is PydicomReader (ITK is not installed). The synthetic\n"
    "slices hold no padding below air; padded slices add one clamp pass each. Resampling uses MONAI\n"
    "Orientation + Spacing (float32, bilinear) to (4, 2, 2) mm, then the body is fitted into (32, 64, 64).\n"
)
TARGETS = {"sitk": 3.0, "monai": 15.0}
PEAK_TARGET = 1.6


def _reader(method: str, spacing: tuple[float, float, float], shape: tuple[int, int, int]) -> Callable[[Path], object]:
    """A function reading a series folder with ``method``; imports happen here, outside the timing."""
    if method == "raw_bytes":
        return lambda folder: [f.read_bytes() for f in sorted(folder.iterdir())]
    if method.startswith("clinfuse"):
        from ingestion.readers.ct_volume import read_ct_series

        resample = method == "clinfuse_resampled"
        return lambda folder: read_ct_series(
            sorted(folder.iterdir()), spacing if resample else None, shape if resample else None
        ).array
    if method == "sitk":
        import SimpleITK as sitk

        def read_sitk(folder: Path) -> np.ndarray:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
            return sitk.GetArrayFromImage(reader.Execute())

        return read_sitk
    if method == "monai":
        from monai.transforms import LoadImage

        loader = LoadImage(image_only=True)
        return lambda folder: loader(str(folder))
    raise ValueError(method)


def _reader_of_monai_loader(folder: Path) -> object:
    """The reader MONAI's LoadImage picks for this folder by default (what the benchmark measured)."""
    from monai.transforms import LoadImage

    loader = LoadImage(image_only=True)
    for reader in reversed(loader.readers):
        if reader.verify_suffix(str(folder)):
            return reader
    return loader.readers[-1]


def _peak_rss_growth(fn: Callable[[], object]) -> int:
    """Peak RSS above the level before ``fn``, sampled every 0.5 ms in a thread."""
    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, proc.memory_info().rss)
            time.sleep(0.0005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    result = fn()
    done.set()
    thread.join()
    peak = max(peak, proc.memory_info().rss)
    del result
    return peak - base


def _child(method: str, folder: Path, warm: Path, repeats: int, spacing: list[float], shape: list[int]) -> dict:
    """Run inside the subprocess: warm up on a tiny series, measure memory once, then time."""
    folder, warm = Path(folder), Path(warm)
    read = _reader(method, tuple(spacing), tuple(shape))  # type: ignore[arg-type]
    read(warm)
    mem = _peak_rss_growth(lambda: read(folder))
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        read(folder)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    out = {"median_s": statistics.median(times), "cpu_s": statistics.median(cpu), "peak_rss_bytes": mem,
           "times_s": times, "cpu_times_s": cpu}
    if method == "monai":
        out["label_extra"] = type(_reader_of_monai_loader(folder)).__name__
    if method == "clinfuse_raw":
        import tracemalloc

        tracemalloc.start()
        read(folder)
        out["tracemalloc_peak_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return out


def _merge_rounds(rounds: list[dict]) -> dict:
    """One method's rounds as one row: medians over every timed repeat of every round, the first round's memory."""
    row = dict(rounds[0])
    row["times_s"] = [t for r in rounds for t in r["times_s"]]
    row["cpu_times_s"] = [t for r in rounds for t in r["cpu_times_s"]]
    row["median_s"], row["cpu_s"] = statistics.median(row["times_s"]), statistics.median(row["cpu_times_s"])
    return row


def run(n_slices: int, size: int, repeats: int, methods: list[str], rounds: int = 1) -> tuple[list[dict], int]:
    """Write the series, run every method in a subprocess, return rows and the volume's bytes.

    With ``rounds`` > 1 the methods take turns (each round starts every method's subprocess again), so a
    change in the machine's load during the run falls on every reader alike instead of on whichever ran then.
    """
    from tests.ingestion.dicom_factory import write_ct_series

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder, warm = Path(tmp) / "series", Path(tmp) / "warm"
        write_ct_series(folder, rng.integers(0, 2400, (n_slices, size, size)).astype(np.int16))
        write_ct_series(warm, rng.integers(0, 2400, (3, 16, 16)).astype(np.int16))
        chosen = [(label, method) for label, method in METHODS.items() if method in methods]
        got: dict[str, list[dict]] = {method: [] for _, method in chosen}
        for _ in range(rounds):
            for label, method in chosen:
                args = json.dumps([method, str(folder), str(warm), repeats, [4.0, 2.0, 2.0], [32, 64, 64]])
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", args], capture_output=True, text=True, check=False
                )
                if proc.returncode != 0:
                    raise RuntimeError(f"{method} failed:\n{proc.stderr[-2000:]}")
                got[method].append({"label": label, "method": method,
                                    **json.loads(proc.stdout.strip().splitlines()[-1])})
    return [_merge_rounds(got[method]) for _, method in chosen], n_slices * size * size * 4


def table(rows: list[dict], volume_bytes: int, n_slices: int, size: int, repeats: int, load: float = 0.0,
          rounds: int = 1, load_end: float | None = None) -> str:
    """Markdown table with speed ratios relative to clinfuse's raw read."""
    base = next((r["median_s"] for r in rows if r["method"] == "clinfuse_raw"), None)
    base_cpu = next((r["cpu_s"] for r in rows if r["method"] == "clinfuse_raw"), None)
    lines = [
        f"{n_slices} slices of {size}x{size} int16 (float32 volume {volume_bytes / 2**20:.1f} MiB), "
        f"median of {repeats * rounds} runs" + (f" ({rounds} rounds of {repeats}, the readers taking turns)"
                                                if rounds > 1 else "")
        + f", {platform.machine()} {_cpus()} CPU(s), Python {platform.python_version()}.",
        "",
        "| reader | median wall ms | wall vs clinfuse raw | median CPU ms | CPU vs clinfuse raw "
        "| peak RSS growth MiB | peak / volume |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = f"{r['median_s'] / base:.2f}x" if base else "n/a"
        cpu_ratio = f"{r['cpu_s'] / base_cpu:.2f}x" if base_cpu else "n/a"
        label = r["label"] + (f" ({r['label_extra']})" if r.get("label_extra") else "")
        lines.append(
            f"| {label} | {r['median_s'] * 1000:.0f} | {ratio} | {r['cpu_s'] * 1000:.0f} | {cpu_ratio} | "
            f"{r['peak_rss_bytes'] / 2**20:.1f} | {r['peak_rss_bytes'] / volume_bytes:.2f} |"
        )
    raw = next((r for r in rows if r["method"] == "clinfuse_raw"), None)
    if raw and "tracemalloc_peak_bytes" in raw:
        lines += ["", f"clinfuse raw read, tracemalloc peak: {raw['tracemalloc_peak_bytes'] / volume_bytes:.2f}x the volume."]
    by_method = {r["method"]: r for r in rows}
    if raw:
        lines.append(
            f"clinfuse raw read peak RSS growth: {raw['peak_rss_bytes'] / volume_bytes:.2f}x the volume "
            f"(target <= {PEAK_TARGET}x)."
        )
        for other, target in TARGETS.items():
            if other in by_method:
                o = by_method[other]
                wall = o["median_s"] / raw["median_s"]
                lines.append(
                    f"clinfuse raw vs {o['label'].split(' (')[0]}: {wall:.2f}x faster by wall time, "
                    f"{o['cpu_s'] / raw['cpu_s']:.2f}x by CPU time (target: {target:g}x by wall time, "
                    f"{'met' if wall >= target else 'not met'})."
                )
        if "raw_bytes" in by_method:
            lines.append(f"clinfuse raw read takes {raw['median_s'] / by_method['raw_bytes']['median_s']:.1f}x "
                         "the time of reading the files' bytes alone.")
    lines.append(f"Load average when the run started: {load:.1f}"
                 + (f", when it ended: {load_end:.1f}" if load_end is not None else "")
                 + f" on {_cpus()} CPU(s); with other jobs running, CPU time is the steadier comparison.")
    return "\n".join(lines) + "\n"


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def write_section(markdown: str, path: Path | None = None) -> None:
    """This benchmark's section of docs/BENCHMARKS.md (the shared writer keeps every other section)."""
    from benchmarks.markdown_section import BENCHMARKS_MD, write_section as replace_section

    replace_section(HEADING, f"Produced by `benchmarks/bench_ct_read.py --write`.\n\n{markdown}\n{NOTES}", path or BENCHMARKS_MD)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=64, help="number of slices in the series")
    parser.add_argument("--size", type=int, default=256, help="rows = columns of each slice")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per reader (median reported)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every reader's subprocess this many times, taking turns (steadier on a shared machine)")
    parser.add_argument("--methods", default=",".join(METHODS.values()), help="comma-separated subset")
    parser.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*json.loads(args.child))))
        return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    rows, volume_bytes = run(args.slices, args.size, args.repeats, args.methods.split(","), args.rounds)
    markdown = table(rows, volume_bytes, args.slices, args.size, args.repeats, load, args.rounds,
                     os.getloadavg()[0] if hasattr(os, "getloadavg") else None)
    print(markdown)
    if args.write:
        write_section(markdown)


if __name__ == "__main__":
    main()
