"""Rebuilding missing modalities' embeddings: cross-profiling, and the baselines it must beat.

Cross-profiling combines two estimates of a missing modality ``m``:

* translation: one ridge translator per source modality (input: the source's
  standardised embedding plus covariates) and one from covariates alone; the
  predictions of the sources a patient has are averaged with precision weights
  (1 / leave-one-out residual variance). One translator per source avoids
  fitting one per subset of available modalities (2^(M-1) of them).
* profiles: the ``k`` nearest patients ("donors") of the fitted bank on the
  modalities both share plus covariates; their ``m`` embeddings are averaged
  with Gaussian-kernel similarity weights, the donor dispersion is the variance.

The two are combined with one pair of weights per target modality, fitted on
left-out estimates of the training patients (leave-one-out ridge predictions and
donors other than the patient): the two estimates' errors are strongly
correlated (neither sees what is specific to the target) and the donors'
dispersion understates their error, so inverse-variance weights (still used by
``blend="precision"``, and for a modality too rare to fit weights on) trusted
the donors too much: on the 2,000-patient files cohort of the quality benchmark
they left the rebuilt embedding worse than the cohort mean for 6 of 12 pairs
(R^2 down to -0.023), where translation alone reached 0.011-0.150. Every imputed entry keeps
its uncertainty (an isotropic per-dimension standard deviation) and its donors
(pseudonymous ids and weights). Imputers follow scikit-learn: ``__init__``
stores parameters, ``fit`` learns attributes ending in ``_``, ``transform``
returns :class:`ImputedFeatures`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import RidgeCV

from models.features.feature_set import FeatureSet


TRANSFORM_ROWS = 512
"""Patients imputed at a time: donor distances are patients x bank (x covariates) arrays, gigabytes for 10,000
against 8,000 at once; in blocks memory stays flat with the batch. A patient's result reads its row alone."""


@dataclass(frozen=True)
class ImputedFeatures:
    """A FeatureSet whose ``mask`` is True where present *or* imputed, plus what was imputed and how."""

    features: FeatureSet
    imputed: np.ndarray  # bool (N, M): True where the embedding was rebuilt, not measured
    uncertainty: np.ndarray  # float (N, M): per-dimension sd of an imputed embedding; NaN elsewhere
    donors: tuple[dict[str, list[dict]], ...]  # per patient: modality -> [{"patient_id", "weight"}]
    method: str

    def donors_json(self, i: int) -> str:
        return json.dumps(self.donors[i], sort_keys=True)

    def availability(self) -> np.ndarray:
        """``present`` / ``missing`` / ``imputed`` per patient and modality (the contract's mask values)."""
        out = np.where(self.features.mask, "present", "missing").astype(object)
        out[self.imputed] = "imputed"
        return out


def imputable(features: FeatureSet, min_rows: int) -> np.ndarray:
    """Per modality: enough patients have it (and it has dimensions) to learn how to rebuild it.

    A modality absent from the whole training cohort (no X-rays at this site, no
    encoder configured) is left missing rather than invented.
    """
    return np.array([features.mask[:, i].sum() >= min_rows and features.embeddings[m].shape[1] > 0
                     for i, m in enumerate(features.modalities)])


class Imputer(BaseEstimator):
    """Shared plumbing: fit_transform and an array-only state for saving without pickle."""

    method = "none"

    def fit_transform(self, features: FeatureSet) -> ImputedFeatures:
        return self.fit(features).transform(features)

    def _check(self, features: FeatureSet) -> None:
        if not hasattr(self, "modalities_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(features) first")
        if tuple(features.modalities) != tuple(self.modalities_):
            raise ValueError(f"modalities {features.modalities} differ from fitted {self.modalities_}")

    def _result(self, features: FeatureSet, filled: dict[str, np.ndarray], imputed: np.ndarray,
                sd: np.ndarray, donors: list[dict]) -> ImputedFeatures:
        fs = FeatureSet(features.patient_ids, filled, features.mask | imputed, features.covariates,
                        features.labels, features.modalities)
        return ImputedFeatures(fs, imputed, np.where(imputed, sd, np.nan), tuple(donors), self.method)


