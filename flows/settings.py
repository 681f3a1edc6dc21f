"""The one configuration object of clinfuse.

Only this module reads the environment (variables prefixed ``CLINFUSE_`` and an
optional ``.env`` file). Library code in ``ingestion/`` and ``models/`` takes
explicit arguments; ``flows/`` and ``dashboard/`` call :func:`get_settings` once
and pass the values down.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ingestion.driver.worker import ReaderConfig
from ingestion.home_layout import HomeLayout


class Settings(BaseSettings):
    """Every path, URI and knob that the platform reads from its environment."""

    model_config = SettingsConfigDict(
        env_prefix="CLINFUSE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    home: Path = Field(
        default=Path(".clinfuse"),
        description="Root of all data clinfuse writes (manifest, arrays, embeddings, predictions, MLflow store).",
    )
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; default sqlite:///<home>/mlflow.db."
    )
    mlflow_artifact_root: str | None = Field(
        default=None, description="Where MLflow stores artifacts; default <home>/mlartifacts."
    )
    prefect_api_url: str | None = Field(
        default=None,
        description="URL of a Prefect server's API; unset means flows run in-process (ephemeral).",
    )
    dask_address: str | None = Field(
        default=None, description="Dask scheduler address for fan-out; unset means a LocalCluster when asked."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="Where encoders and training run: auto picks CUDA when present."
    )
    seed: int = Field(default=7, description="Seed for every random choice (splits, init, bootstrap).")
    pseudonym_secret_configured: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("CLINFUSE_PSEUDONYM_SECRET", "pseudonym_secret"),
        description="Key of the keyed hash that turns patient ids into pseudonyms (CLINFUSE_PSEUDONYM_SECRET). "
                    "Unset: a random one is generated into <home>/pseudonym_secret (mode 0600) on first use.",
    )
    workers: int = Field(default=2, ge=1, description="Processes for parallel ingestion and for a batch's outbox (SRs).")
    chunk_items: int = Field(
        default=32, ge=1, description="Items per fan-out task of ingest and encode (the unit a Dask worker takes).")
    ct_spacing_mm: tuple[float, float, float] = Field(
        default=(4.0, 2.0, 2.0), description="Finest CT spacing (z, y, x) in mm; a body larger than ct_shape x this "
                                             "is coarsened alike on every axis to fit (recorded per item)."
    )
    ct_shape: tuple[int, int, int] = Field(
        default=(32, 64, 64), description="CT volume shape (z, y, x): the window centred on the body, padded with air."
    )
    xray_shape: tuple[int, int] = Field(default=(128, 128), description="X-ray image shape after resizing.")
    eeg_sfreq: float = Field(default=128.0, description="Common EEG sampling rate after resampling (Hz).")
    eeg_window_s: float = Field(default=4.0, description="EEG window length in seconds.")
    eeg_line_freq: float = Field(default=50.0, description="Mains frequency to notch out (50 or 60 Hz).")
    note_encoder: Literal["minilm", "tfidf"] = Field(
        default="minilm", description="Note encoder: the packaged MiniLM, or TF-IDF + SVD fallback."
    )
    note_model_cache: Path | None = Field(
        default=None, description="Folder of the int8 ONNX MiniLM derived from the packaged weights on first use "
                                  "(~14 s), shared by every home on the machine (CLINFUSE_NOTE_MODEL_CACHE); "
                                  "unset = <user cache dir>/clinfuse/note-model.")
    prefect_template: Path | None = Field(
        default=None, description="Folder of the machine's Prefect database template: a new home's first command "
                                  "copies it instead of migrating an empty database (~15 s), shared by every home "
                                  "(CLINFUSE_PREFECT_TEMPLATE); unset = <user cache dir>/clinfuse/prefect-db.")
    encoder_weights: Annotated[dict[str, Path], NoDecode] = Field(
        default_factory=dict,
        description="A site's own pretrained encoder weights per modality, CLINFUSE_ENCODER_WEIGHTS="
                    "'ct=/site/ct.pt,xray=/site/bundle' (or JSON): a state dict (.pt/.pth/.safetensors) or a MONAI "
                    "bundle folder for ct, xray or eeg; `clinfuse encode` checks and installs them.")
    dashboard_password: SecretStr | None = Field(
        default=None, description="When set, every dashboard page asks for this password."
    )
    bind_host: str = Field(default="127.0.0.1", description="Host every server started by clinfuse binds.")
    pacs_url: str | None = Field(
        default=None, description="DICOMweb root of the PACS to pull from (e.g. http://pacs:8042/dicom-web); "
                                  "credentials go in pacs_username/pacs_password, not here.")
    pacs_username: str | None = Field(default=None, description="PACS basic-auth user (CLINFUSE_PACS_USERNAME).")
    pacs_password: SecretStr | None = Field(
        default=None, description="PACS basic-auth password (CLINFUSE_PACS_PASSWORD); never logged.")
    pacs_modalities: tuple[str, ...] = Field(
        default=("CT", "CR", "DX"), description="DICOM modalities pulled from the PACS.")
    pacs_study_date_from: str | None = Field(
        default=None, description="Pull only studies on or after this StudyDate (YYYYMMDD); unset = all.")
    pacs_timeout_s: float = Field(default=30.0, gt=0, description="Seconds to wait for any one PACS request.")
    pacs_ae_title: str = Field(
        default="CLINFUSE", max_length=16,
        description="Our AE title when pulling over DIMSE (pacs_url dicom://HOST:PORT/CALLED_AE); the PACS must "
                    "know it for C-GET to be allowed.")
    outbox_stow_url: str | None = Field(
        default=None, description="DICOMweb root the results' SRs are stored to over STOW-RS "
                                  "(e.g. http://pacs:8042/dicom-web); unset = SRs stay as files in <home>/outbox.")
    outbox_stow_username: str | None = Field(default=None, description="STOW-RS basic-auth user.")
    outbox_stow_password: SecretStr | None = Field(default=None, description="STOW-RS basic-auth password; never logged.")
    outbox_fhir_url: str | None = Field(
        default=None, description="FHIR R4 base URL the batch bundles are POSTed to (a transaction); "
                                  "unset = bundles stay as files in <home>/outbox.")
    outbox_fhir_token: SecretStr | None = Field(
        default=None, description="Bearer token for the FHIR server (CLINFUSE_OUTBOX_FHIR_TOKEN); never logged.")
    outbox_timeout_s: float = Field(default=30.0, gt=0, description="Seconds to wait for any one send.")
    prefect_database_url: SecretStr | None = Field(
        default=None, description="Database of the Prefect server `clinfuse serve` starts "
                                  "(postgresql+asyncpg://USER:PW@HOST:PORT/DB); unset = SQLite under <home>/prefect.")
    mlflow_backend_store_uri: SecretStr | None = Field(
        default=None, description="Backend store of the MLflow server `clinfuse serve` starts "
                                  "(postgresql://USER:PW@HOST:PORT/DB); unset = sqlite:///<home>/mlflow.db.")
    reid_key: SecretStr | None = Field(
        default=None, description="Fernet key of the encrypted pseudonym -> MRN map; unset = pseudonymous only.")
    reid_key_file: Path | None = Field(
        default=None, description="File holding the Fernet key (outside CLINFUSE_HOME); used when reid_key is unset.")
    audit_key: SecretStr | None = Field(
        default=None, description="HMAC key that signs the audit trail (CLINFUSE_AUDIT_KEY); unset = "
                                  "audit_key_file, else an unkeyed chain that `clinfuse audit verify` flags as weak.")
    audit_key_file: Path | None = Field(
        default=None, description="File holding the audit HMAC key (outside CLINFUSE_HOME, mode 0600); "
                                  "make one with `clinfuse audit keygen`.")
    audit_retired_key_files: tuple[Path, ...] = Field(
        default=(), description="Earlier audit key files, kept after a rotation so older entries still verify "
                                "(CLINFUSE_AUDIT_RETIRED_KEY_FILES, a JSON list).")
    audit_anchor_file: Path | None = Field(
        default=None, description="Append-only file outside CLINFUSE_HOME that receives the audit trail's head "
                                  "every audit_anchor_every entries, so truncation is caught; unset = no anchor.")
    audit_anchor_every: int = Field(default=10, ge=1, description="Anchor the audit head every N entries.")
    audit_anchor_syslog: str | None = Field(
        default=None, description="Also send each audit anchor to syslog: a socket path (/dev/log) or HOST:PORT "
                                  "(UDP), facility authpriv; unset = file sink only.")
    session_idle_minutes: float = Field(
        default=15.0, gt=0, description="Dashboard sessions idle longer than this are sent back to sign-in.")
    sign_in_max_failures: int = Field(
        default=5, ge=1, description="Failed sign-ins per user within sign_in_lockout_s before the user is locked.")
    sign_in_lockout_s: float = Field(default=300.0, gt=0, description="Sign-in lockout window in seconds.")

    @field_validator("encoder_weights", mode="before")
    @classmethod
    def _parse_encoder_weights(cls, value: object) -> object:
        """``ct=/a.pt,xray=/b`` or a JSON object; the command checks the modalities and files."""
        if isinstance(value, str):
            from models.encoders.site_weights import parse_assignments

            text = value.strip()
            return json.loads(text) if text.startswith("{") else parse_assignments(text.split(",") if text else [])
        return value

    @model_validator(mode="after")
    def _blank_secret_is_unset(self) -> "Settings":
        """``CLINFUSE_PSEUDONYM_SECRET=`` (blank) means "not configured", never an empty key."""
        if self.pseudonym_secret_configured is not None and not self.pseudonym_secret_configured.get_secret_value().strip():
            self.pseudonym_secret_configured = None
        return self

    @model_validator(mode="after")
    def _resolve_home(self) -> "Settings":
        self.home = self.home.expanduser().resolve()
        return self

    @property
    def note_model_cache_dir(self) -> Path:
        """The machine-level note model cache (not under ``home``: every home reuses one export)."""
        if self.note_model_cache is not None:
            return self.note_model_cache.expanduser().resolve()
        from platformdirs import user_cache_path

        return user_cache_path("clinfuse") / "note-model"

    @property
    def prefect_template_dir(self) -> Path:
        """The machine-level Prefect database template (not under ``home``: see flows/prefect_template.py)."""
        if self.prefect_template is not None:
            return self.prefect_template.expanduser().resolve()
        from platformdirs import user_cache_path

        return user_cache_path("clinfuse") / "prefect-db"

    # Derived locations: spelled once, in ingestion.home_layout.HomeLayout.
    @property
    def layout(self) -> HomeLayout:
        """Every path under ``home``; hand this (or its paths) to the library."""
        return HomeLayout(self.home)

    @property
    def manifest_path(self) -> Path:
        return self.layout.manifest_path

    @property
    def arrays_dir(self) -> Path:
        return self.layout.arrays_dir

    @property
    def quarantine_dir(self) -> Path:
        return self.layout.quarantine_dir

    @property
    def embeddings_dir(self) -> Path:
        return self.layout.embeddings_dir

    @property
    def encoders_dir(self) -> Path:
        return self.layout.encoders_dir

    @property
    def models_dir(self) -> Path:
        return self.layout.models_dir

    @property
    def logs_dir(self) -> Path:
        return self.layout.logs_dir

    @property
    def predictions_dir(self) -> Path:
        return self.layout.predictions_dir

    @property
    def reports_dir(self) -> Path:
        return self.layout.reports_dir

    @property
    def outbox_dir(self) -> Path:
        """SR files, FHIR bundles and the send ledger of every scored batch."""
        return self.layout.outbox_dir

    @property
    def cohort_path(self) -> Path:
        """Pseudonymised cohort table written by ingest (patient_id is the pseudonym)."""
        return self.layout.cohort_path

    def reader_config(self) -> ReaderConfig:
        """The reader settings ingestion takes (they shape the arrays and are part of the cache key)."""
        return ReaderConfig(tuple(map(float, self.ct_spacing_mm)), tuple(map(int, self.ct_shape)),  # type: ignore[arg-type]
                            tuple(map(int, self.xray_shape)), float(self.eeg_sfreq), float(self.eeg_window_s),
                            float(self.eeg_line_freq))

    @property
    def pseudonym_secret_path(self) -> Path:
        """Where the generated site secret lives when none is configured."""
        return self.layout.pseudonym_secret_path

    @property
    def pseudonym_secret(self) -> SecretStr:
        """The configured secret, else the home's generated one (created, mode 0600, on first use).

        No built-in default: a published constant would let anyone recompute
        pseudonyms from MRNs. Changing it re-keys every pseudonym.
        """
        if self.pseudonym_secret_configured is not None:
            return self.pseudonym_secret_configured
        from ingestion.deid.pseudonym import load_or_create_secret

        return SecretStr(load_or_create_secret(self.pseudonym_secret_path))

    @property
    def pseudonym_secret_source(self) -> str:
        """Where the secret comes from, for ``clinfuse doctor`` (never the value)."""
        if self.pseudonym_secret_configured is not None:
            return "configured: CLINFUSE_PSEUDONYM_SECRET (environment or .env)"
        state = "exists" if self.pseudonym_secret_path.exists() else "not yet created; generated on first use"
        return f"generated: {self.pseudonym_secret_path} ({state})"

    @property
    def access_dir(self) -> Path:
        """Users, reviews and the hash-chained audit log (flows/access)."""
        return self.home / "access"

    @property
    def reid_map_path(self) -> Path:
        """The Fernet-encrypted pseudonym -> MRN map written at ingest (unreadable without the key)."""
        return self.home / "reidentify.fernet"

    def reid_key_bytes(self) -> bytes | None:
        """The re-identification key, or None (pseudonymous only). A key file inside the home is refused."""
        if self.reid_key is not None and self.reid_key.get_secret_value():
            return self.reid_key.get_secret_value().encode("ascii")
        if self.reid_key_file is None:
            return None
        path = self.reid_key_file.expanduser().resolve()
        if path.is_relative_to(self.home):
            raise ValueError(f"the re-identification key file {path} lies inside CLINFUSE_HOME {self.home}: "
                             "keep the key apart from the data it protects")
        return path.read_bytes().strip()

    def _outside_home(self, path: Path, what: str) -> Path:
        path = path.expanduser().resolve()
        if path.is_relative_to(self.home):
            raise ValueError(f"the {what} {path} lies inside CLINFUSE_HOME {self.home}: keep it apart from the "
                             "data it protects")
        return path

    def audit_key_bytes(self) -> bytes | None:
        """The current audit HMAC key, or None (unkeyed trail). A key file inside the home is refused."""
        if self.audit_key is not None and self.audit_key.get_secret_value().strip():
            return self.audit_key.get_secret_value().strip().encode("utf-8")
        if self.audit_key_file is None:
            return None
        return self._outside_home(self.audit_key_file, "audit key file").read_bytes().strip()

    def audit_retired_keys(self) -> tuple[bytes, ...]:
        """Keys of earlier rotations (verify only)."""
        return tuple(self._outside_home(p, "retired audit key file").read_bytes().strip()
                     for p in self.audit_retired_key_files)

    @property
    def audit_anchor_path(self) -> Path | None:
        """The anchor sink, refused inside the home (an anchor the home's writers can rewrite proves nothing)."""
        return self._outside_home(self.audit_anchor_file, "audit anchor file") if self.audit_anchor_file else None

    def private_paths(self):  # noqa: ANN201 - list[flows.access.permissions.Private]
        """Home, user store, pseudonym secret and configured key files: what must be private (0700/0600)."""
        from flows.access.permissions import home_private_paths

        keys = {"re-identification key": self.reid_key_file, "audit key": self.audit_key_file}
        keys.update({f"retired audit key {i + 1}": p for i, p in enumerate(self.audit_retired_key_files)})
        return home_private_paths(self.home, self.access_dir, self.pseudonym_secret_path, keys)

    def audit_trail(self):  # noqa: ANN201 - flows.access.audit.AuditLog (imported lazily)
        """The home's audit trail with its configured keys and anchor: the one way commands and pages open it."""
        from flows.access.audit import AuditLog
        from flows.access.audit_keys import AuditKeys
        from flows.access.reviews import audit_path

        return AuditLog(audit_path(self.access_dir), AuditKeys(self.audit_key_bytes(), self.audit_retired_keys()),
                        self.audit_anchor_path, self.audit_anchor_every, self.audit_anchor_syslog)

    def pacs_dir(self, url: str) -> Path:
        """Staging folder, cursor and temporary files of one PACS: ``<home>/pacs/<hash of its redacted URL>``."""
        from ingestion.pacs_cursor import pacs_key

        return self.home / "pacs" / pacs_key(url)

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.layout.mlflow_db}"

    @property
    def artifact_root(self) -> str:
        return self.mlflow_artifact_root or self.layout.mlflow_artifacts_dir.as_uri()

    def resolved_device(self) -> str:
        """CUDA when asked for or available under ``auto``; CPU otherwise."""
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def ensure_dirs(self) -> None:
        self.layout.ensure()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read once per process."""
    return Settings()
