"""The servers the suite shares between tests hand each test a clean state, as a fresh server would.

One Orthanc and one PostgreSQL cluster serve the whole session (tests/conftest.py);
isolation rests on ``Orthanc.clear`` (REST delete of every patient) and on
``PgCluster.databases`` (create, then drop with force). A leak here would let one
test's data reach another's assertions, so both are checked against the real servers.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
import pytest

pytestmark = [pytest.mark.server]


@pytest.fixture(scope="module")
def radiographs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The radiographs of a two-patient phantom (small files, two patients in the PACS); read-only."""
    from ingestion.phantom import generate_cohort

    root = tmp_path_factory.mktemp("shared-servers") / "cohort"
    generate_cohort(root, 2, seed=3, missing_rate=0.0, eeg_seconds=(4, 4))
    return [p for p in sorted((root / "dicom").rglob("*.dcm"))
            if pydicom.dcmread(p, stop_before_pixels=True).Modality in ("CR", "DX")]


def test_orthanc_clear_leaves_the_shared_server_empty(orthanc_session, radiographs: list[Path]) -> None:
    orthanc_session.clear()
    files = radiographs
    for path in files:
        orthanc_session.upload(path)
    assert orthanc_session.instance_count() == len(files) >= 2
    orthanc_session.clear()
    assert orthanc_session.instance_count() == 0
    orthanc_session.upload(files[0])  # the same instance stores again after the delete
    assert orthanc_session.instance_count() == 1
    orthanc_session.clear()


def test_empty_orthanc_starts_each_test_empty(empty_orthanc, radiographs: list[Path]) -> None:
    assert empty_orthanc.instance_count() == 0
    empty_orthanc.upload(radiographs[0])  # left behind on purpose: the next test must not see it


def test_empty_orthanc_is_empty_after_a_test_left_data(empty_orthanc) -> None:
    assert empty_orthanc.instance_count() == 0


def test_pg_databases_are_created_then_dropped_with_their_connections(pg_session) -> None:
    with pg_session.databases(("scratch_a",)) as pg:
        pg.sql("scratch_a", "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)")
        assert pg.sql("scratch_a", "SELECT count(*) FROM t") == "2"
        holder = subprocess.Popen([str(pg.bindir / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                                   "-d", "scratch_a", "-c", "SELECT pg_sleep(600)"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while pg.sql("postgres", "SELECT count(*) FROM pg_stat_activity WHERE datname = 'scratch_a' "
                                     "AND query LIKE '%pg_sleep%'") != "1":
                assert holder.poll() is None
        except BaseException:
            holder.kill()
            raise
    # dropped although a client still held a connection (a server stopped mid-test leaves such ones)
    assert holder.wait(timeout=60) != 0
    assert pg_session.sql("postgres", "SELECT count(*) FROM pg_database WHERE datname = 'scratch_a'") == "0"
    with pg_session.databases(("scratch_a",)) as pg:  # the name is free again, and the database is new
        assert pg.sql("scratch_a", "SELECT count(*) FROM pg_tables WHERE tablename = 't'") == "0"
