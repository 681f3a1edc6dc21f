"""Read-only views of the MLflow model registry for the dashboard's Model page.

Reads the registered model's versions and aliases, the champion run's metrics
and its PNG plots (calibration, AUROC vs missing rate). Never creates a store:
when the tracking database does not exist yet the answer says so and how to
make one, because opening an absent SQLite URI with MLflow would create it.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import pandas as pd

from flows.names import CHAMPION, MODEL_NAME

#: Words in artifact names that mark the plots the Model page shows first.
PREFERRED_PLOTS = ("calibration", "reliability", "missing", "auroc", "roc")
#: Run artifact folder holding the evaluation report and its model card.
CARD_FOLDER = "evaluation"


@dataclass(frozen=True)
class RegistrySnapshot:
    """What the Model page shows; ``available`` False carries a message a person can act on."""

    available: bool
    message: str = ""
    versions: pd.DataFrame = field(default_factory=pd.DataFrame)
    champion_version: str | None = None
    champion_run_id: str | None = None
    champion_metrics: dict[str, float] = field(default_factory=dict)
    champion_params: dict[str, str] = field(default_factory=dict)
    plots: tuple[tuple[str, bytes], ...] = ()
    ui_url: str | None = None
    model_card: dict | None = None
    """The champion's model card (``evaluation/model_card.json`` of its run), None when the run has none."""
    card_plots: dict[str, bytes] = field(default_factory=dict)
    """The card's plots by role (``roc``, ``reliability``), PNG bytes."""


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    rest = unquote(urlparse(tracking_uri).path)
    # sqlite:///rel.db has path "/rel.db"; sqlite:////abs.db has "//abs.db" (SQLAlchemy's convention).
    return Path(rest[1:]) if rest.startswith("/") else Path(rest)


def mlflow_ui_url(tracking_uri: str, configured: str | None = None) -> str | None:
    """Where a person can open the MLflow UI: the configured URL, or the tracking URI when it is http(s)."""
    if configured:
        return configured
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/")
    return None


def _plot_rank(path: str) -> tuple[int, str]:
    low = path.lower()
    for i, word in enumerate(PREFERRED_PLOTS):
        if word in low:
            return i, low
    return len(PREFERRED_PLOTS), low


def _png_artifacts(client, run_id: str, path: str = "", depth: int = 0) -> list[str]:
    found: list[str] = []
    for info in client.list_artifacts(run_id, path or None):
        if info.is_dir and depth < 3:
            found.extend(_png_artifacts(client, run_id, info.path, depth + 1))
        elif info.path.lower().endswith(".png"):
            found.append(info.path)
    return found


def read_model_card(client, run_id: str, folder: str = CARD_FOLDER) -> tuple[dict | None, dict[str, bytes]]:
    """The run's model card JSON and its plots by role; ``(None, {})`` when the run logged no card."""
    names = {info.path for info in client.list_artifacts(run_id, folder)}
    if f"{folder}/model_card.json" not in names:
        return None, {}
    with tempfile.TemporaryDirectory(prefix="clinfuse-card-") as tmp:
        card = json.loads(Path(client.download_artifacts(run_id, f"{folder}/model_card.json", tmp)).read_text())
        plots = {}
        for role, file in (card.get("plots") or {}).items():
            if f"{folder}/{file}" in names:
                plots[role] = Path(client.download_artifacts(run_id, f"{folder}/{file}", tmp)).read_bytes()
    return card, plots


def read_registry(tracking_uri: str, model_name: str = MODEL_NAME, ui_url: str | None = None,
                  max_plots: int = 6) -> RegistrySnapshot:
    """Versions, aliases, champion metrics and plots of ``model_name``; never raises for a missing registry."""
    db = sqlite_path(tracking_uri)
    url = mlflow_ui_url(tracking_uri, ui_url)
    hint = ("Train and register a model first (the training flow registers `clinfuse` and sets the "
            "`champion` alias); this page then shows its versions, metrics and plots.")
    if db is not None and not db.is_file():
        return RegistrySnapshot(False, f"No MLflow registry yet: {db} does not exist. {hint}", ui_url=url)
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            versions = client.search_model_versions(f"name = '{model_name}'")
        except MlflowException as exc:
            return RegistrySnapshot(False, f"No registered model `{model_name}` yet ({exc.error_code}). {hint}",
                                    ui_url=url)
    except Exception as exc:  # noqa: BLE001 - an unreachable server is a message, not a crash
        return RegistrySnapshot(False, f"Could not read the MLflow registry at {tracking_uri}: "
                                       f"{exc.__class__.__name__}: {exc}", ui_url=url)
    if not versions:
        return RegistrySnapshot(False, f"No versions of `{model_name}` are registered yet. {hint}", ui_url=url)
    # search_model_versions leaves `aliases` empty on some stores; the registered model has them all.
    try:
        alias_map = dict(client.get_registered_model(model_name).aliases or {})
    except Exception:  # noqa: BLE001 - versions without aliases are still worth showing
        alias_map = {}
    aliases: dict[str, list[str]] = {}
    for alias, version in alias_map.items():
        aliases.setdefault(str(version), []).append(alias)
    for v in versions:
        aliases.setdefault(str(v.version), []).extend(a for a in (getattr(v, "aliases", None) or [])
                                                      if a not in aliases.get(str(v.version), []))
    rows = [{"version": str(v.version), "aliases": ", ".join(sorted(aliases.get(str(v.version), []))),
             "status": v.status, "run_id": v.run_id or "",
             "created": pd.to_datetime(v.creation_timestamp, unit="ms", utc=True),
             "description": v.description or ""} for v in versions]
    table = pd.DataFrame(rows).sort_values("version", key=lambda s: s.astype(int), ascending=False)
    champ = next((v for v in versions if CHAMPION in aliases.get(str(v.version), [])), None)
    if champ is None:
        return RegistrySnapshot(True, "No version carries the `champion` alias yet; showing versions only.",
                                versions=table.reset_index(drop=True), ui_url=url)
    metrics: dict[str, float] = {}
    params: dict[str, str] = {}
    plots: list[tuple[str, bytes]] = []
    card, card_plots = None, {}
    message = ""
    if champ.run_id:
        try:
            run = client.get_run(champ.run_id)
            metrics, params = dict(run.data.metrics), dict(run.data.params)
            names = sorted(_png_artifacts(client, champ.run_id), key=_plot_rank)[:max_plots]
            with tempfile.TemporaryDirectory(prefix="clinfuse-plots-") as tmp:
                for name in names:
                    local = client.download_artifacts(champ.run_id, name, tmp)
                    plots.append((name, Path(local).read_bytes()))
            card, card_plots = read_model_card(client, champ.run_id)
        except Exception as exc:  # noqa: BLE001 - a missing run/artifact store should not hide the versions
            message = f"Could not read the champion's run {champ.run_id}: {exc.__class__.__name__}: {exc}"
    return RegistrySnapshot(True, message, versions=table.reset_index(drop=True),
                            champion_version=str(champ.version), champion_run_id=champ.run_id,
                            champion_metrics=metrics, champion_params=params, plots=tuple(plots), ui_url=url,
                            model_card=card, card_plots=card_plots)
