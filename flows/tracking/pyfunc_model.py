"""The registered MLflow model: a pyfunc over a saved ``TrainedModel`` whose input carries the mask.

Input (one row per patient, declared in the signature): ``patient_id``, one
float-array column ``emb_<modality>`` per modality (empty or zeros where
missing), one boolean ``mask_<modality>`` per modality (True = present), and
the RAW covariates as named columns in the units of ``cohort.csv``: ``age``,
``crp``, ``wbc``, ``lactate`` (double, NaN/absent = unknown) and ``sex``
(string ``M``/``F``). The model standardises them with its training patients'
statistics, so a caller never computes anything over a batch and a patient's
output is the same alone or in any batch. Output: the Predictions table of
docs/CONTRACTS.md less the stamps the store adds (risk, its Venn-Abers range
``risk_low``/``risk_high``, class, abstain with a reason that states the conformal
set's level as "NN % nominal", per-modality contributions, mask incl.
``imputed``, donors). The level and the range's kind are also in the logged
model's metadata (``interval_level``, ``risk_range``), read from the bundle.

``load_context`` loads the bundle once from the model's own artifacts, so the
pyfunc holds no path of the machine that trained it; ``predict`` is pure.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.types import DataType
from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

from models.features.covariates import COVARIATE_COLUMNS, covariate_matrix
from models.features.feature_set import FeatureSet

ARTIFACT_KEY = "trained_model"
SEX_LABELS = {1.0: "M", 0.0: "F"}


def features_to_frame(features: FeatureSet) -> pd.DataFrame:
    """The pyfunc's input frame for ``features`` (what a caller sends to the registered model).

    Raw covariates (``features.covariate_names`` set) become named columns as in
    ``cohort.csv``; a FeatureSet without names (already model-ready covariates,
    e.g. a synthetic cohort) sends them as one ``covariates`` array.
    """
    data: dict[str, Any] = {"patient_id": list(features.patient_ids)}
    for j, m in enumerate(features.modalities):
        emb = np.asarray(features.embeddings[m], dtype=np.float64)
        data[f"emb_{m}"] = [row for row in emb]
        data[f"mask_{m}"] = features.mask[:, j].astype(bool)
    cov = np.asarray(features.covariates, dtype=np.float64)
    if features.covariate_names:
        for j, name in enumerate(features.covariate_names):
            data[name] = ([SEX_LABELS.get(v, "") for v in cov[:, j]] if name == "sex" else cov[:, j])
    else:
        data["covariates"] = [row for row in cov]
    return pd.DataFrame(data)


def _matrix(column: pd.Series, dim: int, present: np.ndarray, name: str) -> np.ndarray:
    out = np.zeros((len(column), dim), np.float32)
    for i, (value, here) in enumerate(zip(column, present)):
        vec = np.asarray(value if value is not None else [], dtype=np.float32).ravel()
        if here and vec.shape[0] != dim:
            raise ValueError(f"row {i}: {name} has {vec.shape[0]} values, the model expects {dim}")
        if here:
            out[i] = vec
    return out


def frame_to_features(frame: pd.DataFrame, modalities: tuple[str, ...], dims: dict[str, int],
                      n_covariates: int, covariate_names: tuple[str, ...] = ()) -> FeatureSet:
    """Validate the input frame and turn it back into a FeatureSet; errors name the column to fix.

    With ``covariate_names`` the covariates are read raw from those named columns
    (an absent column is unknown for every patient); without, from ``covariates``.
    """
    needed = ["patient_id", *(f"emb_{m}" for m in modalities), *(f"mask_{m}" for m in modalities)]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"model input lacks columns {missing}; expected {needed} (+ covariates)")
    mask = np.stack([frame[f"mask_{m}"].astype(bool).to_numpy() for m in modalities], axis=1)
    embeddings = {m: _matrix(frame[f"emb_{m}"], dims[m], mask[:, j], f"emb_{m}") for j, m in enumerate(modalities)}
    if covariate_names:
        covariates = covariate_matrix(frame, covariate_names)
    elif n_covariates:
        if "covariates" not in frame.columns:
            raise ValueError(f"model input lacks 'covariates' ({n_covariates} standardised values per patient)")
        covariates = _matrix(frame["covariates"], n_covariates, np.ones(len(frame), bool), "covariates")
    else:
        covariates = np.zeros((len(frame), 0), np.float32)
    return FeatureSet(tuple(str(p) for p in frame["patient_id"]), embeddings, mask, covariates, None,
                      tuple(modalities), covariate_names=tuple(covariate_names))


def model_signature(modalities: tuple[str, ...],
                    covariate_names: tuple[str, ...] = COVARIATE_COLUMNS) -> ModelSignature:
    """Input: ids, one embedding array and one mask flag per modality, raw covariates. Output: Predictions."""
    cov_specs = [ColSpec(DataType.string if c == "sex" else DataType.double, c, required=False)
                 for c in covariate_names] or [ColSpec(Array(DataType.double), "covariates", required=False)]
    inputs = Schema([
        ColSpec(DataType.string, "patient_id"),
        *[ColSpec(Array(DataType.double), f"emb_{m}") for m in modalities],
        *[ColSpec(DataType.boolean, f"mask_{m}") for m in modalities],
        *cov_specs,
    ])
    outputs = Schema([
        ColSpec(DataType.string, "patient_id"),
        ColSpec(DataType.double, "risk"), ColSpec(DataType.double, "risk_low"), ColSpec(DataType.double, "risk_high"),
        ColSpec(DataType.long, "predicted_class"), ColSpec(DataType.boolean, "abstain"),
        ColSpec(DataType.string, "abstain_reason"),
        *[ColSpec(DataType.double, f"contrib_{m}") for m in modalities],
        *[ColSpec(DataType.string, f"mask_{m}") for m in modalities],
        ColSpec(DataType.string, "donors_json"),
    ])
    params = ParamSchema([ParamSpec("n_mc", DataType.long, 30), ParamSpec("seed", DataType.long, 0)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


class ClinfusePyfunc(mlflow.pyfunc.PythonModel):
    """MLflow face of :class:`models.training.trained_model.TrainedModel`."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from models.training.trained_model import TrainedModel

        self.model = TrainedModel.load(context.artifacts[ARTIFACT_KEY], device="cpu")
        self.dims = self.model.dims

    def predict(self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        params = params or {}
        features = frame_to_features(model_input, self.model.modalities, self.dims, self.model.n_covariates,
                                     self.model.covariate_names)
        out = self.model.predict(features, n_mc=int(params.get("n_mc", 30)), seed=int(params.get("seed", 0)))
        out["predicted_class"] = out["predicted_class"].astype("int64")
        out["abstain"] = out["abstain"].astype(bool)
        return out
