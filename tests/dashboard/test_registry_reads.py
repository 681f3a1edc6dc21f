"""Registry reads against a real MLflow SQLite store with a registered, aliased model and PNG plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.registry_reads import mlflow_ui_url, read_registry, sqlite_path


def test_sqlite_path_and_ui_url() -> None:
    assert sqlite_path("sqlite:////abs/dir/mlflow.db") == Path("/abs/dir/mlflow.db")
    assert sqlite_path("sqlite:///rel.db") == Path("rel.db")
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert mlflow_ui_url("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
    assert mlflow_ui_url("sqlite:////x.db") is None
    assert mlflow_ui_url("sqlite:////x.db", "http://mlflow.local") == "http://mlflow.local"


def test_absent_store_is_a_message_and_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    snap = read_registry(f"sqlite:///{db}")
    assert not snap.available and "No MLflow registry yet" in snap.message
    assert not db.exists(), "reading must never create the tracking store"


@pytest.fixture(scope="module")
def registry_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tracking store with two versions of `clinfuse`; v2 is champion and logged metrics and plots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("clinfuse", artifact_location=(root / "artifacts").as_uri())
    client.create_registered_model("clinfuse")
    for version in (1, 2):
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "auroc", 0.7 + 0.05 * version)
        client.log_metric(run.info.run_id, "ece", 0.05)
        client.log_param(run.info.run_id, "fusion", "attention")
        for name in ("calibration", "auroc_vs_missing_rate"):
            fig, ax = plt.subplots(figsize=(2, 2))
            ax.plot([0, 1], [0, 1])
            png = root / f"{name}.png"
            fig.savefig(png)
            plt.close(fig)
            client.log_artifact(run.info.run_id, str(png), "plots")
        client.set_terminated(run.info.run_id)
        client.create_model_version("clinfuse", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("clinfuse", "champion", "2")
    client.set_registered_model_alias("clinfuse", "candidate", "1")
    return uri


@pytest.mark.slow
def test_reads_versions_aliases_metrics_and_plots(registry_uri: str) -> None:
    snap = read_registry(registry_uri)
    assert snap.available, snap.message
    assert list(snap.versions["version"]) == ["2", "1"]
    assert list(snap.versions["aliases"]) == ["champion", "candidate"]
    assert snap.champion_version == "2"
    assert snap.champion_metrics["auroc"] == pytest.approx(0.8)
    assert snap.champion_params == {"fusion": "attention"}
    names = [name for name, _ in snap.plots]
    assert names == ["plots/calibration.png", "plots/auroc_vs_missing_rate.png"]
    assert all(data.startswith(b"\x89PNG") for _, data in snap.plots)


@pytest.mark.slow
def test_model_page_shows_registry(app_for, registry_uri: str, tmp_path: Path, monkeypatch) -> None:
    at = app_for(tmp_path / "home")
    monkeypatch.setenv("CLINFUSE_MLFLOW_TRACKING_URI", registry_uri)
    at.run()
    at.switch_page("pages/model.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(s.value == "Champion: version 2" for s in at.subheader)
    assert {m.label: m.value for m in at.metric} == {"AUROC": "0.800", "ECE": "0.050"}
    assert [c for i in at.image for c in i.captions] == ["plots/calibration.png", "plots/auroc_vs_missing_rate.png"]
    assert list(at.dataframe[0].value["aliases"]) == ["champion", "candidate"]
