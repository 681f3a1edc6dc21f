"""An ingested and encoded home of the session's phantom, built once and copied into the tests that start from one.

Why: the predict tests (tests/flows/test_pipeline_flow.py, test_predict_pinned.py,
tests/outbox/test_predict_outbox.py) each ingested and encoded the same 16-patient phantom
before training: three CT body fits and three encodes of every item per session for work
none of them checks. They now start from a copy of this home and still call the ingest flow
themselves, which finds every item already in the manifest (idempotent, as a re-run is), and
the train flow's encode finds every embedding in the store.

Copied: only the stage outputs whose paths are relative to the home (manifest ``array_uri``,
the store's shard names). Not copied: Prefect's database and cache records, MLflow's store,
models, predictions, the command state: each test makes its own, as on a fresh home.
"""

from __future__ import annotations

import shutil
from pathlib import Path

COPIED = ("arrays", "embeddings", "encoders", "quarantine", "manifest.parquet", "cohort.parquet",
          "source_hashes.json", "pseudonym_secret")


def build_ingested_home(home: Path, source: Path) -> Path:
    """Ingest ``source`` (with its cohort.csv) into ``home`` and encode every usable item, as the flows do."""
    from flows.flows.encode import encode_flow
    from flows.flows.ingest import ingest_flow
    from flows.prefect_env import prefect_settings, settings_for

    settings = settings_for(str(home))
    with prefect_settings(settings):
        report = ingest_flow(source=str(source), cohort_csv=str(source / "cohort.csv"), home=str(home))
        assert report.new > 0, report  # (the folder's answers.parquet is quarantined, as in the tests)
        encode_flow(home=str(home))
    return home


def copy_ingested(built: Path, home: Path) -> Path:
    """Copy the stage outputs of ``built`` (see :data:`COPIED`) into ``home`` (created); returns ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        src = built / name
        if src.is_dir():
            shutil.copytree(src, home / name, dirs_exist_ok=True)
        elif src.is_file():
            shutil.copy2(src, home / name)
    return home
