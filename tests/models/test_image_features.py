"""CT and X-ray hand-crafted feature blocks: lesion side, monotone evidence, and a linear probe above chance.

Volumes and radiographs come from the phantom cohort's own renderers
(:func:`ingestion.phantom.ct.head_volume`, :func:`ingestion.phantom.xray.chest_density`)
at the contract's normalised geometry (CT 4 x 2 x 2 mm, (32, 64, 64), columns towards
the patient's left; X-ray (128, 128) in [0, 1]), with labels from the phantom's latent model.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ingestion.phantom.ct import head_volume
from ingestion.phantom.signal_model import sample_latents
from ingestion.phantom.xray import chest_density
from models.encoders import CTEncoder, XrayEncoder
from models.encoders.image_features import (CT_FEATURE_NAMES, XRAY_FEATURE_NAMES, ct_features,
                                            xray_features)

SIDE = CT_FEATURE_NAMES.index("side")
CT_MAX_P999 = CT_FEATURE_NAMES.index("max p99.9")
XRAY_ASYM_MAX = XRAY_FEATURE_NAMES.index("|asym| max")




def _ct(seed: int, evidence: float, side: str) -> np.ndarray:
    """A phantom head at the normalised CT geometry (D, H, W) = (superior, posterior, patient-left)."""
    return head_volume(np.random.default_rng(seed), 32, 64, 2.0, 4.0, evidence, side)


def test_ct_block_recovers_the_lesion_side() -> None:
    for seed in range(6):
        for side, expected in (("L", 1.0), ("R", -1.0)):
            feats = ct_features(_ct(seed, evidence=-0.5 + 0.5 * seed, side=side))
            assert feats.shape == (len(CT_FEATURE_NAMES),) and np.isfinite(feats).all()
            assert feats[SIDE] == expected, (seed, side)
            assert np.sign(feats[CT_FEATURE_NAMES.index("L-R p99")]) == expected
            assert feats[CT_FEATURE_NAMES.index("|L-R| pct>8HU")] > 0.5  # one-sided: > 0.5 % of a hemisphere


def test_ct_and_xray_blocks_grow_with_the_evidence() -> None:
    weak = [ct_features(_ct(s, -2.0, "L"))[CT_MAX_P999] for s in range(4)]
    strong = [ct_features(_ct(s, 2.5, "L"))[CT_MAX_P999] for s in range(4)]
    assert min(strong) > max(weak)
    weak = [xray_features(chest_density(np.random.default_rng(s), 128, -2.0))[XRAY_ASYM_MAX] for s in range(4)]
    strong = [xray_features(chest_density(np.random.default_rng(s), 128, 2.5))[XRAY_ASYM_MAX] for s in range(4)]
    assert min(strong) > max(weak)


def test_blocks_handle_empty_and_bad_input() -> None:
    air = np.full((32, 64, 64), -1000.0, np.float32)
    assert not ct_features(air).any()  # no brain tissue: zeros, not NaN
    nan_vol = _ct(0, 1.0, "R")
    nan_vol[:, :, :5] = np.nan
    assert np.isfinite(ct_features(nan_vol)).all()
    assert np.isfinite(xray_features(np.full((128, 128), np.nan, np.float32))).all()
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        ct_features(np.zeros((64, 64), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        xray_features(np.zeros((2, 64, 64), np.float32))


def test_feature_block_is_fixed_and_follows_the_network_part() -> None:
    arrays = [_ct(s, 1.0, "LR"[s % 2]) for s in range(2)]
    a, b = CTEncoder(seed=1), CTEncoder(seed=2)
    za, zb = a.encode_batch(arrays), b.encode_batch(arrays)
    net = a.config.out_dim
    np.testing.assert_array_equal(za[:, net:], zb[:, net:])  # seed-independent, weights-independent
    np.testing.assert_allclose(za[:, net:], np.stack([ct_features(v) for v in arrays]), rtol=1e-6)
    assert a.revision >= 2 and XrayEncoder().revision >= 2  # new features: stale store entries miss


def _probe_auroc(x: np.ndarray, y: np.ndarray) -> float:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=5000))
    return float(cross_val_score(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=0),
                                 scoring="roc_auc").mean())


def test_linear_probe_on_phantom_embeddings_beats_chance() -> None:
    """Seeded (not pretrained) encoders on 80 phantom patients: probes clearly above chance.

    CT: the whole embedding. X-ray: the feature block; on so few patients the 64 seeded
    network dimensions dilute it in a standardised probe (whole-embedding AUROC 0.54-0.69
    across cohort draws here, 0.72 on the 120-patient ingested phantom benchmark).
    """
    latents = sample_latents(80, seed=5)
    y = latents["label"].to_numpy()
    rng = np.random.default_rng(5)
    cts = [head_volume(rng, 32, 64, 2.0, 4.0, ev, side)
           for ev, side in zip(latents["ev_ct"], latents["ct_side"])]
    # rendered at 256 px and area-averaged to 128 px, as ingestion resizes a radiograph
    xrays = [chest_density(rng, 256, ev).reshape(128, 2, 128, 2).mean(axis=(1, 3)).astype(np.float32)
             for ev in latents["ev_xray"]]
    ct, xray = CTEncoder(seed=0), XrayEncoder(seed=0)
    ct_auc = _probe_auroc(ct.encode_batch(cts), y)
    xray_auc = _probe_auroc(xray.encode_batch(xrays)[:, xray.config.out_dim:], y)
    assert ct_auc > 0.6 and xray_auc > 0.6, (ct_auc, xray_auc)
