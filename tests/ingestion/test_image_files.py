"""PNG/JPEG X-rays: the reader's grey levels per Pillow mode, the sidecar table, bad files, and whole ingests.

Every image is written by the test with Pillow (or, for the hostile ones, as
raw PNG chunks), so no binary is committed; the real-data test ingests the
COVID-19 chest X-ray collection with its own metadata turned into a sidecar.
"""

from __future__ import annotations

import csv
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ingestion.deid.pseudonym import pseudonymise
from ingestion.driver.ingest import ingest
from ingestion.driver.sources import UNRECOGNISED, classify
from ingestion.driver.worker import ReaderConfig
from ingestion.manifest import read_manifest
from ingestion.readers.image_file import MAX_PIXELS, read_image_file
from ingestion.readers.image_sidecar import SidecarError, parse_spacing, read_sidecar
from ingestion.readers.records import QuarantineError

SECRET = "test-secret"
CONFIG = ReaderConfig(ct_spacing_mm=(4.0, 2.0, 2.0), ct_shape=(8, 16, 16), xray_shape=(32, 32),
                      eeg_sfreq=64.0, eeg_window_s=2.0, eeg_line_freq=50.0)
PHI_NAME = "Jane Q Doe"


def _gradient(h: int = 48, w: int = 64) -> np.ndarray:
    return np.linspace(0.0, 1.0, h * w, dtype=np.float64).reshape(h, w)


