"""The PACS pull cursor and URL handling (no server needed; the Orthanc tests are in tests/flows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ingestion.pacs import PacsError, PacsQuery, connect
from ingestion.pacs_cursor import load_cursor, pacs_key, redact_url, save_cursor, uid_token


def test_redact_url_drops_credentials_and_query() -> None:
    assert redact_url("https://bob:s3cret@pacs.example:8443/dicom-web/?token=abc") == "https://pacs.example:8443/dicom-web"
    assert pacs_key("http://u:p@h:1/dw") == pacs_key("http://h:1/dw/")  # credentials never name a folder


def test_uid_token_is_stable_and_not_the_uid() -> None:
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert uid_token(uid) == uid_token(uid) and uid not in uid_token(uid) and len(uid_token(uid)) == 20


def test_cursor_round_trip_and_change_detection(tmp_path: Path) -> None:
    path = tmp_path / "cursor.json"
    cursor = load_cursor(path, "http://u:p@pacs:8042/dicom-web")
    assert cursor.series == {} and not cursor.pending_ingest
    cursor.record("1.2.3", "1.2", 40, "20240105")
    cursor.record("1.2.4", "1.2", 1, "20231201")
    save_cursor(cursor, path)
    again = load_cursor(path, "http://pacs:8042/dicom-web")
    assert again.is_current("1.2.3", 40) and not again.is_current("1.2.3", 41) and not again.is_current("9.9", 1)
    assert again.last_study_date == "20240105" and again.pending_ingest
    assert "p@" not in path.read_text() and not list(tmp_path.glob(".cursor.json.*"))


def test_cursor_of_another_pacs_or_corrupt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cursor.json"
    save_cursor(load_cursor(path, "http://a:1/dw"), path)
    with pytest.raises(ValueError, match="belongs to"):
        load_cursor(path, "http://b:1/dw")
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_cursor(path, "http://a:1/dw")


def test_query_date_filter() -> None:
    assert PacsQuery().date_filter() is None
    assert PacsQuery(study_date_from="20240101").date_filter() == "20240101-"


def test_non_http_url_is_refused_without_echoing_credentials() -> None:
    with pytest.raises(PacsError) as err:
        connect("ftp://user:topsecret@pacs/dicom-web")
    assert "topsecret" not in str(err.value)
    json.dumps(str(err.value))
