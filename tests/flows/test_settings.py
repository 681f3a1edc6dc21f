"""Settings: one object, environment read once, derived paths under home."""

from __future__ import annotations

from pathlib import Path

from flows.settings import Settings, get_settings


def test_defaults_live_under_home(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "h")
    assert s.home == (tmp_path / "h").resolve()
    assert s.tracking_uri == f"sqlite:///{s.home / 'mlflow.db'}"
    assert s.artifact_root.startswith("file://") and s.artifact_root.endswith("mlartifacts")
    for p in (s.manifest_path, s.arrays_dir, s.embeddings_dir, s.predictions_dir, s.cohort_path):
        assert s.home in p.parents
    assert s.prefect_api_url is None and s.bind_host == "127.0.0.1"


def test_environment_overrides(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "env-home"))
    monkeypatch.setenv("CLINFUSE_SEED", "123")
    monkeypatch.setenv("CLINFUSE_DEVICE", "cpu")
    monkeypatch.setenv("CLINFUSE_MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    s = Settings()
    assert s.home == (tmp_path / "env-home").resolve()
    assert s.seed == 123 and s.resolved_device() == "cpu"
    assert s.tracking_uri == "http://127.0.0.1:5999"


def test_secret_is_not_printed() -> None:
    s = Settings(pseudonym_secret="very-secret-value")
    assert "very-secret-value" not in repr(s)
    assert "very-secret-value" not in str(s.model_dump())


def test_get_settings_is_read_once(monkeypatch, tmp_path: Path) -> None:
    get_settings.cache_clear()
    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "a"))
    first = get_settings()
    monkeypatch.setenv("CLINFUSE_HOME", str(tmp_path / "b"))
    assert get_settings() is first
    get_settings.cache_clear()


def test_note_model_cache_is_per_machine_not_per_home(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CLINFUSE_NOTE_MODEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    a, b = Settings(home=tmp_path / "a"), Settings(home=tmp_path / "b")
    assert a.note_model_cache_dir == b.note_model_cache_dir == tmp_path / "xdg" / "clinfuse" / "note-model"
    monkeypatch.setenv("CLINFUSE_NOTE_MODEL_CACHE", str(tmp_path / "shared"))
    assert Settings(home=tmp_path / "a").note_model_cache_dir == (tmp_path / "shared").resolve()
