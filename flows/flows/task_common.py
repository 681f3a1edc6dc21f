"""What every clinfuse task shares: the retry rule and the content hashes its cache keys are made of.

Kept apart from the model stages' tasks (``flows.flows.tasks``) so that a flow that only ingests imports
neither torch nor the models: `clinfuse ingest` starts seconds sooner.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from prefect.tasks import exponential_backoff

from ingestion.driver.hashing import sha256_file


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry unless the stage refused its input (bad config, a missing store, no champion) or the disk is full:
    that stays wrong until someone acts."""
    from ingestion.atomic_files import DiskFullError

    try:
        state.result()
    except (ValueError, FileNotFoundError, LookupError, DiskFullError):
        return False
    except Exception:  # noqa: BLE001 - anything else may be transient
        return True
    return True


RETRY = {"retries": 2, "retry_delay_seconds": exponential_backoff(backoff_factor=5), "retry_jitter_factor": 0.5,
         "retry_condition_fn": _transient}
"""I/O can fail transiently (network filesystems, a locked store): retry after ~5 s, then ~10 s."""


# -- content hashes used as cache keys ------------------------------------------------------
def tree_sha256(root: Path, exclude: tuple[Path, ...] = (), hashes: Path | None = None) -> str:
    """Hash of every file's relative path and content under ``root`` (sorted, so order-independent).

    With ``hashes`` (the home's source-hash cache), files unchanged since they were
    last hashed are not read: a warm run's cache key costs a directory walk.
    """
    from ingestion.driver.hashing import HashCache

    digest = hashlib.sha256()
    skip = {p.resolve() for p in exclude}
    cache = HashCache(hashes)
    for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
        if path.resolve() in skip:
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0" + cache.sha256(path).encode())
    cache.save()
    return digest.hexdigest()


def file_sha256(path: Path | None) -> str:
    """The content hash of ``path``, or "absent" (a cache key part for an optional file)."""
    return sha256_file(Path(path)) if path is not None and Path(path).is_file() else "absent"


def cache_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
