"""Image encoder ablation: each image encoder with and without its fixed radiomics block, phantom and real X-rays.

    .venv/bin/python benchmarks/bench_image_ablation.py [--patients 200] [--realdata ../shared/realdata] [--write]

For the CT and X-ray encoders (seeded networks, as ``clinfuse encode`` uses them
before any ``clinfuse pretrain``), a linear probe scores three column sets of the
stored embeddings: the network's dimensions alone, the fixed IBSI radiomics block
alone (``models/encoders/image_features.py``) and the whole embedding. The probe
is a standardised logistic regression (C = 0.05), 5-fold stratified
cross-validated AUROC (mean over folds; the spread is the folds' standard
deviation), on the patients who have the modality.

Phantom: ``ingestion.phantom.generate_cohort`` writes ``--patients`` patients as
files (DICOM, EDF of the shortest length, text; no missingness), ``ingestion.driver.ingest.ingest`` reads
them as a user would, ``models.features.assemble.encode_manifest`` encodes CT and
X-ray. Beside the probes: the phantom's exact single-modality oracle (AUROC of
``oracle_risk_ct`` / ``oracle_risk_xray`` from ``answers.parquet``), the ceiling
any CT-only or X-ray-only model can reach. Real data: the X-ray rows of
``cxr_covid/metadata.csv`` (PNG/JPEG + ``images.csv`` sidecar, as
``benchmarks/bench_realdata.py`` builds them), label COVID-19 vs other findings,
one row per patient (the latest film); skipped with a reason when absent.
``--write`` replaces "## Image encoder ablation" in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

HEADING = "## Image encoder ablation"
DEFAULT_REALDATA = REPO.parent / "shared" / "realdata"
IMAGE_MODALITIES = ("ct", "xray")
BENCH_SECRET = "clinfuse-bench-image-ablation"
PARTS = ("network only", "radiomics block only", "whole embedding")


def probe(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation over 5 stratified folds of a standardised logistic regression's AUROC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=5000))
    scores = cross_val_score(model, x, y, cv=StratifiedKFold(5, shuffle=True, random_state=seed), scoring="roc_auc")
    return float(scores.mean()), float(scores.std())


def encode_home(home: Path, manifest: pd.DataFrame, cohort: pd.DataFrame) -> tuple[dict, dict, float]:
    """Encode CT and X-ray with the seeded encoders; per modality (embeddings, labels) of patients who have it."""
    from models.encoders import build_encoder
    from models.features.assemble import encode_manifest, load_features
    from models.stores.embeddings import EmbeddingStore

    store = EmbeddingStore(home / "embeddings")
    present = [m for m in IMAGE_MODALITIES if (manifest["modality"] == m).any()]
    t0 = time.perf_counter()
    report = encode_manifest(manifest, home, store, present, device="cpu", batch_size=16)
    seconds = time.perf_counter() - t0
    features = load_features(manifest, cohort, store, report.encoder_keys, modalities=present)
    out, net_dims = {}, {}
    for j, m in enumerate(features.modalities):
        keep = features.mask[:, j] & ~np.isnan(features.labels.astype(float))
        out[m] = (features.embeddings[m][keep], features.labels[keep].astype(int),
                  [p for p, k in zip(features.patient_ids, keep) if k])
        net_dims[m] = build_encoder(m).net_dim
    return out, net_dims, seconds


def ablate(x: np.ndarray, y: np.ndarray, net_dim: int) -> dict[str, tuple[float, float]]:
    """Probe AUROC of the network part, the block and the whole embedding."""
    return {PARTS[0]: probe(x[:, :net_dim], y), PARTS[1]: probe(x[:, net_dim:], y), PARTS[2]: probe(x, y)}


def run_phantom(n: int, root: Path, seed: int) -> dict:
    """Generate, ingest, encode, probe; with the phantom's single-modality oracles."""
    from flows.settings import Settings
    from ingestion.deid.pseudonym import pseudonymise
    from ingestion.driver.ingest import ingest
    from ingestion.manifest import read_manifest
    from ingestion.phantom import generate_cohort
    from ingestion.phantom.eeg import MIN_SECONDS
    from sklearn.metrics import roc_auc_score

    src, home = root / "src", root / "home"
    settings = Settings(home=home, pseudonym_secret=BENCH_SECRET)
    settings.ensure_dirs()
    secret = settings.pseudonym_secret.get_secret_value()
    t0 = time.perf_counter()
    generate_cohort(src, n, seed=seed, missing_rate=0.0, eeg_seconds=(MIN_SECONDS, MIN_SECONDS), workers=2)
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    ingest(src, src / "cohort.csv", home, secret, settings.reader_config(), workers=2)
    t_ingest = time.perf_counter() - t0
    manifest, cohort = read_manifest(home / "manifest.parquet"), pd.read_parquet(home / "cohort.parquet")
    data, net_dims, t_encode = encode_home(home, manifest, cohort)
    answers = pd.read_parquet(src / "answers.parquet")
    answers.index = [pseudonymise(str(p), secret) for p in answers["patient_id"]]
    result = {"n_patients": n, "generate_s": t_gen, "ingest_s": t_ingest, "encode_s": t_encode, "modalities": {}}
    for m, (x, y, pids) in data.items():
        oracle = float(roc_auc_score(y, answers.loc[pids, f"oracle_risk_{m}"].to_numpy()))
        result["modalities"][m] = {"n": len(y), "dim": x.shape[1], "net_dim": net_dims[m],
                                   "probes": ablate(x, y, net_dims[m]), "oracle": oracle}
    return result


