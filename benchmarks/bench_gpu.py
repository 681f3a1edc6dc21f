"""CPU against GPU on one machine: encode, pretrain, training runs and the CUDA-only paths.

    bash benchmarks/gpu_run.sh           # on a lent GPU machine: wheels, CUDA tests, then this with --json
    python benchmarks/bench_gpu.py --patients 40 --json gpu.json        # cuda, then cpu, same machine
    .venv/bin/python benchmarks/bench_gpu.py --write benchmarks/results/gpu-h200.json \
        --fill-from benchmarks/results/gpu-h200-first-call.json --old-paths benchmarks/results/gpu-h200-old-paths.log

A phantom cohort (``ingestion.phantom.generate_cohort``) is ingested with
``ingestion.driver.ingest.ingest`` into a temporary home; then, for each device in turn
(``--devices cpu,cuda``; cuda is left out, and the fact recorded, where torch sees no GPU),
the home's encoders, embeddings and models are wiped and the model stages run
exactly as the CLI runs them (``models.stages``): ``encode`` twice (the first warms
up CUDA and builds the int8 note model; the second is timed, per modality, items/s),
``pretrain`` (patients/s over the epochs after the first), ``train`` (frozen early
fusion on the home's embeddings, cross-attention on a synthetic cohort; patient-epochs/s),
a ``joint`` training run (encoders trained with the fusion) and ``evaluate`` (held-out
scoring, which runs the Shapley/uncertainty paths). These are the CUDA paths that never
ran before: autocast (encode_batch, pretraining), pinned host->GPU copies
(``models.encoders.base.to_device``) and the automatic batch size (``auto_batch_size``,
recorded per modality). A stage that raises is recorded with its traceback and the
benchmark goes on. ``--write`` puts the "## GPU" table into docs/BENCHMARKS.md from such a JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingestion.driver.worker import ReaderConfig  # noqa: E402
from ingestion.home_layout import HomeLayout  # noqa: E402
from ingestion.modalities import MODALITIES  # noqa: E402

READER = ReaderConfig((4.0, 2.0, 2.0), (32, 64, 64), (128, 128), 128.0, 4.0, 50.0)
"""flows.settings.Settings' defaults (this script avoids flows: the GPU machine lacks its dependencies)."""
SECRET = "bench-gpu-phantom"  # pseudonym secret of a synthetic cohort that exists only for this run
CHECKPOINT: list[Callable[[], None]] = []
"""Saves the results so far after every stage (a device call cut off at its time limit still returns them)."""


def build_home(root: Path, n: int, seed: int, workers: int) -> Path:
    """Generate and ingest a phantom cohort into ``root/home``, or reuse the one a previous run left there."""
    home = root / "home"
    if (home / "manifest.parquet").exists():
        print(f"reusing the ingested home {home}", flush=True)
        return home
    from ingestion.driver.ingest import ingest
    from ingestion.phantom import generate_cohort

    generate_cohort(root / "src", n, seed=seed, missing_rate=0.15, eeg_seconds=(30, 40), workers=workers)
    report = ingest(root / "src", root / "src" / "cohort.csv", home, SECRET, config=READER, workers=workers)
    print(f"ingested {n} patients ({report.n_quarantined} quarantined)", flush=True)
    return home


def describe_home(home: Path) -> dict[str, Any]:
    """Patients and usable items per modality of the ingested home."""
    import pandas as pd

    from ingestion.manifest import read_manifest
    from models.features.assemble import usable_items

    layout = HomeLayout.at(home)
    manifest = read_manifest(layout.manifest_path)
    items = {m: int(usable_items(manifest, [m])["content_sha256"].nunique()) for m in MODALITIES}
    return {"patients": len(pd.read_parquet(layout.cohort_path)), "usable_items": items}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    info = {"host_cpu": cpu, "cpu_count": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), cuda_version=torch.version.cuda,
                    gpu_memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    return info


