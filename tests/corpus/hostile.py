"""Generate hostile source files: inputs built to exhaust memory or time, or to merge patients.

Why separate from :mod:`tests.corpus.build`: these are attacks, each sized to
hurt (a 3 GiB zip member, a DICOM declaring 3.6e12 pixels, an EDF header
implying terabytes, a 100 MB note), and each is run as its own ``clinfuse
ingest`` process by ``benchmarks/bench_attacks.py`` to measure peak memory.
Nothing binary is committed: every file is written here, in code that says
what is wrong with it. Every builder returns the :class:`CorpusCase` list
(path, expected status, reason regex) for what it wrote under ``src``.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, generate_uid

from ingestion.modalities import STANDARD_1020
from tests.corpus.build import CorpusCase, _save
from tests.ingestion.dicom_factory import cr_dataset, write_ct_series
from tests.ingestion.source_factory import write_edf, write_note

ZIP_BOMB_BYTES = 3 << 30
"""The uncompressed size of the zip bomb's one member: what drove ingest to 6.3 GiB before the limits."""
_MIB = 1 << 20


def _zip_of_zeros(path: Path, member: str, size: int) -> Path:
    """A real .zip whose one deflated member is ``size`` zero bytes (``size`` a multiple of 1 MiB, < 4 GiB).

    Written by hand, not by ``zipfile``, so building a 3 GiB bomb takes a second: after a full flush
    deflate starts afresh, so every MiB of zeros compresses to the same bytes, computed once.
    """
    block = bytes(_MIB)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    tail = comp.flush(zlib.Z_FINISH)
    n_blocks = size // _MIB
    crc = 0
    for _ in range(n_blocks):
        crc = zlib.crc32(block, crc)
    compressed = len(chunk) * n_blocks + len(tail)
    name = member.encode()
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, compressed, size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, compressed, size,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(local)
        for _ in range(n_blocks):
            fh.write(chunk)
        fh.write(tail)
        cd_offset = fh.tell()
        fh.write(central)
        fh.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), cd_offset, 0))
    return path


def zip_bomb(src: Path) -> list[CorpusCase]:
    """One .zip holding one 3 GiB member of zeros (3 MB on disk)."""
    _zip_of_zeros(src / "hostile_zip" / "export.zip", "export/CT000001.dcm", ZIP_BOMB_BYTES)
    return [CorpusCase("zip_one_3gib_member", "hostile_zip/export.zip", "quarantined",
                       reason="decompression bomb|limit per member")]


def dicom_pixel_bomb(src: Path) -> list[CorpusCase]:
    """Radiographs declaring 60,000 x 60,000 pixels x 1,000 frames over 2 KB of pixel data."""
    ds = cr_dataset(np.full((32, 32), 300, np.uint16), patient_id="MRN98000001")
    ds.Rows, ds.Columns, ds.NumberOfFrames = 60000, 60000, 1000
    _save(ds, src / "hostile_dicom" / "frames_bomb.dcm")
    return [CorpusCase("dicom_60000x60000x1000_frames", "hostile_dicom/frames_bomb.dcm", "quarantined",
                       reason="declares .*pixels")]


def _j2k_codestream(rows: int, cols: int, declared: tuple[int, int]) -> bytes:
    """A real JPEG 2000 codestream of a ``rows x cols`` image whose SIZ marker then claims ``declared`` (w, h)."""
    from openjpeg import encode

    stream = bytearray(encode(np.full((rows, cols), 200, np.uint16), bits_stored=12, codec_format=0))
    siz = stream.find(b"\xff\x51")
    assert stream[:2] == b"\xff\x4f" and siz == 2, "a raw codestream starts with SOC then SIZ"
    stream[siz + 6:siz + 14] = struct.pack(">II", *declared)  # Xsiz, Ysiz: the image grid's size
    stream[siz + 22:siz + 30] = struct.pack(">II", *declared)  # XTsiz, YTsiz: one tile as large as the image
    return bytes(stream)


def jpeg2000_bomb(src: Path) -> list[CorpusCase]:
    """A JPEG 2000 radiograph whose DICOM header says 64 x 64 but whose codestream declares 60,000 x 60,000."""
    ds = cr_dataset(np.full((64, 64), 200, np.uint16), patient_id="MRN98000002")
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([_j2k_codestream(64, 64, (60000, 60000))])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    _save(ds, src / "hostile_dicom" / "j2k_bomb.dcm")
    return [CorpusCase("jpeg2000_codestream_declares_60000x60000", "hostile_dicom/j2k_bomb.dcm", "quarantined",
                       reason="JPEG 2000 codestream declares")]


