"""The outbox: every batch's SR files and FHIR bundle, written into the home, and a ledger of what was sent.

A site with neither a PACS nor an EHR endpoint still gets the files
(``<home>/outbox/sr/*.dcm``, ``<home>/outbox/fhir/*.json``). Writing is
idempotent: names come from the results' keys, so re-running predict on the
same batch finds its files there and writes nothing. The ledger
(``ledger.jsonl``) records, per destination, what was sent and when, and the
last failure's reason for what was not; an item stays in the outbox until it
is sent, and is never sent twice to the same destination.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
from filelock import FileLock

from ingestion.atomic_files import atomic_write_bytes, atomic_write_text
from ingestion.deid.uids import ImageRef
from models.outbox.fhir import build_bundle, bundle_id, risk_assessment
from models.outbox.parallel import Mapper, encoded_sr, outbox_mapper, references_of, serial_map
from models.outbox.result import PatientResult, results_from_batch

IMAGE_MODALITIES = ("ct", "xray")


@dataclass(frozen=True)
class OutboxWrite:
    """What one batch left in the outbox: SR files written or already there, and the bundle."""

    sr_written: int
    sr_present: int
    bundle: str
    """Path of the batch's bundle; empty when no result of the batch could be expressed in FHIR."""
    bundle_written: bool
    references_skipped: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    """Per result left out of the SRs or the bundle: pseudonym and reason (e.g. a non-finite interval)."""


def sr_dir(outbox: Path) -> Path:
    return Path(outbox) / "sr"


def fhir_dir(outbox: Path) -> Path:
    return Path(outbox) / "fhir"


def sr_name(result: PatientResult) -> str:
    return f"{result.key[:32]}.dcm"


def patient_sources(manifest: pd.DataFrame, patient_ids: Iterable[str], source_root: Path | None,
                    secret: str, map_fn: Mapper = serial_map, references_for: set[str] | None = None,
                    ) -> tuple[dict[str, list[str]], dict[str, list[ImageRef]], list[str]]:
    """Per patient: the content hashes of their ok items, and the de-identified references of their images.

    References are read from the CT/X-ray source files under ``source_root``
    (the folder that predict ingested), for the patients in ``references_for``
    (all when None), one patient per ``map_fn`` item; files not found there
    are listed in the returned reasons and the result is reported without them.
    """
    wanted = set(patient_ids)
    ok = manifest[(manifest["status"] == "ok") & manifest["patient_id"].isin(wanted)]
    inputs = {pid: sorted(group["content_sha256"].astype(str)) for pid, group in ok.groupby("patient_id")}
    refs: dict[str, list[ImageRef]] = {}
    skipped: list[str] = []
    if source_root is None:
        return inputs, refs, skipped
    jobs: dict[str, list[Path]] = {}
    for pid, group in ok[ok["modality"].isin(IMAGE_MODALITIES)].groupby("patient_id"):
        if references_for is not None and pid not in references_for:
            continue
        paths = [Path(source_root) / f for files in group["source_files"] for f in files]
        gone = [p.name for p in paths if not p.is_file()]
        if gone:
            skipped.append(f"{pid}: {len(gone)} source file(s) no longer under the source folder")
        jobs[str(pid)] = [p for p in paths if p.is_file()]
    for pid, (found, why) in zip(jobs, map_fn(references_of, [(paths, secret) for paths in jobs.values()])):
        skipped += why
        refs[pid] = [r for r in found if r.patient_id == pid]
    return inputs, refs, skipped


def _fhir_ready(results: Sequence[PatientResult], failed: list[str]) -> list[PatientResult]:
    """The results that make a valid RiskAssessment; each other one adds its reason to ``failed``."""
    ready = []
    for result in results:
        try:
            risk_assessment(result)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            failed.append(f"{result.patient_id}: no RiskAssessment: {' '.join(str(exc).split())[:240]}")
            continue
        ready.append(result)
    return ready


def write_outbox(results: Sequence[PatientResult], outbox: Path, map_fn: Mapper = serial_map) -> OutboxWrite:
    """Write each result's SR and the batch's bundle into ``outbox``; files already there are kept as they are.

    SRs not yet there are encoded one result per ``map_fn`` item and written
    here. A result that cannot be written (a non-finite value, say) is left
    out with its reason in ``failed``; the batch's other results are written.
    """
    failed: list[str] = []
    todo = [r for r in results if not (sr_dir(outbox) / sr_name(r)).is_file()]
    written = 0
    for result, data in zip(todo, map_fn(encoded_sr, todo)):
        if isinstance(data, str):
            failed.append(data)
            continue
        atomic_write_bytes(sr_dir(outbox) / sr_name(result), data)
        written += 1
    ready = _fhir_ready(results, failed)
    if not ready:
        return OutboxWrite(written, len(results) - len(todo), "", False, failed=tuple(failed))
    path = bundle_path(ready, outbox)
    fresh = not path.is_file()
    if fresh:
        atomic_write_text(path, json.dumps(build_bundle(ready), indent=1, sort_keys=True))
    return OutboxWrite(written, len(results) - len(todo), str(path), fresh, failed=tuple(failed))


