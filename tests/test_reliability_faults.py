"""Faults of disks and servers: each ends retried or failed clearly, nothing half-written, and a re-run
completes with 0 duplicates and 0 lost.

Disk full: a small tmpfs is mounted over the folder a stage writes (the ingest's ``arrays``, the
encoder's ``embeddings``, the ``predictions`` store) and filled; the stage runs as the ``clinfuse``
process (predictions: the store's write path), must stop with exit 1 and one line saying "disk full"
and which folder, leave the manifest / store / predictions valid with no temporary file, and, once the
filler is removed, a re-run completes with every item once.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from ingestion.atomic_files import DiskFullError
from ingestion.manifest import read_manifest
from models.features.assemble import usable_items
from models.stores.embeddings import KEY_COLUMNS, EmbeddingStore
from models.stores.predictions import append_batch, batch_files, read_predictions
from tests.fault_disks import fill, free_up, mount_problem, small_disk, temp_files
from tests.fault_record import RECORD_ENV, record
from tests.test_reliability_concurrency import _subset
from tests.test_reliability_corpus import CLINFUSE, REPO, clean_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

SECRET = "faults-secret-3b9e"
N_PATIENTS = 6


def as_a_user() -> bool:
    """True when ``benchmarks/bench_faults.py`` records this run: its seconds go into docs/RELIABILITY.md, so
    the children then run exactly as a user's would (their own temporary Prefect server, MLflow's default
    back-off). Otherwise (CI) they skip those waits, which no assertion here is about."""
    return bool(os.environ.get(RECORD_ENV))


def quick(api: str, **extra: str) -> dict[str, str]:
    """Environment for a child that reports to the session's Prefect server at ``api``, unless :func:`as_a_user`.

    Why: without one each ``clinfuse`` child starts a temporary Prefect server on a fresh database (its
    migrations and all: seconds of CPU, most of a small command's time); the faults are in the home's stores.
    """
    return {} if as_a_user() else {"CLINFUSE_PREFECT_API_URL": api, **extra}


def clinfuse(home: Path, api: str, *args: str, timeout: float = 900, **extra: str) -> tuple[int, str, float]:
    """Run ``clinfuse ARGS`` on ``home`` (tf-idf notes, offline; Prefect server ``api``, see :func:`quick`);
    (exit code, stdout+stderr, seconds)."""
    env = clean_env(home, CLINFUSE_PSEUDONYM_SECRET=SECRET, CLINFUSE_NOTE_ENCODER="tfidf", **quick(api), **extra)
    t0 = time.monotonic()
    done = subprocess.run([*CLINFUSE, *args], cwd=REPO, env=env, capture_output=True, timeout=timeout)
    return done.returncode, (done.stdout + done.stderr).decode(errors="replace"), time.monotonic() - t0


UNCAUGHT = "Traceback (most recent call last) ─"
"""The head of Typer's panel for an exception the command did not catch (Prefect's log lines print plain ones)."""


def cli_message(output: str, start: str) -> str:
    """The command's own message: the line that begins with ``start`` and the one after (the console wraps).

    Searched rather than taken from the end: Prefect's log lines (with the task's traceback) go to
    stderr from another thread and may come before or after it.
    """
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(start):
            return " ".join(part.strip() for part in lines[i:i + 2])
    return ""


@pytest.fixture(scope="module")
def disk_root():
    """A private folder for the mounts, outside pytest's shared basetemp: a concurrent pytest session rotates
    old basetemp folders away, which would move a mounted tmpfs out from under this test."""
    import shutil
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="clinfuse-faults-disk-"))
    problem = mount_problem(root / "probe")
    if problem:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(problem)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def full_ingest(disk_root: Path, small_phantom: Path, prefect_api: str):
    """Ingest with ``arrays`` on a full 8 MB disk, then again once the filler is gone."""
    src, home = disk_root / "src", disk_root / "home"
    n_files = _subset(small_phantom, src, N_PATIENTS)
    with small_disk(home / "arrays", 8) as arrays:
        fill(arrays, 1 << 20)  # 1 MB free: a few arrays fit, the cohort's do not
        rc, out, seconds = clinfuse(home, prefect_api, "ingest", "--source", str(src), "--workers", "1")
        manifest_path = home / "manifest.parquet"
        before = read_manifest(manifest_path) if manifest_path.exists() else None  # must validate
        left = temp_files(home)
        free_up(arrays)
        rc2, out2, seconds2 = clinfuse(home, prefect_api, "ingest", "--source", str(src), "--workers", "1")
        after = read_manifest(manifest_path)
        arrays_ok = all((home / uri).is_file() for uri in after["array_uri"])
    return {"rc": rc, "out": out, "seconds": seconds, "before": before, "temp_left": left, "rc2": rc2,
            "out2": out2, "seconds2": seconds2, "after": after, "n_files": n_files, "home": home,
            "arrays_ok": arrays_ok, "api": prefect_api}


def test_ingest_on_a_full_disk_stops_clearly_and_rerun_completes(full_ingest) -> None:
    r = full_ingest
    assert r["rc"] == 1, r["out"][-3000:]
    words = cli_message(r["out"], "disk full: ")
    assert "arrays" in words and UNCAUGHT not in r["out"], r["out"][-3000:]
    assert r["temp_left"] == [], "a failed write left a temporary file"
    before = r["before"]
    if before is not None:
        assert not (before["status"] == "quarantined").any(), \
            "the full disk was blamed on the input: " + "; ".join(before["reason"].astype(str))
    after = r["after"]
    files = [f for fs in after["source_files"] for f in fs]
    kept = 0 if before is None else len(before)
    record("disk full during ingest (8 MB tmpfs over `arrays/`, 1 MB left)",
           f"exit {r['rc']}: \"{words[:90]}...\"; {kept} finished item(s) kept in the manifest; re-run exit {r['rc2']}, "
           f"{len(after)} items ok", lost=r["n_files"] - len(set(files)),
           duplicates=len(files) - len(set(files)) + int(after["item_id"].duplicated().sum()),
           seconds=r["seconds"], rerun_seconds=r["seconds2"])
    assert r["rc2"] == 0, r["out2"][-3000:]
    assert after["item_id"].is_unique, "duplicate manifest rows after the re-run"
    assert len(files) == len(set(files)) == r["n_files"], "a file is lost or listed twice"
    assert (after["status"] == "ok").all(), after.loc[after["status"] != "ok", "reason"].tolist()
    assert r["arrays_ok"], "a manifest row points at an array that is not there"
    if before is not None:
        kept = before.set_index("item_id")["ingested_at"]
        assert (after.set_index("item_id").loc[kept.index, "ingested_at"] == kept).all(), "finished rows redone"


@pytest.fixture(scope="module")
def full_encode(full_ingest):
    """Encode the notes (the cheapest encoder: the store's write path is the same for every modality) with
    ``embeddings`` on a full 1 MB disk (8 KB left), then again once the filler is gone."""
    home = full_ingest["home"]
    assert full_ingest["rc2"] == 0, full_ingest["out2"][-2000:]
    with small_disk(home / "embeddings", 1) as root:
        fill(root, 8 << 10)
        rc, out, seconds = clinfuse(home, full_ingest["api"], "encode", "--modality", "note", "--batch-size", "1")
        store = EmbeddingStore(root)
        stored, bad, left = len(store), store.verify(), temp_files(home / "embeddings")
        free_up(root)
        rc2, out2, seconds2 = clinfuse(home, full_ingest["api"], "encode", "--modality", "note", "--batch-size", "1")
        store = EmbeddingStore(root)
        index, bad2 = store.index(), store.verify()
    return {"rc": rc, "out": out, "seconds": seconds, "stored": stored, "bad": bad, "temp_left": left,
            "rc2": rc2, "out2": out2, "seconds2": seconds2, "index": index, "bad2": bad2,
            "manifest": read_manifest(home / "manifest.parquet")}


def test_encode_on_a_full_disk_stops_clearly_and_rerun_completes(full_encode) -> None:
    r = full_encode
    assert r["rc"] == 1, r["out"][-3000:]
    words = cli_message(r["out"], "disk full: ")
    assert "embeddings" in words and UNCAUGHT not in r["out"], r["out"][-3000:]
    assert r["bad"] == [] and r["temp_left"] == [], "the store holds a broken entry or a temporary file"
    n_usable = len(usable_items(r["manifest"], ["note"]).drop_duplicates("content_sha256"))
    index = r["index"]
    record("disk full during encode (notes; 1 MB tmpfs over `embeddings/`, 8 KB left)",
           f"exit {r['rc']}: \"{words[:90]}...\"; {r['stored']} entries kept, {len(r['bad'])} failing checksum; "
           f"re-run exit {r['rc2']}, {len(index)} of {n_usable} embedded",
           lost=n_usable - len(index.drop_duplicates(list(KEY_COLUMNS))),
           duplicates=int(index.duplicated(list(KEY_COLUMNS)).sum()), seconds=r["seconds"],
           rerun_seconds=r["seconds2"])
    assert r["rc2"] == 0, r["out2"][-3000:]
    assert len(index) == n_usable, f"{n_usable - len(index)} usable item(s) have no embedding"
    assert not index.duplicated(list(KEY_COLUMNS)).any(), "duplicate store keys"
    assert r["bad2"] == []
    assert r["stored"] < n_usable


def test_predictions_write_on_a_full_disk_fails_whole_and_retry_stores_once(disk_root: Path) -> None:
    from tests.models.test_predictions_store import model_output

    frame = model_output(40)
    with small_disk(disk_root / "predictions", 1) as root:
        first = append_batch(root, frame, model_name="clinfuse", model_version="1", run_id="r1")
        fill(root, 8 << 10)
        t0 = time.monotonic()
        with pytest.raises(DiskFullError, match="disk full.*predictions") as failed:
            append_batch(root, frame, model_name="clinfuse", model_version="1", run_id="r2")
        seconds = time.monotonic() - t0
        assert batch_files(root) == [first], "a half batch was published"
        assert temp_files(root) == []
        assert len(read_predictions(root)) == len(frame)
        free_up(root)
        append_batch(root, frame, model_name="clinfuse", model_version="1", run_id="r2")
        stored = read_predictions(root)
    record("disk full during the predictions write (1 MB tmpfs over `predictions/`, 8 KB left)",
           f"DiskFullError: \"{str(failed.value)[:90]}...\"; no batch file, no temporary file; "
           "the retried batch stored whole", lost=2 * len(frame) - len(stored),
           duplicates=int(stored.duplicated(["batch_id", "patient_id"]).sum()), seconds=seconds)
    assert len(stored) == 2 * len(frame)
    assert not stored.duplicated(["batch_id", "patient_id"]).any()
    assert set(stored["run_id"]) == {"r1", "r2"}


# -- MLflow down at registration -------------------------------------------------------------------------
class DropsOnce:
    """An MlflowClient whose first ``method`` call fails as a server that went away would (the rest pass)."""

    def __init__(self, client, method: str) -> None:
        self.client, self.method, self.dropped = client, method, 0

    def __getattr__(self, attr: str):
        real = getattr(self.client, attr)
        if attr != self.method or self.dropped:
            return real

        def dropped(*args, **kwargs):
            import requests

            self.dropped += 1
            raise requests.ConnectionError("connection refused (the tracking server went away)")
        return dropped


@pytest.fixture(scope="module")
def trained_synthetic(tmp_path_factory: pytest.TempPathFactory):
    """A small model trained on a synthetic cohort, and its held-out patients."""
    import numpy as np

    from models.simulation.phantom_features import synthetic_cohort
    from models.training.train import TrainConfig, train

    fs = synthetic_cohort(n=140, dim=8, missing_rate=0.3, seed=5).features
    root = tmp_path_factory.mktemp("faults-model")
    model_dir = train(fs.subset(np.arange(100)), TrainConfig(epochs=20, hidden=8, patience=20, seed=1)).save(root / "m1")
    return Path(model_dir), fs.subset(np.arange(100, 140))


@pytest.mark.parametrize("fails_at", ["set_registered_model_alias", "update_model_version"])
def test_registration_cut_midway_leaves_no_half_version_and_retry_registers_once(
        trained_synthetic, settings, fails_at: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    from flows.tracking import registry, runs as tracking
    from flows.tracking.registration import register_once

    model_dir, held_out = trained_synthetic
    before = mlflow.get_tracking_uri()
    try:
        tracking.configure_mlflow(settings)
        client = MlflowClient()
        flaky = DropsOnce(client, fails_at)
        with pytest.raises(tracking.TrackingUnavailable, match="did not answer"):
            with tracking.stage_run("train", settings):
                info = registry.log_pyfunc(model_dir, held_out)
                register_once(info.model_uri, held_out, model_key=model_dir.name, client=flaky)
        assert flaky.dropped == 1
        t0 = time.monotonic()
        with tracking.stage_run("train", settings):  # the retry (the task's, or a re-run of the flow)
            info = registry.log_pyfunc(model_dir, held_out)
            decision = register_once(info.model_uri, held_out, model_key=model_dir.name, client=flaky)
        retry_seconds = time.monotonic() - t0
        versions = client.search_model_versions("name='clinfuse'")
        only = client.get_model_version("clinfuse", versions[0].version)  # search results lack aliases
        record(f"MLflow connection lost at `{fails_at}` during registration",
               f"TrackingUnavailable; retry: {len(versions)} version(s) of the model, v{only.version} "
               f"aliases {only.aliases} (seconds: the retry)", lost=0 if only.aliases else 1,
               duplicates=len(versions) - 1, seconds=retry_seconds)
        assert len(versions) == 1, [(v.version, v.aliases) for v in versions]
        assert only.aliases == ["champion"] and decision.version == str(only.version)
        assert only.tags.get("gate_decision") == "champion", only.tags
        loaded = mlflow.pyfunc.load_model("models:/clinfuse@champion")  # its artifacts are whole
        assert len(registry.score(loaded, held_out, n_mc=0)) == len(held_out)
    finally:
        mlflow.set_tracking_uri(before)
        mlflow.set_registry_uri(before)


# -- Orthanc restarted mid-pull ------------------------------------------------------------------------
class StopsServerAt:
    """A DICOMweb client that stops the PACS just before its ``at``-th series download (a restart's first half)."""

    def __init__(self, client, server, at: int) -> None:
        self.client, self.server, self.at, self.downloads = client, server, at, 0

    def __getattr__(self, attr: str):
        return getattr(self.client, attr)

    def _http_get(self, *args, **kwargs):
        self.downloads += 1
        if self.downloads == self.at:
            self.server.stop()
        return self.client._http_get(*args, **kwargs)


@pytest.mark.server
def test_orthanc_restart_mid_pull_keeps_cursor_honest_and_rerun_has_no_duplicates(tmp_path: Path) -> None:
    import pydicom

    from flows.settings import Settings
    from ingestion.driver.ingest import ingest
    from ingestion.pacs import PacsError, connect, pull
    from ingestion.pacs_cursor import load_cursor, uid_token
    from ingestion.phantom import generate_cohort
    from tests.fault_servers import Orthanc, orthanc_problem

    problem = orthanc_problem()
    if problem:
        pytest.skip(problem)
    cohort = tmp_path / "cohort"
    # 2 patients: 4+ series, so the stop before the 3rd download leaves stored and unpulled ones alike;
    # more patients only add CT series to pull and ingest.
    generate_cohort(cohort, 2, seed=5, missing_rate=0.0, eeg_seconds=(4, 4))
    files = sorted(p for p in (cohort / "dicom").rglob("*") if p.is_file())
    series_of = {}
    for path in files:
        series_of.setdefault(str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID), []).append(path)
    server = Orthanc(tmp_path / "orthanc")
    server.start()
    try:
        server.upload(files)
        url, pacs_dir = server.base + "/dicom-web", tmp_path / "pacs"
        flaky = StopsServerAt(connect(url, timeout_s=10), server, at=3)
        t0 = time.monotonic()
        with pytest.raises(PacsError, match=r"did not answer.*nothing was lost"):
            pull(flaky, url, pacs_dir)
        failed_after = time.monotonic() - t0
        cursor = load_cursor(pacs_dir / "cursor.json", url)
        assert len(cursor.series) == 2, "the cursor moved past a series that was not stored (or lost one)"
        staging = pacs_dir / "staging"
        for uid, seen in cursor.series.items():
            folder = staging / uid_token(seen["study"]) / uid_token(uid)
            assert len(list(folder.glob("*.dcm"))) == seen["n"] == len(series_of[uid]), "a series staged in part"
        staged_before = {p.relative_to(staging) for p in staging.rglob("*.dcm")}
        assert len(staged_before) == sum(len(series_of[u]) for u in cursor.series)
        assert not list((pacs_dir / "tmp").rglob("*.dcm")), "a half download was left behind"

        server.start()  # the restart's second half: same storage, same port
        report = pull(connect(url, timeout_s=10), url, pacs_dir)
    finally:
        server.stop()
    assert len(series_of) >= 4 and report.series_current == 2 and report.series_pulled == len(series_of) - 2
    staged = sorted(staging.rglob("*.dcm"))
    assert len(staged) == len(files), "an instance is missing or staged twice"
    home = tmp_path / "home"
    result = ingest(staging, None, home, SECRET, config=Settings(home=home).reader_config(), workers=1)
    manifest = read_manifest(home / "manifest.parquet")
    assert manifest["item_id"].is_unique and (manifest["status"] == "ok").all(), manifest["reason"].tolist()
    listed = [f for fs in manifest["source_files"] for f in fs]
    assert len(listed) == len(set(listed)) == len(files)
    assert result.new == len(manifest) == len(series_of)
    record("Orthanc stopped before the 3rd series download, restarted after",
           f"PacsError \"did not answer ... nothing was lost\"; cursor: {len(cursor.series)} of {len(series_of)} series, "
           f"each staged whole; re-run pulled {report.series_pulled}, {len(manifest)} items ingested",
           lost=len(files) - len(set(listed)), duplicates=len(listed) - len(set(listed)), seconds=failed_after)


@pytest.mark.server
def test_train_with_mlflow_down_fails_clearly_then_rerun_registers_without_retraining(
        tmp_path: Path, prefect_api: str) -> None:
    """A tracking URI that refuses connections at registration: bounded retries, a clear stop, the model kept.

    In CI MLflow's back-off between its HTTP retries is 0 (its own settings, see :func:`quick`): the number of
    retries is what is checked, and the default back-off adds about 14 s of sleep per registration attempt.
    """
    import mlflow
    from mlflow import MlflowClient

    from flows.settings import Settings
    from tests.conftest import free_port

    home = tmp_path / "home"
    dead = f"http://127.0.0.1:{free_port()}"
    args = ("train", "--synthetic", "120", "--impute", "zero", "--epochs", "10")
    env_dead = clean_env(home, CLINFUSE_PSEUDONYM_SECRET=SECRET, CLINFUSE_MLFLOW_TRACKING_URI=dead,
                         **quick(prefect_api, MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR="0",
                                 MLFLOW_HTTP_REQUEST_BACKOFF_JITTER="0"))
    t0 = time.monotonic()
    done = subprocess.run([*CLINFUSE, *args], cwd=REPO, env=env_dead, capture_output=True, timeout=900)
    seconds, out = time.monotonic() - t0, (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 1, out[-3000:]
    assert cli_message(out, f"MLflow at {dead} did not answer") and UNCAUGHT not in out, out[-3000:]
    exhausted = out.count("Retrying (Retry(total=0")  # one per MLflow request that used up its HTTP retries
    assert 2 <= exhausted <= 4, f"{exhausted} requests: the registration was not retried, or retried unboundedly"
    models = sorted((home / "models").glob("*/model.json"))
    assert len(models) == 1, "the trained model was not kept"
    trained_at = models[0].stat().st_mtime_ns

    # MLflow back (the home's own tracking store); Prefect's INFO lines say which tasks ran and which were cached.
    rc, out2, seconds2 = clinfuse(home, prefect_api, *args, PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="INFO")
    assert rc == 0, out2[-3000:]
    assert re.search(r"Task run 'train-\w+' - Finished in state Cached", out2), "the model was trained again"
    assert sorted((home / "models").glob("*/model.json")) == models and models[0].stat().st_mtime_ns == trained_at
    before, before_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        uri = Settings(home=home).tracking_uri
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)  # an earlier test in the session may have left another registry set
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        versions = client.search_model_versions("name='clinfuse'")
        assert len(versions) == 1
        only = client.get_model_version("clinfuse", versions[0].version)
        assert only.aliases == ["champion"] and only.tags.get("gate_decision") == "champion"
        assert mlflow.pyfunc.load_model("models:/clinfuse@champion") is not None
    finally:
        mlflow.set_tracking_uri(before)
        mlflow.set_registry_uri(before_registry)
    record("MLflow refusing connections at registration (`clinfuse train`)",
           f"exit 1 after {exhausted} requests each retried 3 times (register task: 3 attempts): \"MLflow at ... did "
           f"not answer\"; re-run: train task cached, v{only.version} champion", lost=0,
           duplicates=len(versions) - 1, seconds=seconds, rerun_seconds=seconds2)


# -- PostgreSQL restarted mid-flow (team mode's MLflow server on PostgreSQL) ------------------------------
class RestartsBefore:
    """An MlflowClient that restarts the database under the tracking server just before its first ``method`` call."""

    def __init__(self, client, method: str, restart) -> None:
        self.client, self.method, self.restart, self.restarts = client, method, restart, 0

    def __getattr__(self, attr: str):
        real = getattr(self.client, attr)
        if attr != self.method or self.restarts:
            return real

        def restarted_first(*args, **kwargs):
            self.restarts += 1
            self.restart()
            return real(*args, **kwargs)
        return restarted_first


def restart_postgres(pg) -> None:
    """``pg_ctl restart -m fast``: every connection the MLflow server holds is cut, the server comes back."""
    from tests.flows.pg_cluster import _run_as

    data = Path(pg.sql("postgres", "SHOW data_directory"))
    log = data.parent / "server.log"  # the restarted server writes here, never into a pipe this process waits on
    done = subprocess.run([*_run_as(), str(pg.bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-m", "fast",
                           "-w", "-t", "120", "restart"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=180)
    assert done.returncode == 0, log.read_text(errors="replace")[-2000:]


@pytest.mark.server
def test_postgres_restart_during_registration_retries_or_fails_clearly_and_rerun_registers_once(
        trained_synthetic, pg_session, tmp_path: Path) -> None:
    import mlflow
    from mlflow import MlflowClient
    from pydantic import SecretStr

    from flows.serve.team import Services, mlflow_server
    from flows.settings import Settings
    from flows.tracking import registry, runs as tracking
    from flows.tracking.registration import register_once
    from tests.conftest import free_port

    model_dir, held_out = trained_synthetic
    before = mlflow.get_tracking_uri()
    with pg_session.databases(("mlflow",)) as pg:  # the session's cluster (skips when PostgreSQL is absent)
        settings = Settings(home=tmp_path / "home", mlflow_backend_store_uri=SecretStr(pg.url("mlflow")))
        settings.ensure_dirs()
        with Services(tmp_path / "logs", startup_timeout_s=400) as services:
            url = services.start(mlflow_server(settings, free_port())).url
            served = settings.model_copy(update={"mlflow_tracking_uri": url})
            try:
                tracking.configure_mlflow(served)
                client = MlflowClient()
                restarting = RestartsBefore(client, "create_model_version", lambda: restart_postgres(pg))
                t0 = time.monotonic()
                outcome = "retried inside the run and completed"
                try:
                    with tracking.stage_run("train", served):
                        info = registry.log_pyfunc(model_dir, held_out)
                        register_once(info.model_uri, held_out, model_key=model_dir.name, client=restarting)
                except tracking.TrackingUnavailable as exc:
                    outcome = f"failed clearly ({str(exc)[:60]}...), re-run"
                except Exception as exc:  # noqa: BLE001 - recorded: an unclear failure fails the test below
                    pytest.fail(f"the restart ended in an unclear error: {type(exc).__name__}: {exc}")
                seconds = time.monotonic() - t0
                assert restarting.restarts == 1
                with tracking.stage_run("train", served):  # the re-run: registers, or finds the finished one
                    info = registry.log_pyfunc(model_dir, held_out)
                    register_once(info.model_uri, held_out, model_key=model_dir.name)
                versions = client.search_model_versions("name='clinfuse'")
                only = client.get_model_version("clinfuse", versions[0].version)
                loaded = mlflow.pyfunc.load_model("models:/clinfuse@champion")
            finally:
                mlflow.set_tracking_uri(before)
                mlflow.set_registry_uri(before)
    record("PostgreSQL (MLflow server's store) restarted just before the version is created",
           f"{outcome}; then {len(versions)} version(s), v{only.version} aliases {only.aliases}",
           lost=0 if only.aliases else 1, duplicates=len(versions) - 1, seconds=seconds)
    assert len(versions) == 1 and only.aliases == ["champion"], [(v.version, v.aliases) for v in versions]
    assert len(registry.score(loaded, held_out, n_mc=0)) == len(held_out)
