"""The imputation methods by name: build one, save its fitted state without pickle, load it back.

Kept apart from the methods so that a method module (the cross-profiling and mean
imputers, the complete-case baseline built on them) never imports the registry
and the registry imports every method: one direction, no import circle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from models.imputation.baselines import CompleteCaseImputer
from models.imputation.methods import CrossProfileImputer, Imputer, MeanImputer, ZeroFillImputer

IMPUTERS: dict[str, type[Imputer]] = {"zero": ZeroFillImputer, "mean": MeanImputer,
                                      "cross_profile": CrossProfileImputer, "complete_case": CompleteCaseImputer}
"""Every imputation method by its ``method`` name: ``--impute NAME``, saving and loading go through it."""


def build_imputer(name: str, **params) -> Imputer:
    if name not in IMPUTERS:
        raise ValueError(f"unknown imputer {name!r}; choose one of {sorted(IMPUTERS)}")
    return IMPUTERS[name](**params)


def save_imputer(imputer: Imputer, directory: Path) -> None:
    """Write the fitted state as ``imputer.json`` (name, params) + ``imputer.npz`` (arrays only, no pickle)."""
    directory.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for attr, value in vars(imputer).items():
        if not attr.endswith("_"):
            continue
        if isinstance(value, dict):
            for key, arr in value.items():
                arrays[f"{attr}|{key}"] = np.asarray(arr)
        else:
            arrays[attr] = np.asarray(value)
    np.savez(directory / "imputer.npz", **arrays)
    params = {k: list(v) if isinstance(v, tuple) else v for k, v in imputer.get_params().items()}
    dict_attrs = [a for a, v in vars(imputer).items() if a.endswith("_") and isinstance(v, dict)]
    meta = {"method": imputer.method, "params": params, "dict_attrs": dict_attrs}
    (directory / "imputer.json").write_text(json.dumps(meta, indent=2))


def load_imputer(directory: Path) -> Imputer:
    """Inverse of :func:`save_imputer`."""
    meta = json.loads((directory / "imputer.json").read_text())
    params = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["params"].items()}
    imputer = build_imputer(meta["method"], **params)
    for attr in meta.get("dict_attrs", []):
        setattr(imputer, attr, {})
    with np.load(directory / "imputer.npz", allow_pickle=False) as data:
        for key in data.files:
            arr = data[key]
            if "|" in key:
                attr, sub = key.split("|", 1)
                getattr(imputer, attr)[sub] = arr
            elif key == "modalities_":
                imputer.modalities_ = tuple(str(x) for x in arr)
            else:
                setattr(imputer, key, arr)
    return imputer
