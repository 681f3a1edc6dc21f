"""Whether a stage command has anything to do, decided in milliseconds before Prefect, torch or MLflow load.

Why: a re-run of ``clinfuse ingest``/``encode``/``train``/``pipeline`` on an
unchanged home did no work but cost 20-35 s, almost all of it Prefect's
temporary server starting and torch/MONAI imports. Each successful run leaves
a fingerprint in ``<home>/state/last_runs.json``: a hash of the command, its
options, clinfuse's installed version, the ``CLINFUSE_*`` settings, and the stat
listing (size, mtime, ctime, inode per file) of everything the command reads or
keeps: the source folder and cohort table, the manifest, arrays, quarantine,
embedding store, encoder weights, models and the MLflow registry. The next run
computes the same hash; equal means nothing changed and the command says so and
exits 0. Anything in doubt runs the command: no state, a file that cannot be
listed, other options, a registry or outbox on another server, ``--force``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from ingestion.stat_listing import digest

STATE_FILE = Path("state") / "last_runs.json"


@dataclass(frozen=True)
class Check:
    """What one command's result depends on.

    ``inputs`` are what the command only reads (the source folder, the cohort
    CSV; encode's manifest): they must not change while it runs, or its
    fingerprint is not kept (an ingest during an encode leaves items unencoded).
    ``home`` are the files the command reads or writes (the home's stores, and the
    machine's note model cache that a first encode builds); their listing is taken
    after the run, so the run's own writes are part of the fingerprint.
    ``undecidable`` names why no fingerprint can vouch for this run (it always runs).
    """

    command: str
    flow: str
    options: dict[str, Any]
    inputs: tuple[Path, ...] = ()
    home: tuple[Path, ...] = ()
    undecidable: str | None = None


def _version() -> str:
    """clinfuse's installed version: an upgrade makes every command run again.

    Why not a hash of the code: the version is what the project's own caches key
    on (``pipeline_version``), and encoder versions live in the home's files.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("clinfuse")
    except PackageNotFoundError:
        return "unknown"


def _settings_digest() -> str:
    """The ``CLINFUSE_*`` environment and the working directory's ``.env`` (hashed: secrets are never stored)."""
    h = hashlib.sha256()
    for key in sorted(k for k in os.environ if k.startswith("CLINFUSE_")):
        h.update(f"{key}={os.environ[key]}\n".encode("utf-8", "surrogateescape"))
    h.update(digest([Path.cwd() / ".env"]).encode())
    return h.hexdigest()


def input_digest(check: Check) -> str:
    """The hash of everything outside the home: command, options, version, settings, source files."""
    static = json.dumps({"command": check.command, "options": check.options, "version": _version()},
                        sort_keys=True, default=str)
    parts = (static, _settings_digest(), digest(check.inputs))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def fingerprint(check: Check) -> tuple[str, str]:
    """(inputs hash, whole hash); raises ``OSError`` when a file or folder cannot be listed."""
    inputs = input_digest(check)
    return inputs, hashlib.sha256(f"{inputs}\n{digest(check.home)}".encode()).hexdigest()


def _state_path(home: Path) -> Path:
    return home / STATE_FILE


def _read_state(home: Path) -> dict[str, Any]:
    try:
        state = json.loads(_state_path(home).read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def unchanged_since(home: Path, check: Check) -> str | None:
    """The finishing time of the last successful run this one would repeat, or None when it must run."""
    if check.undecidable is not None:
        return None
    last = _read_state(home).get(check.command)
    if not isinstance(last, dict) or not isinstance(last.get("fingerprint"), str):
        return None
    try:
        _, whole = fingerprint(check)
    except OSError:
        return None
    return str(last.get("finished_at", "?")) if whole == last["fingerprint"] else None


def remember(home: Path, check: Check, inputs_before: str | None) -> bool:
    """After a successful run: store its fingerprint (atomically, under a lock). False when not stored.

    Not stored when the run cannot be vouched for: undecidable, its inputs changed
    while it ran (``inputs_before`` differs), or a file could not be listed.
    """
    if check.undecidable is not None or inputs_before is None:
        return False
    try:
        inputs, whole = fingerprint(check)
    except OSError:
        return False
    if inputs != inputs_before:
        return False
    path = _state_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = _read_state(home)
        state[check.command] = {"fingerprint": whole,
                                "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".last_runs.", suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            json.dump(state, out, indent=1, sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    return True


def inputs_now(check: Check) -> str | None:
    """The inputs hash before a run (None when they cannot be listed: the run's fingerprint is then not kept)."""
    if check.undecidable is not None:
        return None
    try:
        return input_digest(check)
    except OSError:
        return None


def report_nothing_to_do(console: Console, settings: Any, check: Check, since: str) -> None:
    """Say so, append it to ``<home>/logs/commands.log`` and, with a Prefect server configured, record a run there."""
    line = f"{check.command}: nothing changed since the run of {since}; nothing to do (use --force to run anyway)"
    console.print(line, soft_wrap=True)
    logs = settings.logs_dir
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "commands.log", "a", encoding="utf-8") as log:
        log.write(f"{datetime.now(timezone.utc).isoformat(timespec='seconds')} {line}\n")
    if settings.prefect_api_url:
        try:
            record_completed_run(settings.prefect_api_url, check.flow, line)
        except Exception as exc:  # noqa: BLE001 - the answer stands; the record is a courtesy
            console.print(f"[yellow]could not record the no-op run on {settings.prefect_api_url}: {exc}[/yellow]")


def record_completed_run(api_url: str, flow_name: str, message: str) -> str:
    """A Completed flow run of ``flow_name`` on the Prefect server, through its REST API; returns its id.

    Why REST and not ``prefect.client``: importing Prefect costs seconds, and this
    is two small requests.
    """
    import httpx

    base = api_url.rstrip("/") + "/"
    with httpx.Client(base_url=base, timeout=15.0) as client:
        flow = client.post("flows/", json={"name": flow_name})
        flow.raise_for_status()
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        run = client.post("flow_runs/", json={
            "flow_id": flow.json()["id"], "name": f"{flow_name}-nothing-to-do-{stamp}", "tags": ["no-op"],
            "state": {"type": "COMPLETED", "name": "Completed", "message": message}})
        run.raise_for_status()
        return str(run.json()["id"])


# --- what each stage command depends on -----------------------------------------------------------

def _ingest_home(settings: Any) -> tuple[Path, ...]:
    layout = settings.layout
    return (layout.manifest_path, layout.cohort_path, layout.arrays_dir, layout.quarantine_dir,
            layout.pseudonym_secret_path, settings.reid_map_path)


def _reviews(settings: Any) -> tuple[Path, ...]:
    """The access database holding clinicians' confirmed labels, which train uses (and its SQLite side files)."""
    db = settings.access_dir / "access.db"
    return (db, db.with_name("access.db-wal"), db.with_name("access.db-journal"))


def _train_home(settings: Any) -> tuple[Path, ...]:
    """What train writes or may write: it brings the store up to date first, and joint/finetune save encoders."""
    layout = settings.layout
    return (layout.embeddings_dir, layout.encoders_dir, layout.models_dir, layout.reports_dir, layout.mlflow_db,
            layout.mlflow_artifacts_dir, settings.note_model_cache_dir) + _reviews(settings)


def _remote_registry(settings: Any) -> str | None:
    if settings.mlflow_tracking_uri:
        scheme = settings.mlflow_tracking_uri.split(":", 1)[0]
        return f"the MLflow registry is configured ({scheme}): its state is not checked here"
    return None


def ingest_check(settings: Any, source: Path, cohort: Path | None, exclude: list[Path],
                 workers: int | None) -> Check:
    """``clinfuse ingest --source``: the source tree and cohort CSV, and the manifest/arrays/quarantine they made."""
    options = {"source": str(source.resolve()), "cohort": str(cohort.resolve()) if cohort else None,
               "exclude": sorted(str(p.resolve()) for p in exclude), "workers": workers}
    inputs = (source.resolve(),) + ((cohort.resolve(),) if cohort else ())
    return Check("ingest", "ingest", options, inputs, _ingest_home(settings))


def encode_check(settings: Any, modality: str, device: str | None, batch_size: int) -> Check:
    """``clinfuse encode``: the manifest and arrays, the embedding store, the encoder weights (home and note cache)."""
    layout = settings.layout
    return Check("encode", "encode", {"modality": modality, "device": device, "batch_size": batch_size},
                 (layout.manifest_path, layout.arrays_dir),  # read only: an ingest during the run voids it
                 (layout.embeddings_dir, layout.encoders_dir, settings.note_model_cache_dir))


def train_check(settings: Any, options: dict[str, Any]) -> Check:
    """``clinfuse train``: manifest and cohort labels (read only), the store, encoders, reviews, models, registry."""
    layout = settings.layout
    return Check("train", "train", options, (layout.manifest_path, layout.cohort_path), _train_home(settings),
                 _remote_registry(settings))


def pipeline_check(settings: Any, source: Path, cohort: Path | None, options: dict[str, Any]) -> Check:
    """``clinfuse pipeline``: everything ingest and train depend on, plus the predictions and the outbox."""
    layout = settings.layout
    inputs = (source.resolve(),) + ((cohort.resolve(),) if cohort else ())
    home = tuple(dict.fromkeys(_ingest_home(settings) + _train_home(settings)
                               + (layout.predictions_dir, layout.outbox_dir)))
    undecidable = _remote_registry(settings)
    if settings.outbox_stow_url or settings.outbox_fhir_url:
        undecidable = "results are sent to a configured destination, whose state is not checked here"
    return Check("pipeline", "pipeline", options, inputs, home, undecidable)


def nothing_to_do(console: Console, settings: Any, check: Check, force: bool) -> bool:
    """True (after saying so) when ``check``'s command would repeat its last successful run; never with ``force``."""
    since = None if force else unchanged_since(settings.home, check)
    if since is None:
        return False
    report_nothing_to_do(console, settings, check, since)
    return True
