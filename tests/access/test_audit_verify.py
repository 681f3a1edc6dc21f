"""The hash-chained audit trail: `clinfuse audit verify` names the exact edited, removed or reordered entry."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.access.audit import AuditLog, entry_hash
from tests.access.trail_files import fill, lines as _lines, write as _write



def _trail(path: Path, n: int = 6) -> AuditLog:
    return fill(AuditLog(path), n)




def _problems(log: AuditLog) -> list[tuple[str, int | None]]:
    result = log.verify()
    assert not result.ok
    return [(p.kind, p.seq) for p in result.problems]


def test_intact_trail_verifies_and_refuses_identifiers(tmp_path: Path) -> None:
    log = _trail(tmp_path / "audit.jsonl")
    result = log.verify()
    assert result.ok and result.n_entries == 6 and not result.problems
    entries = _lines(log.path)
    assert [e["seq"] for e in entries] == list(range(1, 7))
    assert all(b["prev"] == a["hash"] for a, b in zip(entries, entries[1:]))
    with pytest.raises(ValueError, match="pseudonymous"):
        log.append("a.smith", "clinician", "view_patient", "MRN-00012345")
    with pytest.raises(ValueError, match="unknown audit action"):
        log.append("a.smith", "clinician", "delete_everything")


def test_edited_entry_is_named(tmp_path: Path) -> None:
    log = _trail(tmp_path / "audit.jsonl")
    entries = _lines(log.path)
    entries[2]["user"] = "someone.else"  # seq 3, hash left as it was
    _write(log.path, entries)
    assert _problems(log) == [("edited", 3)]


def test_edited_entry_with_recomputed_hash_is_named(tmp_path: Path) -> None:
    log = _trail(tmp_path / "audit.jsonl")
    entries = _lines(log.path)
    entries[1]["action"] = "view_patient"
    entries[1]["hash"] = entry_hash(entries[1])  # the forger fixes the entry's own hash...
    _write(log.path, entries)
    assert _problems(log) == [("edited", 2)]  # ...but seq 3 recorded the old one


def test_removed_entries_are_named(tmp_path: Path) -> None:
    log = _trail(tmp_path / "audit.jsonl")
    entries = _lines(log.path)
    _write(log.path, entries[:3] + entries[4:])  # seq 4 removed
    assert _problems(log) == [("removed", 4)]
    _write(log.path, entries[:5])  # the last entry cut off: the head file remembers it
    problems = log.verify().problems
    assert [(p.kind, p.seq) for p in problems] == [("removed", 6)] and "cut off" in problems[0].message


def test_reordered_entry_is_named(tmp_path: Path) -> None:
    log = _trail(tmp_path / "audit.jsonl")
    entries = _lines(log.path)
    moved = entries.pop(1)  # seq 2 moved to the end
    _write(log.path, entries + [moved])
    problems = log.verify().problems
    assert [(p.kind, p.seq, p.line) for p in problems] == [("reordered", 2, 6)]


def test_appends_continue_the_chain_and_cli_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.access.reviews import audit_path
    from flows.cli import app
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    try:
        path = audit_path(get_settings().access_dir)
        _trail(path, 4)
        AuditLog(path).append("b.jones", "analyst", "export_csv", None, "30 rows")  # a second writer object
        runner = CliRunner()
        res = runner.invoke(app, ["audit", "verify"])
        assert res.exit_code == 0 and "intact: 5 entries" in res.output
        assert "export_csv" in runner.invoke(app, ["audit", "list", "--user", "b.jones"]).output
        entries = _lines(path)
        entries[3]["patient_id"] = "P999999999999"
        _write(path, entries)
        res = runner.invoke(app, ["audit", "verify"])
        assert res.exit_code == 1 and "edited: entry seq=4 (line 4) was edited" in res.output
    finally:
        get_settings.cache_clear()