class ZeroFillImputer(Imputer):
    """Leaves missing modalities missing (zeros + mask): the model alone copes with absence."""

    method = "zero"

    def fit(self, features: FeatureSet) -> "ZeroFillImputer":
        self.modalities_ = tuple(features.modalities)
        return self

    def transform(self, features: FeatureSet) -> ImputedFeatures:
        self._check(features)
        shape = features.mask.shape
        return self._result(features, dict(features.embeddings), np.zeros(shape, bool),
                            np.full(shape, np.nan), [{} for _ in range(len(features))])


class MeanImputer(Imputer):
    """Fills a missing modality with its cohort mean; uncertainty is the cohort spread."""

    method = "mean"

    def fit(self, features: FeatureSet) -> "MeanImputer":
        self.modalities_ = tuple(features.modalities)
        self.mean_, self.sd_ = {}, np.zeros(len(self.modalities_))
        self.imputable_ = imputable(features, 1)
        for i, m in enumerate(self.modalities_):
            rows = features.embeddings[m][features.mask[:, i]]
            self.mean_[m] = rows.mean(0).astype(np.float32) if len(rows) else np.zeros(rows.shape[1], np.float32)
            self.sd_[i] = float(np.sqrt(rows.var(0).mean())) if len(rows) and rows.shape[1] else np.nan
        return self

    def transform(self, features: FeatureSet) -> ImputedFeatures:
        self._check(features)
        filled, imputed = {}, ~features.mask & self.imputable_[None]
        for i, m in enumerate(self.modalities_):
            filled[m] = np.where(imputed[:, [i]], self.mean_[m], features.embeddings[m]).astype(np.float32)
        sd = np.broadcast_to(self.sd_, imputed.shape)
        return self._result(features, filled, imputed, sd, [{} for _ in range(len(features))])


