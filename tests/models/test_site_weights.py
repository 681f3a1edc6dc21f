"""A site's own encoder weights: exported by clinfuse, loaded back, checked against the architecture."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from models.encoders import build_encoder
from models.encoders.site_weights import (SiteWeightsError, check_modality, export_state_dict, file_sha256, install_site_weights,
                                          load_site_weights, weights_digest)
from models.features.assemble import build_pinned_encoder
from tests.models.synthetic_arrays import ct_volume, eeg_windows, xray_image


class NotATensor:
    """Pickled into a weights file: a weights_only load must refuse to run its class."""


def _array_files(tmp_path: Path, modality: str, n: int = 2) -> list[Path]:
    """Normalised arrays on disk (the encoders' input contract), read back through ``encoder.load``."""
    rng = np.random.default_rng(4)
    gen = {"ct": ct_volume, "xray": xray_image, "eeg": eeg_windows}[modality]
    paths = []
    for i in range(n):
        path = tmp_path / f"{modality}-{i}.npy"
        np.save(path, gen(rng, i % 2 == 0))
        paths.append(path)
    return paths


def _embed(encoder, files: list[Path]) -> np.ndarray:  # noqa: ANN001 - any TorchEncoder
    return encoder.encode_batch([encoder.load(p) for p in files])


@pytest.mark.parametrize("modality", ["ct", "xray", "eeg"])
def test_exported_weights_load_back_with_same_embeddings_and_new_version(tmp_path: Path, modality: str) -> None:
    files = _array_files(tmp_path, modality)
    ours = build_encoder(modality, seed=3)
    exported = export_state_dict(ours, tmp_path / f"{modality}.pt")
    site = build_encoder(modality, seed=4)  # another init: every tensor must come from the file
    assert not np.allclose(_embed(site, files), _embed(ours, files))
    record = load_site_weights(site, exported)
    np.testing.assert_array_equal(_embed(site, files), _embed(ours, files))
    assert record.sha256 == file_sha256(exported) and site.site_sha256 == record.sha256
    assert site.version != ours.version  # never the same store key as the project's own weights
    assert site.key().preprocessing_hash == ours.key().preprocessing_hash


def test_other_architecture_is_refused_naming_keys_shapes_and_expected_encoder(tmp_path: Path) -> None:
    xray_file = export_state_dict(build_encoder("xray"), tmp_path / "xray.pt")
    ct = build_encoder("ct", seed=3)
    before = ct.version
    with pytest.raises(SiteWeightsError) as err:
        load_site_weights(ct, xray_file)
    msg = str(err.value)
    assert "ct-resnet3d" in msg and "clinfuse " in msg and "ResNet" in msg
    got, want = torch.load(xray_file)["conv1.weight"].shape, ct.net.state_dict()["conv1.weight"].shape
    assert f"conv1.weight: file {tuple(got)}, expected {tuple(want)}" in msg
    assert ct.version == before and ct.site_sha256 is None  # refused before anything was loaded


def test_tensor_of_wrong_shape_and_missing_or_extra_keys_are_refused(tmp_path: Path) -> None:
    ct = build_encoder("ct")
    state = {k: v.clone() for k, v in ct.net.state_dict().items()}
    want = tuple(state["fc.weight"].shape)
    state["fc.weight"] = torch.zeros(want[0] + 1, want[1])
    torch.save(state, tmp_path / "shape.pt")
    shown = re.escape(f"1 shape mismatches: fc.weight: file {(want[0] + 1, want[1])}, expected {want}")
    with pytest.raises(SiteWeightsError, match=shown):
        load_site_weights(build_encoder("ct"), tmp_path / "shape.pt")
    del state["fc.weight"]
    state["head.extra"] = torch.zeros(3)
    torch.save(state, tmp_path / "keys.pt")
    with pytest.raises(SiteWeightsError, match=r"1 missing keys: fc\.weight \| 1 unexpected keys: head\.extra"):
        load_site_weights(build_encoder("ct"), tmp_path / "keys.pt")


def test_monai_bundle_folder_and_safetensors_give_the_same_weights(tmp_path: Path) -> None:
    files = _array_files(tmp_path, "xray")
    ours = build_encoder("xray", seed=3)
    exported = export_state_dict(ours, tmp_path / "xray.pt")
    bundle = tmp_path / "bundle"
    (bundle / "models").mkdir(parents=True)
    (bundle / "configs").mkdir()
    (bundle / "configs" / "metadata.json").write_text('{"version": "0.1.0"}')
    shutil.copy(exported, bundle / "models" / "model.pt")
    from_file, from_bundle = build_encoder("xray", seed=8), build_encoder("xray", seed=9)
    load_site_weights(from_file, exported)
    record = load_site_weights(from_bundle, bundle)
    assert record.format == "monai-bundle:pt" and record.file == bundle / "models" / "model.pt"
    assert from_bundle.version == from_file.version  # same bytes, same checksum, same version
    tensors = export_state_dict(ours, tmp_path / "xray.safetensors")
    from_st = build_encoder("xray", seed=10)
    load_site_weights(from_st, tensors)
    np.testing.assert_array_equal(_embed(from_st, files), _embed(ours, files))
    assert from_st.version not in (ours.version, from_file.version)


def test_unusable_files_are_refused_with_the_reason(tmp_path: Path) -> None:
    ct = build_encoder("ct")
    with pytest.raises(SiteWeightsError, match="no such weights file"):
        load_site_weights(ct, tmp_path / "absent.pt")
    torch.save({"w": NotATensor()}, tmp_path / "code.pt")
    with pytest.raises(SiteWeightsError, match="weights_only=True"):
        load_site_weights(ct, tmp_path / "code.pt")
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(SiteWeightsError, match="ONNX weights are not supported"):
        load_site_weights(ct, tmp_path / "model.onnx")
    (tmp_path / "empty-folder").mkdir()
    with pytest.raises(SiteWeightsError, match="models/model.pt"):
        load_site_weights(ct, tmp_path / "empty-folder")
    with pytest.raises(SiteWeightsError, match="note encoder takes no site weights"):
        check_modality("note")
    with pytest.raises(SiteWeightsError, match="unknown modality 'mri'"):
        check_modality("mri")
    assert ct.site_sha256 is None


def test_installed_weights_are_the_newest_and_found_again_by_version(tmp_path: Path) -> None:
    enc_dir = tmp_path / "encoders"
    exported = export_state_dict(build_encoder("eeg", seed=3), tmp_path / "eeg.pt")
    target, record = install_site_weights(build_encoder("eeg"), exported, enc_dir)
    built = build_encoder("eeg", encoders_dir=enc_dir)
    assert built.site_sha256 == record.sha256 and target == enc_dir / f"{built.name}-{built.version}.pt"
    pinned = build_pinned_encoder("eeg", built.key(), enc_dir)
    assert tuple(pinned.key()) == tuple(built.key())
    assert build_encoder("eeg").version != built.version  # the default without the folder is untouched
    stamp = target.stat().st_mtime_ns
    install_site_weights(build_encoder("eeg"), exported, enc_dir)
    assert target.stat().st_mtime_ns == stamp  # same weights again: nothing changes on disk
    newer = build_encoder("eeg", seed=11)
    os.utime(newer.save_weights(enc_dir), ns=(stamp + 10**9, stamp + 10**9))  # e.g. a later pretrain
    assert build_encoder("eeg", encoders_dir=enc_dir).version == newer.version
    install_site_weights(build_encoder("eeg"), exported, enc_dir)  # configured again: they win again
    assert build_encoder("eeg", encoders_dir=enc_dir).version == built.version
    assert weights_digest({"eeg": exported}) == {"eeg": record.sha256}