def run_cxr(realdata: Path, root: Path) -> dict:
    """The COVID chest X-rays through ingest and the X-ray encoder; probes per patient."""
    from benchmarks.bench_realdata import convert_cxr, cxr_table
    from flows.settings import Settings
    from ingestion.driver.ingest import ingest
    from ingestion.manifest import read_manifest

    table = cxr_table(realdata)
    cohort_csv = convert_cxr(realdata, table, root / "source")
    home = root / "home"
    settings = Settings(home=home, pseudonym_secret=BENCH_SECRET)
    settings.ensure_dirs()
    t0 = time.perf_counter()
    report = ingest(root / "source", cohort_csv, home, settings.pseudonym_secret.get_secret_value(),
                    settings.reader_config(), workers=2)
    t_ingest = time.perf_counter() - t0
    manifest, cohort = read_manifest(home / "manifest.parquet"), pd.read_parquet(home / "cohort.parquet")
    data, net_dims, t_encode = encode_home(home, manifest, cohort)
    x, y, _ = data["xray"]
    return {"n_images": len(table), "n_ok": int(report.counts.get("xray", {}).get("ok", 0)),
            "n_quarantined": report.n_quarantined, "n_patients": len(y), "n_positive": int(y.sum()),
            "ingest_s": t_ingest, "encode_s": t_encode, "dim": x.shape[1], "net_dim": net_dims["xray"],
            "probes": ablate(x, y, net_dims["xray"])}


def _cell(v: tuple[float, float]) -> str:
    return f"{v[0]:.3f} ± {v[1]:.3f}"


def markdown(phantom: dict, cxr: dict | None, skipped: str, load: tuple[float, float]) -> str:
    """The section body from the figures (nothing typed by hand)."""
    lines = [
        "Produced by `benchmarks/bench_image_ablation.py --write`. Each image encoder (seeded network, not "
        "pretrained: what `clinfuse encode` uses before `clinfuse pretrain`) with and without its fixed IBSI "
        "radiomics block (first-order statistics, GLCM texture and the intensity peak above the median, on the body "
        "/ soft-tissue / lung-field masks each image defines itself; no centre line, side or fixed HU offset). Probe: standardised logistic "
        "regression (C = 0.05) on the stored embeddings, 5-fold stratified cross-validated AUROC, mean ± SD over "
        "the folds.",
        "",
        f"### Phantom ({phantom['n_patients']} file-based patients, no missingness)",
        "",
        "| encoder | network only | radiomics block only | whole embedding | single-modality oracle |",
        "|---|---|---|---|---|",
    ]
    for m, r in phantom["modalities"].items():
        p = r["probes"]
        lines.append(f"| {m} ({r['net_dim']} + {r['dim'] - r['net_dim']} dims, {r['n']} patients) | "
                     f"{_cell(p[PARTS[0]])} | {_cell(p[PARTS[1]])} | {_cell(p[PARTS[2]])} | {r['oracle']:.3f} |")
    lines += [
        "",
        f"Time (2 shared CPU cores): generate {phantom['generate_s']:.0f} s, ingest {phantom['ingest_s']:.0f} s, "
        f"encode CT + X-ray {phantom['encode_s']:.0f} s.",
        "",
        "### Real chest X-rays (COVID-19 image data collection)",
        "",
    ]
    if cxr is None:
        lines.append(f"Not run: {skipped}.")
    else:
        p = cxr["probes"]
        lines += [
            f"{cxr['n_images']} X-ray images ({cxr['n_ok']} ingested, {cxr['n_quarantined']} quarantined), "
            f"{cxr['n_patients']} patients (latest film each), {cxr['n_positive']} COVID-19. Label: COVID-19 vs "
            "other pneumonias / no finding.",
            "",
            "| encoder | network only | radiomics block only | whole embedding |",
            "|---|---|---|---|",
            f"| xray ({cxr['net_dim']} + {cxr['dim'] - cxr['net_dim']} dims) | {_cell(p[PARTS[0]])} | "
            f"{_cell(p[PARTS[1]])} | {_cell(p[PARTS[2]])} |",
            "",
            f"Time: ingest {cxr['ingest_s']:.0f} s, encode {cxr['encode_s']:.0f} s. Few patients: the fold "
            "spread is wide; read it before the means. A patient with several films is represented by the one "
            "ingested last, which parallel ingest may order differently from run to run.",
        ]
    lines += ["", f"Load average (1 min) {load[0]:.1f} at the start, {load[1]:.1f} at the end. The phantom's size "
              "is chosen to run in about 10 minutes at a load of ~25 on the 2 shared cores (4 minutes at ~10)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=200, help="file-based phantom patients")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--realdata", type=Path, default=DEFAULT_REALDATA)
    ap.add_argument("--write", action="store_true", help="replace the section in docs/BENCHMARKS.md")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="clinfuse-ablation-") as tmp:
        phantom = run_phantom(args.patients, Path(tmp) / "phantom", args.seed)
        meta = args.realdata / "cxr_covid" / "metadata.csv"
        cxr, skipped = None, ""
        if meta.is_file():
            cxr = run_cxr(args.realdata, Path(tmp) / "cxr")
        else:
            skipped = f"no {meta} (the real-data folder is absent)"
    text = markdown(phantom, cxr, skipped, (load0, os.getloadavg()[0]))
    print(f"{HEADING}\n\n{text}\n")
    if args.write:
        from benchmarks.markdown_section import write_section

        write_section(HEADING, text)


if __name__ == "__main__":
    main()