def _edf_field(data: bytearray, start: int, width: int, value: str) -> None:
    data[start:start + width] = value.ljust(width).encode("ascii")


def edf_sample_bomb(src: Path) -> list[CorpusCase]:
    """An EDF whose header claims 100,000,000 samples per record per channel for 100,000 records."""
    path = write_edf(src / "hostile_eeg" / "samples_bomb.edf", list(STANDARD_1020), patient="MRN98000003")
    data = bytearray(path.read_bytes())
    n_channels = int(data[252:256].decode())
    _edf_field(data, 236, 8, "100000")  # number of data records
    samples_at = 256 + n_channels * (16 + 80 + 8 + 8 + 8 + 8 + 8 + 80)  # 'samples in each record' fields
    for ch in range(n_channels):
        _edf_field(data, samples_at + 8 * ch, 8, "99999999")
    path.write_bytes(bytes(data))
    return [CorpusCase("edf_samples_imply_tens_of_tb", "hostile_eeg/samples_bomb.edf", "quarantined",
                       reason="header declares")]


def huge_notes(src: Path) -> list[CorpusCase]:
    """A 100 MB note, a 100 MB notes table with one huge row, and 1 MB of binary named .txt / .jsonl."""
    d = src / "hostile_notes"
    body = "HISTORY OF PRESENT ILLNESS: Intermittent headache, no fever. " * 16
    write_note(d / "note_100mb.txt", "MRN98000004", body * (100_000_000 // len(body) + 1))
    with open(d / "table_100mb.csv", "w", encoding="utf-8") as fh:
        fh.write("mrn,date,note_type,text\n")
        fh.write('MRN98000005,2024-05-03,Progress,"' + body * (100_000_000 // len(body) + 1) + '"\n')
    rng = np.random.default_rng(27)
    (d / "binary.txt").write_bytes(rng.bytes(1 << 20))
    (d / "binary.jsonl").write_bytes(rng.bytes(1 << 20))
    return [
        CorpusCase("note_100_mb", "hostile_notes/note_100mb.txt", "quarantined", reason="MB|characters"),
        CorpusCase("notes_table_100_mb", "hostile_notes/table_100mb.csv", "quarantined", reason="MB|characters"),
        CorpusCase("note_binary_1_mb", "hostile_notes/binary.txt", "quarantined"),
        CorpusCase("notes_jsonl_binary_1_mb", "hostile_notes/binary.jsonl", "quarantined"),
    ]


PLACEHOLDER_IDS: tuple[str, ...] = ("Unknown", "ANONYMOUS", "anon", "0", "N/A")


def placeholder_patient_ids(src: Path) -> list[CorpusCase]:
    """Two real CT volumes of two studies whose PatientID is 'Unknown', and radiographs with other placeholders."""
    d = src / "hostile_ids"
    volume = (np.arange(6 * 16 * 16).reshape(6, 16, 16) % 400 + 900).astype(np.int16)
    cases = []
    for k in range(2):
        write_ct_series(d / f"unknown_ct_{k}", volume + 10 * k, patient_id="Unknown", study_uid=generate_uid(),
                        series_uid=generate_uid())
        cases.append(CorpusCase(f"ct_patient_id_unknown_{k}", f"hostile_ids/unknown_ct_{k}", "quarantined",
                                reason="placeholder"))
    for k, pid in enumerate(PLACEHOLDER_IDS[1:]):
        _save(cr_dataset(np.full((32, 32), 400 + k, np.uint16), patient_id=pid), d / f"xray_{k}.dcm")
        cases.append(CorpusCase(f"xray_patient_id_{pid.lower().replace('/', '')}", f"hostile_ids/xray_{k}.dcm",
                                "quarantined", reason="placeholder"))
    write_note(d / "note_anonymous.txt", "ANONYMOUS", "ASSESSMENT: stable.\n")
    cases.append(CorpusCase("note_mrn_anonymous", "hostile_ids/note_anonymous.txt", "quarantined",
                            reason="placeholder"))
    return cases


def good_items(src: Path) -> list[CorpusCase]:
    """Ordinary files in the same batch: they must come out ok whatever the attacks beside them do."""
    d = src / "good"
    write_ct_series(d / "ct", (np.arange(6 * 16 * 16).reshape(6, 16, 16) % 300 + 950).astype(np.int16),
                    patient_id="MRN98000100")
    _save(cr_dataset(np.full((40, 40), 500, np.uint16), patient_id="MRN98000101"), d / "xray.dcm")
    write_edf(d / "eeg.edf", list(STANDARD_1020), patient="MRN98000102", seconds=12.0)
    write_note(d / "note.txt", "MRN98000103", "ASSESSMENT: migraine without aura; follow up in 3 months.\n")
    return [CorpusCase("good_ct", "good/ct", "ok"), CorpusCase("good_xray", "good/xray.dcm", "ok"),
            CorpusCase("good_eeg", "good/eeg.edf", "ok"), CorpusCase("good_note", "good/note.txt", "ok")]


HOSTILE_BUILDERS: dict[str, Callable[[Path], list[CorpusCase]]] = {
    "zip bomb (one 3 GiB member)": zip_bomb,
    "DICOM declaring 60,000 x 60,000 x 1,000 frames": dicom_pixel_bomb,
    "JPEG 2000 codestream declaring 60,000 x 60,000": jpeg2000_bomb,
    "EDF header implying tens of TB of samples": edf_sample_bomb,
    "100 MB and binary notes": huge_notes,
    "placeholder patient ids": placeholder_patient_ids,
}
"""Attack label -> builder; each writes its files under a source folder and returns their cases."""


def build_hostile(src: Path, attacks: list[str] | None = None, good: bool = True) -> list[CorpusCase]:
    """Write the named attacks (default: all) and, with ``good``, the ordinary items beside them."""
    cases = good_items(src) if good else []
    for label in list(HOSTILE_BUILDERS) if attacks is None else attacks:
        cases += HOSTILE_BUILDERS[label](src)
    return cases


def _jpeg_codestream(rows: int, cols: int, declared: tuple[int, int]) -> bytes:
    """A real baseline JPEG (Pillow) of a ``rows x cols`` 8-bit image whose frame header then claims ``declared``."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.full((rows, cols), 120, np.uint8)).save(out, format="JPEG", quality=90)
    stream = bytearray(out.getvalue())
    sof = stream.find(b"\xff\xc0")
    assert sof > 0, "Pillow writes a baseline frame header"
    stream[sof + 5:sof + 9] = struct.pack(">HH", declared[1], declared[0])  # height, width
    return bytes(stream)


def jpeg_bomb(src: Path) -> list[CorpusCase]:
    """A JPEG baseline radiograph whose header says 64 x 64 but whose frame header declares 60,000 x 60,000."""
    ds = cr_dataset(np.full((64, 64), 120, np.uint16), patient_id="MRN98000006")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([_jpeg_codestream(64, 64, (60000, 60000))])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    _save(ds, src / "hostile_dicom" / "jpeg_bomb.dcm")
    return [CorpusCase("jpeg_frame_header_declares_60000x60000", "hostile_dicom/jpeg_bomb.dcm", "quarantined",
                       reason="JPEG codestream declares")]


HOSTILE_BUILDERS["JPEG frame header declaring 60,000 x 60,000"] = jpeg_bomb


def deflated_dicom_bomb(src: Path) -> list[CorpusCase]:
    """A 3 MB DICOM file in Deflated Explicit VR Little Endian whose dataset inflates to 3 GiB of zeros."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.filewriter import write_file_meta_info
    from pydicom.uid import ComputedRadiographyImageStorage, DeflatedExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ComputedRadiographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    head = io.BytesIO()
    head.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=True)
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = comp.compress(bytes(_MIB)) + comp.flush(zlib.Z_FULL_FLUSH)
    path = src / "hostile_dicom" / "deflate_bomb.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(head.getvalue())
        for _ in range(ZIP_BOMB_BYTES // _MIB):
            fh.write(chunk)
        fh.write(comp.flush(zlib.Z_FINISH))
    return [CorpusCase("dicom_deflated_dataset_3gib", "hostile_dicom/deflate_bomb.dcm", "quarantined",
                       reason="inflates past")]


HOSTILE_BUILDERS["deflated DICOM dataset of 3 GiB"] = deflated_dicom_bomb