def bundle_path(ready: Sequence[PatientResult], outbox: Path) -> Path:
    """Where the bundle of these results is (its id hashes their keys, which references do not enter)."""
    return fhir_dir(outbox) / f"{bundle_id(ready)}.json"


def needing_references(results: Sequence[PatientResult], outbox: Path) -> set[str]:
    """Patients whose references a write still needs: every one while the batch's bundle (which cites their
    studies) is missing, else those whose SR is missing. A re-run on a written batch reads no header."""
    ready = _fhir_ready(results, [])
    if ready and not bundle_path(ready, outbox).is_file():
        return {r.patient_id for r in results}
    return {r.patient_id for r in results if not (sr_dir(outbox) / sr_name(r)).is_file()}


def pending_items(outbox: Path) -> dict[str, list[Path]]:
    """Every item file of the outbox by kind (``sr``, ``fhir``), sorted by name."""
    return {"sr": sorted(sr_dir(outbox).glob("*.dcm")), "fhir": sorted(fhir_dir(outbox).glob("*.json"))}


class Ledger:
    """What was sent where (``sent[destination][item]`` = time) and why an item was not (``failed``).

    Append-only JSON lines (``ledger.jsonl``), one per attempt, folded when
    read: a send of n items costs n short appends, not n rewrites of a growing
    file. Appends are one ``write`` each under a file lock, so a ``clinfuse
    outbox send`` overlapping a predict never tears or loses a record. A line
    torn by a crash is skipped: that attempt counts as not made, and the item
    is sent again (an SR keeps its SOP Instance UID and a RiskAssessment is a
    ``PUT`` of its id, so a repeat replaces, never duplicates).
    """

    def __init__(self, outbox: Path) -> None:
        self.path = Path(outbox) / "ledger.jsonl"
        self._lock = FileLock(str(self.path) + ".lock")

    def read(self) -> dict[str, Any]:
        state: dict[str, Any] = {"sent": {}, "failed": {}}
        if not self.path.is_file():
            return state
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
                destination, item, at = rec["destination"], rec["item"], rec["at"]
            except (ValueError, KeyError, TypeError):
                continue
            failed = state["failed"].setdefault(destination, {})
            if rec.get("reason") is None:
                state["sent"].setdefault(destination, {})[item] = at
                failed.pop(item, None)
            else:
                failed[item] = {"reason": rec["reason"], "at": at}
        return state

    def sent_items(self, destination: str) -> set[str]:
        """The items already sent to ``destination``."""
        return set(self.read()["sent"].get(destination, {}))

    def was_sent(self, destination: str, item: str) -> bool:
        return item in self.sent_items(destination)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as raw:
            raw.seek(-1, os.SEEK_END)
            return raw.read(1) == b"\n"

    def record(self, destination: str, item: str, reason: str | None = None) -> None:
        """Record ``item`` as sent to ``destination`` (``reason`` None) or as failed with ``reason``."""
        line = json.dumps({"destination": destination, "item": item, "reason": reason,
                           "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, sort_keys=True) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "a+", encoding="utf-8") as fh:
            if fh.tell() > 0 and not self._ends_with_newline():
                line = "\n" + line  # close a line torn by a crash so this record stands on its own
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())


def write_batch_outbox(batch_path: Path, manifest_path: Path, source_root: Path | None, secret: str,
                       outbox: Path, workers: int = 1) -> OutboxWrite:
    """The outbox of one stored predictions batch: its patients' inputs and image references, then the files.

    ``source_root`` is the folder that predict ingested (image references are
    read from its DICOM headers and de-identified with ``secret``); None when
    it is gone, and the results are then written without image references.
    The per-patient work runs on ``workers`` processes when there is enough of it.
    """
    from ingestion.manifest import latest_per_source, read_manifest

    batch = pd.read_parquet(batch_path)
    manifest = latest_per_source(read_manifest(manifest_path))
    root = Path(source_root) if source_root is not None and Path(source_root).is_dir() else None
    pids = batch["patient_id"].astype(str)
    inputs, _, _ = patient_sources(manifest, pids, None, secret)
    need = needing_references(results_from_batch(batch, inputs, {}), outbox)
    with outbox_mapper(workers, len(need)) as map_fn:
        inputs, refs, skipped = patient_sources(manifest, pids, root, secret, map_fn, need)
        written = write_outbox(results_from_batch(batch, inputs, refs), outbox, map_fn)
    return OutboxWrite(written.sr_written, written.sr_present, written.bundle, written.bundle_written, tuple(skipped),
                       written.failed)
