"""The ingest driver's mechanics: idempotency, versions, duplicates, crash isolation, cohort join.

Most tests use small module-level fake readers (plain text files that say which
patient they belong to) so that they exercise the driver alone in well under a
second per run; the end-to-end test at the bottom runs the real readers on the
phantom cohort.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ingestion.driver.ingest import IngestReport, ingest

from ingestion.deid.pseudonym import pseudonymise
from ingestion.driver.worker import ReaderConfig
from ingestion.driver.worker import Readers
from ingestion.manifest import latest_per_source, read_manifest
from ingestion.readers.records import NormalisedItem, QuarantineError
from tests.conftest import forked_processes

SECRET = "test-secret"
READER_ARGS = dict(ct_spacing_mm=(4.0, 2.0, 2.0), ct_shape=(8, 16, 16), xray_shape=(32, 32),
                   eeg_sfreq=64.0, eeg_window_s=2.0, eeg_line_freq=50.0)


def _fields(path: Path) -> dict[str, str]:
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def fake_eeg(path, sfreq, window_s, line_freq) -> NormalisedItem:
    fields = _fields(path)
    if fields.get("action") == "crash":
        os._exit(17)  # like a decoder segfault: the worker process dies
    if fields.get("action") == "raise":
        raise RuntimeError("decoder exploded")
    if "patient" not in fields:
        raise QuarantineError(f"{Path(path).name}: no 10-20 channels")
    return NormalisedItem("eeg", fields["patient"], np.full((1, 19, 8), float(len(fields)), np.float32),
                          {"sfreq": sfreq}, event_date="2024-05-03")


def fake_notes(path, secret):
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith("patient="):
            out.append(NormalisedItem("note", line.split("=", 1)[1], {"text": "scrubbed"}, {}))
        else:
            out.append(QuarantineError(f"{Path(path).name}: a row has no MRN"))
    return out


def _unused(*args, **kwargs):
    raise AssertionError("no DICOM in these tests")


FAKE = Readers(_unused, _unused, _unused, fake_eeg, fake_notes)


def run(source: Path, home: Path, cohort: Path | None = None, workers: int = 2, **kw) -> IngestReport:
    return ingest(source, cohort, home, SECRET, workers=workers, readers=FAKE, config=ReaderConfig(**READER_ARGS), **kw)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    write(src / "eeg" / "a.edf", "patient=MRN001\n")
    write(src / "eeg" / "b.edf", "patient=MRN002\nx=1\n")
    write(src / "notes" / "n1.txt", "patient=MRN001")
    write(src / "misc" / "photo.gif", "not an image format we read")
    return src


def all_source_files(manifest) -> list[str]:
    return sorted(f for files in latest_per_source(manifest)["source_files"] for f in files)


def test_first_run_records_every_file_once(source: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    seen = []
    report = run(source, home, progress=lambda done, total: seen.append((done, total)))
    df = read_manifest(home / "manifest.parquet")
    assert all_source_files(df) == ["eeg/a.edf", "eeg/b.edf", "misc/photo.gif", "notes/n1.txt"]
    assert report.new == 4 and report.skipped == 0
    assert report.counts == {"eeg": {"ok": 2}, "note": {"ok": 1}, "unknown": {"quarantined": 1}}
    assert [q.source_uri for q in report.quarantined] == ["misc/photo.gif"]
    assert "unrecognised file type" in report.quarantined[0].reason
    assert seen[-1] == (4, 4)
    ok = df[df["status"] == "ok"]
    assert set(ok["patient_id"]) == {pseudonymise("MRN001", SECRET), pseudonymise("MRN002", SECRET)}
    for uri in ok["array_uri"]:
        assert (home / uri).is_file()
    eeg = np.load(home / ok[ok["source_uri"] == "eeg/b.edf"]["array_uri"].item())
    assert eeg.shape == (1, 19, 8) and eeg.dtype == np.float32 and eeg[0, 0, 0] == 2.0
    meta = json.loads(ok[ok["source_uri"] == "eeg/a.edf"]["meta_json"].item())
    assert meta["event_date"] < "2024-05-03"  # shifted back by the patient's offset
    pointer = json.loads((home / "quarantine" / f"{df[df['status'] == 'quarantined']['item_id'].item()}.json")
                         .read_text())
    assert pointer["source_uri"] == "misc/photo.gif" and "unrecognised" in pointer["reason"]


def test_second_run_does_no_work(source: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(source, home)
    before = (home / "manifest.parquet").read_bytes()
    report = run(source, home)
    assert report.new == 0 and report.skipped == 4
    assert report.counts == {"eeg": {"ok": 2}, "note": {"ok": 1}, "unknown": {"quarantined": 1}}
    assert (home / "manifest.parquet").read_bytes() == before


def test_changed_file_becomes_new_version(source: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    run(source, home)
    write(source / "eeg" / "a.edf", "patient=MRN001\nrecorded=again\n")
    report = run(source, home)
    assert report.new == 1 and report.skipped == 3
    df = read_manifest(home / "manifest.parquet")
    versions = df[df["source_uri"] == "eeg/a.edf"]
    assert len(versions) == 2  # the old version is kept
    latest = latest_per_source(df).set_index("source_uri").loc["eeg/a.edf"]
    assert latest["ingested_at"] == versions["ingested_at"].max()
    assert np.load(home / latest["array_uri"])[0, 0, 0] == 2.0


def test_duplicates_are_recorded_once_on_the_original(source: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(source / "copy" / "a_copy.edf", "patient=MRN001\n")
    report = run(source, home)
    df = read_manifest(home / "manifest.parquet")
    row = df[df["source_uri"] == "copy/a_copy.edf"]
    assert len(row) == 1 and sorted(row["source_files"].item()) == ["copy/a_copy.edf", "eeg/a.edf"]
    assert json.loads(row["meta_json"].item())["duplicates"] == [
        {"path": "eeg/a.edf", "duplicate_of": "copy/a_copy.edf"}]
    assert report.duplicate_files == 1 and report.new == 4
    # a copy that appears only in a later run is appended to the existing row, with no re-reading
    write(source / "late" / "b_copy.edf", "patient=MRN002\nx=1\n")
    report = run(source, home)
    assert report.new == 0 and report.duplicate_files == 2
    df = read_manifest(home / "manifest.parquet")
    assert sorted(df[df["source_uri"] == "eeg/b.edf"]["source_files"].item()) == ["eeg/b.edf", "late/b_copy.edf"]
    assert all_source_files(df).count("late/b_copy.edf") == 1


def test_worker_crash_loses_no_other_item(source: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(source / "eeg" / "crash.edf", "patient=MRN003\naction=crash\n")
    write(source / "eeg" / "boom.edf", "patient=MRN003\naction=raise\n")
    for i in range(6):
        write(source / "more" / f"r{i}.edf", f"patient=MRN1{i}\n")
    report = run(source, home)
    df = read_manifest(home / "manifest.parquet").set_index("source_uri")
    assert len(df) == 12
    assert df.loc["eeg/crash.edf", "status"] == "quarantined"
    assert "died twice" in df.loc["eeg/crash.edf", "reason"]
    assert "failed unexpectedly" in df.loc["eeg/boom.edf", "reason"]
    assert (df.drop(index=["eeg/crash.edf", "eeg/boom.edf", "misc/photo.gif"])["status"] == "ok").all()
    assert report.counts["eeg"] == {"ok": 8, "quarantined": 2}


def test_quarantined_items_retry_only_when_pipeline_version_changes(source: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    write(source / "eeg" / "bad.edf", "no patient here\n")
    run(source, home)
    assert run(source, home).new == 0
    report = ingest(source, None, home, SECRET, readers=FAKE, config=ReaderConfig(**{**READER_ARGS, "eeg_sfreq": 128.0}))
    # new reader settings: quarantined items are tried again, ok items are kept as they are
    assert report.new == 2 and report.skipped == 3


def test_multi_note_file_gives_one_row_per_note(tmp_path: Path) -> None:
    src, home = tmp_path / "src", tmp_path / "home"
    write(src / "notes.csv", "patient=MRN001\nno id\npatient=MRN002\n")
    report = run(src, home)
    df = read_manifest(home / "manifest.parquet").sort_values("source_uri")
    assert df["source_uri"].tolist() == ["notes.csv#0", "notes.csv#1", "notes.csv#2"]
    assert df["status"].tolist() == ["ok", "quarantined", "ok"]
    assert all(files == ["notes.csv"] for files in df["source_files"])
    assert run(src, home).new == 0 and report.new == 3


def test_cohort_join_reports_both_directions(source: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cohort = write(tmp_path / "cohort.csv", "patient_id,label,age,name\nMRN001,1,70,Jane\nMRN009,0,55,Joe\n"
                                            "MRN009,1,56,Joe\nMRN010,,40,Ann\nMRN011,2,30,Bob\n")
    report = run(source, home, cohort=cohort)
    p = lambda mrn: pseudonymise(mrn, SECRET)  # noqa: E731
    assert report.cohort.in_files_not_in_cohort == (p("MRN002"),)
    assert report.cohort.in_cohort_without_files == (p("MRN010"),)
    assert sorted(q.source_uri for q in report.cohort_quarantined) == ["cohort.csv:3", "cohort.csv:4", "cohort.csv:6"]
    assert report.cohort_dropped_columns == ("name",)
    pointer = json.loads((home / "quarantine" / "cohort_rows.json").read_text())
    assert [p["source_uri"] for p in pointer] == ["cohort.csv:3", "cohort.csv:4", "cohort.csv:6"]
    assert "MRN" not in json.dumps(pointer)
    saved = __import__("pandas").read_parquet(home / "cohort.parquet")
    assert saved["patient_id"].tolist() == [p("MRN001"), p("MRN010")]
    assert "MRN" not in (home / "cohort.parquet").read_bytes().decode("latin-1")


def test_cohort_and_home_inside_source_are_not_ingested(source: Path) -> None:
    cohort = write(source / "cohort.csv", "patient_id,label\nMRN001,1\n")
    report = run(source, source / ".clinfuse", cohort=cohort)
    assert report.n_files == 4 and report.cohort.n_cohort == 1
    assert run(source, source / ".clinfuse", cohort=cohort).new == 0  # its own arrays are not picked up


def test_missing_source_folder_raises_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(tmp_path / "nowhere", tmp_path / "home")


def _phi_strings(phantom: Path) -> set[str]:
    import pandas as pd

    answers = pd.read_parquet(phantom / "answers.parquet")
    planted = {str(s) for values in answers["planted_phi"] for s in values if len(str(s)) >= 5}
    return planted | set(answers["patient_id"].astype(str))


@pytest.mark.slow
def test_phantom_cohort_end_to_end(small_phantom: Path, tmp_path: Path, caplog, capfd) -> None:
    """Real readers on the phantom: every file once, mask = truth, no PHI anywhere, re-run is free."""
    import logging

    import pandas as pd

    from ingestion.availability import availability_mask
    from ingestion.cohort import load_cohort

    caplog.set_level(logging.DEBUG)
    home = tmp_path / "home"
    report = ingest(small_phantom, small_phantom / "cohort.csv", home, SECRET, workers=2, config=ReaderConfig(**READER_ARGS))
    df = read_manifest(home / "manifest.parquet")

    on_disk = sorted(p.relative_to(small_phantom).as_posix() for p in small_phantom.rglob("*")
                     if p.is_file() and p.name != "cohort.csv")
    assert sorted(f for files in df["source_files"] for f in files) == on_disk
    bad = df[df["status"] == "quarantined"]
    assert bad["source_uri"].tolist() == ["answers.parquet"], bad[["source_uri", "reason"]].to_string()

    answers = pd.read_parquet(small_phantom / "answers.parquet")
    truth = pd.DataFrame({m: answers[f"present_{m}"].map({True: "present", False: "missing"}).to_numpy()
                          for m in ("ct", "xray", "eeg", "note")},
                         index=[pseudonymise(p, SECRET) for p in answers["patient_id"]]).assign(ecg="missing")  # no ECG drawn
    mask = availability_mask(df, load_cohort(home / "cohort.parquet"))
    pd.testing.assert_frame_equal(mask, truth.loc[mask.index].rename_axis("patient_id"), check_dtype=False)
    assert report.cohort.in_files_not_in_cohort == () and report.cohort_quarantined == ()

    phi = _phi_strings(small_phantom)
    texts = {"manifest": df.to_json(), "cohort": pd.read_parquet(home / "cohort.parquet").to_json(),
             "logs": caplog.text + "".join(capfd.readouterr())}
    for path in (home / "arrays").rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
    for path in (home / "quarantine").rglob("*.json"):
        texts[str(path)] = path.read_text()
    leaks = [(where, s) for where, text in texts.items() for s in phi if s in text]
    assert leaks == []

    before = (home / "manifest.parquet").read_bytes()
    again = ingest(small_phantom, small_phantom / "cohort.csv", home, SECRET, workers=2, config=ReaderConfig(**READER_ARGS))
    assert again.new == 0 and again.skipped == len(df)
    assert (home / "manifest.parquet").read_bytes() == before


def _ingest_in_child(source: str, home: str, errors: str) -> None:
    import traceback

    try:
        run(Path(source), Path(home), workers=1)
    except BaseException:  # noqa: BLE001 - report the child's failure to the parent test
        Path(errors).write_text(traceback.format_exc())
        raise


def test_two_runs_on_one_home_at_once_keep_a_valid_manifest(source: Path, tmp_path: Path) -> None:
    for i in range(8):
        write(source / "extra" / f"e{i}.edf", f"patient=MRN2{i}\n")
    home = tmp_path / "home"
    errors = [tmp_path / f"child{i}.err" for i in range(2)]
    procs = forked_processes(_ingest_in_child, [(str(source), str(home), str(err)) for err in errors])
    for p, err in zip(procs, errors):
        p.join(120)
        assert p.exitcode == 0, err.read_text() if err.exists() else "child exited non-zero (see captured stderr)"
    df = read_manifest(home / "manifest.parquet")
    assert len(df) == 12 and df["item_id"].is_unique
    assert all_source_files(df) == sorted(
        [f"eeg/{n}.edf" for n in "ab"] + [f"extra/e{i}.edf" for i in range(8)] + ["misc/photo.gif", "notes/n1.txt"])
    assert run(source, home).new == 0


@pytest.mark.slow
@pytest.mark.realdata
def test_real_files_ingest(realdata: Path, tmp_path: Path) -> None:
    """A real JPEG 2000 CT slice and MONOCHROME1 radiograph, and a TUH EDF with its annotation file."""
    import shutil

    src = tmp_path / "src"
    shutil.copytree(realdata / "dicom", src / "dicom")
    shutil.copytree(realdata / "eeg", src / "eeg")
    report = ingest(src, None, tmp_path / "home", SECRET, workers=2, config=ReaderConfig(**READER_ARGS))
    df = read_manifest(tmp_path / "home" / "manifest.parquet").set_index("source_uri")
    assert sorted(f for files in df["source_files"] for f in files) == sorted(
        p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())
    assert df.loc["dicom/RG3_J2KR.dcm", "status"] == "ok"
    eeg = df.loc["eeg/00009578_s002_t001.edf"]
    assert eeg["status"] == "ok" and "eeg/00009578_s002_t001.tse_bi" in eeg["source_files"]
    assert report.counts["xray"] == {"ok": 1}


INDEX_CALLS: list[Path] = []


def counting_index(root):
    from ingestion.driver.dicom_index import index_dicom

    INDEX_CALLS.append(root)
    return index_dicom(root)


def fake_image(paths, *args) -> NormalisedItem:
    """Reads the header's PatientID (zip members too) and returns a blank image."""
    from ingestion.readers.dicom_source import read_dataset

    first = paths[0] if isinstance(paths, list) else paths
    return NormalisedItem("ct" if isinstance(paths, list) else "xray",
                          str(read_dataset(first, headers_only=True).PatientID), np.zeros((2, 2), np.float32))


