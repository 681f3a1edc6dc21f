"""Start a batch prediction from the dashboard: a Prefect deployment when a server is configured, else in-process.

The dashboard never writes predictions itself; the flow (``flows.predict_flow``,
owned by the flows package) reads the cohort, writes the predictions store and
returns. This module only chooses how to start it, reports progress, and turns
every failure into a message a person can act on. It also unpacks an uploaded
zip safely (no paths escaping the target folder, bounded size).
"""

from __future__ import annotations

import inspect
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

#: ``<flow name>/<deployment name>`` of the batch prediction deployment.
DEPLOYMENT_NAME = "predict/predict"
#: Parameter names the flow may use for the cohort folder, in order of preference.
COHORT_PARAMS = ("cohort_dir", "source_dir", "cohort", "source", "input_dir", "raw_dir", "source_root")
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


def cohort_kwargs(func: Callable, cohort_dir: Path, home: Path | None = None) -> dict[str, str]:
    """The keyword arguments that hand ``cohort_dir`` (and the dashboard's ``home``, when the flow takes
    one, so results land where the dashboard reads) to ``func``, whatever the flow names them."""
    params = inspect.signature(getattr(func, "fn", func)).parameters
    extra = {"home": str(home)} if home is not None and "home" in params else {}
    for name in COHORT_PARAMS:
        if name in params:
            return {name: str(cohort_dir), **extra}
    first = next(iter(params), None)
    if first is None:
        raise TypeError("the prediction flow takes no parameters; cannot pass the cohort folder")
    return {first: str(cohort_dir), **extra}


def _in_process(cohort_dir: Path, home: Path | None, progress: Progress) -> BatchOutcome:
    try:
        from flows.predict_flow import predict_flow
    except ImportError as exc:
        return BatchOutcome(False, "Batch prediction is not available in this installation: the flow "
                                   f"`flows.predict_flow.predict_flow` could not be imported ({exc}).")
    progress(0.1, "Running the prediction flow in this process (ingest → encode → predict)…")
    try:
        result = predict_flow(**cohort_kwargs(predict_flow, cohort_dir, home))
    except Exception as exc:  # noqa: BLE001 - report the flow's failure to the clinician, do not crash the page
        return BatchOutcome(False, f"The prediction flow failed: {exc.__class__.__name__}: {exc}")
    progress(1.0, "Done.")
    detail = (f": {result.get('n')} patients, model v{result.get('model_version')}" if isinstance(result, dict)
              else (f": {result}" if isinstance(result, str) else ""))
    return BatchOutcome(True, f"Batch prediction finished{detail}.")


def _deployment(cohort_dir: Path, home: Path | None, progress: Progress, poll_s: float, timeout_s: float) -> BatchOutcome:
    from prefect import get_client
    from prefect.deployments import run_deployment

    try:
        from flows.predict_flow import predict_flow

        kwargs = cohort_kwargs(predict_flow, cohort_dir, home)
    except ImportError:
        kwargs = {COHORT_PARAMS[0]: str(cohort_dir)}
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


def run_batch(cohort_dir: Path, prefect_api_url: str | None, progress: Progress, home: Path | None = None,
              poll_s: float = 2.0, timeout_s: float = 3600.0) -> BatchOutcome:
    """Predict for the cohort in ``cohort_dir`` through the deployment or in-process; never raises."""
    if not cohort_dir.is_dir():
        return BatchOutcome(False, f"{cohort_dir} is not a folder; choose the cohort export folder.")
    if prefect_api_url:
        return _deployment(cohort_dir, home, progress, poll_s, timeout_s)
    return _in_process(cohort_dir, home, progress)
