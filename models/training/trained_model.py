"""A trained fusion model with everything it was fitted with, so it can score raw inputs alone.

The bundle carries the covariate scaler (training patients' statistics), the
imputer, the calibrator chosen on cross-fitted scores, the Venn-Abers range
map, the conformal class sets, the head (fusion network or, on a small cohort
where it did better on the folds, a logistic regression), the covariate order, the
embedding dims, the encoder versions the embeddings came from and the Shapley
reference. ``predict`` takes *raw* covariates (units as in ``cohort.csv``, NaN =
unknown), embeddings and the availability mask, and a patient's row of the
output depends on that patient alone: the same whether scored alone, in any
batch or in a shuffled batch (every random draw is seeded by the patient id).

``TrainedModel.save(dir)`` / ``TrainedModel.load(dir)`` round-trip through a
folder of plain files (``model.pt`` weights only, ``model.json``, the imputer's
``imputer.json`` + ``imputer.npz``), with no absolute paths and no pickled
code, so MLflow can log the folder as artifacts and a pyfunc can load it on
another machine. ``predict`` returns the Predictions table of
docs/CONTRACTS.md, less the columns that the caller stamps (``model_name``,
``model_version``, ``run_id``, ``batch_id``, ``predicted_at``). The interval and
abstain rule are described in :mod:`models.training.uncertainty`; the level is
``config.interval_level``, printed everywhere as "NN % nominal" (:func:`level_text`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from models.features.covariates import CovariateScaler
from models.features.feature_set import FeatureSet
from models.fusion import build_fusion
from models.fusion.inputs import FusionInputs, predict_logits, to_inputs, torch_threads
from models.imputation.methods import ImputedFeatures
from models.imputation.registry import load_imputer, save_imputer
from models.training.calibration import VennAbersCalibrator, calibrator_from_dict, calibrator_to_dict
from models.training.config import TrainConfig, fusion_config
from models.training.crossfit import LinearFusion
from models.training.shapley import exact_modality_shapley
from models.training.uncertainty import (AbstainPolicy, ConformalSets, Spread, abstain_decisions, imputation_draws,
                                         level_text, risk_range)

FORMAT_VERSION = 3
"""3: Venn-Abers range + conformal sets fitted on cross-fitted scores (2 had bootstrap calibrator replicates)."""

PredictionFrame = pd.DataFrame
"""Columns: ``prediction_columns(modalities)``; one row per patient."""


def prediction_columns(modalities: tuple[str, ...]) -> list[str]:
    return (["patient_id", "risk", "risk_low", "risk_high", "predicted_class", "abstain", "abstain_reason"]
            + [f"contrib_{m}" for m in modalities] + [f"mask_{m}" for m in modalities] + ["donors_json"])


_calibrator_from = calibrator_from_dict
_calibrator_dict = calibrator_to_dict


@dataclass
class TrainedModel:
    config: TrainConfig
    network: torch.nn.Module
    imputer: object
    calibrator: Any  # models.training.calibration.CALIBRATORS: the lowest cross-fitted ECE
    modalities: tuple[str, ...]
    n_covariates: int
    history: list[dict] = field(default_factory=list)
    val_patient_ids: tuple[str, ...] = ()
    metrics: dict = field(default_factory=dict)
    scaler: CovariateScaler | None = None  # None: a format-1 model whose inputs were already standardised
    covariate_names: tuple[str, ...] = ()
    encoder_keys: dict = field(default_factory=dict)  # modality -> (encoder_name, version, preprocessing_hash)
    shapley_baseline: float | None = None
    members: list = field(default_factory=list)  # [(network, PlattScaler)] fitted on bootstrap resamples
    range_calibrator: VennAbersCalibrator | None = None  # the risk range [p0, p1]
    conformal: ConformalSets | None = None  # class sets at config.interval_level
    head: str = "network"  # "network" (the fusion kind in config) or "linear" (LinearFusion)
    # cross-fitted predictors: when present, the risk is the mean of calibrator(fold network) over them (the
    # calibrator and conformal sets were fitted on their out-of-fold scores); ``network`` then only selected
    # the epoch count (large cohorts) or is the first of them (small cohorts)
    fold_networks: list = field(default_factory=list)
    # the abstain rules kept and the redraw tolerance, fitted on out-of-fold training patients
    # (models.training.abstain_policy); the default applies every rule at tolerance 1 - interval_level
    abstain_policy: AbstainPolicy = field(default_factory=AbstainPolicy)

    # -- prediction ----------------------------------------------------
    @property
    def dims(self) -> dict[str, int]:
        return {m: int(d) for m, d in self.network.dims.items()}

    def prepare(self, features: FeatureSet) -> FeatureSet:
        """Raw features -> model space: check modalities, dims and covariate order; scale covariates."""
        if tuple(features.modalities) != self.modalities:
            raise ValueError(f"features have modalities {features.modalities}, model expects {self.modalities}")
        for m, d in self.dims.items():
            if features.embeddings[m].shape[1] != d:
                raise ValueError(f"{m} embeddings have {features.embeddings[m].shape[1]} values, model expects {d}: "
                                 f"were they made by the encoder the model was trained on ({self.encoder_keys.get(m)})?")
        if self.covariate_names and features.covariate_names and tuple(features.covariate_names) != self.covariate_names:
            raise ValueError(f"covariates {features.covariate_names}, model expects {self.covariate_names} in that order")
        if features.covariates.shape[1] != self.n_covariates:
            raise ValueError(f"features have {features.covariates.shape[1]} covariates, model expects {self.n_covariates}")
        if self.scaler is None:
            return features
        return replace(features, covariates=self.scaler.transform(features.covariates))

    def impute(self, features: FeatureSet) -> ImputedFeatures:
        return self.imputer.transform(self.prepare(features))

    @property
    def predictors(self) -> list:
        """The networks whose calibrated risks are averaged: the fold networks, or the one network."""
        return list(self.fold_networks) or [self.network]

    def risk(self, inputs: FusionInputs) -> np.ndarray:
        """Calibrated probability for tensors already scaled and imputed."""
        with torch_threads(self.config.threads):
            return np.mean([self.calibrator.transform(predict_logits(n, inputs)) for n in self.predictors], axis=0)

    def logits(self, features: FeatureSet) -> np.ndarray:
        """Uncalibrated logits (for ECE before calibration): log-odds of the predictors' mean raw probability."""
        inputs = to_inputs(self.impute(features), self.config.device)
        with torch_threads(self.config.threads):
            p = np.mean([1 / (1 + np.exp(-predict_logits(n, inputs).astype(float))) for n in self.predictors], axis=0)
        p = np.clip(p, 1e-12, 1 - 1e-12)
        return np.log(p / (1 - p))

    def predict_risk(self, features: FeatureSet) -> np.ndarray:
        """Calibrated risk only (fast path for evaluation sweeps)."""
        return self.risk(to_inputs(self.impute(features), self.config.device))

    def evidence(self, features: FeatureSet, n_mc: int = 30, seed: int = 0) -> tuple[ImputedFeatures, Any, dict]:
        """(imputed features, Shapley result, the keyword arguments of the abstain rules) for raw features: what
        ``predict`` decides from, and what the out-of-fold policy fit judges (models.training.abstain_policy)."""
        imp = self.impute(features)
        inputs = to_inputs(imp, self.config.device)
        shap = exact_modality_shapley(lambda mk: self.risk(inputs.with_mask(torch.as_tensor(mk))),
                                      imp.features.mask, baseline=self.shapley_baseline)
        risk = shap.prediction
        spread = self._interval(imp, inputs, risk, n_mc, seed)
        no_imp = self.risk(inputs.with_mask(inputs.mask & ~inputs.imputed))
        return imp, shap, {"risk": risk, "spread": spread, "in_set": self.class_sets(risk),
                           "present": imp.features.mask & ~imp.imputed, "imputed": imp.imputed,
                           "contrib": shap.contributions, "no_imputed_risk": no_imp}

    def predict(self, features: FeatureSet, n_mc: int = 30, seed: int = 0) -> PredictionFrame:
        """The Predictions table: risk, range, class, abstain, Shapley contributions, mask, donors."""
        imp, shap, ev = self.evidence(features, n_mc, seed)
        risk, low, high = ev["risk"], ev["spread"].low, ev["spread"].high
        cfg = self.config
        abstain, reasons = abstain_decisions(**ev, modalities=self.modalities, threshold=cfg.threshold,
                                             share=cfg.abstain_share, level=cfg.interval_level,
                                             policy=self.abstain_policy)
        frame = {"patient_id": list(features.patient_ids), "risk": risk, "risk_low": low, "risk_high": high,
                 "predicted_class": (risk >= cfg.threshold).astype(int), "abstain": abstain,
                 "abstain_reason": reasons}
        avail = imp.availability()
        for j, m in enumerate(self.modalities):
            frame[f"contrib_{m}"] = shap.contributions[:, j]
            frame[f"mask_{m}"] = avail[:, j].astype(str)
        frame["donors_json"] = [imp.donors_json(i) for i in range(len(features))]
        return pd.DataFrame(frame, columns=prediction_columns(self.modalities))

    def class_sets(self, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(negative in set, positive in set) at ``config.interval_level`` for calibrated risks."""
        return self.conformal.sets(risk, self.config.interval_level)

    def _interval(self, imp: ImputedFeatures, inputs: FusionInputs, risk: np.ndarray,
                  n_mc: int, seed: int) -> Spread:
        """Venn-Abers range over (for imputed patients) Monte-Carlo redraws, averaged over the predictors; the
        range at the scores in hand alone; the share of redraws that change the class. See
        models.training.uncertainty."""
        rows = np.flatnonzero(imp.imputed.any(1))
        sub = None
        if len(rows) and n_mc > 0:
            emb = {m: imp.features.embeddings[m] for m in self.modalities}
            draws = imputation_draws(imp.features.patient_ids, rows, emb, imp.uncertainty, self.modalities,
                                     n_mc, seed)
            sub = inputs.rows(torch.as_tensor(np.tile(rows, n_mc)))
            dev = sub.mask.device
            sub = FusionInputs({m: torch.as_tensor(v, device=dev) for m, v in draws.items()}, sub.mask,
                               sub.imputed, sub.covariates, None)
        lows, highs, point_lows, point_highs, draw_risks = [], [], [], [], []
        for net in self.predictors:
            with torch_threads(self.config.threads):
                point = predict_logits(net, inputs)
                samples = np.repeat(point[None], max(n_mc, 1), axis=0)  # (S, N)
                if sub is not None:
                    samples[:, rows] = predict_logits(net, sub).reshape(n_mc, len(rows))
            low, high = risk_range(self.range_calibrator.bounds, risk, samples)
            lows.append(low)
            highs.append(high)
            p0, p1 = self.range_calibrator.bounds(np.asarray(point, float))
            point_lows.append(p0)
            point_highs.append(p1)
            draw_risks.append(self.calibrator.transform(samples))
        with torch_threads(self.config.threads):
            members = np.array([cal.transform(predict_logits(net, inputs)) for net, cal in self.members])
        low, high = np.minimum(np.mean(lows, axis=0), risk), np.maximum(np.mean(highs, axis=0), risk)
        if len(self.members):
            low, high = np.minimum(low, members.min(axis=0)), np.maximum(high, members.max(axis=0))
        flip = np.zeros(len(risk))
        if sub is not None:
            t = self.config.threshold
            flip[rows] = ((np.mean(draw_risks, axis=0)[:, rows] >= t) != (risk[rows] >= t)).mean(axis=0)
        return Spread(low, high, np.minimum(np.mean(point_lows, axis=0), risk),
                      np.maximum(np.mean(point_highs, axis=0), risk), flip)

    # -- persistence ---------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the bundle into ``directory`` (created); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.network.state_dict(), directory / "model.pt")
        save_imputer(self.imputer, directory / "imputer")
        for k, net in enumerate(self.fold_networks):
            (directory / "folds").mkdir(exist_ok=True)
            torch.save(net.state_dict(), directory / "folds" / f"{k}.pt")
        for k, (net, _) in enumerate(self.members):
            (directory / "members").mkdir(exist_ok=True)
            torch.save(net.state_dict(), directory / "members" / f"{k}.pt")
        meta = {"format_version": FORMAT_VERSION, "config": self.config.as_dict(),
                "modalities": list(self.modalities), "n_covariates": self.n_covariates, "dims": self.dims,
                "covariate_names": list(self.covariate_names),
                "scaler": self.scaler.to_dict() if self.scaler is not None else None,
                "encoder_keys": {m: (list(k) if k is not None else None) for m, k in self.encoder_keys.items()},
                "calibrator": _calibrator_dict(self.calibrator), "head": self.head,
                "n_fold_networks": len(self.fold_networks),
                "range_calibrator": self.range_calibrator.to_dict(), "conformal": self.conformal.to_dict(),
                "interval_level": level_text(self.config.interval_level),
                "abstain_policy": self.abstain_policy.to_dict(),
                "shapley_baseline": self.shapley_baseline, "history": self.history,
                "members": [_calibrator_dict(cal) for _, cal in self.members],
                "val_patient_ids": list(self.val_patient_ids), "metrics": self.metrics}
        (directory / "model.json").write_text(json.dumps(meta, indent=2, default=float))
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> "TrainedModel":
        directory = Path(directory)
        meta_path = directory / "model.json"
        if not meta_path.exists():
            raise FileNotFoundError(f"{meta_path} not found: is {directory} a saved TrainedModel folder?")
        meta = json.loads(meta_path.read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"model format {meta.get('format_version')} unsupported (expected {FORMAT_VERSION}): "
                             "models saved before the cross-fitted calibration and conformal sets must be retrained")
        known = {f.name for f in fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in meta["config"].items() if k in known})
        config.device = device
        modalities = tuple(meta["modalities"])
        dims = {m: meta["dims"][m] for m in modalities}
        def network_from(path: Path, head: str = "network") -> torch.nn.Module:
            fcfg = fusion_config(config, int(meta["n_covariates"]))
            net = LinearFusion(dims, fcfg) if head == "linear" else build_fusion(config.fusion, dims, fcfg)
            net.load_state_dict(torch.load(path, map_location=device, weights_only=True))
            return net.to(device).eval()

        head = meta.get("head", "network")
        network = network_from(directory / "model.pt", head)
        members = [(network_from(directory / "members" / f"{k}.pt"), _calibrator_from(cal))
                   for k, cal in enumerate(meta.get("members", []))]
        calibrator = _calibrator_from(meta["calibrator"])
        scaler = CovariateScaler.from_dict(meta["scaler"]) if meta.get("scaler") else None
        return cls(config, network, load_imputer(directory / "imputer"), calibrator, modalities,
                   int(meta["n_covariates"]), meta.get("history", []), tuple(meta.get("val_patient_ids", [])),
                   meta.get("metrics", {}), scaler, tuple(meta.get("covariate_names", [])),
                   {m: (tuple(k) if k is not None else None) for m, k in (meta.get("encoder_keys") or {}).items()},
                   meta.get("shapley_baseline"), members, VennAbersCalibrator.from_dict(meta["range_calibrator"]),
                   ConformalSets.from_dict(meta["conformal"]), head,
                   [network_from(directory / "folds" / f"{k}.pt", head) for k in range(meta.get("n_fold_networks", 0))],
                   AbstainPolicy.from_dict(meta.get("abstain_policy")))
