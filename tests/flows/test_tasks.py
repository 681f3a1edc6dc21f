"""Cache keys of the tasks: content hashes that change exactly when the input changes."""

from __future__ import annotations

import numpy as np

from flows.tasks import tree_sha256
from models.held_out import held_out_mask
from models.stage_inputs import features_sha256
from models.stages import TrainStageConfig, model_id_for


def test_tree_hash_follows_content_not_timestamps(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("one")
    (tmp_path / "y.edf").write_bytes(b"\x00\x01")
    first = tree_sha256(tmp_path)
    import os

    os.utime(tmp_path / "y.edf", (1, 1))
    assert tree_sha256(tmp_path) == first
    (tmp_path / "a" / "x.txt").write_text("two")
    assert tree_sha256(tmp_path) != first
    assert tree_sha256(tmp_path, exclude=(tmp_path / "a" / "x.txt",)) != tree_sha256(tmp_path)


def test_features_hash_and_model_id(synthetic_features, tmp_path):
    fs = synthetic_features.subset(np.arange(20))
    assert features_sha256(fs) == features_sha256(fs.subset(np.arange(20)))
    hidden = fs.with_mask(fs.mask & np.array([False, True, True, True]))
    assert features_sha256(hidden) != features_sha256(fs)
    a = model_id_for(fs, TrainStageConfig(home=tmp_path, epochs=5))
    assert a == model_id_for(fs, TrainStageConfig(home=tmp_path / "elsewhere", epochs=5, device="cuda"))
    assert a != model_id_for(fs, TrainStageConfig(home=tmp_path, epochs=6)) != model_id_for(hidden, TrainStageConfig(
        home=tmp_path, epochs=5))


def test_held_out_split_is_stable_per_patient(synthetic_features):
    ids = synthetic_features.patient_ids
    mask = held_out_mask(ids, 0.2, seed=7)
    assert 0.1 < mask.mean() < 0.3
    # The same patient lands on the same side in a larger cohort.
    bigger = held_out_mask(ids[:50] + ("Pffffffffffff",) + ids[50:], 0.2, seed=7)
    np.testing.assert_array_equal(np.delete(bigger, 50), mask)
    assert not np.array_equal(held_out_mask(ids, 0.2, seed=8), mask)
