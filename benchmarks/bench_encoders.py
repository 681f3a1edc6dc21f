"""Encoder benchmark: throughput, store hit cost, peak memory, linear-probe AUROC before/after pretraining.

    .venv/bin/python benchmarks/bench_encoders.py --source phantom --patients 120 --epochs 6 --threads 1

``--source phantom`` generates a phantom cohort (``ingestion.phantom.generate_cohort``)
and ingests it with ``ingestion.ingest.ingest``; ``--source synthetic`` writes
normalised arrays directly (tests/models/synthetic_arrays.py). Prints Markdown rows for
docs/BENCHMARKS.md "## Encoders".
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingestion.modalities import MODALITIES  # noqa: E402
from models.embedding_store import EmbeddingStore  # noqa: E402
from models.features import encode_manifest, load_features  # noqa: E402
from models.pretrain import PretrainConfig, pretrain  # noqa: E402


def build_home(source: str, n: int, root: Path, seed: int) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    home = root / "home"
    if (home / "manifest.parquet").exists() and (home / "cohort.parquet").exists():  # reuse an ingested home
        from ingestion.manifest import read_manifest

        return home, read_manifest(home / "manifest.parquet"), pd.read_parquet(home / "cohort.parquet")
    if source == "synthetic":
        from tests.models.synthetic_arrays import write_synthetic_home

        manifest, cohort = write_synthetic_home(home, n_patients=n, seed=seed, strength=0.75)
        return home, manifest, cohort
    from flows.settings import Settings
    from ingestion.ingest import ingest
    from ingestion.manifest import read_manifest
    from ingestion.phantom import generate_cohort

    s = Settings(home=home)
    generate_cohort(root / "src", n, seed=seed, missing_rate=0.15, eeg_seconds=(30, 40), workers=2)
    ingest(root / "src", root / "src" / "cohort.csv", home, s.pseudonym_secret.get_secret_value(),
           config=s.reader_config(), workers=2)
    return home, read_manifest(home / "manifest.parquet"), pd.read_parquet(home / "cohort.parquet")


def probe_auroc(features, seed: int = 0) -> dict[str, float]:
    """5-fold CV AUROC of a standardised logistic regression per modality (present rows only)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = {}
    for j, m in enumerate(features.modalities):
        keep = features.mask[:, j] & ~np.isnan(features.labels.astype(float))
        x, y = features.embeddings[m][keep], features.labels[keep].astype(int)
        if x.shape[1] == 0 or min(np.bincount(y, minlength=2)) < 5:
            out[m] = float("nan")
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=5000))
        cv = StratifiedKFold(5, shuffle=True, random_state=seed)
        out[m] = float(cross_val_score(model, x, y, cv=cv, scoring="roc_auc").mean())
    return out


def encode_timed(manifest, home, store, encoders_dir, note_encoder):
    report = encode_manifest(manifest, home, store, MODALITIES, device="cpu", batch_size=16,
                             encoders_dir=encoders_dir, note_encoder=note_encoder)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", choices=("phantom", "synthetic"), default="phantom")
    ap.add_argument("--patients", type=int, default=120)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--note-encoder", choices=("minilm", "tfidf"), default="minilm")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--xray-lr-scale", type=float, default=None, help="PretrainConfig.lr_scale for xray")
    ap.add_argument("--fixed-features-out-of-loss", action="store_true",
                    help="keep the fixed feature blocks out of the contrastive heads (PretrainConfig)")
    ap.add_argument("--root", type=Path, default=None,
                    help="work folder; a previous run's ingested <root>/home is reused (encoders/store are reset)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    root = args.root or Path(tempfile.mkdtemp(prefix="bench_encoders_"))
    t0 = time.perf_counter()
    home, manifest, cohort = build_home(args.source, args.patients, root, args.seed)
    print(f"built {args.source} home with {len(cohort)} patients, {len(manifest)} manifest rows "
          f"in {time.perf_counter() - t0:.0f} s", flush=True)
    if args.note_encoder == "minilm":
        from models.encoders.note import _minilm

        _minilm("cpu")  # load once outside the timed region
    import shutil

    for old in ("encoders", "embeddings"):  # cold numbers need an empty store and seeded encoders
        shutil.rmtree(home / old, ignore_errors=True)
    encoders_dir, store = home / "encoders", EmbeddingStore(home / "embeddings")
    cold = encode_timed(manifest, home, store, encoders_dir, args.note_encoder)
    warm = encode_timed(manifest, home, store, encoders_dir, args.note_encoder)
    before = probe_auroc(load_features(manifest, cohort, store, cold.encoder_keys))
    t1 = time.perf_counter()
    pre = pretrain(manifest, home, encoders_dir, config=PretrainConfig(epochs=args.epochs, seed=args.seed,
                                         fixed_features_in_loss=not args.fixed_features_out_of_loss,
                                         **({} if args.xray_lr_scale is None
                                            else {"lr_scale": (("xray", args.xray_lr_scale),)})),
                   note_encoder=args.note_encoder,
                   progress=lambda e, n, loss: print(f"  epoch {e}/{n} loss {loss:.3f}", flush=True))
    t_pre = time.perf_counter() - t1
    after_report = encode_timed(manifest, home, store, encoders_dir, args.note_encoder)
    after = probe_auroc(load_features(manifest, cohort, store, after_report.encoder_keys))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    load = open("/proc/loadavg").read().split()[0]
    print(f"\nsource={args.source} patients={len(cohort)} threads={args.threads} load_avg={load} "
          f"pretrain {args.epochs} epochs {t_pre:.0f} s, peak RSS {peak_mb:.0f} MB, failures {len(cold.failures)}")
    print("| modality | encoder | dim | items | cold items/s | warm/cold time | warm incl. encoder setup "
          "| probe AUROC seeded | probe AUROC pretrained |")
    print("|---|---|---|---|---|---|---|---|---|")
    for m in MODALITIES:
        n_items = cold.encoded.get(m, 0)
        if not n_items:
            continue
        ips = n_items / max(cold.seconds[m], 1e-9)
        ratio = warm.seconds[m] / max(cold.seconds[m], 1e-9)
        with_setup = (warm.seconds[m] + warm.setup_seconds[m]) / max(cold.seconds[m] + cold.setup_seconds[m], 1e-9)
        print(f"| {m} | {cold.encoder_keys[m].name} | {cold.dims[m]} | {n_items} | {ips:.1f} | "
              f"{100 * ratio:.2f} % | {100 * with_setup:.1f} % | {before[m]:.3f} | {after[m]:.3f} |")


if __name__ == "__main__":
    main()
