"""Contrastive pretraining: InfoNCE behaves, new versions are saved and picked up by encoders."""

from __future__ import annotations

from pathlib import Path

import torch

from models.encoders import build_encoder
from models.features.assemble import encode_manifest
from models.stores.embeddings import EmbeddingStore
from models.training.pretrain import PretrainConfig, info_nce, pretrain
from tests.models.synthetic_arrays import write_synthetic_home


def test_info_nce_rewards_matched_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 8, generator=g)
    matched = info_nce(a, a + 0.01 * torch.randn(16, 8, generator=g), 0.1)
    shuffled = info_nce(a, a[torch.randperm(16, generator=g)], 0.1)
    assert matched < 0.1 < shuffled


def test_pretrain_saves_new_versions_that_encoders_load(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    home = tmp_path / "home"
    manifest, _ = write_synthetic_home(home, n_patients=12, seed=2, bad_items=1, modalities=("xray", "eeg", "note"))
    encoders_dir = home / "encoders"
    before = {m: build_encoder(m, seed=3).version for m in ("xray", "eeg")}
    epochs: list[tuple[int, int, float]] = []
    report = pretrain(manifest, home, encoders_dir, modalities=("xray", "eeg", "note"), note_encoder="tfidf",
                      config=PretrainConfig(epochs=2, batch_size=6, seed=3), progress=lambda *a: epochs.append(a))
    assert [e[0] for e in epochs] == [1, 2] and all(loss > 0 for *_, loss in epochs)
    assert set(report.versions) == {"xray-resnet2d", "eeg-tcn-bands", "note-tfidf"}
    assert len(report.skipped) == 1 and report.skipped[0].startswith("eeg ")  # the corrupt file, reported
    for m, name in (("xray", "xray-resnet2d"), ("eeg", "eeg-tcn-bands")):
        assert report.versions[name] != before[m]
        assert (encoders_dir / f"{name}-{report.versions[name]}.pt").exists()
        assert build_encoder(m, encoders_dir=encoders_dir, seed=3).version == report.versions[name]
    store = EmbeddingStore(home / "embeddings")
    enc = encode_manifest(manifest, home, store, modalities=("xray", "eeg", "note"), encoders_dir=encoders_dir,
                          note_encoder="tfidf")
    assert enc.encoder_keys["xray"].version == report.versions["xray-resnet2d"]
    assert enc.encoder_keys["note"].version == report.versions["note-tfidf"]