def test_warm_run_skips_the_dicom_index_until_a_dicom_file_is_new(tmp_path: Path) -> None:
    import shutil

    from tests.ingestion.dicom_factory import cr_dataset, write_ct_series

    src, home = tmp_path / "src", tmp_path / "home"
    write_ct_series(src / "ct", np.zeros((3, 8, 8), np.int16), patient_id="MRN00000001")
    cr_dataset(np.zeros((8, 8), np.uint16), patient_id="MRN00000001").save_as(src / "xr.dcm", enforce_file_format=True)
    readers = Readers(counting_index, fake_image, fake_image, fake_eeg, fake_notes)
    INDEX_CALLS.clear()

    def again() -> IngestReport:
        return ingest(src, None, home, SECRET, workers=1, readers=readers, config=ReaderConfig(**READER_ARGS))

    first = again()
    assert first.counts == {"ct": {"ok": 1}, "xray": {"ok": 1}} and len(INDEX_CALLS) == 1
    assert again().new == 0 and len(INDEX_CALLS) == 1          # nothing new: no header read at all
    shutil.copy(src / "xr.dcm", src / "xr_copy.dcm")
    report = again()                                           # a new DICOM file: the index runs again
    assert report.new == 0 and report.duplicate_files == 1 and len(INDEX_CALLS) == 2
    assert again().new == 0 and len(INDEX_CALLS) == 2
    df = read_manifest(home / "manifest.parquet")
    assert sorted(f for files in df["source_files"] for f in files) == sorted(
        p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file())


