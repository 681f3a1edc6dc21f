"""Encoders: seeded determinism, shapes, saved weights, CPU path, EEG band powers, notes offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.encoders import (CTEncoder, EEGEncoder, NoteConfig, NoteEncoder, XrayConfig, XrayEncoder,
                             build_encoder)
from models.encoders.base import resolve_device
from models.encoders.eeg import band_powers
from models.encoders.note import FINDING_TERMS, findings_vector
from tests.models.synthetic_arrays import LEFT, RIGHT, ct_volume, eeg_windows, note_json, xray_image

REPO = Path(__file__).resolve().parents[2]




def _arrays(modality: str, n: int = 3, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    gen = {"ct": ct_volume, "xray": xray_image, "eeg": eeg_windows}[modality]
    return [gen(rng, i % 2 == 0) for i in range(n)]


@pytest.mark.parametrize("modality,dim", [("ct", 64 + 31), ("xray", 64 + 31), ("eeg", 32 + 27 * 4)])
def test_seeded_encoders_are_deterministic(modality: str, dim: int) -> None:
    arrays = _arrays(modality)
    a, b = build_encoder(modality, seed=5), build_encoder(modality, seed=5)
    other = build_encoder(modality, seed=6)
    za, zb = a.encode_batch(arrays), b.encode_batch(arrays)
    assert za.shape == (3, dim) and za.dtype == np.float32 and a.dim == dim
    assert np.isfinite(za).all()
    np.testing.assert_array_equal(za, zb)
    assert a.key() == b.key() and a.version != other.version
    assert a.preprocessing_hash == other.preprocessing_hash
    assert not np.allclose(other.encode_batch(arrays)[:, :64], za[:, :64])
    np.testing.assert_allclose(a.encode_batch(arrays[:1])[0], za[0], rtol=1e-4, atol=1e-5)  # batch-independent


def test_saved_weights_are_loaded_and_checked(tmp_path: Path) -> None:
    enc = XrayEncoder(seed=1)
    with torch.no_grad():
        for p in enc.net.parameters():
            p.add_(0.01)
    path = enc.save_weights(tmp_path)
    assert path.name == f"xray-resnet2d-{enc.version}.pt"
    again = XrayEncoder(seed=99, encoders_dir=tmp_path)  # saved weights beat the seed
    assert again.version == enc.version and again.weights_path == path
    arrays = _arrays("xray", 2)
    np.testing.assert_array_equal(again.encode_batch(arrays), enc.encode_batch(arrays))
    path.rename(tmp_path / "xray-resnet2d-000000000000.pt")
    with pytest.raises(ValueError, match="corrupt or was renamed"):
        XrayEncoder(encoders_dir=tmp_path)
    (tmp_path / "xray-resnet2d-000000000000.pt").unlink()
    other = XrayEncoder(XrayConfig(out_dim=32), seed=1)  # other preprocessing: its weights are skipped
    other.save_weights(tmp_path)
    assert XrayEncoder(seed=1, encoders_dir=tmp_path).version == XrayEncoder(seed=1).version


def test_cpu_path_and_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA"):
            resolve_device("cuda")
    enc = CTEncoder(device="auto")
    assert enc.encode_batch(_arrays("ct", 2)).shape == (2, enc.dim)


def test_bad_shapes_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        CTEncoder().encode_batch([np.zeros((64, 64), np.float32)])
    with pytest.raises(ValueError, match="EEG array"):
        EEGEncoder().encode_batch([np.zeros((2, 18, 512), np.float32)])


def test_band_powers_show_hemispheric_delta_slowing() -> None:
    rng = np.random.default_rng(3)
    for _ in range(10):
        windows = eeg_windows(rng, slowing=True)
        bp = band_powers(windows, 128.0, ((0.5, 4.0), (4.0, 8.0), (8.0, 13.0), (13.0, 30.0))).reshape(19, 4)
        delta_left, delta_right = bp[LEFT, 0].mean(), bp[RIGHT, 0].mean()
        assert abs(delta_left - delta_right) > 0.5  # one hemisphere clearly slower
        assert abs(bp[LEFT, 2].mean() - bp[RIGHT, 2].mean()) < 0.3  # alpha stays symmetric


def test_findings_vector_keeps_negation() -> None:
    terms = ("hemorrhage", "edema", "seizure")
    v = findings_vector([{"text": "no hemorrhage", "negated": True}, {"text": "Oedema", "negated": False}], terms)
    assert v.tolist() == [-1.0, 1.0, 0.0]
    both = findings_vector([{"text": "hemorrhage", "negated": True}, {"text": "hemorrhage", "negated": False}], terms)
    assert both[0] == 1.0


def test_tfidf_note_encoder_fits_persists_and_reloads(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    notes = [note_json(rng, i % 2 == 0) for i in range(8)]
    enc = NoteEncoder(NoteConfig(backend="tfidf"), encoders_dir=tmp_path)
    assert not enc.is_ready
    with pytest.raises(RuntimeError, match="not fitted"):
        enc.encode_batch(notes)
    enc.fit([n["text"] for n in notes])
    path = enc.save_fitted(tmp_path)
    z = enc.encode_batch(notes)
    assert z.shape == (8, enc.dim) and enc.dim == 64 + len(FINDING_TERMS)
    again = NoteEncoder(NoteConfig(backend="tfidf"), encoders_dir=tmp_path)
    assert again.version == enc.version and again.weights_path == path
    np.testing.assert_allclose(again.encode_batch(notes), z, atol=1e-6)
    hemorrhage = enc.config.finding_terms.index("hemorrhage")
    assert z[0, 64 + hemorrhage] == 1.0 and z[1, 64 + hemorrhage] == -1.0


@pytest.mark.slow
def test_minilm_note_encoder_works_offline(tmp_path: Path) -> None:
    note = tmp_path / "n.json"
    note.write_text(json.dumps(note_json(np.random.default_rng(0), True)))
    code = (
        "import sys, numpy as np\n"
        "from models.encoders import NoteEncoder\n"
        "e = NoteEncoder()\n"
        "z = e.encode_batch([e.load(sys.argv[1])] * 2)\n"
        "assert z.shape == (2, 384 + 30), z.shape\n"
        "assert abs(np.linalg.norm(z[0, :384]) - 1) < 1e-3\n"
        "print(e.name, e.version, e.dim)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", code, str(note)], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("note-minilm ")
