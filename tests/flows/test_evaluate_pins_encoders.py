"""`clinfuse evaluate` judges a model on the embeddings of the encoder versions it recorded (as predict does),
not on whatever encoder is newest in the home."""

from __future__ import annotations

import json
from pathlib import Path

from flows.flows.evaluate import evaluation_encoder_keys
from flows.settings import Settings


def test_evaluate_uses_the_models_recorded_encoder_versions(tmp_path: Path) -> None:
    model_dir = tmp_path / "models" / "abc"
    model_dir.mkdir(parents=True)
    recorded = {"ct": ["ct-resnet3d", "v-old", "pp1"], "note": ["note-minilm", "v2", "pp2"], "eeg": None}
    (model_dir / "model.json").write_text(json.dumps({"encoder_keys": recorded}))
    keys = evaluation_encoder_keys(Settings(home=tmp_path / "home"), model_dir, synthetic=0)
    assert dict(keys) == {"ct": ("ct-resnet3d", "v-old", "pp1"), "note": ("note-minilm", "v2", "pp2"), "eeg": None}
