"""Find the source items under a source folder: classify, hash, group, and set aside what cannot be read.

Every file under the source root ends in exactly one :class:`WorkUnit`: as a
member of an item (a CT series, an X-ray, an EEG recording with its companion
files, a note file), as a byte-identical duplicate listed on the original's
unit, or as a unit that is quarantined before reading (unrecognised type,
unreadable file). Nothing is skipped silently.

File type is decided by extension first; ``.dcm`` and extension-less files are
sniffed (DICOM ``DICM`` preamble, EDF ``0`` header) because hospital exports
often drop or misname extensions.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from ingestion.driver.ecg_units import ECG_KIND, attribute_ecg, ecg_sidecar_path
from ingestion.driver.image_units import IMAGE_KIND, attribute_images, sidecar_path
from ingestion.driver.hashing import HashCache, SourceFile, combined_sha, sha256_file, unreadable_id
from ingestion.driver.worker import Readers, WorkUnit
from ingestion.readers.ecg_leads import edf_labels, looks_like_ecg

EEG_EXTENSIONS: tuple[str, ...] = (".edf", ".bdf", ".fif", ".vhdr", ".set")
EEG_COMPANIONS: dict[str, tuple[str, ...]] = {
    ".vhdr": (".vmrk", ".eeg"),               # BrainVision header + marker + data
    ".set": (".fdt",),                        # EEGLAB header + float data
    ".edf": (".tse", ".tse_bi", ".lbl", ".lbl_bi"),  # TUH annotation files beside the EDF
}
NOTE_EXTENSIONS: tuple[str, ...] = (".txt", ".csv", ".jsonl")
DICOM_EXTENSIONS: tuple[str, ...] = (".dcm", ".dicom", ".ima", ".zip", "")
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg")  # X-rays exported as pictures (MIMIC-CXR-JPG, ...)
ECG_EXTENSIONS: tuple[str, ...] = (".hea",)  # WFDB header; 12-lead ECG in EDF is told from EEG by its labels
ECG_COMPANIONS: dict[str, tuple[str, ...]] = {".hea": (".dat", ".atr")}  # WFDB signal + annotation files

UNRECOGNISED = ("unrecognised file type: clinfuse reads DICOM (.dcm, folders, .zip), X-ray images ({images}), "
                "EEG ({eeg}), ECG (WFDB .hea with its .dat, EDF) and notes ({notes}); convert the file or move it out of "
                "the source folder").format(images=" ".join(IMAGE_EXTENSIONS), eeg=" ".join(EEG_EXTENSIONS),
                                            notes=" ".join(NOTE_EXTENSIONS))


def _hash_one(root: Path, path: Path, cache: HashCache | None = None) -> SourceFile:
    rel = path.relative_to(root).as_posix()
    if path.is_symlink() and path.is_dir():
        return SourceFile(rel, path, None, f"{rel}: a symbolic link to a folder, which clinfuse does not follow "
                                           "(it may loop or lead outside the source); copy the folder in instead")
    try:
        return SourceFile(rel, path, cache.sha256(path) if cache is not None else sha256_file(path))
    except PermissionError:
        return SourceFile(rel, path, None, f"{rel}: permission denied when reading; grant read access and re-run")
    except OSError as exc:
        return SourceFile(rel, path, None, f"{rel}: cannot be read ({exc.strerror or type(exc).__name__}); "
                                           "check the file and the disk, then re-run")


def list_files(root: Path, exclude: Sequence[Path] = ()) -> list[Path]:
    """Every regular file under ``root`` (sorted, symlinked folders not followed), minus ``exclude``.

    ``exclude`` may name files (the cohort table) and folders (a clinfuse home
    inside the source, which must not ingest its own arrays).
    """
    skip = {p.resolve() for p in exclude}
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if (Path(folder) / d).resolve() not in skip)
        linked = [d for d in dirs if os.path.islink(os.path.join(folder, d))]  # listed (and quarantined), not walked
        for name in sorted(names + linked):
            path = Path(folder) / name
            # realpath, not Path.resolve: a symlink loop must become a quarantined row, not crash the walk
            if Path(os.path.realpath(path)) not in skip:
                out.append(path)
    return out


def hash_files(root: Path, paths: Sequence[Path], threads: int = 4,
                cache: HashCache | None = None) -> list[SourceFile]:
    """Hash ``paths`` in threads (hashlib releases the GIL on large blocks); keeps input order.

    With ``cache``, a file whose (size, mtime, inode) is unchanged since it was last
    hashed is not read at all.
    """
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        hashed = list(pool.map(lambda p: _hash_one(root, p, cache), paths))
    if cache is not None:
        cache.save()
    return hashed


def _head(path: Path, n: int = 132) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def classify(sf: SourceFile) -> str:
    """``dicom``, ``eeg``, ``ecg``, ``note``, ``image`` or ``unknown`` for one file, by extension then content.

    An EDF/BDF whose signal labels are 12-lead ECG leads and no 10-20 electrode is ``ecg``.
    """
    name = sf.path.name.lower()
    suffix = sf.path.suffix.lower()
    if suffix in ECG_EXTENSIONS:
        return ECG_KIND
    if suffix in (".edf", ".bdf"):
        return ECG_KIND if looks_like_ecg(edf_labels(sf.path)) else "eeg"
    if name.endswith(".fif.gz") or suffix in EEG_EXTENSIONS:
        return "eeg"
    if suffix in NOTE_EXTENSIONS:
        return "note"
    if suffix in IMAGE_EXTENSIONS:
        return IMAGE_KIND
    if suffix in DICOM_EXTENSIONS:
        if suffix != "":
            return "dicom"  # by extension: no need to open the file
        head = _head(sf.path)
        if head[:8] == b"0       ":  # an EDF whose extension was dropped
            return ECG_KIND if looks_like_ecg(edf_labels(sf.path)) else "eeg"
        return "dicom" if head[128:132] == b"DICM" else "unknown"
    return "unknown"


_COMPANIONS: dict[str, tuple[str, ...]] = {**EEG_COMPANIONS, **ECG_COMPANIONS}


def _has_companions(kind: str, sf: SourceFile) -> bool:
    return kind in ("eeg", ECG_KIND) and sf.path.suffix.lower() in _COMPANIONS


def _companions(main: SourceFile, by_rel: dict[str, SourceFile]) -> list[SourceFile]:
    stem = main.relpath[: -len(main.path.suffix)] if main.path.suffix else main.relpath
    found = []
    for ext in _COMPANIONS.get(main.path.suffix.lower(), ()):
        for candidate in (stem + ext, stem + ext.upper()):
            if candidate in by_rel:
                found.append(by_rel[candidate])
    return found


def _single_units(files: list[SourceFile], kinds: dict[str, str]) -> list[WorkUnit]:
    """Units for EEG and ECG recordings (with companions), note files and unrecognised files."""
    by_rel = {f.relpath: f for f in files}
    claimed: set[str] = set()
    units = []
    for sf in files:
        if _has_companions(kinds[sf.relpath], sf):
            members = [sf, *_companions(sf, by_rel)]
            claimed.update(m.relpath for m in members[1:])
            units.append(_unit(kinds[sf.relpath], sf, members))
    for sf in files:
        kind = kinds[sf.relpath]
        if sf.relpath in claimed or kind == "dicom" or _has_companions(kind, sf):
            continue
        if kind == "unknown":
            units.append(WorkUnit("unknown", sf.relpath, (sf.relpath,), sf.sha256 or unreadable_id(sf.relpath),
                                  quarantine=f"{sf.relpath}: {UNRECOGNISED}"))
        else:
            units.append(_unit(kind, sf, [sf]))
    return units


def _unit(kind: str, main: SourceFile, members: list[SourceFile]) -> WorkUnit:
    sha = main.sha256 if len(members) == 1 else combined_sha(m.sha256 or "" for m in members)
    return WorkUnit(kind, main.relpath, tuple(m.relpath for m in members), sha or unreadable_id(main.relpath),
                    read_paths=(str(main.path),))


@dataclass(frozen=True)
class KnownItem:
    """A manifest row that needs no more work: its kind, files and source hash (for the warm-run shortcut)."""

    kind: str
    source_uri: str
    files: tuple[str, ...]
    source_sha: str


def _known_dicom_units(files: list[SourceFile], known: Sequence[KnownItem]) -> list[WorkUnit] | None:
    """Units rebuilt from the manifest when every DICOM file is already recorded with unchanged content.

    Saves reading every DICOM header again on a warm re-run. Returns None (so the
    index runs) as soon as one DICOM file is new, changed or recorded ambiguously.
    """
    sha_by_rel = {f.relpath: f.sha256 for f in files}
    units: list[WorkUnit] = []
    covered: set[str] = set()
    for item in known:
        if not item.files or any(f not in sha_by_rel for f in item.files):
            continue
        shas = {sha_by_rel[f] or "" for f in item.files}
        accepted = {combined_sha(shas)} | (shas if len(shas) == 1 else set())
        if item.source_sha not in accepted or covered.intersection(item.files):
            continue
        covered.update(item.files)
        units.append(WorkUnit(item.kind, item.source_uri, item.files, item.source_sha))
    return units if covered == set(sha_by_rel) else None


def _dicom_units(root: Path, files: list[SourceFile], readers: Readers, known: Sequence[KnownItem]) -> list[WorkUnit]:
    """Group DICOM candidates into CT series and X-ray images with the DICOM index (unless all are known)."""
    if not files:
        return []
    shortcut = _known_dicom_units(files, known)
    if shortcut is not None:
        return shortcut
    from ingestion.driver.dicom_units import dicom_units

    return dicom_units(root, files, readers)


def _unreadable_units(files: Iterable[SourceFile]) -> list[WorkUnit]:
    return [WorkUnit("unknown", f.relpath, (f.relpath,), unreadable_id(f.relpath), quarantine=f.error)
            for f in files]


def fold_duplicates(units: list[WorkUnit]) -> list[WorkUnit]:
    """Byte-identical items are read once: later copies are listed on the first unit (by source_uri)."""
    first: dict[str, int] = {}
    out: list[WorkUnit] = []
    for unit in sorted(units, key=lambda u: u.source_uri):
        if unit.item_sha in first:
            i = first[unit.item_sha]
            orig = out[i]
            out[i] = replace(orig, files=orig.files + unit.files,
                             duplicates=orig.duplicates + tuple((f, orig.source_uri) for f in unit.files))
        else:
            first[unit.item_sha] = len(out)
            out.append(unit)
    return out


def discover_units(root: Path, readers: Readers, exclude: Sequence[Path] = (), threads: int = 4,
                   known: Sequence[KnownItem] = (), hash_cache: Path | None = None) -> list[WorkUnit]:
    """All work units under ``root``: every file lands in exactly one unit's ``files``.

    ``known`` lists manifest items that need no work; when they account for
    every DICOM file with unchanged content, the DICOM index is not run.
    ``hash_cache`` (a JSON file in the home) remembers content hashes by file
    stat, so on a warm re-run unchanged files are neither hashed nor opened.
    """
    root = Path(root)
    cache = HashCache(hash_cache) if hash_cache is not None else None
    # the image and ECG tables are read by attribute_images / attribute_ecg, never as note files
    sidecars = [p for p in (sidecar_path(root), ecg_sidecar_path(root)) if p is not None]
    hashed = hash_files(root, list_files(root, [*exclude, *sidecars]), threads, cache)
    readable = [f for f in hashed if f.error is None]
    kinds = {f.relpath: classify(f) for f in readable}
    dicom = [f for f in readable if kinds[f.relpath] == "dicom"]
    units = (_single_units(readable, kinds) + _dicom_units(root, dicom, readers, known)
             + _unreadable_units(f for f in hashed if f.error is not None))
    return [replace(unit, root=str(root.resolve())) for unit in fold_duplicates(attribute_ecg(attribute_images(units, root), root))]