class CrossProfileImputer(Imputer):
    """Translation + donor profiles, combined by inverse variance (see the module docstring).

    Parameters: ``k`` donors per imputed entry; ``alphas`` the ridge penalties
    tried by leave-one-out; ``use_covariates`` whether covariates feed the
    translators and the donor distance; ``sources`` which estimates to use
    ("both", "translation", "profiles") for ablations.
    """

    method = "cross_profile"

    def __init__(self, k: int = 10, alphas: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0),
                 use_covariates: bool = True, sources: str = "both", min_rows: int = 10,
                 blend: str = "stacked") -> None:
        self.k = k
        self.alphas = alphas
        self.use_covariates = use_covariates
        self.sources = sources
        self.min_rows = min_rows
        self.blend = blend

    # -- fitting -------------------------------------------------------
    def fit(self, features: FeatureSet) -> "CrossProfileImputer":
        if self.sources not in ("both", "translation", "profiles"):
            raise ValueError(f"sources must be both|translation|profiles, got {self.sources!r}")
        if self.blend not in ("stacked", "precision"):
            raise ValueError(f"blend must be stacked|precision, got {self.blend!r}")
        self.modalities_ = tuple(features.modalities)
        mask = features.mask
        self.center_, self.scale_, self.prior_var_ = {}, {}, {}
        self.imputable_ = imputable(features, 2)
        mask = mask & self.imputable_[None]  # a modality too rare to learn is neither target nor source
        for i, m in enumerate(self.modalities_):
            rows = features.embeddings[m][mask[:, i]]
            d = features.embeddings[m].shape[1]
            self.center_[m] = rows.mean(0) if len(rows) else np.zeros(d)
            self.scale_[m] = (rows.std(0) if len(rows) else np.ones(d)) + 1e-6
            self.prior_var_[m] = np.array(rows.var(0).mean() if len(rows) and d else np.nan)
        self.bank_ids_ = np.array(features.patient_ids, dtype=str)
        self.bank_mask_ = mask.copy()
        self.bank_embeddings_ = {m: features.embeddings[m].astype(np.float32) for m in self.modalities_}
        self.bank_covariates_ = self._cov(features)
        self.translators_ = {}
        loo: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # "src>tgt" -> (rows, left-out predictions)
        for j, tgt in enumerate(self.modalities_):
            for i, src in enumerate(self.modalities_ + ("covariates",)):
                if src == tgt:
                    continue
                rows = mask[:, j] & (mask[:, i] if src != "covariates" else True)
                if src == "covariates" and self.bank_covariates_.shape[1] == 0:
                    continue
                if rows.sum() < self.min_rows:
                    continue
                x = self._source_input(src, features.embeddings, self.bank_covariates_)[rows]
                y = features.embeddings[tgt][rows]
                # scoring set: cv_results_ holds the leave-one-out predictions (same MSE criterion for alpha)
                ridge = RidgeCV(alphas=self.alphas, store_cv_results=True, scoring="neg_mean_squared_error").fit(x, y)
                pred = ridge.cv_results_[..., list(self.alphas).index(ridge.alpha_)].reshape(y.shape)
                key = f"{src}>{tgt}"
                self.translators_[f"{key}/coef"] = ridge.coef_.T.astype(np.float32)
                self.translators_[f"{key}/intercept"] = np.atleast_1d(ridge.intercept_).astype(np.float32)
                self.translators_[f"{key}/var"] = np.array(float(((y - pred) ** 2).mean()))
                loo[key] = (rows, pred)
        self.blend_ = np.full((len(self.modalities_), 3), np.nan)  # (w_t, w_p, var); NaN: inverse-variance
        if self.blend == "stacked" and self.sources == "both":
            for j in range(len(self.modalities_)):
                self.blend_[j] = self._fit_blend(j, features, mask, loo)
        return self

    def _fit_blend(self, j: int, features: FeatureSet, mask: np.ndarray,
                   loo: dict[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Weights (translation, donors) for target ``j`` by non-negative least squares on left-out estimates.

        Each training patient who has the target is imputed as if it were missing: translation from the
        leave-one-out ridge predictions of the sources it has (``_precision_mean``, as in ``_translate``),
        donors from the other training patients. Returns (w_t, w_p, residual variance); NaN (inverse-variance
        weights) when too few patients qualify.
        """
        from scipy.optimize import nnls

        tgt = self.modalities_[j]
        n, d = len(features), features.embeddings[tgt].shape[1]
        parts = []
        for src in self.modalities_ + ("covariates",):
            if f"{src}>{tgt}" not in loo:
                continue
            rows, pred = loo[f"{src}>{tgt}"]
            full = np.zeros((n, d))
            full[rows] = pred
            parts.append((rows, full, float(self.translators_[f"{src}>{tgt}/var"])))
        t_all, t_var = self._precision_mean(parts, n, d)
        rows = np.flatnonzero(mask[:, j] & np.isfinite(t_var))
        if len(rows) < max(self.min_rows, 2 * self.k):
            return np.full(3, np.nan)
        hidden = mask[rows].copy()
        hidden[:, j] = False
        p_est, p_var = self._profiles_in_blocks(j, tgt, features.subset(rows).with_mask(hidden))
        ok = np.isfinite(p_var)
        rows, p_est = rows[ok], p_est[ok]
        if len(rows) < self.min_rows:
            return np.full(3, np.nan)
        centre, scale = self.center_[tgt], self.scale_[tgt]
        truth = ((features.embeddings[tgt][rows] - centre) / scale).ravel()
        t_est = ((t_all[rows] - centre) / scale).ravel()
        design = np.stack([t_est, ((p_est - centre) / scale).ravel()], 1)
        weights, _ = nnls(design, truth)
        residual = float(((truth - design @ weights) ** 2).mean() * (scale ** 2).mean())
        return np.array([*weights, residual])  # the residual variance is the blend's honest uncertainty

    def _profiles_in_blocks(self, j: int, tgt: str, query: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
        """Donor estimates and variances of ``tgt`` for every row of ``query``, :data:`TRANSFORM_ROWS` at a time."""
        cov, ids = self._cov(query), np.array(query.patient_ids, dtype=str)
        parts = []
        for start in range(0, len(query), TRANSFORM_ROWS):
            block = np.arange(start, min(len(query), start + TRANSFORM_ROWS))
            dist = self._distances(query.subset(block), cov[block])
            parts.append(self._profiles(j, tgt, np.arange(len(block)), dist, ids[block])[:2])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _cov(self, features: FeatureSet) -> np.ndarray:
        if not self.use_covariates:
            return np.zeros((len(features), 0), np.float32)
        return features.covariates.astype(np.float32)

    def _source_input(self, src: str, embeddings: dict[str, np.ndarray], cov: np.ndarray) -> np.ndarray:
        if src == "covariates":
            return cov
        z = (embeddings[src] - self.center_[src]) / self.scale_[src]
        return np.concatenate([z, cov], 1)

    # -- transforming --------------------------------------------------
    @staticmethod
    def _precision_mean(parts: list[tuple[np.ndarray, np.ndarray, float]], n: int,
                        d: int) -> tuple[np.ndarray, np.ndarray]:
        """Precision-weighted mean of the sources' predictions ``(rows, prediction, LOO variance)``, and its variance.

        Shared by transforming and by fitting the blend, so the weights are fitted on the very estimate they
        are applied to. Rows no source covers get variance inf.
        """
        num, prec, sd_num = np.zeros((n, d)), np.zeros(n), np.zeros(n)
        for rows, pred, var in parts:
            var = max(var, 1e-8)
            p = np.zeros(n)
            p[rows] = 1.0 / var
            num += p[:, None] * pred
            prec += p
            sd_num += p * np.sqrt(var)
        with np.errstate(divide="ignore", invalid="ignore"):
            # The sources' errors are correlated (none sees what is specific to the target), so
            # the variance is the perfectly-correlated bound (sum_s w_s sd_s)^2, not 1 / sum_s p_s.
            return num / prec[:, None], np.where(prec > 0, (sd_num / prec) ** 2, np.inf)

    def _translate(self, tgt: str, features: FeatureSet, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Precision-weighted translation of ``tgt`` for every row, and its variance (inf if no source)."""
        n, d = len(features), features.embeddings[tgt].shape[1]
        parts = []
        for i, src in enumerate(self.modalities_ + ("covariates",)):
            key = f"{src}>{tgt}"
            if f"{key}/coef" not in self.translators_:
                continue
            avail = np.ones(n, bool) if src == "covariates" else features.mask[:, i] & self.imputable_[i]
            x = self._source_input(src, features.embeddings, cov)
            pred = x @ self.translators_[f"{key}/coef"] + self.translators_[f"{key}/intercept"]
            parts.append((avail, pred, float(self.translators_[f"{key}/var"])))
        return self._precision_mean(parts, n, d)

    def _distances(self, features: FeatureSet, cov: np.ndarray) -> np.ndarray:
        """Mean squared z-distance over the blocks (modalities, covariates) both patients have."""
        n, nb = len(features), len(self.bank_ids_)
        total, blocks = np.zeros((n, nb)), np.zeros((n, nb))
        for i, m in enumerate(self.modalities_):
            if not self.imputable_[i]:
                continue
            q = (features.embeddings[m] - self.center_[m]) / self.scale_[m]
            b = (self.bank_embeddings_[m] - self.center_[m]) / self.scale_[m]
            d2 = ((q ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None] - 2 * q @ b.T) / q.shape[1]
            both = features.mask[:, i][:, None] & self.bank_mask_[:, i][None]
            total += np.where(both, d2, 0.0)
            blocks += both
        if cov.shape[1]:
            d2 = ((cov[:, None, :] - self.bank_covariates_[None]) ** 2).mean(-1)
            total += d2
            blocks += 1
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(blocks > 0, np.maximum(total, 0) / blocks, np.inf)

    def _profiles(self, j: int, tgt: str, rows: np.ndarray, dist: np.ndarray, ids: np.ndarray):
        """Donor estimate, its variance and donor lists for ``rows`` (patients missing ``tgt``)."""
        bank_x = self.bank_embeddings_[tgt]
        est = np.zeros((len(rows), bank_x.shape[1]))
        var = np.full(len(rows), np.inf)
        donors: list[list[dict]] = []
        eligible = self.bank_mask_[:, j]
        for r, row in enumerate(rows):
            d = np.where(eligible & (self.bank_ids_ != ids[row]), dist[row], np.nan)
            cand = np.flatnonzero(~np.isnan(d))
            if len(cand) == 0:
                donors.append([])
                continue
            d = np.nan_to_num(d[cand], posinf=1e6)
            top = cand[np.argsort(d)[: self.k]]
            dt = np.nan_to_num(dist[row, top], posinf=1e6)
            tau = max(float(np.median(dt)), 1e-6)
            w = np.exp(-(dt - dt.min()) / tau)
            w /= w.sum()
            est[r] = w @ bank_x[top]
            spread = float((w @ (bank_x[top] - est[r]) ** 2).mean())
            var[r] = max(spread, 1e-6) * (1.0 + float((w ** 2).sum()))
            donors.append([{"patient_id": str(self.bank_ids_[t]), "weight": round(float(wt), 6)}
                           for t, wt in zip(top, w)])
        return est, var, donors

    def transform(self, features: FeatureSet) -> ImputedFeatures:
        self._check(features)
        n, mask = len(features), features.mask
        cov = self._cov(features)
        if cov.shape[1] != self.bank_covariates_.shape[1]:
            raise ValueError(f"covariates have {cov.shape[1]} columns, fitted with {self.bank_covariates_.shape[1]}")
        filled = {m: features.embeddings[m].copy() for m in self.modalities_}
        imputed, sd = np.zeros(mask.shape, bool), np.full(mask.shape, np.nan)
        donors: list[dict] = [{} for _ in range(n)]
        for start in range(0, n, TRANSFORM_ROWS):
            block = np.arange(start, min(n, start + TRANSFORM_ROWS))
            self._impute_block(features, cov, block, (filled, imputed, sd, donors))
        return self._result(features, filled, imputed, sd, donors)

    def _impute_block(self, features: FeatureSet, cov: np.ndarray, block: np.ndarray, out: tuple) -> None:
        """Impute the rows ``block`` into ``out`` (filled embeddings, imputed flags, sd, donors), in place."""
        filled, imputed, sd, donors = out
        ids = np.array([features.patient_ids[i] for i in block], dtype=str)
        dist = self._distances(features.subset(block), cov[block]) if self.sources != "translation" else None
        for j, m in enumerate(self.modalities_):
            local = np.flatnonzero(~features.mask[block, j])
            rows = block[local]
            if len(rows) == 0 or not self.imputable_[j]:
                continue
            d = filled[m].shape[1]
            t_est, t_var = np.zeros((len(rows), d)), np.full(len(rows), np.inf)
            if self.sources != "profiles":
                t_all, v_all = self._translate(m, features.subset(rows), cov[rows])
                t_est, t_var = np.nan_to_num(t_all), v_all
            p_est, p_var, p_donors = np.zeros((len(rows), d)), np.full(len(rows), np.inf), [[]] * len(rows)
            if self.sources != "translation":
                p_est, p_var, p_donors = self._profiles(j, m, local, dist, ids)
            prec = 1.0 / t_var + 1.0 / p_var
            ok = prec > 0
            if not ok.all():  # neither source available: fall back to the cohort mean and spread
                t_est[~ok], t_var[~ok] = self.center_[m], float(self.prior_var_[m])
                prec = 1.0 / t_var + 1.0 / p_var
            w_t, w_p = (1.0 / t_var) / prec, (1.0 / p_var) / prec
            blend = getattr(self, "blend_", np.full((len(self.modalities_), 3), np.nan))[j]
            both = np.isfinite(t_var) & np.isfinite(p_var) & ~np.isnan(blend).any()
            w_t, w_p = np.where(both, blend[0], w_t), np.where(both, blend[1], w_p)
            # fitted weights where both estimates exist (module docstring); they need not sum to one
            est = self.center_[m] + w_t[:, None] * (t_est - self.center_[m]) + w_p[:, None] * (p_est - self.center_[m])
            filled[m][rows] = est.astype(np.float32)
            imputed[rows, j] = True
            # same correlated-errors bound as in _translate (0 * inf terms are weights of absent sources)
            with np.errstate(invalid="ignore"):
                bound = np.nan_to_num(w_t * np.sqrt(t_var)) + np.nan_to_num(w_p * np.sqrt(p_var))
            sd[rows, j] = np.where(both, np.sqrt(np.nan_to_num(blend[2])), bound)
            for r, row in enumerate(rows):
                if p_donors[r]:
                    donors[row][m] = p_donors[r]
