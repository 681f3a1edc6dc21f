"""Start a batch prediction from the dashboard: the Prefect deployment when a server is set, else a child process.

The dashboard never runs a flow in its own process: with a Prefect server the
``predict`` deployment runs on a worker; without one a child ``clinfuse
predict`` process does ingest, encode and scoring, its output going to a log
file under the home's ``logs`` folder. Either way this module only starts the
run, polls it for the page's progress bar, and turns every failure into a
message a person can act on. It also unpacks an uploaded zip safely (no paths
escaping the target folder, bounded size).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from flows.names import PREDICT_DEPLOYMENT
from ingestion.home_layout import HomeLayout

DEPLOYMENT_NAME = PREDICT_DEPLOYMENT
MAX_UNZIPPED_BYTES = 20 * 1024**3

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class BatchOutcome:
    """How the run ended; ``ok`` False always carries a reason."""

    ok: bool
    message: str
    flow_run_id: str | None = None


def unpack_zip(data: bytes | Path, parent: Path | None = None) -> Path:
    """Extract an uploaded cohort zip into a fresh temporary folder and return it.

    Refuses members with absolute paths or ``..`` (zip slip) and archives that
    would unpack to more than ``MAX_UNZIPPED_BYTES``.
    """
    import io

    source = io.BytesIO(data) if isinstance(data, bytes) else data
    try:
        archive = zipfile.ZipFile(source)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"the upload is not a readable zip archive ({exc})") from exc
    with archive:
        total = sum(i.file_size for i in archive.infolist())
        if total > MAX_UNZIPPED_BYTES:
            raise ValueError(f"the zip would unpack to {total / 1e9:.1f} GB; the limit is "
                             f"{MAX_UNZIPPED_BYTES / 1e9:.0f} GB. Point at a folder instead.")
        for info in archive.infolist():
            p = PurePosixPath(info.filename)
            if p.is_absolute() or ".." in p.parts:
                raise ValueError(f"the zip member {info.filename!r} would land outside the target folder; refusing")
        target = Path(tempfile.mkdtemp(prefix="clinfuse-upload-", dir=parent))
        archive.extractall(target)
    entries = [p for p in target.iterdir() if not p.name.startswith("__MACOSX")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


def predict_command(cohort_dir: Path) -> list[str]:
    """The child's command line: this interpreter's ``clinfuse predict`` on the cohort folder."""
    return [sys.executable, "-m", "flows.cli", "predict", "--source", str(cohort_dir)]


def _child(cohort_dir: Path, home: Path, progress: Progress, poll_s: float, timeout_s: float) -> BatchOutcome:
    """Run ``clinfuse predict`` in a child process (its own session) and poll it until it ends."""
    logs = HomeLayout.at(home).ensure().logs_dir
    log_path = logs / datetime.now(timezone.utc).strftime("batch-%Y%m%dT%H%M%S%f.log")
    env = {**os.environ, "CLINFUSE_HOME": str(home), "COLUMNS": "160"}
    with open(log_path, "wb") as log:
        child = subprocess.Popen(predict_command(cohort_dir), stdout=log, stderr=subprocess.STDOUT, env=env,
                                 start_new_session=True)
    start = time.monotonic()
    while child.poll() is None:
        elapsed = time.monotonic() - start
        if elapsed > timeout_s:
            child.terminate()
            return BatchOutcome(False, f"`clinfuse predict` still running after {timeout_s:.0f} s; stopped it. "
                                       f"Its output: {log_path}")
        progress(min(0.95, 0.05 + elapsed / max(timeout_s, 1.0)),
                 f"`clinfuse predict` (pid {child.pid}) running for {elapsed:.0f} s…")
        time.sleep(poll_s)
    tail = [line for line in log_path.read_text(errors="replace").splitlines() if line.strip()][-3:]
    if child.returncode != 0:
        return BatchOutcome(False, f"`clinfuse predict` failed (exit {child.returncode}): "
                                   f"{' '.join(tail) or 'no output'} (log: {log_path})")
    progress(1.0, "Done.")
    return BatchOutcome(True, f"Batch prediction finished: {' '.join(tail)}")


def _deployment(cohort_dir: Path, home: Path, progress: Progress, poll_s: float, timeout_s: float) -> BatchOutcome:
    from prefect import get_client
    from prefect.deployments import run_deployment

    kwargs = {"source": str(cohort_dir), "home": str(home)}
    try:
        flow_run = run_deployment(DEPLOYMENT_NAME, parameters=kwargs, timeout=0)
    except Exception as exc:  # noqa: BLE001
        return BatchOutcome(False, f"Could not start the deployment {DEPLOYMENT_NAME!r} on the Prefect server: "
                                   f"{exc.__class__.__name__}: {exc}. Is a worker serving it?")
    start = time.monotonic()
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run.id).state
            elapsed = time.monotonic() - start
            progress(min(0.95, elapsed / max(timeout_s, 1.0) + 0.05), f"Flow run {flow_run.name}: {state.name}")
            if state.is_final():
                ok = state.is_completed()
                return BatchOutcome(ok, f"Flow run {flow_run.name} ended {state.name}"
                                        + ("" if ok else f": {state.message or 'see the Prefect UI'}"),
                                    str(flow_run.id))
            if elapsed > timeout_s:
                return BatchOutcome(False, f"Flow run {flow_run.name} still {state.name} after {timeout_s:.0f} s; "
                                           "it keeps running on the server, check the Prefect UI.", str(flow_run.id))
            time.sleep(poll_s)


def run_batch(cohort_dir: Path, prefect_api_url: str | None, progress: Progress, home: Path,
              poll_s: float = 2.0, timeout_s: float = 3600.0) -> BatchOutcome:
    """Predict for the cohort in ``cohort_dir`` through the deployment or a child process; never raises."""
    if not cohort_dir.is_dir():
        return BatchOutcome(False, f"{cohort_dir} is not a folder; choose the cohort export folder.")
    if prefect_api_url:
        return _deployment(cohort_dir, home, progress, poll_s, timeout_s)
    return _child(cohort_dir, home, progress, poll_s, timeout_s)