def test_zip_export_members_are_the_source_files(tmp_path: Path) -> None:
    import zipfile

    from tests.ingestion.dicom_factory import cr_dataset, write_ct_series

    staging, src, home = tmp_path / "staging", tmp_path / "src", tmp_path / "home"
    write_ct_series(staging / "series", np.zeros((3, 8, 8), np.int16), patient_id="MRN00000001")
    cr_dataset(np.zeros((8, 8), np.uint16), patient_id="MRN00000002").save_as(staging / "xr.dcm",
                                                                              enforce_file_format=True)
    (staging / "notes.pdf").write_bytes(b"%PDF-1.4 not DICOM")
    src.mkdir()
    with zipfile.ZipFile(src / "export.zip", "w") as zf:
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(staging).as_posix())
    readers = Readers(counting_index, fake_image, fake_image, fake_eeg, fake_notes)
    report = ingest(src, None, home, SECRET, workers=1, readers=readers, config=ReaderConfig(**READER_ARGS))
    df = read_manifest(home / "manifest.parquet").set_index("source_uri")
    members = sorted(f"export.zip!{p.relative_to(staging).as_posix()}" for p in staging.rglob("*") if p.is_file())
    assert sorted(f for files in df["source_files"] for f in files) == members
    assert df.loc["export.zip!series", "status"] == "ok" and df.loc["export.zip!series", "modality"] == "ct"
    assert df.loc["export.zip!xr.dcm", "patient_id"] == pseudonymise("MRN00000002", SECRET)
    assert df.loc["export.zip!notes.pdf", "status"] == "quarantined"
    assert report.counts == {"ct": {"ok": 1}, "unknown": {"quarantined": 1}, "xray": {"ok": 1}}
    assert ingest(src, None, home, SECRET, workers=1, readers=readers, config=ReaderConfig(**READER_ARGS)).new == 0
