"""Which drawing renders the phantom's images, and the record of it in the cohort's answers table.

``standard`` is the original drawing (centred, upright head; one lesion; a
mirror-symmetric chest): many tests and benchmarks rely on its exact draws,
so it stays the default. ``varied`` (:mod:`ingestion.phantom.ct_varied`,
:mod:`ingestion.phantom.xray_varied`) poses the head, layers its tissues, draws
0-2 lesions and an asymmetric chest with devices. Both render the same latents,
so a cohort's labels and oracle columns are the same under either for a seed.

The drawing and its versions are stored in ``answers.parquet``'s schema metadata
(key ``clinfuse.phantom``), never in the files a reader sees.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pyarrow.parquet as pq

from ingestion.phantom.ct_varied import VARIED_CT_VERSION
from ingestion.phantom.xray_varied import VARIED_XRAY_VERSION

Anatomy = Literal["standard", "varied"]
ANATOMIES: tuple[str, ...] = ("standard", "varied")
DRAWING_VERSIONS: dict[str, dict[str, str]] = {
    "standard": {"ct": "head-ct-standard/1", "xray": "chest-xr-standard/1"},
    "varied": {"ct": VARIED_CT_VERSION, "xray": VARIED_XRAY_VERSION},
}
"""Per anatomy, the version of each image drawing (EEG and notes have one drawing)."""
METADATA_KEY = b"clinfuse.phantom"


def check_anatomy(anatomy: str) -> None:
    """Raise ``ValueError`` for a name that is not a drawing."""
    if anatomy not in ANATOMIES:
        raise ValueError(f"anatomy must be one of {', '.join(ANATOMIES)}, got {anatomy!r}")


def anatomy_metadata(anatomy: str) -> dict[bytes, bytes]:
    """Schema metadata for answers.parquet: the drawing and its versions, as JSON."""
    check_anatomy(anatomy)
    return {METADATA_KEY: json.dumps({"anatomy": anatomy, "drawings": DRAWING_VERSIONS[anatomy]},
                                     sort_keys=True).encode()}


def read_anatomy(answers_parquet: Path) -> dict:
    """The drawing record of a cohort (``{"anatomy": ..., "drawings": {...}}``); cohorts written before the
    record existed were all drawn by the standard drawing."""
    meta = pq.read_schema(answers_parquet).metadata or {}
    if METADATA_KEY not in meta:
        return {"anatomy": "standard", "drawings": DRAWING_VERSIONS["standard"]}
    return json.loads(meta[METADATA_KEY])
