"""The int8 MiniLM lives in one machine-level cache: every home reuses it, a damaged file is built again."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from models.encoders import note_onnx
from models.encoders.note import NoteEncoder, _minilm_onnx
from models.encoders.note_onnx import ensure_cached_file, is_complete
from tests.conftest import forked_processes


def _writer(log: Path, delay_s: float = 0.0):  # noqa: ANN202 - a builder for ensure_cached_file
    """A builder that writes fixed bytes slowly and records each call in ``log`` (one line per build)."""
    def build(out: Path) -> None:
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()}\n")
        out.write_bytes(b"model" * 1000)
        time.sleep(delay_s)
    return build


def _builds(log: Path) -> int:
    return len(log.read_text(encoding="utf-8").splitlines()) if log.exists() else 0


def test_corrupt_or_partial_cache_file_is_built_again(tmp_path: Path) -> None:
    target, log = tmp_path / "cache" / "minilm-test.onnx", tmp_path / "builds.log"
    assert ensure_cached_file(target, _writer(log)) and _builds(log) == 1 and is_complete(target)
    assert not ensure_cached_file(target, _writer(log)) and _builds(log) == 1  # reused

    with open(target, "r+b") as fh:  # truncated after the build (a full disk, an interrupted copy)
        fh.truncate(100)
    assert not is_complete(target)
    assert ensure_cached_file(target, _writer(log)) and _builds(log) == 2
    assert target.read_bytes() == b"model" * 1000

    target.with_name(target.name + ".sha256").unlink()  # moved in, then killed before its checksum
    assert ensure_cached_file(target, _writer(log)) and _builds(log) == 3 and is_complete(target)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".build-")]  # no temporary left


def test_concurrent_processes_build_the_cache_once(tmp_path: Path) -> None:
    target, log = tmp_path / "cache" / "minilm-test.onnx", tmp_path / "builds.log"
    procs = forked_processes(ensure_cached_file, [(target, _writer(log, 0.5))] * 3)
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert _builds(log) == 1 and is_complete(target)


def test_two_homes_share_one_export(settings, tmp_path: Path, monkeypatch) -> None:
    from flows.settings import Settings

    cache = settings.note_model_cache_dir
    assert not cache.is_relative_to(settings.home)  # machine-level (tests: one folder per session)
    exports: list[Path] = []
    real_export = note_onnx._export_fp32
    monkeypatch.setattr(note_onnx, "_export_fp32", lambda t, p: (exports.append(p), real_export(t, p)))
    texts = ["No acute cardiopulmonary abnormality.", "Small left pleural effusion."]

    _minilm_onnx.cache_clear()
    first = NoteEncoder(encoders_dir=settings.encoders_dir, model_cache=cache).embed_texts(texts)
    built = sorted(cache.glob("minilm-onnx-int8-*.onnx"))
    assert len(built) == 1 and is_complete(built[0]) and len(exports) <= 1  # 0 when the session already built it
    mtime, n_exports = built[0].stat().st_mtime_ns, len(exports)

    other = Settings(home=tmp_path / "other-home")
    other.ensure_dirs()
    assert other.note_model_cache_dir == cache
    _minilm_onnx.cache_clear()  # a new process would not have it in memory either
    second = NoteEncoder(encoders_dir=other.encoders_dir, model_cache=other.note_model_cache_dir).embed_texts(texts)
    assert len(exports) == n_exports and built[0].stat().st_mtime_ns == mtime  # not exported again
    np.testing.assert_array_equal(first, second)
    assert not list(settings.encoders_dir.glob("minilm-*")) and not list(other.encoders_dir.glob("minilm-*"))
