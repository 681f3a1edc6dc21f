"""`clinfuse train`: fit a fusion model with imputation on the home's features (or a synthetic cohort).

The model is saved under ``<home>/models/<run_id>/`` as a TrainedModel folder.
Patients held out by the same keyed hash as the train flow
(``flows.train_flow.held_out_mask``) are never trained on, so ``clinfuse
evaluate`` can score them afterwards. Tracking in MLflow is the train flow's
job (``clinfuse pipeline``); this command is the library call alone.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import typer

PSEUDONYM = re.compile(r"^P[0-9a-f]{12}$")


def load_home_features(settings, synthetic: int, missing_rate: float = 0.2):
    """(FeatureSet of labelled patients, answers table or None) from the store, or a synthetic cohort."""
    if synthetic > 0:
        from models.synthetic_features import synthetic_cohort

        cohort = synthetic_cohort(synthetic, missing_rate=missing_rate, seed=settings.seed)
        return cohort.features, cohort.answers
    from ingestion.cohort import load_cohort
    from ingestion.manifest import read_manifest
    from models.embedding_store import EmbeddingStore
    from models.features import load_features

    for path, what in ((settings.manifest_path, "clinfuse ingest"), (settings.cohort_path, "clinfuse ingest"),
                       (settings.embeddings_dir / "index.parquet", "clinfuse encode")):
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: run `{what}` first, or pass --synthetic N")
    manifest = read_manifest(settings.manifest_path)
    store = EmbeddingStore(settings.embeddings_dir)
    keys = latest_encoder_keys(manifest, store.index())
    features = load_features(manifest, load_cohort(settings.cohort_path), store, keys)
    from flows.train_flow import labelled

    return labelled(features), None


def latest_encoder_keys(manifest, index) -> dict[str, tuple[str, str, str] | None]:
    """Per modality, the (encoder, version, preprocessing) key written last for that modality's items."""
    from ingestion.modalities import MODALITIES

    keys: dict[str, tuple[str, str, str] | None] = {}
    for m in MODALITIES:
        shas = set(manifest.loc[manifest["modality"] == m, "content_sha256"])
        rows = index[index["content_sha256"].isin(shas)].sort_values("written_at")
        keys[m] = None if rows.empty else tuple(rows.iloc[-1][["encoder_name", "encoder_version",
                                                               "preprocessing_hash"]])
    return keys


def read_answers(path: Path, secret: str):
    """The phantom's answers table keyed by pseudonym (its ids are original MRNs; evaluation only)."""
    import pandas as pd

    from ingestion.pseudonym import pseudonymise

    answers = pd.read_parquet(path)
    answers["patient_id"] = [p if PSEUDONYM.match(str(p)) else pseudonymise(str(p), secret)
                             for p in answers["patient_id"]]
    return answers


def held_out_split(features, fraction: float, seed: int):
    """(train, held-out) FeatureSets by the train flow's keyed hash of the pseudonym."""
    from flows.train_flow import held_out_mask

    mask = held_out_mask(features.patient_ids, fraction, seed)
    return features.subset(~mask), features.subset(mask)


def train_with_encoders(settings, train_fs, config, joint_epochs: int, encoder_lr: float, console, progress):
    """joint/finetune: train encoders + fusion from the home's arrays (models.joint_training); the TrainedModel."""
    from ingestion.cohort import load_cohort
    from ingestion.manifest import read_manifest
    from models.embedding_store import EmbeddingStore
    from models.joint_training import JointConfig, train_joint

    manifest, store = read_manifest(settings.manifest_path), EmbeddingStore(settings.embeddings_dir)
    try:
        result = train_joint(train_fs, manifest, load_cohort(settings.cohort_path), settings.home, store,
                             settings.encoders_dir, config, latest_encoder_keys(manifest, store.index()),
                             JointConfig(epochs=joint_epochs, encoder_lr=encoder_lr or None), progress=progress,
                             quarantine_dir=settings.quarantine_dir)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    for line in result.skipped:
        console.print(f"[yellow]skipped[/yellow] {line}")
    for m, path in result.weights.items():
        console.print(f"{m}: started from {result.started_from.get(m) or 'seeded init'}; new weights [bold]{path.name}[/bold]")
    return result.model