def stage(out: dict, name: str, device: str, fn: Callable[[], Any]) -> Any:
    """Run one stage: wall seconds and peak GPU memory into ``out["stages"][name]``; errors recorded, not raised."""
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0, result = time.perf_counter(), None
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - the benchmark reports what broke and goes on
        out["errors"].append({"stage": name, "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        print(f"  {device} {name} FAILED: {type(exc).__name__}: {exc}", flush=True)
    if cuda:
        torch.cuda.synchronize()
    rec = {"seconds": time.perf_counter() - t0, "ok": result is not None}
    if cuda:
        rec["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    out["stages"][name] = rec
    print(f"  {device} {name}: {rec['seconds']:.1f} s", flush=True)
    for save in CHECKPOINT:
        save()
    return result


def stored_vectors(home: Path, keys: dict) -> dict[str, dict[str, np.ndarray]]:
    """Per modality, content hash -> stored embedding under the encode run's key."""
    from ingestion.manifest import read_manifest
    from models.stores.embeddings import EmbeddingKey, EmbeddingStore
    from models.features.assemble import usable_items

    layout = HomeLayout.at(home)
    manifest, store, out = read_manifest(layout.manifest_path), EmbeddingStore(layout.embeddings_dir), {}
    for m, key in keys.items():
        if key is None:
            continue
        shas = usable_items(manifest, [m])["content_sha256"].unique()
        hits = store.get_many([EmbeddingKey(s, *key) for s in shas])
        out[m] = {k.content_sha256: v for k, v in hits.items()}
    return out


def auto_batches(device: str, note_encoder: str) -> dict[str, int]:
    """The batch ``encode`` picks per modality when none is given (``batch_size=0``)."""
    from models.encoders import build_encoder
    from models.encoders.base import auto_batch_size

    return {m: auto_batch_size(build_encoder(m, device=device, note_encoder=note_encoder)) for m in MODALITIES}


def epoch_clock(marks: list) -> Callable[..., None]:
    """A progress callback that notes when each epoch ended (and what it reported)."""
    return lambda *args: marks.append((time.perf_counter(), args))


def per_second(marks: list, per_epoch: float) -> float | None:
    """``per_epoch`` units times epochs after the first, over their time (the first epoch warms up)."""
    if len(marks) < 2:
        return None
    return per_epoch * (len(marks) - 1) / max(marks[-1][0] - marks[0][0], 1e-9)


def run_encode(home: Path, device: str, args: argparse.Namespace, out: dict) -> dict | None:
    """Warm-up encode, wipe the store, timed encode; per-modality items/s into ``out["encode"]``."""
    from models.stages import EncodeConfig, encode

    cfg = EncodeConfig(home, device=device, batch_size=0, seed=args.seed, note_encoder=args.note_encoder)
    stage(out, "encode_first", device, lambda: encode(cfg))
    shutil.rmtree(HomeLayout.at(home).embeddings_dir, ignore_errors=True)
    res = stage(out, "encode", device, lambda: encode(cfg))
    if res is None:
        return None
    out["encode"] = {m: {"items": res.encoded[m], "seconds": res.seconds[m],
                         "items_per_s": res.encoded[m] / max(res.seconds[m], 1e-9), "encoder": res.encoder_keys[m][0]}
                     for m in MODALITIES if res.encoded.get(m) and res.encoder_keys.get(m)}
    try:
        out["auto_batch"] = auto_batches(device, args.note_encoder)
    except Exception as exc:  # noqa: BLE001
        out["errors"].append({"stage": "auto_batch", "error": f"{type(exc).__name__}: {exc}",
                              "traceback": traceback.format_exc()})
    return {m: k for m, k in res.encoder_keys.items()}


def run_training(home: Path, device: str, keys: dict, args: argparse.Namespace, out: dict) -> None:
    """Pretrain, frozen training (home and synthetic), joint training and evaluation on ``device``."""
    from models.training.pretrain import PretrainConfig
    from models.stages import (EvaluateConfig, PretrainStageConfig, TrainStageConfig, evaluate, pretrain, train)

    marks: list = []
    pre = stage(out, "pretrain", device, lambda: pretrain(PretrainStageConfig(
        home, PretrainConfig(epochs=args.pretrain_epochs, seed=args.seed), device, args.note_encoder),
        epoch_clock(marks)))
    if pre is not None:
        out["pretrain"] = {"patients": pre.n_patients, "epochs": len(marks),
                           "patients_per_s": per_second(marks, pre.n_patients)}
    encoder_keys = tuple((m, tuple(k) if k is not None else None) for m, k in keys.items())
    runs = {"train_early": dict(fusion="early"),
            "train_cross_attention_synthetic": dict(fusion="cross_attention", synthetic=args.synthetic),
            "train_joint": dict(fusion="early", strategy="joint", joint_epochs=args.joint_epochs)}
    models: dict[str, Any] = {}
    for name, kw in runs.items():
        marks = []
        cfg = TrainStageConfig(home, encoder_keys=encoder_keys, epochs=args.train_epochs, seed=args.seed,
                               device=device, **kw)
        res = stage(out, name, device, lambda: train(cfg, epoch_clock(marks)))
        if res is None:
            continue
        models[name] = res
        want = "joint" if kw.get("strategy") == "joint" else "fusion"  # joint runs end with a fusion fit
        loop = [m for m in marks if m[1][1].get("stage", "fusion") == want]
        out[name] = {"patients": res.n_train, "epochs": len(loop),
                     "patient_epochs_per_s": per_second(loop, res.n_train)}
    if "train_early" in models:
        ev = EvaluateConfig(home, models["train_early"].model_dir, encoder_keys=encoder_keys, n_boot=args.n_boot,
                            seed=args.seed, device=device)
        res = stage(out, "evaluate", device, lambda: evaluate(ev))
        if res is not None:
            out["evaluate"] = {"held_out": res.n_held_out, "auroc": res.metrics.get("auroc")}


def run_device(home: Path, out: dict, args: argparse.Namespace) -> dict:
    """Every stage on ``out["device"]``, from a home with no encoders, embeddings or models; the embeddings."""
    layout, device = HomeLayout.at(home), out["device"]
    for d in (layout.encoders_dir, layout.embeddings_dir, layout.models_dir, layout.reports_dir):
        shutil.rmtree(d, ignore_errors=True)
    print(f"{device}:", flush=True)
    keys = run_encode(home, device, args, out)
    vectors = stored_vectors(home, keys) if keys else {}
    if keys:
        run_training(home, device, keys, args, out)
    return vectors


def agreement(a: dict, b: dict) -> dict[str, dict[str, float]]:
    """Cosine similarity of the CPU and GPU embedding of each item, per modality (min and mean)."""
    out = {}
    for m in set(a) & set(b):
        shas = sorted(set(a[m]) & set(b[m]))
        if not shas:
            continue
        x, y = np.stack([a[m][s] for s in shas]), np.stack([b[m][s] for s in shas])
        cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1) + 1e-12)
        out[m] = {"items": len(shas), "min_cosine": float(cos.min()), "mean_cosine": float(cos.mean()),
                  "max_abs_diff": float(np.abs(x - y).max())}
    return out


def measure(args: argparse.Namespace, result: dict[str, Any]) -> dict:
    """Build the home, run every device, compare their embeddings; fills and returns ``result``."""
    devices = [d for d in args.devices.split(",") if d]
    result.update({"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "runs": {}})
    if "cuda" in devices and not torch.cuda.is_available():
        devices.remove("cuda")
        result["note"] = "torch sees no CUDA GPU here: CPU only"
        print(result["note"], flush=True)
    root = Path(args.root or tempfile.mkdtemp(prefix="bench_gpu_"))
    t0 = time.perf_counter()
    home = build_home(root, args.patients, args.seed, args.workers)
    result["build_seconds"] = time.perf_counter() - t0
    result["home"] = describe_home(home)
    print(f"home: {result['home']}", flush=True)
    vectors = {}
    for device in devices:
        result["runs"][device] = {"device": device, "stages": {}, "errors": []}
        vectors[device] = run_device(home, result["runs"][device], args)
    if "cpu" in vectors and "cuda" in vectors:
        result["cpu_vs_cuda_embeddings"] = agreement(vectors["cpu"], vectors["cuda"])
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=48)
    ap.add_argument("--devices", default="cuda,cpu", help="in this order (the GPU first: the paths under test)")
    ap.add_argument("--pretrain-epochs", type=int, default=4)
    ap.add_argument("--train-epochs", type=int, default=15)
    ap.add_argument("--joint-epochs", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=1500)
    ap.add_argument("--n-boot", type=int, default=50)
    ap.add_argument("--note-encoder", choices=("minilm", "tfidf"), default="minilm")
    ap.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--root", type=Path, default=None,
                    help="work folder (kept; an ingested <root>/home is reused); default a temporary one (removed)")
    ap.add_argument("--build-only", action="store_true", help="generate and ingest into --root, measure nothing")
    ap.add_argument("--remark", default="", help="a sentence about the run for the docs (e.g. how weights travelled)")
    ap.add_argument("--json", type=Path, default=None, help="save the raw results here")
    ap.add_argument("--write", type=Path, default=None,
                    help="measure nothing: put the '## GPU' section of docs/BENCHMARKS.md from this JSON")
    ap.add_argument("--old-paths", type=Path, default=None, help="with --write: gpu_run.sh's old_paths.log")
    ap.add_argument("--fill-from", type=Path, default=None,
                    help="with --write: an earlier JSON whose training rows stand in for ones that failed")
    args = ap.parse_args()
    if args.write:
        from benchmarks.gpu_report import render
        from benchmarks.markdown_section import write_section

        other = json.loads(args.fill_from.read_text()) if args.fill_from else None
        old = tuple(ln.strip() for ln in args.old_paths.read_text().splitlines() if ln.strip()) if args.old_paths else ()
        body = render(json.loads(args.write.read_text()), str(args.write), other, str(args.fill_from), old)
        write_section("## GPU", body)
        print(body)
        return
    if args.build_only:
        build_home(args.root, args.patients, args.seed, args.workers)
        return
    result: dict = {}
    if args.json:
        CHECKPOINT.append(lambda: args.json.write_text(json.dumps(result, indent=1, default=str)))
    result.update(measure(args, result))
    for save in CHECKPOINT:
        save()
    print(json.dumps({d: {k: v for k, v in r.items() if k != "errors"} for d, r in result["runs"].items()},
                     indent=1, default=str))
    for d, r in result["runs"].items():
        for e in r["errors"]:
            print(f"--- {d} {e['stage']}\n{e['traceback']}")


if __name__ == "__main__":
    main()
