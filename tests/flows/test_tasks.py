"""Cache keys of the tasks: content hashes that change exactly when the input changes."""

from __future__ import annotations

import numpy as np

from flows.flows.tasks import tree_sha256
from models.features.stage_inputs import features_sha256
from models.held_out import held_out_mask
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


def test_model_stage_key_ignores_files_derived_from_packaged_note_weights(tmp_path):
    """The int8 MiniLM's file, its checksum, its lock and a build in progress change no encoder's output:
    a home whose encoders folder holds them (older homes built it there) keeps its encode key, so a
    warm re-run's encode tasks are Cached. The lock file, left behind after the first note chunk
    built the model, used to change the key between the cold run and the first warm one."""
    from flows.flows.tasks import _home_key

    config = TrainStageConfig(home=tmp_path / "home")
    encoders = tmp_path / "home" / "encoders"
    encoders.mkdir(parents=True)
    (encoders / "ct-resnet3d-abc.pt").write_bytes(b"weights")
    before = _home_key(config)
    for name in ("minilm-onnx-int8-v1-0123.onnx", "minilm-onnx-int8-v1-0123.onnx.lock",
                 "minilm-onnx-int8-v1-0123.onnx.sha256"):
        (encoders / name).write_bytes(b"derived")
    (encoders / ".build-x1").mkdir()
    (encoders / ".build-x1" / "fp32.onnx").write_bytes(b"in progress")
    assert _home_key(config) == before
    (encoders / "ct-resnet3d-abd.pt").write_bytes(b"new weights")  # trained weights still change it
    assert _home_key(config) != before
