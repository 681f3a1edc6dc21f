"""Where everything lives under a clinfuse home: the one place a path below ``CLINFUSE_HOME`` is spelled.

``flows.settings.Settings`` builds one :class:`HomeLayout` from ``CLINFUSE_HOME``
and passes it (or the paths it names) to the library, so the CLI, the flows, the
dashboard and the benchmarks all read and write the same files. Library code in
``ingestion/`` and ``models/`` that is given a home folder asks a layout for its
sub-paths instead of joining names itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class HomeLayout:
    """The folders and files of one home, derived from its root."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> "HomeLayout":
        """The layout of ``root`` (expanded and made absolute, so two spellings are one home)."""
        return cls(Path(root).expanduser().resolve())

    # -- ingestion ----------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.parquet"

    @property
    def cohort_path(self) -> Path:
        """Pseudonymised cohort table written by ingest (patient_id is the pseudonym)."""
        return self.root / "cohort.parquet"

    @property
    def arrays_dir(self) -> Path:
        return self.root / "arrays"

    @property
    def quarantine_dir(self) -> Path:
        return self.root / "quarantine"

    # -- models -------------------------------------------------------------------------------
    @property
    def embeddings_dir(self) -> Path:
        return self.root / "embeddings"

    @property
    def encoders_dir(self) -> Path:
        return self.root / "encoders"

    @property
    def models_dir(self) -> Path:
        """Trained model folders, one per model id (a hash of its features and config)."""
        return self.root / "models"

    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def outbox_dir(self) -> Path:
        """Results leaving the platform: DICOM SRs (``sr/``), FHIR bundles (``fhir/``) and the send ledger."""
        return self.root / "outbox"

    # -- orchestration and tracking ---------------------------------------------------------
    @property
    def logs_dir(self) -> Path:
        """Logs of child processes the dashboard starts (batch predictions) and of servers."""
        return self.root / "logs"

    @property
    def prefect_dir(self) -> Path:
        """Prefect's home for in-process runs: database, result storage, cache records."""
        return self.root / "prefect"

    @property
    def mlflow_db(self) -> Path:
        return self.root / "mlflow.db"

    @property
    def mlflow_artifacts_dir(self) -> Path:
        return self.root / "mlartifacts"

    @property
    def pseudonym_secret_path(self) -> Path:
        """Where the generated site secret lives when none is configured."""
        return self.root / "pseudonym_secret"

    def ensure_root(self) -> "HomeLayout":
        """Create the home itself mode 0700 (only its owner may enter it); an existing home is left as is.

        The home holds the user store, the pseudonym secret and pseudonymous data, so no other
        account on the machine should list or read it. Missing parents get the default mode.
        """
        self.root.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.root.mkdir(mode=0o700)
            self.root.chmod(0o700)  # mkdir's mode is filtered by the umask; 0700 is what is meant
        except FileExistsError:
            pass
        return self

    def ensure(self) -> "HomeLayout":
        """Create the home (0700, see :meth:`ensure_root`) and its folders (idempotent); returns self."""
        self.ensure_root()
        for path in (self.arrays_dir, self.quarantine_dir, self.embeddings_dir, self.encoders_dir,
                     self.models_dir, self.predictions_dir, self.reports_dir, self.logs_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self
