"""The whole pipeline over a phantom cohort mixed with the bad-input corpus: nothing crashes, nothing is lost,
nothing identifying leaks.

One `clinfuse pipeline` subprocess (ingest -> encode -> train -> evaluate -> predict) runs once for the
module over the 16-patient phantom plus every corpus kind (tests/corpus/build.py), with its own
CLINFUSE_HOME, pseudonym secret and dashboard password. The tests then check the manifest (every file
exactly once; every corpus case with the status and reason it deserves; every phantom item ok), the
predictions (every phantom patient scored), and audit every byte under the home plus the captured
stdout/stderr for the planted PHI and for the two secrets.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ingestion.cohort import read_cohort
from ingestion.deid.pseudonym import pseudonymise
from ingestion.deid.reidentify import ReidKeyError, generate_key, read_map, reveal
from ingestion.manifest import read_manifest
from models.stores.predictions import read_latest_batch
from tests.corpus.build import CorpusCase, bad_cohort_rows, build_corpus, reason_matches

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

SECRET = "rel-secret-7f3a9c2e41d0"
PASSWORD = "rel-dash-pass-b81d0e55"
REPO = Path(__file__).resolve().parents[1]
CLINFUSE = [sys.executable, "-c", "from flows.cli import main; main()"]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The parent's environment without any CLINFUSE_/PREFECT_/MLFLOW_ setting, pointed at ``home``, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINFUSE_", "PREFECT_", "MLFLOW_"))}
    env.update(CLINFUSE_HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1",
               COLUMNS="200", **extra)
    return env


def phantom_source(small_phantom: Path, src: Path) -> None:
    """Copy the phantom's files (not its answers or cohort table) into ``src``."""
    for part in ("dicom", "eeg", "notes"):
        shutil.copytree(small_phantom / part, src / part)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, small_phantom: Path):
    root = tmp_path_factory.mktemp("reliability")
    src, home = root / "src", root / "home"
    phantom_source(small_phantom, src)
    cases = build_corpus(src)
    cohort = root / "cohort.csv"
    cohort.write_text((small_phantom / "cohort.csv").read_text().rstrip("\n") + "\n"
                      + "\n".join(bad_cohort_rows().values()) + "\n")
    out, err = root / "stdout.log", root / "stderr.log"
    key_file = root / "keys" / "reid.key"  # the re-identification key, outside the home
    key_file.parent.mkdir()
    key_file.write_bytes(generate_key())
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.run([*CLINFUSE, "pipeline", "--source", str(src), "--cohort", str(cohort), "--epochs", "5"],
                              cwd=REPO, env=clean_env(home, CLINFUSE_PSEUDONYM_SECRET=SECRET,
                                                      CLINFUSE_DASHBOARD_PASSWORD=PASSWORD,
                                                      CLINFUSE_REID_KEY_FILE=str(key_file)),
                              stdout=fo, stderr=fe, timeout=1100)
    logs = out.read_text(errors="replace") + err.read_text(errors="replace")
    assert proc.returncode == 0, logs[-4000:]
    clinician_session(home, key_file.read_bytes())
    return {"src": src, "home": home, "cases": cases, "cohort": cohort, "logs": logs, "log_files": (out, err),
            "key": key_file.read_bytes(),
            "manifest": read_manifest(home / "manifest.parquet"),
            "answers": pd.read_parquet(small_phantom / "answers.parquet")}


def clinician_session(home: Path, key: bytes) -> None:
    """What a clinician's dashboard session writes (sign-in, views, MRN reveals, reviews) into the home's
    audit trail and review store, through the same library calls the dashboard makes."""
    from flows.access.audit import AuditLog
    from flows.access.reviews import PredictionRef, ReviewStore, access_db, audit_path

    batch = read_latest_batch(home / "predictions")
    trail, reviews = AuditLog(audit_path(home / "access")), ReviewStore(access_db(home / "access"))
    trail.append("c.clinician", "clinician", "sign_in")
    for _, row in batch.head(4).iterrows():
        trail.append("c.clinician", "clinician", "view_patient", row["patient_id"])
        mrn = reveal(home / "reidentify.fernet", key, row["patient_id"])
        assert mrn, "every scored phantom patient is in the re-identification map"
        trail.append("c.clinician", "clinician", "reveal_mrn", row["patient_id"], "found")
        reviews.add(row["patient_id"], "positive", "confirmed at follow-up", "c.clinician", "clinician",
                    PredictionRef(row["run_id"], str(row["model_version"]), row["batch_id"], float(row["risk"])))
        trail.append("c.clinician", "clinician", "review", row["patient_id"], "positive")


def _rows_of(manifest: pd.DataFrame, case: CorpusCase) -> pd.DataFrame:
    return manifest[manifest["source_files"].map(lambda files: any(case.owns(f) for f in files))]


def test_every_source_file_is_in_exactly_one_row(run) -> None:
    src, manifest = run["src"], run["manifest"]
    on_disk = sorted(p.relative_to(src).as_posix() for p in src.rglob("*")
                     if p.is_file() or p.is_symlink())  # symlinks too: loops and dangling links count
    listed = [f.split("!", 1)[0] for files in manifest["source_files"] for f in files]
    # zip members are listed as archive!member; the archive itself counts once however many members it has
    listed_files = sorted(set(listed) - {f for f in listed if f.endswith(".zip") and listed.count(f) > 1}
                          | {f for f in listed if f.endswith(".zip")})
    assert listed_files == on_disk
    # a notes table (csv/jsonl) gives one row per note, each naming the file (source_uri "file#row"); any
    # other file must sit in exactly one row
    single = manifest[~manifest["source_uri"].str.contains("#", regex=False)
                      | manifest["source_uri"].str.contains("#series-", regex=False)]
    plain = [f for files in single["source_files"] for f in files if "!" not in f]
    assert len(plain) == len(set(plain)), "a file appears in two manifest rows"
    counts = manifest["status"].value_counts()
    assert counts.sum() == len(manifest) == counts.get("ok", 0) + counts.get("quarantined", 0)


