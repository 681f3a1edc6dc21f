"""A warm encode finds everything stored under the remembered encoder keys without building any encoder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ingestion.modalities import MODALITIES
from models.encoders import CTEncoder
from models.encoders.identity import IdentityCache, fingerprint
from models.features import assemble as features
from models.stores.embeddings import EmbeddingStore
from tests.models.synthetic_arrays import write_synthetic_home


@pytest.fixture
def home(tmp_path: Path):
    home = tmp_path / "home"
    manifest, _ = write_synthetic_home(home, n_patients=6, seed=2, bad_items=0)
    return home, manifest


def _encode(home: Path, manifest, builds: list[str]):
    return features.encode_manifest(manifest, home, EmbeddingStore(home / "embeddings"), note_encoder="tfidf",
                                    encoders_dir=home / "encoders", quarantine_dir=home / "quarantine")


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """Every encoder encode_manifest constructs, by modality."""
    made: list[str] = []
    real = features.build_encoder

    def counting(modality, **kwargs):
        made.append(modality)
        return real(modality, **kwargs)

    monkeypatch.setattr(features, "build_encoder", counting)
    return made


def test_warm_encode_builds_no_encoder(home, builds) -> None:
    home, manifest = home
    cold = _encode(home, manifest, builds)
    # every modality's encoder is built once cold, ECG too though this home has no ECG item (its key and
    # width still enter the feature set); the warm runs below build none
    assert sorted(builds) == sorted(MODALITIES) and sum(cold.hits.values()) == 0
    builds.clear()
    first_warm = _encode(home, manifest, builds)
    # the TF-IDF note model was fitted (a new file) during the cold run, so its key is remembered now
    assert builds == ["note"]
    builds.clear()
    warm = _encode(home, manifest, builds)
    assert builds == [], f"a warm encode built {builds}"
    assert warm.encoder_keys == cold.encoder_keys == first_warm.encoder_keys and warm.dims == cold.dims
    assert warm.hits == cold.encoded and sum(warm.encoded.values()) == 0 and warm.failures == []


def test_new_weights_are_a_miss_and_get_encoded(home, builds) -> None:
    home, manifest = home
    cold = _encode(home, manifest, builds)
    _encode(home, manifest, builds)
    retrained = CTEncoder(encoders_dir=home / "encoders")
    with torch.no_grad():
        next(retrained.net.parameters()).add_(0.01)
    retrained.save_weights(home / "encoders")  # what `clinfuse pretrain` leaves behind
    builds.clear()
    after = _encode(home, manifest, builds)
    assert "ct" in builds
    assert after.encoder_keys["ct"] != cold.encoder_keys["ct"] and after.encoded["ct"] == cold.encoded["ct"]
    assert after.encoder_keys["xray"] == cold.encoder_keys["xray"] and after.encoded["xray"] == 0


def test_fingerprint_follows_weights_files_and_options(tmp_path: Path) -> None:
    enc = tmp_path / "encoders"
    enc.mkdir()
    base = fingerprint("ct", encoders_dir=enc, seed=0, note_encoder="minilm")
    assert fingerprint("ct", encoders_dir=enc, seed=1, note_encoder="minilm") != base
    (enc / "ct-resnet3d-abc.pt").write_bytes(b"w")
    with_file = fingerprint("ct", encoders_dir=enc, seed=0, note_encoder="minilm")
    assert with_file != base
    (enc / "ct-resnet3d-abc.pt").write_bytes(b"other weights")
    assert fingerprint("ct", encoders_dir=enc, seed=0, note_encoder="minilm") != with_file
    (tmp_path / "store" / "encoder_keys.json").parent.mkdir()
    (tmp_path / "store" / "encoder_keys.json").write_text("not json")
    assert IdentityCache(tmp_path / "store").get(base) is None


def test_identity_module_does_not_import_torch() -> None:
    code = ("import sys; import models.encoders.identity as i; "
            "i.fingerprint('note', encoders_dir=None, seed=0, note_encoder='minilm'); "
            "print(sorted(m for m in ('torch', 'monai', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"
