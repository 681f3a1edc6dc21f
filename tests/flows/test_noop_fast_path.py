"""Stage commands that have nothing to do say so and exit 0 before Prefect, torch or MLflow are imported.

The fingerprint is checked on real files (a source folder with DICOM-free text and
CSV inputs, a home); the CLI runs in a subprocess whose ``sys.modules`` is written
out at exit, so "nothing heavy was imported" is observed, not assumed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from flows.commands import up_to_date as u
from flows.settings import Settings
from tests.conftest import REPO_ROOT, free_port

HEAVY = ("torch", "prefect", "mlflow", "monai")

RUN_CLI = """
import atexit, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from flows.cli import app
sys.argv[0] = "clinfuse"
app()
"""
"""Runs ``clinfuse ARGS`` and writes the names of every module it imported to the file given first."""


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Settings, Path]:
    """A home (set as CLINFUSE_HOME, so child processes share it) and a small source folder of real files."""
    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(REPO_ROOT)  # the CLI subprocess runs here too: the same .env, if any
    source = tmp_path / "source"
    (source / "notes").mkdir(parents=True)
    (source / "notes" / "p1.txt").write_text("Patient seen for seizures; EEG ordered.\n")
    (source / "cohort.csv").write_text("patient_id,label\np1,1\n")
    settings = Settings()
    settings.ensure_dirs()
    return settings, source


def _ingest(settings: Settings, source: Path, workers: int | None = None) -> u.Check:
    return u.ingest_check(settings, source, source / "cohort.csv", [], workers)


def _ran_before(settings: Settings, check: u.Check) -> None:
    """What a successful run leaves behind: its fingerprint in the home."""
    assert u.remember(settings.home, check, u.inputs_now(check))


def run_cli(args: list[str], tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    modules = tmp_path / f"modules-{len(list(tmp_path.glob('modules-*')))}.txt"
    done = subprocess.run([sys.executable, "-c", RUN_CLI, str(modules), *args], cwd=REPO_ROOT,
                          env={**os.environ, "COLUMNS": "200", **env}, capture_output=True, text=True, timeout=600)
    return done, set(modules.read_text().split()) if modules.exists() else set()


def test_unchanged_files_are_unchanged_and_any_change_runs(site) -> None:
    settings, source = site
    check = _ingest(settings, source)
    assert u.unchanged_since(settings.home, check) is None  # no state yet: run
    _ran_before(settings, check)
    assert u.unchanged_since(settings.home, check) is not None

    note = source / "notes" / "p1.txt"
    st = note.stat()
    os.utime(note, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))  # touched
    assert u.unchanged_since(settings.home, check) is None

    _ran_before(settings, check)
    (source / "notes" / "p2.txt").write_text("New patient.\n")  # a new file
    assert u.unchanged_since(settings.home, check) is None

    _ran_before(settings, check)
    assert u.unchanged_since(settings.home, _ingest(settings, source, workers=3)) is None  # other options
    (settings.manifest_path).write_bytes(b"PAR1")  # the home's manifest rewritten by someone else
    assert u.unchanged_since(settings.home, check) is None


def test_force_missing_or_broken_state_and_unlistable_inputs_run(site, capsys) -> None:
    settings, source = site
    check = _ingest(settings, source)
    _ran_before(settings, check)
    console = Console(force_terminal=False, width=200)
    assert not u.nothing_to_do(console, settings, check, force=True)
    assert u.nothing_to_do(console, settings, check, force=False)
    assert "nothing changed since the run of" in capsys.readouterr().out
    assert "nothing to do" in (settings.logs_dir / "commands.log").read_text()

    (settings.home / u.STATE_FILE).write_text("{not json")
    assert u.unchanged_since(settings.home, check) is None
    gone = u.ingest_check(settings, source / "gone", None, [], None)
    assert u.inputs_now(gone) is not None  # an absent root lists as <missing>, it is not an error
    assert not u.remember(settings.home, check, None)  # inputs that could not be listed before: not vouched for


def test_inputs_changed_while_running_are_not_remembered(site) -> None:
    settings, source = site
    check = _ingest(settings, source)
    before = u.inputs_now(check)
    (source / "notes" / "late.txt").write_text("written while the run read the folder\n")
    assert not u.remember(settings.home, check, before)
    assert u.unchanged_since(settings.home, check) is None


def test_newer_encoder_weights_and_remote_registry_run(site, monkeypatch) -> None:
    settings, _ = site
    encode = u.encode_check(settings, "all", None, 0)
    _ran_before(settings, encode)
    (settings.encoders_dir / "ct-v2.pt").write_bytes(b"\x00" * 64)  # a newer encoder saved by train --strategy joint
    assert u.unchanged_since(settings.home, encode) is None

    remote = settings.model_copy(update={"mlflow_tracking_uri": "http://127.0.0.1:1"})
    train = u.train_check(remote, {"fusion": "early"})
    assert train.undecidable and not u.remember(remote.home, train, u.inputs_now(train))
    assert u.unchanged_since(remote.home, train) is None


def test_a_clinician_review_makes_train_run_and_an_ingest_during_encode_voids_it(site) -> None:
    import sqlite3

    settings, _ = site
    train = u.train_check(settings, {"fusion": "early"})
    _ran_before(settings, train)
    settings.access_dir.mkdir(exist_ok=True)
    with sqlite3.connect(settings.access_dir / "access.db") as con:  # a confirmed label lands in the reviews
        con.execute("create table reviews (patient_id text, outcome text)")
        con.execute("insert into reviews values ('P1', 'confirmed_positive')")
    assert u.unchanged_since(settings.home, train) is None

    encode = u.encode_check(settings, "all", None, 0)
    settings.manifest_path.write_bytes(b"PAR1 v1")
    before = u.inputs_now(encode)
    settings.manifest_path.write_bytes(b"PAR1 v2 with new items")  # an ingest finished while encode ran
    assert not u.remember(settings.home, encode, before)
    assert u.unchanged_since(settings.home, encode) is None


def _train_defaults() -> dict[str, object]:
    """The options `clinfuse train` parses with no arguments (read off the command, so the two cannot drift)."""
    from enum import Enum

    from typer.main import get_command

    from flows.cli import app

    params = get_command(app).commands["train"].params
    return {p.name: p.default.value if isinstance(p.default, Enum) else p.default for p in params if p.name != "force"}


def _cli_and_check(command: str, settings: Settings, source: Path) -> tuple[list[str], u.Check]:
    cohort = source / "cohort.csv"
    if command == "ingest":
        return ["ingest", "--source", str(source), "--cohort", str(cohort)], _ingest(settings, source)
    if command == "encode":
        return ["encode"], u.encode_check(settings, "all", None, 0)
    if command == "train":
        return ["train"], u.train_check(settings, _train_defaults())
    options = {"source": str(source.resolve()), "cohort": str(cohort.resolve()), "fusion": "early", "impute": "auto",
               "epochs": 4, "dask": False, "answers": None}
    return (["pipeline", "--source", str(source), "--epochs", "4"],
            u.pipeline_check(settings, source, cohort, options))


@pytest.mark.parametrize("command", ["ingest", "encode", "train", "pipeline"])
def test_cli_no_op_exits_0_without_heavy_imports(site, tmp_path: Path, command: str) -> None:
    settings, source = site
    args, check = _cli_and_check(command, settings, source)
    _ran_before(settings, check)
    done, modules = run_cli(args, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing changed since the run of" in done.stdout and "--force" in done.stdout
    assert not [m for m in modules if m.split(".")[0] in HEAVY], "a no-op imported heavy modules"
    assert "flows.cli" in modules  # the hook saw the CLI itself
    assert f"{command}: nothing changed" in (settings.logs_dir / "commands.log").read_text()


@pytest.mark.slow
def test_real_ingest_then_no_op_then_touched_file_runs(site, tmp_path: Path) -> None:
    """A whole ingest, its no-op re-run (nothing heavy imported), then a touched source file runs it again."""
    settings, source = site
    args = ["ingest", "--source", str(source), "--cohort", str(source / "cohort.csv")]
    first, modules = run_cli(args, tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "prefect" in modules and "nothing changed" not in first.stdout
    again, modules = run_cli(args, tmp_path)
    assert again.returncode == 0 and "nothing changed since the run of" in again.stdout, again.stdout
    assert not [m for m in modules if m.split(".")[0] in HEAVY]
    (source / "notes" / "p1.txt").write_text("Patient seen again; EEG repeated.\n")
    third, modules = run_cli(args, tmp_path)
    assert third.returncode == 0 and "nothing changed" not in third.stdout and "prefect" in modules, third.stdout
    forced, modules = run_cli([*args, "--force"], tmp_path)
    assert forced.returncode == 0 and "nothing changed" not in forced.stdout and "prefect" in modules


@pytest.mark.slow
@pytest.mark.server
def test_no_op_is_recorded_as_a_completed_flow_run_on_the_prefect_server(site, tmp_path, monkeypatch) -> None:
    import httpx

    from flows.serve.team import Services, prefect_server

    settings, source = site
    services = Services(settings.home / "logs", startup_timeout_s=300)
    with services:
        api = services.start(prefect_server(settings, free_port())).url + "/api"
        monkeypatch.setenv("CLINFUSE_PREFECT_API_URL", api)  # part of the settings the fingerprint covers
        served = Settings()
        check = _ingest(served, source)
        _ran_before(served, check)
        done, modules = run_cli(["ingest", "--source", str(source), "--cohort", str(source / "cohort.csv")], tmp_path)
        assert done.returncode == 0 and "nothing changed since the run of" in done.stdout, done.stdout + done.stderr
        assert "prefect" not in modules
        runs = httpx.post(f"{api}/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["no-op"]}}}).json()
        assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED"
        assert "nothing changed" in runs[0]["state"]["message"]
        flow = httpx.get(f"{api}/flows/{runs[0]['flow_id']}").json()
        assert flow["name"] == "ingest"
    assert json.loads((settings.home / u.STATE_FILE).read_text())["ingest"]["fingerprint"]