def test_corpus_has_at_least_30_kinds(run) -> None:
    assert len(run["cases"]) + len(bad_cohort_rows()) >= 30


def test_every_corpus_case_gets_its_status_and_a_reason(run) -> None:
    manifest, wrong = run["manifest"], []
    for case in run["cases"]:
        rows = _rows_of(manifest, case)
        if rows.empty:
            wrong.append(f"{case.name}: no manifest row (lost)")
            continue
        for status, reason in zip(rows["status"], rows["reason"]):
            if status != case.expect:
                wrong.append(f"{case.name}: {status}, expected {case.expect} ({reason[:120]})")
            elif status == "quarantined" and not reason_matches(case, reason):
                wrong.append(f"{case.name}: reason {reason[:160]!r} does not match {case.reason!r}")
    assert not wrong, "\n".join(wrong)
    quarantine = run["home"] / "quarantine"
    for item_id in manifest.loc[manifest["status"] == "quarantined", "item_id"]:
        assert (quarantine / f"{item_id}.json").is_file()


def test_every_phantom_item_is_ok(run) -> None:
    manifest, answers = run["manifest"], run["answers"]
    status_of = {f: s for files, s in zip(manifest["source_files"], manifest["status"]) for f in files}
    bad = [f"{f}: {status_of.get(f, 'missing')}" for m in ("ct", "xray", "eeg", "note")
           for files in answers[f"files_{m}"] for f in files if status_of.get(f) != "ok"]
    assert not bad, bad[:10]


def test_bad_cohort_rows_are_set_aside_with_reasons(run) -> None:
    table = read_cohort(run["cohort"], SECRET)
    n_good = len(run["answers"])
    assert len(table.frame) == n_good + 0  # every phantom row kept, every bad row set aside
    assert len(table.problems) == len(bad_cohort_rows())
    assert all(p.reason for p in table.problems)
    said = re.search(r"(\d+)\s+quarantined\.", run["logs"])  # the pipeline's summary line
    assert said and int(said.group(1)) == int((run["manifest"]["status"] == "quarantined").sum())


def test_every_good_patient_is_predicted(run) -> None:
    batch = read_latest_batch(run["home"] / "predictions")
    expected = {pseudonymise(str(p), SECRET) for p in run["answers"]["patient_id"]}
    assert expected <= set(batch["patient_id"])
    assert batch["risk"].between(0, 1).all()


def _phi_patterns(answers: pd.DataFrame, cases: list[CorpusCase]) -> list[tuple[str, re.Pattern[bytes]]]:
    """Every planted PHI string (and the corpus MRNs) as a byte regex; digit-only strings need non-hex edges
    so that a date like 20201207 cannot match inside a hash."""
    strings = {str(s) for phi in answers["planted_phi"] for s in phi} | {str(p) for p in answers["patient_id"]}
    strings |= set(re.findall(r"MRN9\d{7}", "\n".join(bad_cohort_rows().values())))
    out = []
    for s in sorted(strings):
        body = re.escape(s.encode())
        if re.fullmatch(r"[0-9/\-]+", s):
            body = rb"(?<![0-9a-fA-F])" + body + rb"(?![0-9a-fA-F])"
        out.append((s, re.compile(body)))
    return out


def _scan(paths: list[Path], patterns: list[tuple[str, re.Pattern[bytes]]]) -> list[str]:
    hits = []
    for path in paths:
        data = path.read_bytes()
        # a plain substring test first (fast), the boundary-aware regex only on a candidate
        hits += [f"{path}: {s!r}" for s, rx in patterns if s.encode() in data and rx.search(data)]
    return hits


def test_no_planted_phi_in_any_artifact_or_log(run) -> None:
    home = run["home"]
    files = [p for p in home.rglob("*") if p.is_file()] + list(run["log_files"])
    assert any(p.name == "mlflow.db" for p in files) and any("prefect" in p.parts for p in files)
    hits = _scan(files, _phi_patterns(run["answers"], run["cases"]))
    assert not hits, "\n".join(hits[:20])


def test_secrets_are_never_logged_or_stored(run) -> None:
    files = [p for p in run["home"].rglob("*") if p.is_file()] + list(run["log_files"])
    patterns = [(s, re.compile(re.escape(s.encode()))) for s in (SECRET, PASSWORD, run["key"].decode())]
    hits = _scan(files, patterns)
    assert not hits, "\n".join(hits[:20])


def test_audit_trail_and_key_file_hold_no_phi_and_the_map_needs_the_key(run) -> None:
    """The scan above covers every file under the home, the audit trail and the encrypted map included;
    here: they exist, the trail verifies, and the map opens with the site key only."""
    from flows.access.audit import AuditLog

    home = run["home"]
    trail = AuditLog(home / "access" / "audit.jsonl")
    assert trail.verify().ok and {e["action"] for e in trail.entries()} >= {"reveal_mrn", "review"}
    map_path = home / "reidentify.fernet"
    cohort = read_cohort(run["cohort"], SECRET)
    assert len(read_map(map_path, run["key"])) == len(cohort.frame) > 0
    with pytest.raises(ReidKeyError):
        read_map(map_path, generate_key())
    assert not _scan([map_path, trail.path, home / "access" / "access.db"],
                     _phi_patterns(run["answers"], run["cases"]))
