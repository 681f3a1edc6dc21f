"""Cached loaders: the only way the dashboard's pages reach data.

Each loader is keyed on the store's version (file paths, mtimes and sizes), so a
page rerun after a widget change costs a dictionary lookup, while a batch that a
flow appends shows up on the next rerun. The loaders only read; writing is the
flows' job. The queries themselves live in :mod:`dashboard.store_queries` and
:mod:`dashboard.registry_reads` so the benchmark and tests can call them
without Streamlit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import registry_reads, store_queries
from dashboard.store_queries import Worklist, WorklistFilters, WorklistScope
from flows.settings import Settings, get_settings


@st.cache_resource(show_spinner=False)
def app_settings() -> Settings:
    """The settings, read once per server process (tests clear this cache between homes)."""
    return get_settings()


def predictions_version(settings: Settings) -> tuple:
    return store_queries.store_fingerprint(store_queries.prediction_files(settings.predictions_dir))


def manifest_version(settings: Settings) -> tuple:
    return store_queries.store_fingerprint([settings.manifest_path])


@st.cache_data(show_spinner=False, max_entries=8)
def batches(predictions_dir: str, version: tuple) -> pd.DataFrame:
    return store_queries.list_batches(Path(predictions_dir))


@st.cache_data(show_spinner=False, max_entries=8)
def model_versions(predictions_dir: str, version: tuple) -> list[str]:
    return store_queries.list_model_versions(Path(predictions_dir))


@st.cache_data(show_spinner="Loading the worklist…", max_entries=64)
def worklist(predictions_dir: str, version: tuple, scope: WorklistScope, filters: WorklistFilters) -> Worklist:
    return store_queries.query_worklist(Path(predictions_dir), scope, filters)


@st.cache_data(show_spinner=False, max_entries=256)
def patient_predictions(predictions_dir: str, version: tuple, patient_id: str) -> pd.DataFrame:
    return store_queries.patient_predictions(Path(predictions_dir), patient_id)


@st.cache_data(show_spinner=False, max_entries=256)
def patient_items(manifest_path: str, version: tuple, patient_id: str) -> pd.DataFrame:
    return store_queries.patient_items(Path(manifest_path), patient_id)


def _file_key(home: Path, array_uri: str) -> tuple[str, int, int]:
    fp = store_queries.store_fingerprint([home / array_uri])
    if not fp:
        raise FileNotFoundError(f"{array_uri} is listed in the manifest but absent under {home}")
    return fp[0]


@st.cache_resource(show_spinner=False, max_entries=32)
def _array(home: str, array_uri: str, key: tuple) -> np.ndarray:
    return store_queries.load_array(Path(home), array_uri)


def array(home: Path, array_uri: str) -> np.ndarray:
    """A normalised array, memory-mapped and shared across sessions (read-only)."""
    return _array(str(home), array_uri, _file_key(home, array_uri))


@st.cache_data(show_spinner=False, max_entries=64)
def _note(home: str, array_uri: str, key: tuple) -> dict:
    return store_queries.load_note(Path(home), array_uri)


def note(home: Path, array_uri: str) -> dict:
    """A de-identified note record."""
    return _note(str(home), array_uri, _file_key(home, array_uri))


@st.cache_data(show_spinner="Reading the MLflow registry…", ttl=60, max_entries=4)
def _registry(tracking_uri: str, key: tuple) -> registry_reads.RegistrySnapshot:
    return registry_reads.read_registry(tracking_uri)


def registry(settings: Settings) -> registry_reads.RegistrySnapshot:
    """The registry snapshot, re-read when the SQLite store changes or after a minute (servers).

    Links to runs point at the tracking server when MLflow runs as one (``registry_reads.mlflow_ui_url``).
    """
    uri = settings.tracking_uri
    db = registry_reads.sqlite_path(uri)
    key = store_queries.store_fingerprint([db]) if db is not None else ()
    return _registry(uri, key)
