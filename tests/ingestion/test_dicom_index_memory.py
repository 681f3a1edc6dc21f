"""Indexing keeps a few strings per file, not each file's header: its memory does not grow with the cohort.

Before, every CT slice's pydicom Dataset was held until the walk ended: on a 1,000-patient phantom
(48,000 slices) the index alone peaked at 1,186 MiB, and the forked reader workers inherited it.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np

from ingestion.driver.dicom_index import index_dicom
from tests.ingestion.dicom_factory import write_ct_series


def _series(root: Path, n_series: int) -> None:
    for k in range(n_series):
        write_ct_series(root / f"s{k}", np.zeros((20, 4, 4), np.int16), rng_seed=k, patient_id=f"P{k}",
                        series_uid=f"1.2.3.{k}")


def _index_peak(root: Path) -> tuple[int, int]:
    tracemalloc.start()
    index = index_dicom(root)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, len(index.groups)


def _held_headers_peak(root: Path) -> int:
    """What holding every file's parsed header (the old index) costs for the files under ``root``."""
    import pydicom

    tracemalloc.start()
    held = [pydicom.dcmread(f, stop_before_pixels=True) for f in sorted(root.rglob("*.dcm"))]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert held
    return peak


def test_index_peak_memory_does_not_grow_with_the_number_of_slices(tmp_path: Path) -> None:
    _series(tmp_path / "warm", 1)
    _index_peak(tmp_path / "warm")  # first-call caches (pydicom's dictionaries, imports) are not the index's
    _series(tmp_path / "small", 2)
    _series(tmp_path / "large", 12)
    small, n_small = _index_peak(tmp_path / "small")
    large, n_large = _index_peak(tmp_path / "large")
    assert (n_small, n_large) == (2, 12)  # every series found and grouped
    # The 200 extra slices, measured against what holding their headers costs (the old behaviour) in this same
    # process, so the bound does not depend on pydicom's or Python's per-object sizes: well under a third.
    extra_held = _held_headers_peak(tmp_path / "large") - _held_headers_peak(tmp_path / "small")
    assert large - small < extra_held / 3, (small, large, extra_held)
