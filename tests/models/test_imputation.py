"""Cross-profiling returns embeddings with uncertainty and donor provenance; baselines behave as named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.features.missingness import apply_missingness
from models.simulation.phantom_features import synthetic_cohort
from models.imputation.methods import CrossProfileImputer, MeanImputer, ZeroFillImputer
from models.imputation.registry import load_imputer, save_imputer


@pytest.fixture(scope="module")
def cohort():
    full = synthetic_cohort(300, dim=12, seed=3, shared=0.8).features  # modalities share a lesion: rebuildable
    train, test = full.subset(np.arange(200)), full.subset(np.arange(200, 300))
    return full, apply_missingness(train, 0.3, "mcar", 1), test, apply_missingness(test, 0.5, "mcar", 2)


def _mse(imp, truth, i, m):
    rows = imp.imputed[:, i]
    return float(((imp.features.embeddings[m][rows] - truth.embeddings[m][rows]) ** 2).mean())


def test_cross_profile_provenance_and_uncertainty(cohort) -> None:
    _, train, test, hidden = cohort
    imp = CrossProfileImputer(k=5).fit(train)
    out = imp.transform(hidden)
    assert out.imputed.sum() == (~hidden.mask).sum() > 0
    assert out.features.mask.all(), "imputed entries count as available to the model"
    assert np.isfinite(out.uncertainty[out.imputed]).all() and (out.uncertainty[out.imputed] > 0).all()
    assert np.isnan(out.uncertainty[~out.imputed]).all()
    bank = set(train.patient_ids)
    for i in range(len(test)):
        for j, m in enumerate(test.modalities):
            if out.imputed[i, j]:
                donors = out.donors[i][m]
                assert 1 <= len(donors) <= 5
                assert {d["patient_id"] for d in donors} <= bank
                assert test.patient_ids[i] not in {d["patient_id"] for d in donors}
                assert abs(sum(d["weight"] for d in donors) - 1) < 1e-4
            elif m in out.donors[i]:
                pytest.fail("donors reported for a modality that was not imputed")
    json.loads(out.donors_json(0))
    # present embeddings are untouched
    for j, m in enumerate(test.modalities):
        np.testing.assert_array_equal(out.features.embeddings[m][hidden.mask[:, j]], test.embeddings[m][hidden.mask[:, j]])
    assert set(np.unique(out.availability())) <= {"present", "imputed"}


def test_cross_profile_beats_mean_and_uncertainty_is_honest(cohort) -> None:
    _, train, test, hidden = cohort
    cp = CrossProfileImputer().fit(train).transform(hidden)
    mean = MeanImputer().fit(train).transform(hidden)
    for i, m in enumerate(test.modalities):
        assert _mse(cp, test, i, m) < _mse(mean, test, i, m), m
    # reported variance within a factor 2 of the actual squared error
    err = np.mean([_mse(cp, test, i, m) for i, m in enumerate(test.modalities)])
    var = float(np.nanmean(cp.uncertainty ** 2))
    assert 0.5 < var / err < 2.0


def test_baselines(cohort) -> None:
    _, train, _, hidden = cohort
    zero = ZeroFillImputer().fit(train).transform(hidden)
    assert not zero.imputed.any() and (zero.features.mask == hidden.mask).all()
    mean = MeanImputer().fit(train).transform(hidden)
    j = int(np.argmax((~hidden.mask).sum(0)))
    m = hidden.modalities[j]
    rows = ~hidden.mask[:, j]
    np.testing.assert_allclose(mean.features.embeddings[m][rows], np.broadcast_to(
        train.embeddings[m][train.mask[:, j]].mean(0), (rows.sum(), train.embeddings[m].shape[1])), rtol=1e-5)
    assert mean.donors[0] == {}


def test_patient_without_any_modality_uses_covariates(cohort) -> None:
    _, train, test, _ = cohort
    empty = test.with_mask(np.zeros_like(test.mask))
    out = CrossProfileImputer(k=3).fit(train).transform(empty)
    assert out.imputed.all() and np.isfinite(out.uncertainty).all()
    assert all(len(out.donors[0][m]) == 3 for m in test.modalities)


def test_save_load_round_trip(cohort, tmp_path) -> None:
    _, train, _, hidden = cohort
    imp = CrossProfileImputer(k=4).fit(train)
    save_imputer(imp, tmp_path / "imp")
    again = load_imputer(tmp_path / "imp")
    a, b = imp.transform(hidden), again.transform(hidden)
    for m in hidden.modalities:
        np.testing.assert_allclose(a.features.embeddings[m], b.features.embeddings[m])
    assert a.donors == b.donors and again.get_params() == imp.get_params()


def test_unfitted_and_mismatched_inputs_give_clear_errors(cohort) -> None:
    _, train, _, hidden = cohort
    with pytest.raises(RuntimeError, match="not fitted"):
        CrossProfileImputer().transform(hidden)
    with pytest.raises(ValueError, match="sources"):
        CrossProfileImputer(sources="magic").fit(train)


@pytest.mark.parametrize("imputer", [MeanImputer, CrossProfileImputer])
def test_modality_absent_from_whole_cohort_stays_missing(cohort, imputer) -> None:
    """No X-rays at this site: nothing to learn them from, so they stay missing instead of being invented."""
    from models.features.feature_set import FeatureSet

    _, train, _, hidden = cohort
    no_xray = train.mask.copy()
    no_xray[:, 1] = False
    emb = dict(train.embeddings, xray=np.zeros((len(train), 0), np.float32))
    fs = FeatureSet(train.patient_ids, emb, no_xray, train.covariates, train.labels)
    test_emb = dict(hidden.embeddings, xray=np.zeros((len(hidden), 0), np.float32))
    test_mask = hidden.mask.copy()
    test_mask[:, 1] = False
    out = imputer().fit(fs).transform(FeatureSet(hidden.patient_ids, test_emb, test_mask, hidden.covariates))
    assert not out.imputed[:, 1].any() and not out.features.mask[:, 1].any()
    assert out.imputed[:, [0, 2, 3]].sum() == (~test_mask[:, [0, 2, 3]]).sum()


def _weak_cohort(n: int, seed: int):
    """Two modalities that share a weak signal in high dimensions: donors are mostly noise."""
    from models.features.feature_set import FeatureSet

    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 1))
    emb = {"a": (0.2 * z + rng.normal(size=(n, 150))).astype(np.float32),
           "b": (0.2 * z + rng.normal(size=(n, 150))).astype(np.float32)}
    return FeatureSet(tuple(f"p{seed}-{i}" for i in range(n)), emb, np.ones((n, 2), bool),
                      labels=(z[:, 0] > 0).astype(int), modalities=("a", "b"))


@pytest.mark.parametrize("blend", ["stacked", "precision"])
def test_rebuilt_embedding_is_never_worse_than_the_cohort_mean(blend: str) -> None:
    """Regression: inverse-variance weights trusted noisy donors and gave R^2 < 0 on the files cohort."""
    train, test = _weak_cohort(600, 1), _weak_cohort(300, 2)
    imp = CrossProfileImputer(blend=blend).fit(train)
    only_a = np.zeros_like(test.mask)
    only_a[:, 0] = True
    out = imp.transform(test.with_mask(only_a)).features.embeddings["b"]
    truth, centre = test.embeddings["b"], train.embeddings["b"].mean(0)
    r2 = 1.0 - ((out - truth) ** 2).sum() / ((truth - centre) ** 2).sum()
    if blend == "stacked":
        assert r2 > 0.01 and np.isfinite(imp.blend_).all() and imp.blend_[1, 1] < imp.blend_[1, 0]
    else:
        assert r2 < 0.0  # what the old default did: the donors' noise outweighs the shared signal


def test_blend_is_saved_and_checked(cohort, tmp_path) -> None:  # noqa: ANN001
    _, train, _, hidden = cohort
    imp = CrossProfileImputer(k=4).fit(train)
    save_imputer(imp, tmp_path)
    back = load_imputer(tmp_path)
    np.testing.assert_allclose(back.blend_, imp.blend_)
    for m in hidden.modalities:
        np.testing.assert_allclose(back.transform(hidden).features.embeddings[m], imp.transform(hidden).features.embeddings[m])
    with pytest.raises(ValueError, match="blend"):
        CrossProfileImputer(blend="magic").fit(train)


def test_imputing_in_blocks_of_rows_gives_what_one_block_gives(cohort, monkeypatch) -> None:  # noqa: ANN001
    """Memory stays flat with the batch (TRANSFORM_ROWS patients at a time); each patient's result must not
    depend on which block it was imputed in, in fitting (the blend) or in transforming."""
    from models.imputation import methods

    _, train, _, hidden = cohort
    whole_fit = CrossProfileImputer().fit(train)
    whole = whole_fit.transform(hidden)
    monkeypatch.setattr(methods, "TRANSFORM_ROWS", 7)  # 100 patients in 15 blocks, the last one short
    blocked_fit = CrossProfileImputer().fit(train)
    # float32 distance products round differently with the block's shape (BLAS): equal to ~1e-8, not bitwise
    np.testing.assert_allclose(blocked_fit.blend_, whole_fit.blend_, rtol=1e-6, atol=1e-9)
    for out in (whole_fit.transform(hidden), blocked_fit.transform(hidden)):
        for got, want in zip(out.donors, whole.donors):  # same donors in the same order; weights to rounding
            assert {m: [d["patient_id"] for d in ds] for m, ds in got.items()} == \
                {m: [d["patient_id"] for d in ds] for m, ds in want.items()}
            for m, ds in got.items():
                np.testing.assert_allclose([d["weight"] for d in ds], [d["weight"] for d in want[m]], atol=2e-6)
        np.testing.assert_array_equal(out.imputed, whole.imputed)
        np.testing.assert_allclose(out.uncertainty, whole.uncertainty, rtol=1e-6, equal_nan=True)
        for m in hidden.modalities:
            np.testing.assert_allclose(out.features.embeddings[m], whole.features.embeddings[m], rtol=1e-5, atol=1e-6)
