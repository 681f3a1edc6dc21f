"""Shared fixtures: an isolated CLINFUSE_HOME per test, the real-data folder, free ports."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

# Prefect's in-process API server gets 20 s to start by default; on a 2-core CI machine
# running server tests beside it that is not always enough (a timeout, not a bug).
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
# One configured pseudonym secret for the suite, so pseudonyms (and the hash-based held-out
# split they decide) are the same in every run; tests of the generated secret unset it.
os.environ.setdefault("CLINFUSE_PSEUDONYM_SECRET", "clinfuse-test-suite-secret")

from tests.process_leaks import (  # noqa: F401 - session leak check
    pytest_sessionfinish,
    pytest_sessionstart,
    pytest_testnodedown,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("CLINFUSE_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))


def pytest_configure(config: pytest.Config) -> None:
    """Every run ends with its slowest files and its wall time (tests/durations_report.py): CI's budget."""
    from tests import durations_report

    if not config.pluginmanager.is_registered(durations_report):
        config.pluginmanager.register(durations_report, "clinfuse-durations-report")


def _session_folder_in_env(tmp_path_factory: pytest.TempPathFactory, variable: str, name: str) -> Iterator[Path]:
    """A session folder named by ``variable`` while the session runs (children inherit it), then as before."""
    before = os.environ.get(variable)
    path = tmp_path_factory.mktemp(name)
    os.environ[variable] = str(path)
    yield path
    if before is None:
        os.environ.pop(variable, None)
    else:
        os.environ[variable] = before


@pytest.fixture(scope="session", autouse=True)
def note_model_cache(tmp_path_factory: pytest.TempPathFactory):
    """One machine-level note model cache per test session: the suite exports the int8 MiniLM once
    (~14 s), never into the user's cache; child ``clinfuse`` processes inherit it."""
    yield from _session_folder_in_env(tmp_path_factory, "CLINFUSE_NOTE_MODEL_CACHE", "note-model-cache")


@pytest.fixture(scope="session", autouse=True)
def prefect_template(tmp_path_factory: pytest.TempPathFactory):
    """One Prefect database template per test session (flows/prefect_template.py), never the user's cache: the
    first fresh home's temporary server migrates, later fresh homes start from its copy (~15 s less each)."""
    yield from _session_folder_in_env(tmp_path_factory, "CLINFUSE_PREFECT_TEMPLATE", "prefect-template")


@pytest.fixture
def settings(tmp_path: Path):
    """Settings rooted in a fresh temporary home; never the user's."""
    from flows.settings import Settings

    s = Settings(home=tmp_path / "home")
    s.ensure_dirs()
    return s


@pytest.fixture
def realdata() -> Path:
    """The shared real-data folder; tests using it skip with a reason when it is absent."""
    if not REALDATA.is_dir():
        pytest.skip(f"real data folder {REALDATA} is absent (see ../shared/realdata/SOURCES.md)")
    return REALDATA


def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a server the test starts."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def small_phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 16-patient phantom cohort (seed 11, 25 % MCAR missingness, 30-40 s EEG), generated once per session.

    Read-only for tests: copy it before changing anything in it.
    """
    from ingestion.phantom import generate_cohort

    out = tmp_path_factory.mktemp("small_phantom") / "cohort"
    generate_cohort(out, 16, seed=11, missing_rate=0.25, mechanism="mcar", eeg_seconds=(30, 40))
    return out


@pytest.fixture(scope="session")
def ingested_phantom_home(tmp_path_factory: pytest.TempPathFactory, small_phantom: Path) -> Path:
    """``small_phantom`` ingested and encoded once per session (tests/shared_home.py). Read-only: copy it
    into the test's own home with ``tests.shared_home.copy_ingested``."""
    from tests.shared_home import build_ingested_home

    return build_ingested_home(tmp_path_factory.mktemp("ingested-phantom") / "home", small_phantom)


@pytest.fixture(scope="session")
def orthanc_session(tmp_path_factory: pytest.TempPathFactory):
    """One DICOMweb-only Orthanc for the session (HTTP on loopback; no DICOM port): starting one per test
    costs seconds on a loaded machine. Use ``empty_orthanc``, never this one directly."""
    from tests.orthanc_server import run_orthanc

    with run_orthanc(tmp_path_factory.mktemp("orthanc-session")) as server:
        yield server


@pytest.fixture
def empty_orthanc(orthanc_session):
    """The session's Orthanc with every patient deleted (REST), so each test starts on an empty PACS."""
    orthanc_session.clear()
    return orthanc_session


@pytest.fixture(scope="session")
def pg_session():
    """One throwaway PostgreSQL cluster for the session (loopback, free port); each user makes its own
    databases with ``pg_session.databases(...)`` and drops them after. Skips when PostgreSQL is absent."""
    from tests.flows.pg_cluster import pg_bindir, postgres_cluster

    if pg_bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql "
                    "(scripts/ensure-system-packages.sh)")
    with postgres_cluster(free_port(), ()) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Prefect server (SQLite, its own home, loopback) for the tests that need one, and for the
    ``clinfuse`` child processes of fault tests that would otherwise each start a temporary one.

    Why one per session: each start costs about 9 s of CPU (42 s of wall time at load 15 on 2 cores),
    while an idle server costs about 1 s of CPU a minute; it starts with its first user.
    Users must not count a server's runs, pools or deployments they did not create themselves.
    """
    from flows.prefect_env import settings_for
    from flows.serve.team import Services, prefect_server

    settings = settings_for(str(tmp_path_factory.mktemp("prefect-server")))
    services = Services(settings.home / "logs", startup_timeout_s=300)
    try:
        yield services.start(prefect_server(settings, free_port())).url + "/api"
    finally:
        services.stop()


def _run_then_exit(target, args: tuple) -> None:  # noqa: ANN001 - any picklable callable
    """Run ``target`` in a forked child and leave through ``os._exit``.

    A child forked from a test process that has run Prefect flows inherits
    Prefect's exit-time machinery and ends with exit code 1 even when its work
    succeeded; ``os._exit`` makes the exit code say only whether ``target``
    raised (1, traceback on stderr) or returned (0).
    """
    import traceback

    code = 0
    try:
        target(*args)
    except BaseException:  # noqa: BLE001 - reported through the exit code and stderr
        traceback.print_exc()
        code = 1
    finally:
        import sys

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def forked_processes(target, argsets: list[tuple]) -> list:  # noqa: ANN001
    """Started fork-context processes running ``target(*args)`` for each args tuple (concurrency tests)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_run_then_exit, args=(target, args)) for args in argsets]
    for p in procs:
        p.start()
    return procs
