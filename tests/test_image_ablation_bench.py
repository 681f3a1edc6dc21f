"""The image ablation benchmark: its probe separates network and block columns, and its section says what ran."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import bench_image_ablation as bench


def test_ablation_scores_each_column_set_on_its_own() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 40)
    network = rng.normal(size=(80, 8))  # no signal
    block = rng.normal(size=(80, 3)) + 2.0 * y[:, None]  # strong signal
    probes = bench.ablate(np.hstack([network, block]), y, net_dim=8)
    assert probes["radiomics block only"][0] > 0.9
    assert abs(probes["network only"][0] - 0.5) < 0.25
    assert probes["whole embedding"][0] > 0.8


def test_section_reports_a_skipped_real_set_with_its_reason() -> None:
    phantom = {"n_patients": 10, "generate_s": 1.0, "ingest_s": 2.0, "encode_s": 3.0, "modalities": {
        "ct": {"n": 10, "dim": 94, "net_dim": 64, "oracle": 0.8,
               "probes": {p: (0.6, 0.1) for p in bench.PARTS}}}}
    text = bench.markdown(phantom, None, "no cxr_covid/metadata.csv", (1.0, 2.0))
    assert "| ct (64 + 30 dims, 10 patients) | 0.600 ± 0.100 |" in text
    assert "Not run: no cxr_covid/metadata.csv." in text


@pytest.mark.realdata
@pytest.mark.slow
def test_real_chest_xrays_all_arrive_and_are_probed(realdata: Path, tmp_path: Path) -> None:
    if not (realdata / "cxr_covid" / "metadata.csv").is_file():
        pytest.skip(f"no cxr_covid under {realdata}")
    result = bench.run_cxr(realdata, tmp_path)
    assert result["n_ok"] + result["n_quarantined"] == result["n_images"] > 100
    assert result["dim"] == result["net_dim"] + 31
    assert all(0.0 <= v[0] <= 1.0 for v in result["probes"].values())
