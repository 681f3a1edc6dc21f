"""A trained fusion model with everything it needs to predict: network, imputer, calibrator, config.

``TrainedModel.save(dir)`` / ``TrainedModel.load(dir)`` round-trip through a
folder of plain files (``model.pt`` weights only, ``model.json``, the imputer's
``imputer.json`` + ``imputer.npz``), with no absolute paths and no pickled
code, so MLflow can log the folder as artifacts and a pyfunc can load it on
another machine. ``predict`` returns the Predictions table of
docs/CONTRACTS.md, less the columns that the caller stamps (``model_name``,
``model_version``, ``run_id``, ``batch_id``, ``predicted_at``).

The interval ``risk_low``/``risk_high`` is a Monte-Carlo interval over the
imputed embeddings (each imputed modality redrawn from its estimate plus
Gaussian noise of its reported uncertainty); for a patient with no imputed
modality it collapses to the point risk. It does not include the model's own
(epistemic) uncertainty.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from models.calibration import TemperatureScaler
from models.feature_set import FeatureSet
from models.fusion import build_fusion
from models.fusion.inputs import FusionInputs, predict_logits, to_inputs, torch_threads
from models.imputation import ImputedFeatures, load_imputer, save_imputer
from models.shapley import exact_modality_shapley
from models.train import TrainConfig, _fusion_config

FORMAT_VERSION = 1

PredictionFrame = pd.DataFrame
"""Columns: ``prediction_columns(modalities)``; one row per patient."""


def prediction_columns(modalities: tuple[str, ...]) -> list[str]:
    return (["patient_id", "risk", "risk_low", "risk_high", "predicted_class", "abstain", "abstain_reason"]
            + [f"contrib_{m}" for m in modalities] + [f"mask_{m}" for m in modalities] + ["donors_json"])


@dataclass
class TrainedModel:
    config: TrainConfig
    network: torch.nn.Module
    imputer: object
    calibrator: TemperatureScaler
    modalities: tuple[str, ...]
    n_covariates: int
    history: list[dict] = field(default_factory=list)
    val_patient_ids: tuple[str, ...] = ()
    metrics: dict = field(default_factory=dict)

    # -- prediction ----------------------------------------------------
    def impute(self, features: FeatureSet) -> ImputedFeatures:
        if tuple(features.modalities) != self.modalities:
            raise ValueError(f"features have modalities {features.modalities}, model expects {self.modalities}")
        if features.covariates.shape[1] != self.n_covariates:
            raise ValueError(f"features have {features.covariates.shape[1]} covariates, model expects {self.n_covariates}")
        return self.imputer.transform(features)

    def risk(self, inputs: FusionInputs) -> np.ndarray:
        """Calibrated probability for tensors already imputed."""
        with torch_threads(self.config.threads):
            return self.calibrator.transform(predict_logits(self.network, inputs))

    def logits(self, features: FeatureSet) -> np.ndarray:
        """Uncalibrated logits (for ECE before temperature scaling)."""
        with torch_threads(self.config.threads):
            return predict_logits(self.network, to_inputs(self.impute(features), self.config.device))

    def predict_risk(self, features: FeatureSet) -> np.ndarray:
        """Calibrated risk only (fast path for evaluation sweeps)."""
        return self.risk(to_inputs(self.impute(features), self.config.device))

    def predict(self, features: FeatureSet, n_mc: int = 30, seed: int = 0) -> PredictionFrame:
        """The Predictions table: risk, interval, class, abstain, Shapley contributions, mask, donors."""
        imp = self.impute(features)
        inputs = to_inputs(imp, self.config.device)
        shap = exact_modality_shapley(lambda mk: self.risk(inputs.with_mask(torch.as_tensor(mk))), imp.features.mask)
        risk = shap.prediction
        low, high = self._mc_interval(imp, inputs, risk, n_mc, seed)
        cls = (risk >= 0.5).astype(int)
        no_imp = self.risk(inputs.with_mask(inputs.mask & ~inputs.imputed))
        abstain, reasons = self._abstain(imp, shap.contributions, cls, no_imp)
        frame = {"patient_id": list(features.patient_ids), "risk": risk, "risk_low": low, "risk_high": high,
                 "predicted_class": cls, "abstain": abstain, "abstain_reason": reasons}
        avail = imp.availability()
        for j, m in enumerate(self.modalities):
            frame[f"contrib_{m}"] = shap.contributions[:, j]
            frame[f"mask_{m}"] = avail[:, j].astype(str)
        frame["donors_json"] = [imp.donors_json(i) for i in range(len(features))]
        return pd.DataFrame(frame, columns=prediction_columns(self.modalities))

    def _mc_interval(self, imp: ImputedFeatures, inputs: FusionInputs, risk: np.ndarray,
                     n_mc: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        rows = np.flatnonzero(imp.imputed.any(1))
        low, high = risk.copy(), risk.copy()
        if len(rows) == 0 or n_mc <= 0:
            return low, high
        rng = np.random.default_rng(seed)
        sub = inputs.rows(torch.as_tensor(rows))
        draws = np.zeros((n_mc, len(rows)))
        for s in range(n_mc):
            emb = {}
            for j, m in enumerate(self.modalities):
                x = sub.embeddings[m].cpu().numpy()
                sd = np.nan_to_num(imp.uncertainty[rows, j])[:, None]
                emb[m] = torch.as_tensor(x + sd * rng.standard_normal(x.shape), dtype=torch.float32,
                                         device=sub.mask.device)
            draws[s] = self.risk(FusionInputs(emb, sub.mask, sub.imputed, sub.covariates, None))
        low[rows] = np.minimum(np.quantile(draws, 0.025, 0), risk[rows])
        high[rows] = np.maximum(np.quantile(draws, 0.975, 0), risk[rows])
        return low, high

    def _abstain(self, imp: ImputedFeatures, contrib: np.ndarray, cls: np.ndarray,
                 no_imp_risk: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Abstain when imputed modalities drive the decision, or when nothing was available."""
        t = self.config.abstain_share
        abstain = np.zeros(len(cls), bool)
        reasons = [""] * len(cls)
        c = np.nan_to_num(contrib)
        for i in range(len(cls)):
            if not imp.features.mask[i].any():
                abstain[i], reasons[i] = True, "no modality available: prediction from covariates only"
                continue
            if not imp.imputed[i].any():
                continue
            total = np.abs(c[i]).sum()
            share = abs(c[i][imp.imputed[i]].sum()) / total if total > 0 else 0.0
            names = ", ".join(m for m, f in zip(self.modalities, imp.imputed[i]) if f)
            if int(no_imp_risk[i] >= 0.5) != cls[i]:
                abstain[i], reasons[i] = True, f"class flips when imputed modalities ({names}) are removed"
            elif share > t:
                abstain[i], reasons[i] = True, f"imputed modalities ({names}) carry {share:.0%} of the contribution (> {t:.0%})"
        return abstain, reasons

    # -- persistence ---------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write the bundle into ``directory`` (created); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.network.state_dict(), directory / "model.pt")
        save_imputer(self.imputer, directory / "imputer")
        meta = {"format_version": FORMAT_VERSION, "config": self.config.as_dict(),
                "modalities": list(self.modalities), "n_covariates": self.n_covariates,
                "dims": {m: int(d) for m, d in self.network.dims.items()},
                "temperature": self.calibrator.temperature_, "history": self.history,
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
            raise ValueError(f"model format {meta.get('format_version')} unsupported (expected {FORMAT_VERSION})")
        known = {f.name for f in fields(TrainConfig)}
        config = TrainConfig(**{k: v for k, v in meta["config"].items() if k in known})
        config.device = device
        modalities = tuple(meta["modalities"])
        dims = {m: meta["dims"][m] for m in modalities}
        probe = FeatureSet(("x",), {m: np.zeros((1, d), np.float32) for m, d in dims.items()},
                           np.ones((1, len(modalities)), bool), np.zeros((1, meta["n_covariates"]), np.float32),
                           None, modalities)
        network = build_fusion(config.fusion, dims, _fusion_config(config, probe))
        network.load_state_dict(torch.load(directory / "model.pt", map_location=device, weights_only=True))
        network.to(device).eval()
        calibrator = TemperatureScaler()
        calibrator.temperature_ = float(meta["temperature"])
        return cls(config, network, load_imputer(directory / "imputer"), calibrator, modalities,
                   int(meta["n_covariates"]), meta.get("history", []), tuple(meta.get("val_patient_ids", [])),
                   meta.get("metrics", {}))