def train(
    fusion: str = typer.Option("early", "--fusion", help="Fusion model: early, late, hybrid or cross_attention."),
    impute: str = typer.Option("auto", "--impute", help="Missing modalities: auto (chosen by nested validation on "
                               "the training patients), cross_profile, complete_case, mean or zero."),
    epochs: int = typer.Option(150, "--epochs", min=1, help="Maximum epochs (early stopping on validation AUROC)."),
    hidden: int = typer.Option(64, "--hidden", min=2, help="Hidden width of fusion layers and classifier."),
    layers: int = typer.Option(1, "--layers", min=1, max=2, help="Hidden layers of the classifier head (1 or 2)."),
    pool: str = typer.Option("concat", "--pool", help="Cross-attention pooling: concat, sum or max."),
    lr: float = typer.Option(3e-3, "--lr", help="AdamW learning rate."),
    modality_dropout: float = typer.Option(0.2, "--modality-dropout", help="Chance of hiding each modality per sample while training."),
    held_out_fraction: float = typer.Option(0.2, "--held-out-fraction", help="Patients kept out for `clinfuse evaluate`."),
    synthetic: int = typer.Option(0, "--synthetic", help="Train on a synthetic cohort of N patients instead of the home's embeddings."),
    run_id: str = typer.Option("", "--run-id", help="Name of the model folder under <home>/models (default: a timestamp)."),
    strategy: str = typer.Option("frozen", "--strategy", help="frozen: fusion on the stored embeddings, encoders untouched. "
                                 "joint: CT/X-ray/EEG encoders trained from their seeded init together with a fusion head on "
                                 "the labels (small cohorts). finetune: the same from the `clinfuse pretrain` weights, encoders "
                                 "at a lower learning rate. joint/finetune save new encoder versions and re-encode the store."),
    joint_epochs: int = typer.Option(20, "--joint-epochs", min=1, help="joint/finetune: maximum epochs of encoder + fusion training."),
    encoder_lr: float = typer.Option(0.0, "--encoder-lr", min=0.0, help="joint/finetune: encoder learning rate; 0 = --lr (joint) or --lr/10 (finetune)."),
) -> None:
    """Train one fusion model (frozen embeddings, imputation, modality dropout, temperature scaling) and save it."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from flows.settings import get_settings
    from models.train import TrainConfig
    from models.train import train as fit

    console = Console()
    settings = get_settings()
    config = TrainConfig(fusion=fusion, impute=impute, epochs=epochs, hidden=hidden, layers=layers, pool=pool,
                         lr=lr, modality_dropout=modality_dropout, seed=settings.seed,
                         device=settings.resolved_device(), strategy=strategy)
    try:
        config.validate()
        if strategy != "frozen" and synthetic:
            raise ValueError(f"--strategy {strategy} trains the encoders from ingested arrays; --synthetic has none")
        features, _ = load_home_features(settings, synthetic)
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    train_fs, held_out = held_out_split(features, held_out_fraction, settings.seed)
    run_id = run_id or datetime.now(timezone.utc).strftime(f"{fusion}-{impute}-%Y%m%dT%H%M%S")
    with Progress(TextColumn("[bold]training {task.fields[what]}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} epochs  val AUROC {task.fields[auc]}"),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("train", total=epochs, what=f"{fusion} + {impute}", auc="-")
        def on_epoch(epoch: int, row: dict) -> None:
            stage = row.get("stage", "fusion")
            bar.update(task, completed=epoch + 1, total=joint_epochs if stage == "joint" else epochs,
                       auc=f"{row['val_auroc']:.3f}", what=f"{stage if strategy != 'frozen' else ''} {fusion} + {impute}")

        if strategy == "frozen":
            model = fit(train_fs, config, progress=on_epoch)
        else:
            model = train_with_encoders(settings, train_fs, config, joint_epochs, encoder_lr, console, on_epoch)
        bar.update(task, total=len(model.history))
    out = model.save(settings.home / "models" / run_id)
    best = max(model.history, key=lambda r: r["val_auroc"]) if config.select_on == "auroc" else \
        min(model.history, key=lambda r: r["val_loss"])
    console.print(f"trained on {len(train_fs)} patients ({int(np.sum(train_fs.mask.all(1)))} with every modality); "
                  f"best epoch {best['epoch']} val AUROC {best['val_auroc']:.3f}; temperature "
                  f"{model.calibrator.temperature_:.2f}")
    console.print(f"saved [bold]{out}[/bold]; next: clinfuse evaluate --run-id {run_id}"
                  + (f" --synthetic {synthetic}" if synthetic else ""))
