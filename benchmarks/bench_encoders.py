"""Encoder benchmark: throughput, store hit cost, peak memory, linear-probe AUROC before/after pretraining.

    .venv/bin/python benchmarks/bench_encoders.py --source phantom --patients 120 --epochs 6 --threads 1

``--source phantom`` generates a phantom cohort (``ingestion.phantom.generate_cohort``)
and ingests it with ``ingestion.driver.ingest.ingest``; ``--source synthetic`` writes
normalised arrays directly (tests/models/synthetic_arrays.py). Prints the Markdown section;
``--write`` puts it in docs/BENCHMARKS.md ("## Encoders").
"""

from __future__ import annotations

import argparse
import os
import platform
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
from models.features.assemble import encode_manifest, load_features  # noqa: E402
from models.stores.embeddings import EmbeddingStore  # noqa: E402
from models.training.pretrain import PretrainConfig, pretrain  # noqa: E402


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
    from ingestion.driver.ingest import ingest
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


HEADING = "## Encoders"


def encode_timed(manifest, home, store, encoders_dir, note_encoder):
    """``encode_manifest`` on CPU, batch 16; the report carries this run's CPU seconds as ``cpu_seconds``."""
    c0 = time.process_time()
    report = encode_manifest(manifest, home, store, MODALITIES, device="cpu", batch_size=16,
                             encoders_dir=encoders_dir, note_encoder=note_encoder)
    report.cpu_seconds = time.process_time() - c0
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
    ap.add_argument("--write", action="store_true", help="write the section into docs/BENCHMARKS.md")
    args = ap.parse_args()
    load_start = os.getloadavg()[0]
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
    t1, c1 = time.perf_counter(), time.process_time()
    pre = pretrain(manifest, home, encoders_dir, config=PretrainConfig(epochs=args.epochs, seed=args.seed,
                                         fixed_features_in_loss=not args.fixed_features_out_of_loss,
                                         **({} if args.xray_lr_scale is None
                                            else {"lr_scale": (("xray", args.xray_lr_scale),)})),
                   note_encoder=args.note_encoder,
                   progress=lambda e, n, loss: print(f"  epoch {e}/{n} loss {loss:.3f}", flush=True))
    t_pre, c_pre = time.perf_counter() - t1, time.process_time() - c1
    after_report = encode_timed(manifest, home, store, encoders_dir, args.note_encoder)
    after = probe_auroc(load_features(manifest, cohort, store, after_report.encoder_keys))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    del pre
    text = section(args, cold, warm, before, after, (t_pre, c_pre), peak_mb, len(cohort),
                   (load_start, os.getloadavg()[0]))
    print(text)
    if args.write:
        from benchmarks.markdown_section import write_section

        write_section(HEADING, text)


def section(args, cold, warm, before, after, pre_s, peak_mb, n_patients, loads) -> str:  # noqa: ANN001
    """The "## Encoders" section: setup, per-modality table, targets met or missed."""
    flags = (f"--source {args.source} --patients {args.patients} --epochs {args.epochs} --threads {args.threads} "
             f"--note-encoder {args.note_encoder} --seed {args.seed}"
             + (f" --xray-lr-scale {args.xray_lr_scale}" if args.xray_lr_scale is not None else "")
             + (" --fixed-features-out-of-loss" if args.fixed_features_out_of_loss else ""))
    lines = [f"Produced by `benchmarks/bench_encoders.py {flags} --write` (CPU, batch 16, {args.threads} torch "
             f"thread(s)). Cohort: {n_patients}-patient "
             + ("phantom (`generate_cohort`, 15 % MCAR, 30–40 s EEG) ingested with `ingestion.driver.ingest.ingest`"
                if args.source == "phantom" else "synthetic set of normalised arrays (tests/models/synthetic_arrays.py)")
             + ". items/s = cold `encode_manifest` (empty store; encoder construction excluded). warm/cold = the "
             "second run, all store hits (target ≤ 2 %); \"incl. setup\" adds building the encoder (network init + "
             "version hash) to both. Probe = 5-fold CV AUROC of a standardised logistic regression (C = 0.05) per "
             "modality on present rows, seeded encoders (the named alternative) vs after `pretrain` "
             f"({args.epochs} epochs, InfoNCE across modalities + two-view term; {pre_s[0]:.0f} s wall, "
             f"{pre_s[1]:.0f} s CPU). Peak RSS {peak_mb:.0f} MiB. Machine: {platform.machine()}, {os.cpu_count()} "
             f"CPU cores shared with other jobs (load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the "
             "end): wall-time rates are inflated by the load; CPU seconds are the figure to compare. With this few "
             "patients a probe AUROC has a standard error of about ±0.05–0.07.", "",
             "| modality | encoder | dim | items | cold items/s (wall) | warm/cold | warm/cold incl. setup | target "
             "≤ 2 % | probe AUROC seeded | probe AUROC pretrained |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in MODALITIES:
        n_items = cold.encoded.get(m, 0)
        if not n_items:
            continue
        ratio = warm.seconds[m] / max(cold.seconds[m], 1e-9)
        with_setup = (warm.seconds[m] + warm.setup_seconds[m]) / max(cold.seconds[m] + cold.setup_seconds[m], 1e-9)
        frozen = " (frozen)" if m == "note" else ""
        lines.append(f"| {m} | {cold.encoder_keys[m].name} | {cold.dims[m]} | {n_items} | "
                     f"{n_items / max(cold.seconds[m], 1e-9):.1f} | {100 * ratio:.2f} % | {100 * with_setup:.1f} % | "
                     f"{'met' if ratio <= 0.02 else '**missed**'} | {before[m]:.3f} | {after[m]:.3f}{frozen} |")
    lines += ["", f"CPU seconds of the whole encode: cold {cold.cpu_seconds:.2f} s, warm {warm.cpu_seconds:.2f} s "
              f"({100 * warm.cpu_seconds / max(cold.cpu_seconds, 1e-9):.1f} % of cold; encoder construction "
              f"included). Failures: {len(cold.failures)}.", "",
              "The variant tables that stood here (before/after the CT/X-ray feature blocks, per-network learning "
              "rates, feature blocks out of the contrastive heads, 1 vs 2 threads) were assembled by hand from "
              "separate runs and were withdrawn; each variant can be re-measured with this script's flags "
              "(`--xray-lr-scale`, `--fixed-features-out-of-loss`, `--threads`, `--source synthetic`, "
              "`--note-encoder tfidf`)."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
