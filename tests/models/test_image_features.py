"""CT and X-ray radiomics blocks: real images, position and mirror invariance, evidence, bad input.

The CT is pydicom's real ``CT_small.dcm`` slice (HU from its rescale), stacked into
a slab and placed in an air-filled array; the X-ray is a real chest radiograph of
``../shared/realdata/cxr_covid`` where present, else a radiograph drawn here. The
blocks must not know where the anatomy sits: a shifted or mirrored image gives the
same features, which the former centre-column midline and ``side`` features did not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from models.encoders import CTEncoder, XrayEncoder
from models.encoders.image_features import (CT_FEATURE_NAMES, XRAY_FEATURE_NAMES, ct_body_mask, ct_features,
                                            xray_features, xray_regions)
from models.encoders.radiomics import intensity_peak


def _real_ct_slice() -> np.ndarray:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    return (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.float32)


def _placed(slab: np.ndarray, canvas: tuple[int, int, int], at: tuple[int, int, int]) -> np.ndarray:
    """``slab`` inside an air-filled ``canvas`` array, its corner at ``at``."""
    vol = np.full(canvas, -1000.0, np.float32)
    d, h, w = slab.shape
    vol[at[0]:at[0] + d, at[1]:at[1] + h, at[2]:at[2] + w] = slab
    return vol


def _real_ct_slab() -> np.ndarray:
    """Six slices of the real CT image with a little per-slice noise (a real slab has no identical slices)."""
    rng = np.random.default_rng(0)
    return np.stack([_real_ct_slice() + rng.normal(0, 5, (128, 128)).astype(np.float32) for _ in range(6)])


def test_ct_block_on_a_real_ct_is_finite_and_ignores_where_the_body_sits() -> None:
    slab = _real_ct_slab()
    centred = ct_features(_placed(slab, (12, 160, 160), (3, 16, 16)))
    shifted = ct_features(_placed(slab, (12, 160, 160), (5, 2, 30)))
    assert centred.shape == (len(CT_FEATURE_NAMES),) and np.isfinite(centred).all()
    assert np.abs(centred).sum() > 0 and 0.3 < centred[-1] <= 1.0  # soft tissue is a real share of the body
    np.testing.assert_allclose(shifted, centred, rtol=1e-5, atol=1e-6)
    mirrored = ct_features(_placed(slab[:, :, ::-1], (12, 160, 160), (3, 16, 16)))
    np.testing.assert_allclose(mirrored, centred, rtol=1e-5, atol=1e-6)  # no side, no left-minus-right


def test_ct_body_mask_follows_the_body_not_the_array_centre() -> None:
    vol = _placed(_real_ct_slab(), (12, 200, 200), (0, 60, 0))  # off-centre, touching the left edge
    mask = ct_body_mask(vol)
    rows, cols = np.nonzero(mask.any(axis=0))
    assert rows.min() >= 60 and cols.min() == 0 and cols.max() < 128
    assert mask[:, :60].sum() == 0 and mask.sum() > 0.5 * 6 * 128 * 128


def test_a_dense_focus_in_real_soft_tissue_moves_the_soft_tissue_statistics() -> None:
    slab = _real_ct_slab()
    focus = slab.copy()
    z, y, x = np.mgrid[:6, :128, :128]
    inside = ((y - 90) ** 2 + (x - 64) ** 2 < 8 ** 2) & (z >= 1) & (z <= 4) & (slab > 0) & (slab < 100)
    focus[inside] += 60.0  # a hyperdense focus within soft tissue, wherever it is
    plain, dense = ct_features(_placed(slab, (8, 140, 140), (1, 6, 6))), ct_features(_placed(focus, (8, 140, 140),
                                                                                              (1, 6, 6)))
    i_p90, i_sd = CT_FEATURE_NAMES.index("soft tissue p90"), CT_FEATURE_NAMES.index("soft tissue sd")
    assert dense[i_p90] > plain[i_p90] and dense[i_sd] > plain[i_sd]


def test_intensity_peak_counts_only_neighbourhoods_wholly_inside_the_region() -> None:
    values = np.zeros((9, 20, 20))
    region = np.zeros_like(values, bool)
    region[1:8, 2:18, 2:18] = True
    values[4, 1, 10] = 1000.0  # dense, but just outside the region (bone beside tissue): never averaged in
    assert intensity_peak(values, region, (3, 5, 5)) == 0.0
    values[4, 10, 10] = 75.0  # well inside: one voxel of 75 raises the box mean to 1
    assert intensity_peak(values, region, (3, 5, 5)) == pytest.approx(1.0)
    thin = np.zeros_like(region)
    thin[4, 2:18, 2:18] = True  # one slice: no 3-slice box lies wholly inside
    assert np.isnan(intensity_peak(values, thin, (3, 5, 5)))


def _drawn_radiograph(size: int = 160) -> np.ndarray:
    """A chest-like radiograph drawn here: dark air outside, a body, two darker fields, a brighter centre."""
    y, x = np.mgrid[:size, :size] / size
    body = ((x - 0.5) / 0.42) ** 2 + ((y - 0.55) / 0.45) ** 2 < 1
    fields = ((((x - 0.32) / 0.13) ** 2 + ((y - 0.5) / 0.28) ** 2 < 1)
              | (((x - 0.7) / 0.11) ** 2 + ((y - 0.5) / 0.26) ** 2 < 1))
    img = np.where(body, 0.65, 0.05) - 0.35 * fields
    return np.clip(img + np.random.default_rng(1).normal(0, 0.02, img.shape), 0, 1).astype(np.float32)


def _real_or_drawn_radiograph(realdata: Path) -> np.ndarray:
    images = sorted((realdata / "cxr_covid" / "images").glob("*.jp*g")) if realdata.is_dir() else []
    if not images:
        return _drawn_radiograph()
    from PIL import Image

    return np.asarray(Image.open(images[0]).convert("L").resize((160, 160)), np.float32) / 255.0


def _check_xray_invariance(img: np.ndarray) -> np.ndarray:
    canvas = np.zeros((220, 220), np.float32)
    canvas[20:180, 30:190] = img
    base = xray_features(canvas)
    shifted = np.zeros_like(canvas)
    shifted[55:215, 4:164] = img
    assert base.shape == (len(XRAY_FEATURE_NAMES),) and np.isfinite(base).all()
    np.testing.assert_allclose(xray_features(shifted), base, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xray_features(canvas[:, ::-1]), base, rtol=1e-5, atol=1e-6)
    return base


def test_xray_block_ignores_where_the_chest_sits_and_which_side_is_which() -> None:
    base = _check_xray_invariance(_drawn_radiograph())
    body, lung = xray_regions(_drawn_radiograph())
    assert lung.sum() > 0 and not (lung & ~body).any()
    assert 0.1 < base[-1] < 0.6  # the two fields are a real share of the body, not all of it


@pytest.mark.realdata
def test_xray_block_on_a_real_chest_radiograph(realdata: Path) -> None:
    if not (realdata / "cxr_covid" / "images").is_dir():
        pytest.skip(f"no cxr_covid images under {realdata}")
    _check_xray_invariance(_real_or_drawn_radiograph(realdata))


def test_an_opacity_in_a_lung_field_raises_its_density_on_either_side() -> None:
    img = _drawn_radiograph()
    y, x = np.mgrid[:160, :160]
    mean = XRAY_FEATURE_NAMES.index("lung field mean")
    peak = XRAY_FEATURE_NAMES.index("lung field peak above median")
    plain = xray_features(img)
    for cx in (51, 112):  # one field, then the other: the block does not care which
        opaque = np.clip(img + 0.15 * np.exp(-((x - cx) ** 2 + (y - 80) ** 2) / (2 * 6.0 ** 2)), 0, 1)
        feats = xray_features(opaque.astype(np.float32))
        assert feats[mean] > plain[mean] and feats[peak] > plain[peak] + 0.05


def test_blocks_handle_empty_and_bad_input() -> None:
    air = np.full((16, 32, 32), -1000.0, np.float32)
    assert not ct_features(air).any()  # no body: zeros, not NaN
    nan_vol = _placed(_real_ct_slab(), (8, 140, 140), (1, 6, 6))
    nan_vol[:, :, :20] = np.nan
    assert np.isfinite(ct_features(nan_vol)).all()
    assert np.isfinite(xray_features(np.full((64, 64), np.nan, np.float32))).all()
    assert np.isfinite(xray_features(np.full((64, 64), 0.5, np.float32))).all()
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        ct_features(np.zeros((64, 64), np.float32))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        xray_features(np.zeros((2, 64, 64), np.float32))


def test_feature_block_is_fixed_and_follows_the_network_part() -> None:
    arrays = [_placed(_real_ct_slab(), (8, 140, 140), (1, 6 + s, 6)) for s in range(2)]
    a, b = CTEncoder(seed=1), CTEncoder(seed=2)
    za, zb = a.encode_batch(arrays), b.encode_batch(arrays)
    net = a.config.out_dim
    np.testing.assert_array_equal(za[:, net:], zb[:, net:])  # seed-independent, weights-independent
    np.testing.assert_allclose(za[:, net:], np.stack([ct_features(v) for v in arrays]), rtol=1e-6)
    assert a.revision >= 3 and XrayEncoder().revision >= 3  # new features: stale store entries miss