def write_grey8(path: Path, value: int | None = None, size: tuple[int, int] = (48, 64)) -> Path:
    pixels = np.full(size, value, np.uint8) if value is not None else (_gradient(*size) * 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def _truncate(path: Path) -> Path:
    """Cut the file in the middle of its pixel data, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid-looking PNG whose IHDR declares ``width`` x ``height`` 8-bit grey pixels, with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + _chunk(b"IEND", b""))
    return path


def _read(path: Path) -> tuple[np.ndarray, dict]:
    item = read_image_file(path, (32, 32), "P1")
    assert item.modality == "xray" and item.array.shape == (32, 32) and item.array.dtype == np.float32
    return item.array, item.metadata


# --- the reader ---------------------------------------------------------------------------------------------


def test_8_and_16_bit_grey_scale_by_bit_depth_not_by_the_image_range(tmp_path: Path) -> None:
    array8, meta8 = _read(write_grey8(tmp_path / "mid.png", value=51))
    assert np.allclose(array8, 51 / 255) and meta8["bit_depth"] == 8  # a flat image is not stretched to 0..1
    Image.fromarray(np.full((40, 40), 13107, np.uint16)).save(tmp_path / "deep.png")
    array16, meta16 = _read(tmp_path / "deep.png")
    assert np.allclose(array16, 13107 / 65535, atol=1e-6) and meta16["bit_depth"] == 16
    assert meta16["source_mode"].startswith("I")
    gradient, _ = _read(write_grey8(tmp_path / "ramp.png"))
    assert gradient[0, 0] < 0.05 and gradient[-1, -1] > 0.95  # bright stays bright: no inversion


def test_colour_palette_and_alpha_become_luminance(tmp_path: Path) -> None:
    Image.fromarray(np.full((30, 30, 3), (200, 100, 50), np.uint8)).save(tmp_path / "rgb.jpg", quality=100)
    rgb, meta = _read(tmp_path / "rgb.jpg")
    expected = (0.299 * 200 + 0.587 * 100 + 0.114 * 50) / 255
    assert abs(float(rgb.mean()) - expected) < 0.02 and meta["file_format"] == "JPEG"
    Image.fromarray(np.full((30, 30), 120, np.uint8)).convert("P").save(tmp_path / "pal.png")
    pal, meta = _read(tmp_path / "pal.png")
    assert meta["source_mode"] == "P" and np.allclose(pal, 120 / 255, atol=1e-3)
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 90, 0  # fully transparent: the grey is kept, not composited to a background
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "alpha.png")
    grey, meta = _read(tmp_path / "alpha.png")
    assert meta["alpha_dropped"] is True and np.allclose(grey, 90 / 255, atol=1e-3)


def test_exif_orientation_applied_and_no_text_chunk_or_exif_copied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    exif[0x010E] = PHI_NAME  # ImageDescription
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(tmp_path / "phone.jpg", exif=exif)
    info = PngInfo()
    info.add_text("PatientName", PHI_NAME)
    Image.fromarray(np.full((40, 60), 128, np.uint8)).save(tmp_path / "text.png", pnginfo=info)
    _, jpeg_meta = _read(tmp_path / "phone.jpg")
    _, png_meta = _read(tmp_path / "text.png")
    assert jpeg_meta["original_shape"] == [60, 40] and png_meta["original_shape"] == [40, 60]
    assert PHI_NAME not in json.dumps(jpeg_meta) + json.dumps(png_meta)
    assert png_meta["pixel_spacing_mm"] is None and png_meta["pixel_spacing_source"].startswith("unknown")


@pytest.mark.parametrize(("name", "make", "words"), [
    ("truncated.png", lambda p: _truncate(write_grey8(p)), "truncated"),
    ("notes.jpg", lambda p: p.write_text("Patient seen today, chest clear.\n"), "not a readable PNG/JPEG"),
    ("bomb.png", lambda p: png_header_only(p, 60000, 60000), "decompression bomb"),
    ("under_pillow_cap.png", lambda p: png_header_only(p, 9000, 9000), "decompression bomb"),
    ("gif.png", lambda p: Image.new("L", (8, 8)).save(p, format="GIF"), "not PNG/JPEG"),
])
def test_bad_files_raise_a_reason(tmp_path: Path, name: str, make, words: str) -> None:
    path = tmp_path / name
    make(path)
    with pytest.raises(QuarantineError) as err:
        read_image_file(path, (32, 32), "P1")
    assert words in err.value.reason and name in err.value.reason
    assert 9000 * 9000 > MAX_PIXELS  # the second bomb is under Pillow's own limit, so ours decides


def test_spacing_cells() -> None:
    assert parse_spacing("0.139") == (0.139, 0.139)
    assert parse_spacing("0.1\\0.2") == (0.1, 0.2) and parse_spacing("0.1;0.2") == (0.1, 0.2)
    assert parse_spacing("") is None
    for bad in ("0", "-1", "abc", "1\\2\\3", "nan"):
        with pytest.raises(ValueError):
            parse_spacing(bad)


def test_sidecar_rows_headers_and_problems(tmp_path: Path) -> None:
    table = tmp_path / "images.csv"
    table.write_text("\ufeffFileName,PatientID,View Position,Modality\n"  # a BOM and public-set spellings
                     "./a.png,P1,PA,X-ray\nb.png,,AP,\nc.png,P3,,CT\nd.png,P4,,\nd.png,P5,,\n\n", encoding="utf-8")
    sidecar = read_sidecar(table)
    assert sidecar.rows["a.png"].patient_id == "P1" and sidecar.rows["a.png"].problem is None
    assert sidecar.rows["a.png"].view == "PA" and sidecar.rows["a.png"].modality == "X-ray"
    assert "patient id is empty" in sidecar.rows["b.png"].problem
    assert "not a radiograph" in sidecar.rows["c.png"].problem
    assert "lines 5 and 6" in sidecar.rows["d.png"].problem
    table.write_text("name,who\na.png,P1\n", encoding="utf-8")
    with pytest.raises(SidecarError, match="no file or patient_id column"):
        read_sidecar(table)


def test_sidecar_bare_names_match_unique_files_only(tmp_path: Path) -> None:
    from ingestion.driver.image_units import attribute_images
    from ingestion.driver.worker import WorkUnit

    (tmp_path / "images.csv").write_text("file,patient_id\nfront.png,P1\nlone.png,P2\n", encoding="utf-8")
    units = [WorkUnit("image", uri, (uri,), uri) for uri in ("day1/front.png", "day2/front.png", "sub/lone.png")]
    out = {u.source_uri: u for u in attribute_images(units, tmp_path)}
    assert out["sub/lone.png"].original_patient_id == "P2" and out["sub/lone.png"].quarantine is None
    for uri in ("day1/front.png", "day2/front.png"):
        assert "more than one image" in out[uri].quarantine and out[uri].original_patient_id is None


def test_png_and_jpeg_are_classified_as_images_and_named_in_the_unrecognised_reason(tmp_path: Path) -> None:
    from ingestion.driver.hashing import SourceFile

    for name in ("a.png", "b.JPG", "c.jpeg"):
        assert classify(SourceFile(name, tmp_path / name, "x")) == "image"
    assert ".png .jpg .jpeg" in UNRECOGNISED


# --- whole ingests --------------------------------------------------------------------------------------------


def _write_sidecar(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _by_file(home: Path) -> dict[str, dict]:
    manifest = read_manifest(home / "manifest.parquet")
    return {row["source_uri"]: row for row in manifest.to_dict("records")}


@pytest.mark.slow
def test_sidecar_maps_two_files_to_one_patient_and_a_bad_file_is_quarantined(tmp_path: Path) -> None:
    src, home = tmp_path / "src", tmp_path / "home"
    (src / "films").mkdir(parents=True)
    write_grey8(src / "films" / "a1.png")
    Image.fromarray(np.full((50, 40, 3), 77, np.uint8)).save(src / "films" / "a2.jpg")
    write_grey8(src / "b1.png", value=200)
    _truncate(write_grey8(src / "broken.png"))
    write_grey8(src / "unlisted.png", value=10)
    write_grey8(src / "ct_slice.png", value=30)
    _write_sidecar(src / "images.csv", [
        {"filename": "films/a1.png", "PatientID": "MRN-0042", "view": "PA", "pixel_spacing_mm": "0.143",
         "modality": "X-ray"},
        {"filename": "films/a2.jpg", "PatientID": "MRN-0042", "view": "LATERAL", "pixel_spacing_mm": "",
         "modality": "X-ray"},
        {"filename": "b1.png", "PatientID": "MRN-0077", "view": "AP", "pixel_spacing_mm": "0.2\\0.25",
         "modality": "CR"},
        {"filename": "broken.png", "PatientID": "MRN-0099", "view": "", "pixel_spacing_mm": "", "modality": ""},
        {"filename": "ct_slice.png", "PatientID": "MRN-0099", "view": "", "pixel_spacing_mm": "", "modality": "CT"},
    ])

    report = ingest(src, None, home, SECRET, CONFIG, workers=2)
    rows = _by_file(home)
    assert set(rows) == {"films/a1.png", "films/a2.jpg", "b1.png", "broken.png", "unlisted.png", "ct_slice.png"}
    assert "images.csv" not in rows  # the sidecar is not read as a note file
    ok = {uri: r for uri, r in rows.items() if r["status"] == "ok"}
    assert set(ok) == {"films/a1.png", "films/a2.jpg", "b1.png"}
    assert {r["modality"] for r in rows.values()} == {"xray"}
    assert ok["films/a1.png"]["patient_id"] == ok["films/a2.jpg"]["patient_id"] == pseudonymise("MRN-0042", SECRET)
    assert ok["b1.png"]["patient_id"] == pseudonymise("MRN-0077", SECRET)
    meta = {uri: json.loads(r["meta_json"]) for uri, r in ok.items()}
    assert meta["films/a1.png"]["pixel_spacing_mm"] == [0.143, 0.143]
    assert meta["films/a1.png"]["pixel_spacing_source"] == "sidecar table"
    assert meta["b1.png"]["pixel_spacing_mm"] == [0.2, 0.25] and meta["b1.png"]["view_position"] == "AP"
    assert meta["films/a2.jpg"]["pixel_spacing_mm"] is None
    array = np.load(home / ok["b1.png"]["array_uri"])
    assert array.shape == (32, 32) and np.allclose(array, 200 / 255)
    reasons = {uri: r["reason"] for uri, r in rows.items() if r["status"] == "quarantined"}
    assert "truncated" in reasons["broken.png"]
    assert "not listed in images.csv" in reasons["unlisted.png"]
    assert "not a radiograph" in reasons["ct_slice.png"]
    assert all(str(src) not in reason for reason in reasons.values())
    assert report.counts["xray"]["ok"] == 3 and report.counts["xray"]["quarantined"] == 3
    manifest_text = read_manifest(home / "manifest.parquet").to_json()  # decoded: parquet pages may be compressed
    everything = manifest_text + "".join(p.read_text() for p in home.rglob("*.json"))
    assert "MRN-0042" not in everything and "MRN-0077" not in everything and "MRN-0099" not in everything

    again = ingest(src, None, home, SECRET, CONFIG, workers=2)
    assert again.new == 0 and again.skipped == report.new + report.skipped
    assert len(read_manifest(home / "manifest.parquet")) == len(rows)


@pytest.mark.slow
def test_without_sidecar_each_file_is_its_own_patient_named_by_its_stem(tmp_path: Path) -> None:
    src, home = tmp_path / "src", tmp_path / "home"
    src.mkdir()
    write_grey8(src / "case_17.png")
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(src / "case_18.jpeg")
    (src / "empty.jpg").write_bytes(b"")
    write_grey8(src / "5.png", value=5)  # a short numeric id once broke the meta JSON ('5' scrubbed inside numbers)
    ingest(src, None, home, SECRET, CONFIG, workers=1)
    rows = _by_file(home)
    assert rows["5.png"]["status"] == "ok", rows["5.png"]["reason"]
    five = json.loads(rows["5.png"]["meta_json"])
    assert five["scaling"] == "bit depth (/255)" and rows["5.png"]["patient_id"] == pseudonymise("5", SECRET)
    assert rows["case_17.png"]["patient_id"] == pseudonymise("case_17", SECRET)
    assert rows["case_18.jpeg"]["patient_id"] == pseudonymise("case_18", SECRET)
    meta = json.loads(rows["case_17.png"]["meta_json"])
    assert meta["pixel_spacing_mm"] is None and meta["patient_from"].startswith("file stem")
    assert rows["empty.jpg"]["status"] == "quarantined" and "not a readable PNG/JPEG" in rows["empty.jpg"]["reason"]


@pytest.mark.slow
def test_unreadable_sidecar_quarantines_every_image_rather_than_guessing(tmp_path: Path) -> None:
    src, home = tmp_path / "src", tmp_path / "home"
    src.mkdir()
    write_grey8(src / "a.png")
    (src / "images.csv").write_text("name,who\na.png,MRN-1\n", encoding="utf-8")
    ingest(src, None, home, SECRET, CONFIG, workers=1)
    row = _by_file(home)["a.png"]
    assert row["status"] == "quarantined" and "no file or patient_id column" in row["reason"]


@pytest.mark.slow
def test_cli_ingest_of_an_image_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.settings import get_settings

    src, home = tmp_path / "src", tmp_path / "home"
    src.mkdir()
    write_grey8(src / "one.png")
    write_grey8(src / "two.jpg", value=40)
    (src / "three.png").write_text("not an image")
    _write_sidecar(src / "images.csv", [{"file": f, "patient_id": "P-7"} for f in ("one.png", "two.jpg", "three.png")])
    monkeypatch.setenv("CLINFUSE_HOME", str(home))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["ingest", "--source", str(src), "--workers", "1"], env={"COLUMNS": "200"})
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "three.png" in result.output and "not a readable PNG/JPEG" in result.output
    rows = _by_file(home)
    assert {u: r["status"] for u, r in rows.items()} == {"one.png": "ok", "two.jpg": "ok", "three.png": "quarantined"}
    assert rows["one.png"]["patient_id"] == rows["two.jpg"]["patient_id"] != "P-7"


# --- real data ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_covid_chest_xray_collection_ingests_with_nothing_lost(realdata: Path, tmp_path: Path) -> None:
    folder = realdata / "cxr_covid"
    if not (folder / "metadata.csv").is_file():
        pytest.skip(f"{folder}/metadata.csv is absent (see the real-data SOURCES.md)")
    src, home = tmp_path / "src", tmp_path / "home"
    (src / "images").mkdir(parents=True)
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as fh:
        meta_rows = list(csv.DictReader(fh))
    sidecar = []
    for row in meta_rows:  # the collection's metadata, converted: one row per image, its patient, view, modality
        image = folder / row["folder"] / row["filename"]
        if image.is_file():
            (src / "images" / row["filename"]).symlink_to(image)
            sidecar.append({"file": f"images/{row['filename']}", "patient_id": row["patientid"],
                            "view": row["view"], "modality": row["modality"]})
    _write_sidecar(src / "images.csv", sidecar)
    report = ingest(src, None, home, SECRET, CONFIG, workers=2)
    rows = _by_file(home)
    files = {f"images/{p.name}" for p in (src / "images").iterdir()}
    listed = {f for r in rows.values() for f in r["source_files"]}
    assert listed == files  # nothing lost: every file is on a row (duplicates on their original's)
    for uri, row in rows.items():
        assert row["status"] == "ok" or row["reason"], uri
    n_xray = sum(1 for r in sidecar if r["modality"] == "X-ray")
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert len(ok) == n_xray - report.duplicate_files  # every radiograph reads (numeric ids such as '5' included)
    assert all(r["modality"] == "xray" for r in rows.values())
    quarantined = [r for r in rows.values() if r["status"] == "quarantined"]
    assert len(quarantined) == len(sidecar) - n_xray and all("not a radiograph" in r["reason"] for r in quarantined)
    patients = {r["patient_id"] for r in ok}
    assert len(patients) < len(ok)  # the collection has several films per patient, joined through the sidecar
