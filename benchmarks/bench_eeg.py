"""EEG ingestion: ``ingestion.readers.eeg.read_eeg`` vs the plain MNE whole-recording pipeline, wall/CPU time and memory.

    .venv/bin/python benchmarks/bench_eeg.py --minutes 1,60 [--realdata DIR] [--write]

Inputs: the real TUH recording in ``DIR/eeg`` when it is there, and synthetic EDF
recordings (19 channels of the 10-20 system, 256 Hz, written by MNE/edfio) of the
given lengths. Each reader runs on the same file: once untimed (imports, page
cache), then ``--repeat`` timed runs (median wall and CPU seconds of this process),
then once under tracemalloc for the peak of traced allocations.

* clinfuse: ``read_eeg`` with its defaults (128 Hz, 4 s windows, 0.5-45 Hz band +
  50 Hz notch, at most 64 evenly spaced windows; reads only the stretches it keeps).
* alternative (plain MNE): ``mne.io.read_raw_edf(preload=True)``, pick the same 10-20
  channels, notch 50 Hz, band-pass 0.5-45 Hz, resample to 128 Hz, cut fixed 4 s
  epochs, keep 64 evenly spaced: the same output shape from the whole recording.

``--write`` puts the table in docs/BENCHMARKS.md ("## EEG ingestion").
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import mne
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingestion.modalities import STANDARD_1020  # noqa: E402
from ingestion.readers.eeg import read_eeg  # noqa: E402
from ingestion.readers.eeg_channels import map_channels  # noqa: E402

HEADING = "## EEG ingestion"
DEFAULT_REALDATA = REPO.parent / "shared" / "realdata"


def write_synthetic_edf(path: Path, minutes: float, sfreq: float = 256.0) -> Path:
    """A 19-channel EDF of pink-ish noise plus a 10 Hz rhythm and 50 Hz mains, with a patient code."""
    rng = np.random.default_rng(0)
    n = int(minutes * 60 * sfreq)
    t = np.arange(n) / sfreq
    data = np.cumsum(rng.normal(0, 1, (len(STANDARD_1020), n)), axis=1)
    data -= np.linspace(data[:, :1], data[:, -1:], n, axis=1).reshape(data.shape)  # keep the walk bounded
    data = 5e-6 * data / data.std(axis=1, keepdims=True) + 20e-6 * np.sin(2 * np.pi * 10 * t) + 5e-6 * np.sin(
        2 * np.pi * 50 * t)
    raw = mne.io.RawArray(data, mne.create_info(list(STANDARD_1020), sfreq, "eeg"), verbose="error")
    raw.set_meas_date(dt.datetime(2024, 5, 3, 10, 0, tzinfo=dt.timezone.utc))
    raw.info["subject_info"] = {"his_id": "MRN00000001"}
    mne.export.export_raw(path, raw, overwrite=True, verbose="error")
    return path


def plain_mne(path: Path) -> np.ndarray:
    """The alternative: load the whole recording, filter and resample it all, then cut windows."""
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    mapping = map_channels(raw.ch_names, dict(zip(raw.ch_names, raw.get_channel_types()))).mapping
    raw.pick(list(mapping))
    raw.rename_channels(mapping)
    raw.set_channel_types({name: "eeg" for name in raw.ch_names}, on_unit_change="ignore")
    if 50.0 < raw.info["sfreq"] / 2:
        raw.notch_filter(50.0, verbose="error")
    raw.filter(0.5, 45.0, verbose="error")
    raw.resample(128.0, verbose="error")
    epochs = mne.make_fixed_length_epochs(raw, duration=4.0, preload=True, verbose="error").get_data(units="uV")
    keep = np.unique(np.linspace(0, len(epochs) - 1, min(64, len(epochs))).round().astype(int))
    return epochs[keep].astype(np.float32)


def measure(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    """Median wall and CPU seconds over ``repeat`` runs after one warm-up, and the traced peak of one more run."""
    fn()
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "peak_mb": peak / 2**20}


def inputs(minutes: list[float], realdata: Path, tmp: Path) -> list[tuple[str, Path]]:
    out = []
    real = sorted((realdata / "eeg").glob("*.edf")) if (realdata / "eeg").is_dir() else []
    for path in real[:1]:
        raw = mne.io.read_raw_edf(path, preload=False, verbose="error")
        out.append((f"TUH `{path.name}` ({raw.n_times / raw.info['sfreq']:.0f} s, {len(raw.ch_names)} signals, "
                    f"{raw.info['sfreq']:.0f} Hz)", path))
    for m in minutes:
        path = write_synthetic_edf(tmp / f"synthetic_{m:g}min.edf", m)
        out.append((f"synthetic {m:g} min EDF, 19 ch, 256 Hz ({path.stat().st_size / 2**20:.0f} MiB)", path))
    return out


def markdown(rows: list[dict], repeat: int, loads: tuple[float, float], args: str) -> str:
    lines = [f"Produced by `benchmarks/bench_eeg.py {args} --write`: `ingestion.readers.eeg.read_eeg` (defaults: 128 Hz, "
             "4 s windows, 0.5–45 Hz + 50 Hz notch, at most 64 evenly spaced windows, reading only the kept "
             "stretches) against the plain MNE pipeline on the same file (`read_raw_edf(preload=True)`, same 10-20 "
             "channels, notch, band-pass, resample to 128 Hz, fixed 4 s epochs, 64 kept). Median of "
             f"{repeat} runs after a warm-up; peak = tracemalloc peak of one more run. Machine: {platform.machine()}, "
             f"{os.cpu_count()} CPU cores shared with other jobs (load average {loads[0]:.1f} at the start, "
             f"{loads[1]:.1f} at the end): CPU seconds are the figure to compare, wall times are inflated by the "
             "load. No target was set for this reader; the comparison is the named alternative.", "",
             "| input | output (clinfuse) | reader | wall s | CPU s | CPU vs plain MNE | peak traced MiB |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        c, m = r["clinfuse"], r["mne"]
        lines.append(f"| {r['input']} | {r['shape']} | clinfuse `read_eeg` | {c['wall']:.3f} | {c['cpu']:.3f} | "
                     f"{c['cpu'] / m['cpu']:.2f}x | {c['peak_mb']:.1f} |")
        lines.append(f"| | {r['mne_shape']} | plain MNE (alternative) | {m['wall']:.3f} | {m['cpu']:.3f} | 1.00x | "
                     f"{m['peak_mb']:.1f} |")
    lines += ["", "On a short recording both read the whole file, so the two cost about the same; on a long one "
              "`read_eeg` reads, filters and resamples only the stretches around the windows it keeps (with a 4 s "
              "margin each side for filter edges), so its time and memory stay near those of a short recording."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", default="1,60", help="comma-separated lengths of the synthetic recordings")
    parser.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA, help="folder with eeg/*.edf (optional)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write the table into docs/BENCHMARKS.md")
    args = parser.parse_args()
    loads = [os.getloadavg()[0]]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_eeg_") as tmp:
        for name, path in inputs([float(m) for m in args.minutes.split(",") if m], args.realdata, Path(tmp)):
            item = read_eeg(path)
            meta = item.metadata
            shape = (f"{tuple(item.array.shape)} of {meta['n_windows_total']} windows")
            row = {"input": name, "shape": shape, "mne_shape": str(tuple(plain_mne(path).shape)),
                   "clinfuse": measure(lambda p=path: read_eeg(p), args.repeat),
                   "mne": measure(lambda p=path: plain_mne(p), args.repeat)}
            rows.append(row)
            print(name, row["clinfuse"], row["mne"], flush=True)
    loads.append(os.getloadavg()[0])
    text = markdown(rows, args.repeat, (loads[0], loads[1]), f"--minutes {args.minutes} --repeat {args.repeat}")
    print(text)
    if args.write:
        from benchmarks.markdown_section import write_section

        write_section(HEADING, text)


if __name__ == "__main__":
    main()
