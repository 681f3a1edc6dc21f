"""A write that fails for want of space becomes DiskFullError, leaves nothing behind, and other errors stay as they are.

The real full disk (a tmpfs) is in tests/test_reliability_faults.py, which needs root; these
raise the errors a full disk gives from inside the writer, so they run anywhere.
"""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import pytest

from ingestion.atomic_files import DiskFullError, atomic_path, is_disk_full


def _write_then_fail(path: Path, exc: OSError) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise exc


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_no_space_becomes_disk_full_naming_the_folder_and_leaves_no_file(tmp_path: Path, code: int) -> None:
    target = tmp_path / "store" / "index.parquet"
    with pytest.raises(DiskFullError) as failed:
        _write_then_fail(target, OSError(code, "No space left on device"))
    assert str(failed.value).startswith("disk full: no space left to write index.parquet in ")
    assert str(tmp_path / "store") in str(failed.value) and failed.value.filename == str(target)
    assert list((tmp_path / "store").iterdir()) == [], "the target or a temporary file was left"
    again = pickle.loads(pickle.dumps(failed.value))  # crosses the ingest's process pool whole
    assert isinstance(again, DiskFullError) and str(again) == str(failed.value)


def test_other_write_errors_are_not_called_disk_full(tmp_path: Path) -> None:
    with pytest.raises(PermissionError):
        _write_then_fail(tmp_path / "x.json", PermissionError(errno.EACCES, "Permission denied"))
    # numpy's write error carries no errno: with plenty of room it is not a full disk
    assert not is_disk_full(OSError("97280 requested and 11232 written"), tmp_path)
    assert is_disk_full(RuntimeError("wrapped"), None) is False
    try:
        raise RuntimeError("task failed") from OSError(errno.ENOSPC, "No space left on device")
    except RuntimeError as exc:
        assert is_disk_full(exc)
