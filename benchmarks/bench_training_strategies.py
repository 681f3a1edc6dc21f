"""Frozen vs joint vs finetune training on an ingested home: held-out AUROC and wall time.

Usage: ``python benchmarks/bench_training_strategies.py --home COPY_OF_HOME [--answers answers.parquet]``.
The home is modified (new encoder weights, new embeddings): pass a copy. Steps, in an order
that keeps the strategies independent: frozen on the home's seeded-init embeddings;
``pretrain`` then frozen on the pretrained embeddings; finetune from the pretrained
weights; joint from the seeded init. The held-out patients are the train flow's keyed
hash (the study of ``models.study_definition``), never trained on by any step (pretraining
included: it only sees the training patients' items).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from ingestion.cohort import load_cohort
from ingestion.manifest import read_manifest
from models.features.assemble import encode_manifest, load_features
from models.evaluation.answers import read_answers
from models.held_out import labelled
from models.study_definition import study_for_features
from models.stages import EncodeConfig, encode
from models.stores.embeddings import EmbeddingStore
from models.training.joint import JointConfig, train_joint
from models.training.pretrain import PretrainConfig, pretrain
from models.training.train import TrainConfig, train


def held_out_auroc(model, features, held_ids) -> float:
    pos = {p: i for i, p in enumerate(features.patient_ids)}
    fs = features.subset(np.array([pos[p] for p in held_ids], int))
    return float(roc_auc_score(fs.labels, model.predict_risk(fs)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--answers", type=Path)
    ap.add_argument("--secret", default=None, help="pseudonym secret; default: the home's (configured or generated)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--joint-epochs", type=int, default=20)
    ap.add_argument("--pretrain-epochs", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(1)
    home, enc_dir = args.home, args.home / "encoders"
    manifest, cohort = read_manifest(home / "manifest.parquet"), load_cohort(home / "cohort.parquet")
    store = EmbeddingStore(home / "embeddings")
    keys = dict(encode(EncodeConfig(home=home, seed=args.seed)).encoder_keys)  # store hits: the current keys
    features = labelled(load_features(manifest, cohort, store, keys))
    study = study_for_features(features, held_out_fraction=0.2, seed=args.seed)  # the one split
    train_fs, held = study.training_features(features), study.held_out_features(features)
    held_ids = held.patient_ids
    rows = []
    if args.answers:
        from flows.settings import Settings

        secret = args.secret or Settings(home=home).pseudonym_secret.get_secret_value()
        ans = read_answers(args.answers, secret).set_index("patient_id").loc[list(held_ids)]
        rows.append({"strategy": "oracle (Bayes risk)", "auroc": float(roc_auc_score(held.labels, ans["oracle_risk"])),
                     "seconds": 0.0})
    config = TrainConfig(seed=args.seed)

    t = time.perf_counter()
    model = train(train_fs, config)
    rows.append({"strategy": "frozen (seeded-init encoders)", "auroc": held_out_auroc(model, features, held_ids),
                 "seconds": time.perf_counter() - t})

    t = time.perf_counter()
    train_items = manifest[manifest["patient_id"].isin(set(train_fs.patient_ids))]
    pretrain(train_items, home, enc_dir, config=PretrainConfig(epochs=args.pretrain_epochs, seed=args.seed))
    t_pre = time.perf_counter() - t
    rep = encode_manifest(manifest, home, store, modalities=("ct", "xray", "eeg"), encoders_dir=enc_dir)
    pre_keys = {**keys, **rep.encoder_keys}
    pre_fs = labelled(load_features(manifest, cohort, store, pre_keys))
    pre_train = study.training_features(pre_fs)
    model = train(pre_train, config)
    rows.append({"strategy": "pretrain + frozen", "auroc": held_out_auroc(model, pre_fs, held_ids),
                 "seconds": time.perf_counter() - t, "pretrain_seconds": t_pre})

    for strategy in ("finetune", "joint"):
        t = time.perf_counter()
        res = train_joint(train_fs, manifest, cohort, home, store, enc_dir, TrainConfig(seed=args.seed, strategy=strategy),
                          keys, JointConfig(epochs=args.joint_epochs))
        rows.append({"strategy": strategy + (" (after pretrain)" if strategy == "finetune" else " (from seeded init)"),
                     "auroc": held_out_auroc(res.model, res.features, held_ids), "seconds": time.perf_counter() - t,
                     "joint_epochs": len(res.history),
                     "best_joint_val_auroc": max(r["val_auroc"] for r in res.history),
                     "started_from": {m: p.name if p else None for m, p in res.started_from.items()}})
    print(json.dumps({"n_train": len(train_fs), "n_held_out": len(held_ids), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
