"""The TF-IDF note encoder fitted on the same notes is the same encoder, whatever the manifest's row order.

Why: the manifest's row order is the order in which ingest's readers finished
(a process pool locally, chunks on a Dask cluster), so it differs between two
ingests of the same source. A fit that followed it gave another SVD (other
float sums), hence another encoder version and other embeddings: the Dask
cluster test saw ``note-tfidf`` versions differ between a local and a cluster run.
"""

from __future__ import annotations

from pathlib import Path

from models.features.assemble import encode_manifest
from models.stores.embeddings import EmbeddingStore
from tests.models.synthetic_arrays import write_synthetic_home


def test_tfidf_version_does_not_depend_on_row_order(tmp_path: Path) -> None:
    home = tmp_path / "home"
    manifest, _ = write_synthetic_home(home, n_patients=24, seed=3, missing_rate=0.0, modalities=("note",))
    keys = []
    for name, frame in (("a", manifest), ("b", manifest.iloc[::-1].reset_index(drop=True))):
        report = encode_manifest(frame, home, EmbeddingStore(tmp_path / f"store-{name}"), modalities=["note"],
                                 note_encoder="tfidf", encoders_dir=tmp_path / f"encoders-{name}")
        keys.append(report.encoder_keys["note"])
    assert keys[0] is not None and keys[0] == keys[1]
