"""The int8 ONNX MiniLM note runtime: derived offline from the packaged weights, close to float32, versioned apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.encoders.note import NoteConfig, NoteEncoder, _minilm_onnx


@pytest.mark.slow
@pytest.mark.realdata
def test_int8_runtime_matches_float32_on_real_reports(realdata: Path, tmp_path: Path) -> None:
    df = pd.read_csv(realdata / "notes" / "indiana_reports_subset.csv").head(40)
    texts = [t for t in (df["findings"].fillna("") + " " + df["impression"].fillna("")).str.strip() if t]
    texts = [*texts, texts[0]]  # a repeated (templated) report
    int8 = NoteEncoder(encoders_dir=tmp_path)
    fp32 = NoteEncoder(NoteConfig(runtime="torch"))
    assert int8.runtime == "onnx-int8" and fp32.runtime == "torch"
    assert int8.version != fp32.version  # different numbers, so a different embedding-store key

    z8, z32 = int8.embed_texts(texts), fp32.embed_texts(texts)
    built = sorted(tmp_path.glob("minilm-onnx-int8-*.onnx"))
    assert len(built) == 1 and not list(tmp_path.rglob("note-*"))  # not mistaken for trained note weights
    assert z8.shape == z32.shape == (len(texts), 384)
    np.testing.assert_allclose(np.linalg.norm(z8, axis=1), 1.0, atol=1e-4)
    cosine = (z8 * z32).sum(axis=1)
    assert cosine.min() > 0.97 and cosine.mean() > 0.985, cosine
    # the geometry the classifiers see survives quantisation: pairwise similarities agree
    upper = np.triu_indices(len(texts) - 1, k=1)
    sim8, sim32 = (z8[:-1] @ z8[:-1].T)[upper], (z32[:-1] @ z32[:-1].T)[upper]
    assert np.corrcoef(sim8, sim32)[0, 1] > 0.97
    np.testing.assert_array_equal(z8[-1], z8[0])

    mtime = built[0].stat().st_mtime_ns
    _minilm_onnx.cache_clear()
    again = NoteEncoder(encoders_dir=tmp_path)
    np.testing.assert_array_equal(again.embed_texts(texts[:3]), z8[:3])  # a note's numbers do not depend on others
    assert built[0].stat().st_mtime_ns == mtime  # reused, not derived again
    assert NoteEncoder(NoteConfig(backend="tfidf")).preprocessing_hash == "aea051875d1a"  # TF-IDF key unchanged
