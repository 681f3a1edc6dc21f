"""Regression: ingest workers forked from a process whose torch thread pool already ran.

GNU OpenMP is not fork-safe: before the fix, a CT series resampled in a forked
worker hung forever in `affine_grid` when the parent (a notebook, a test run,
the dashboard) had used multi-threaded torch before calling `ingest`.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    import numpy as np
    import torch
    sys.path.insert(0, {repo!r})
    from tests.ingestion.dicom_factory import write_ct_series
    from ingestion.driver.ingest import ingest
    from ingestion.driver.worker import ReaderConfig
    from ingestion.manifest import read_manifest

    torch.set_num_threads(2)
    grid = torch.nn.functional.affine_grid(torch.eye(3, 4)[None].repeat(4, 1, 1), (4, 1, 32, 64, 64),
                                           align_corners=False)
    x = torch.randn(256, 256)
    float((x @ x).sum() + grid.sum())      # the parent's OpenMP pool is now running

    src, home = Path({src!r}), Path({home!r})
    for i in range(3):
        vol = np.full((12, 24, 24), 40, np.int16)
        write_ct_series(src / f"s{{i}}", vol, patient_id=f"MRN9{{i}}", series_uid=f"1.2.3.{{i}}", rng_seed=i)
    report = ingest(src, None, home, "secret", config=ReaderConfig((4.0, 2.0, 2.0), (8, 16, 16), (32, 32), 64.0, 2.0, 50.0),
                    workers=2)
    df = read_manifest(home / "manifest.parquet")
    print("OK", sorted(df["status"]))
""")


def test_ingest_does_not_hang_after_parent_used_torch(tmp_path: Path) -> None:
    script = SCRIPT.format(repo=str(REPO), src=str(tmp_path / "src"), home=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "OK ['ok', 'ok', 'ok']" in out.stdout
