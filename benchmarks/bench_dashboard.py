"""Dashboard speed on a 10,000-patient predictions store: worklist query and patient page open.

    .venv/bin/python benchmarks/bench_dashboard.py --patients 10000

Writes a fixture home (tests/dashboard/fixtures.py: two batches, manifest, a pool
of real arrays), then times
  * the worklist's DuckDB query over the Parquet batch files, cold (no Streamlit
    cache: a fresh DuckDB connection per query), unfiltered and filtered, against
    the alternative of reading every batch file with pandas and filtering in memory;
  * the patient page's script run through Streamlit's AppTest (data access,
    figures, images), first open (empty caches) and re-open (warm caches).
Targets: worklist < 1 s, patient page < 2 s. Prints Markdown rows for
docs/BENCHMARKS.md ("## Dashboard").
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dashboard.store_queries import WorklistFilters, WorklistScope, prediction_files, query_worklist  # noqa: E402
from tests.dashboard.fixtures import build_home  # noqa: E402


def _timed(fn, repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), max(times)


def _pandas_worklist(pred_dir: Path) -> pd.DataFrame:
    """The alternative: read every batch with pandas, keep the latest batch, filter and sort in memory."""
    df = pd.concat([pd.read_parquet(p) for p in prediction_files(pred_dir)], ignore_index=True)
    latest = df.sort_values("predicted_at").iloc[-1]["batch_id"]
    df = df[(df["batch_id"] == latest) & (df["risk"] >= 0.6) & (df["mask_ct"] == "present")]
    return df.sort_values("risk", ascending=False)


def _patient_page(home: Path, patient_id: str, other_id: str) -> tuple[float, float, float]:
    """(first page run in a fresh process, another patient in a warm server, re-open of that patient)."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from flows.settings import get_settings

    os.environ["CLINFUSE_HOME"] = str(home)
    get_settings.cache_clear()
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(str(REPO / "dashboard" / "app.py"), default_timeout=120)
    at.switch_page("pages/patient.py")
    at.query_params["patient"] = patient_id
    t0 = time.perf_counter()
    at.run()
    cold = time.perf_counter() - t0
    if at.exception:
        raise RuntimeError(at.exception[0].value)
    at.query_params["patient"] = other_id
    t0 = time.perf_counter()
    at.run()
    other = time.perf_counter() - t0
    t0 = time.perf_counter()
    at.run()
    return cold, other, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_dashboard_") as tmp:
        t0 = time.perf_counter()
        fh = build_home(Path(tmp) / "home", n_patients=args.patients, n_distinct=20)
        print(f"wrote a {args.patients}-patient home in {time.perf_counter() - t0:.1f} s")
        pred = fh.home / "predictions"
        filt = WorklistFilters(risk_bands=("high",), require_present=("ct",))
        n_all = len(query_worklist(pred).rows)
        n_filt = len(query_worklist(pred, WorklistScope(), filt).rows)
        rows = [
            ("worklist, latest batch, DuckDB (cold)", n_all, _timed(lambda: query_worklist(pred), args.repeat)),
            ("worklist, high risk + CT present, DuckDB (cold)", n_filt,
             _timed(lambda: query_worklist(pred, WorklistScope(), filt), args.repeat)),
            ("worklist, model version (latest per patient), DuckDB", n_all,
             _timed(lambda: query_worklist(pred, WorklistScope(model_version="1")), args.repeat)),
            ("same filter, pandas read + filter (alternative)", len(_pandas_worklist(pred)),
             _timed(lambda: _pandas_worklist(pred), args.repeat)),
        ]
        cold, other, warm = _patient_page(fh.home, fh.patient_ids[4], fh.patient_ids[0])
        print("\n| measurement | rows | median s | max s |\n|---|---|---|---|")
        for name, n, (med, worst) in rows:
            print(f"| {name} | {n} | {med:.3f} | {worst:.3f} |")
        print(f"| patient page, first page of a fresh process (imports + store scan), AppTest | 1 | {cold:.3f} | - |")
        print(f"| patient page, a new patient (CT+X-ray+EEG+note+prediction), AppTest | 1 | {other:.3f} | - |")
        print(f"| patient page, re-open (cached) | 1 | {warm:.3f} | - |")


if __name__ == "__main__":
    main()
