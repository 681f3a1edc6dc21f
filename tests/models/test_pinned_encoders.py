"""Prediction encodes with exactly the encoder versions a model recorded, never the newest weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.encoders import build_encoder
from models.features.assemble import build_pinned_encoder, encode_manifest, encode_pinned, load_features
from models.stores.embeddings import EmbeddingStore
from tests.models.synthetic_arrays import write_synthetic_home


def test_pinned_encoder_ignores_newer_weights_and_says_when_its_own_are_gone(tmp_path: Path) -> None:
    home, enc_dir = tmp_path / "home", tmp_path / "home" / "encoders"
    manifest, cohort = write_synthetic_home(home, n_patients=8, seed=2, missing_rate=0.0, modalities=("eeg",))
    store = EmbeddingStore(home / "embeddings")
    first = encode_manifest(manifest, home, store, ["eeg"], encoders_dir=enc_dir)
    pinned = tuple(first.encoder_keys["eeg"])  # what a model trained now records

    newer = build_encoder("eeg", encoders_dir=enc_dir)  # a later pretrain: new weights saved
    with torch.no_grad():
        for p in newer.net.parameters():
            p.add_(0.05)
    newer.save_weights(enc_dir)
    assert tuple(build_encoder("eeg", encoders_dir=enc_dir).key()) != pinned  # the default moved on

    assert tuple(build_pinned_encoder("eeg", pinned, enc_dir).key()) == pinned
    assert tuple(build_pinned_encoder("eeg", tuple(newer.key()), enc_dir).key()) == tuple(newer.key())

    fresh = EmbeddingStore(tmp_path / "fresh")  # the store lacks them: re-encoded with the pinned weights
    report = encode_pinned(manifest, home, fresh, {"eeg": pinned, "ct": None}, enc_dir)
    assert report.encoded["eeg"] == 8 and tuple(report.encoder_keys["eeg"]) == pinned
    again = load_features(manifest, cohort, fresh, {"eeg": pinned}, modalities=("eeg",))
    before = load_features(manifest, cohort, store, {"eeg": pinned}, modalities=("eeg",))
    torch.testing.assert_close(torch.as_tensor(again.embeddings["eeg"]), torch.as_tensor(before.embeddings["eeg"]))

    gone = (pinned[0], "0123456789ab", pinned[2])
    with pytest.raises(FileNotFoundError, match="0123456789ab"):
        build_pinned_encoder("eeg", gone, enc_dir)


def test_seeded_encoders_built_in_parallel_threads_get_the_sequential_version() -> None:
    """The encode flow builds its four encoders at once in threads; each must still get its seeded version
    (interleaved draws from torch's global generator gave versions nobody could rebuild for pinning)."""
    from concurrent.futures import ThreadPoolExecutor

    mods = ("ct", "xray", "eeg", "ct", "xray", "eeg")
    expected = {m: tuple(build_encoder(m, seed=7).key()) for m in set(mods)}
    with ThreadPoolExecutor(max_workers=len(mods)) as pool:
        got = list(pool.map(lambda m: tuple(build_encoder(m, seed=7).key()), mods))
    assert got == [expected[m] for m in mods]
