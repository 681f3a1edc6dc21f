"""The keyed, anchored audit trail: a consistent rewrite without the key fails, truncation is caught by the anchor,
older trails are sealed, keys rotate, and the CLI wires the configured key and anchor."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.access.audit import AuditLog, entry_hash
from flows.access.audit_keys import AuditKeys, key_id
from tests.access.trail_files import fill as _fill, lines as _lines, write as _write

KEY, NEW_KEY = b"audit-key-one-8f2c71d0e5", b"audit-key-two-41a9be7730"





def _rewrite_unkeyed(log: AuditLog, change: dict) -> None:
    """What someone who can write the home (but has no key) can do: rebuild the whole chain with plain SHA-256
    (the old unkeyed hashing), edit an entry, and rewrite the head file to match."""
    prev, out = "0" * 64, []
    for e in _lines(log.path):
        e = {k: v for k, v in e.items() if k not in ("kid", "hash", "sealed")}
        e.update(change if e["seq"] == 2 else {})
        e["prev"] = prev
        e["hash"] = prev = entry_hash(e)
        out.append(e)
    _write(log.path, out)
    log.head_path.write_text(json.dumps({"seq": out[-1]["seq"], "hash": out[-1]["hash"]}))


def test_keyed_entries_carry_key_id_and_hmac(tmp_path: Path) -> None:
    log = _fill(AuditLog(tmp_path / "audit.jsonl", AuditKeys(KEY)), 4)
    result = log.verify()
    assert result.ok and result.keyed and result.n_entries == 4
    entries = _lines(log.path)
    assert {e["kid"] for e in entries} == {key_id(KEY)} and KEY.decode() not in log.path.read_text()
    plain = hashlib.sha256(json.dumps({k: v for k, v in entries[0].items() if k != "hash"}, sort_keys=True,
                                      separators=(",", ":")).encode()).hexdigest()
    assert entries[0]["hash"] != plain  # not a plain hash anyone could recompute


def test_consistent_unkeyed_rewrite_is_detected(tmp_path: Path) -> None:
    log = _fill(AuditLog(tmp_path / "audit.jsonl", AuditKeys(KEY)), 5)
    _rewrite_unkeyed(log, {"user": "someone.else"})
    assert AuditLog(log.path).verify().ok  # the old unkeyed check is fooled by a consistent rewrite...
    result = log.verify()  # ...the keyed one is not
    assert not result.ok
    assert [(p.kind, p.seq) for p in result.problems] == [("unkeyed", s) for s in range(1, 6)]
    _fill(log, 2)  # later keyed appends chain onto the rewrite but do not vouch for it
    assert [(p.kind, p.seq) for p in log.verify().problems] == [("unkeyed", s) for s in range(1, 6)]
    with pytest.raises(ValueError, match="already holds keyed entries"):
        log.seal()  # nor can a seal be slipped in now


def test_rewrite_with_a_guessed_key_is_detected(tmp_path: Path) -> None:
    log = _fill(AuditLog(tmp_path / "audit.jsonl", AuditKeys(KEY)), 3)
    forged = _fill(AuditLog(tmp_path / "forged.jsonl", AuditKeys(b"not-the-key-" + KEY)), 3)
    _write(log.path, _lines(forged.path))
    kinds = {p.kind for p in log.verify().problems}
    assert kinds == {"unverifiable"}  # signed with a key this site does not hold


def test_legacy_trail_is_sealed_once(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _fill(AuditLog(path), 3)  # written before any key existed
    keyed = AuditLog(path, AuditKeys(KEY))
    problems = keyed.verify().problems
    assert [p.kind for p in problems] == ["unkeyed"] * 3 and "clinfuse audit seal" in problems[0].message
    seal = keyed.seal()
    assert seal is not None and seal["action"] == "audit_keyed" and seal["sealed"] == 3 and seal["seq"] == 4
    keyed.append("b.jones", "analyst", "export_csv")
    assert keyed.verify().ok
    entries = _lines(path)
    entries[1]["detail"] = "rewritten"  # the sealed legacy part can no longer be rewritten...
    entries[1]["hash"] = entry_hash(entries[1])
    entries[2]["prev"] = entries[1]["hash"]
    entries[2]["hash"] = entry_hash(entries[2])  # ...even consistently: the seal's HMAC covers the link
    _write(path, entries)
    assert ("edited", 3) in [(p.kind, p.seq) for p in keyed.verify().problems]
    with pytest.raises(ValueError, match="already holds keyed entries"):
        keyed.seal()
    with pytest.raises(ValueError, match="no audit key"):
        AuditLog(path).seal()


def test_seal_refused_when_the_anchor_sink_saw_keyed_entries(tmp_path: Path) -> None:
    """Rewriting the whole trail unkeyed also removes its keyed entries; the anchor sink outside the home
    still remembers them, so the rewrite cannot be sealed."""
    sink = tmp_path / "outside" / "anchors.jsonl"
    log = _fill(AuditLog(tmp_path / "audit.jsonl", AuditKeys(KEY), anchor=sink, anchor_every=2), 4)
    _rewrite_unkeyed(log, {"user": "someone.else"})
    with pytest.raises(ValueError, match="already holds keyed entries"):
        log.seal()


def test_truncation_with_rewritten_head_is_caught_by_the_anchor(tmp_path: Path) -> None:
    sink = tmp_path / "outside" / "anchors.jsonl"
    log = _fill(AuditLog(tmp_path / "home" / "audit.jsonl", AuditKeys(KEY), anchor=sink, anchor_every=3), 7)
    anchors = [json.loads(line) for line in sink.read_text().splitlines()]
    assert [a["seq"] for a in anchors] == [3, 6] and stat.S_IMODE(sink.stat().st_mode) == 0o600
    entries = _lines(log.path)
    _write(log.path, entries[:4])  # cut entries 5-7 off and make the head agree
    log.head_path.write_text(json.dumps({"seq": 4, "hash": entries[3]["hash"], "kid": entries[3]["kid"]}))
    assert AuditLog(log.path, AuditKeys(KEY)).verify().ok  # without the anchor nothing shows
    result = log.verify()
    assert not result.ok and [(p.kind, p.seq) for p in result.problems] == [("removed", 6)]
    assert "cut off" in result.problems[0].message and str(sink) in result.problems[0].message
    log.anchor_now()
    assert json.loads(sink.read_text().splitlines()[-1])["seq"] == 4


def test_rotated_key_keeps_old_entries_verifiable(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    _fill(AuditLog(path, AuditKeys(KEY)), 2)
    rotated = _fill(AuditLog(path, AuditKeys(NEW_KEY, (KEY,))), 2)
    assert [e["kid"] for e in _lines(path)] == [key_id(KEY)] * 2 + [key_id(NEW_KEY)] * 2
    assert rotated.verify().ok
    problems = AuditLog(path, AuditKeys(NEW_KEY)).verify().problems  # the retired key was dropped too soon
    assert [(p.kind, p.seq) for p in problems] == [("unverifiable", 1), ("unverifiable", 2)]
    assert "CLINFUSE_AUDIT_RETIRED_KEY_FILES" in problems[0].message


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "home"))
    for name in ("CLINFUSE_AUDIT_KEY", "CLINFUSE_AUDIT_KEY_FILE", "CLINFUSE_AUDIT_ANCHOR_FILE"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_cli_keygen_verify_and_anchor(cli_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.cli import app
    from flows.settings import get_settings

    runner = CliRunner()
    inside = runner.invoke(app, ["audit", "keygen", str(cli_home / "home" / "audit.key")])
    assert inside.exit_code == 2 and "inside CLINFUSE_HOME" in inside.output
    key_file = cli_home / "keys" / "audit.key"
    made = runner.invoke(app, ["audit", "keygen", str(key_file)])
    assert made.exit_code == 0 and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert runner.invoke(app, ["audit", "keygen", str(key_file)]).exit_code == 2  # never overwrites a key

    trail = get_settings().audit_trail()
    _fill(trail, 2)
    unkeyed = runner.invoke(app, ["audit", "verify"])
    assert unkeyed.exit_code == 0 and "unkeyed" in unkeyed.output  # the weak mode says so

    monkeypatch.setenv("CLINFUSE_AUDIT_KEY_FILE", str(key_file))
    monkeypatch.setenv("CLINFUSE_AUDIT_ANCHOR_FILE", str(cli_home / "anchors" / "audit.anchor"))
    get_settings.cache_clear()
    sealed = runner.invoke(app, ["audit", "seal"])
    assert sealed.exit_code == 0 and "sealed entries 1-2 at seq=3" in sealed.output
    _fill(get_settings().audit_trail(), 2)
    ok = runner.invoke(app, ["audit", "verify"])
    assert ok.exit_code == 0 and "intact: 5 entries" in ok.output and "anchor(s) checked" in ok.output
    assert runner.invoke(app, ["audit", "anchor"]).exit_code == 0

    _rewrite_unkeyed(get_settings().audit_trail(), {"action": "view_patient"})
    broken = runner.invoke(app, ["audit", "verify"])
    assert broken.exit_code == 1 and "unkeyed: entry seq=3" in broken.output

    monkeypatch.setenv("CLINFUSE_AUDIT_ANCHOR_FILE", str(cli_home / "home" / "anchor.jsonl"))
    get_settings.cache_clear()
    with pytest.raises(ValueError, match="inside CLINFUSE_HOME"):
        get_settings().audit_trail()


def test_misconfigured_key_is_refused_with_a_reason(cli_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.cli import app
    from flows.settings import get_settings

    monkeypatch.setenv("CLINFUSE_AUDIT_KEY_FILE", str(cli_home / "keys" / "missing.key"))
    get_settings.cache_clear()
    runner = CliRunner()
    for args in (["audit", "verify"], ["users", "add", "d.admin", "--role", "admin", "--password-stdin"]):
        out = runner.invoke(app, args, input="correct-horse-7\n")
        assert out.exit_code == 2 and "audit trail misconfigured" in out.output and "missing.key" in out.output
    assert not (cli_home / "home").exists()  # refused before the home or user store was created


@pytest.mark.server
def test_anchors_also_go_to_syslog(tmp_path: Path) -> None:
    """A UDP syslog receiver on loopback (started and stopped here) gets the head every N entries."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        address = f"127.0.0.1:{receiver.getsockname()[1]}"
        log = _fill(AuditLog(tmp_path / "audit.jsonl", AuditKeys(KEY), anchor_every=2, syslog=address), 3)
        data = receiver.recv(65536).decode("utf-8")
    assert data.startswith("<86>")  # authpriv.info
    line = json.loads(data.split("clinfuse-audit-anchor: ", 1)[1].rstrip("\0"))
    entries = _lines(log.path)
    assert (line["seq"], line["hash"], line["kid"]) == (2, entries[1]["hash"], key_id(KEY))
    assert line["trail"] == str(log.path.resolve())
