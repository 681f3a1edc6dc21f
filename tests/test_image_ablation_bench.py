"""The image ablation benchmark: its probe separates network and block columns, and its section says what ran."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import pandas as pd

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


def _phantom(anatomy: str, auroc: float) -> dict:
    return {"n_patients": 10, "anatomy": anatomy, "generate_s": 1.0, "ingest_s": 2.0, "encode_s": 3.0,
            "n_quarantined": 0, "modalities": {"ct": {"n": 10, "dim": 94, "net_dim": 64, "oracle": 0.8,
                                                      "probes": {p: (auroc, 0.1) for p in bench.PARTS}}}}


def test_section_reports_a_skipped_real_set_with_its_reason() -> None:
    text = bench.markdown({"standard": _phantom("standard", 0.6)}, None, "no cxr_covid/metadata.csv", (1.0, 2.0))
    assert "| standard | ct (64 + 30 dims, 10 patients) | 0.600 ± 0.100 |" in text
    assert "Not run: no cxr_covid/metadata.csv." in text


def test_section_shows_how_auroc_over_oracle_moves_between_drawings() -> None:
    phantoms = {"standard": _phantom("standard", 0.72), "varied": _phantom("varied", 0.56)}
    text = bench.markdown(phantoms, None, "absent", (1.0, 2.0))
    assert "| encoder | part | standard | varied | change |" in text
    assert "| ct | network only | 0.900 | 0.700 | -0.200 |" in text  # 0.72 / 0.8 -> 0.56 / 0.8
    assert "| varied | ct (64 + 30 dims, 10 patients) | 0.560 ± 0.100 |" in text


def test_varied_ct_ceiling_ties_the_patients_without_a_lesion() -> None:
    from ingestion.phantom.ct_varied import NO_LESION_BELOW

    y = np.array([0, 0, 1, 1, 1, 0])
    risk = np.array([0.1, 0.2, 0.3, 0.6, 0.8, 0.7])
    ev = np.array([-3.0, -2.0, -1.5, 0.5, 1.0, 2.0])  # the three lowest have no lesion
    assert (ev < NO_LESION_BELOW).sum() == 3
    ceiling = bench.varied_ct_ceiling(pd.DataFrame({"oracle_risk_ct": risk, "ev_ct": ev}), y)
    assert ceiling["share_without_lesion"] == 0.5
    # the oracle ranks 7 of 9 (positive, negative) pairs right; with the three tied, the two pairs among them
    # count half each: 6 / 9
    assert abs(ceiling["auroc"] - 6 / 9) < 1e-9


@pytest.mark.realdata
@pytest.mark.slow
def test_real_chest_xrays_all_arrive_and_are_probed(realdata: Path, tmp_path: Path) -> None:
    if not (realdata / "cxr_covid" / "metadata.csv").is_file():
        pytest.skip(f"no cxr_covid under {realdata}")
    result = bench.run_cxr(realdata, tmp_path)
    assert result["n_ok"] + result["n_quarantined"] == result["n_images"] > 100
    assert result["dim"] == result["net_dim"] + 31
    assert all(0.0 <= v[0] <= 1.0 for v in result["probes"].values())
