"""`clinfuse train`: the train flow (fit, held-out evaluation, MLflow run, champion gate) with its options.

Every option is a parameter of ``flows.flows.train.train_flow`` with the same
name and default, so this command and the flow (on a server, from the
pipeline, from a benchmark) train the same model for the same inputs and seed.
The model is saved as ``<models_dir>/<model id>`` (a hash of its training
features and config); ``clinfuse evaluate --model-id`` scores it again.
"""

from __future__ import annotations

import typer

from flows.choices import DEFAULT_FUSION, DEFAULT_IMPUTE, DEFAULT_POOL, DEFAULT_STRATEGY, Fusion, Impute, Pool, Strategy
from flows.commands.console import make_console
from models import defaults as d
from models.held_out import HELD_OUT_FRACTION


def train(
    fusion: Fusion = typer.Option(DEFAULT_FUSION, "--fusion", help="Fusion model."),
    impute: Impute = typer.Option(DEFAULT_IMPUTE, "--impute", help="Missing modalities: auto (chosen by nested "
                                  "validation on the training patients) or one method."),
    epochs: int = typer.Option(d.EPOCHS, "--epochs", min=1, help="Maximum epochs (early stopping on validation AUROC)."),
    hidden: int = typer.Option(d.HIDDEN, "--hidden", min=2, help="Hidden width of fusion layers and classifier."),
    layers: int = typer.Option(d.LAYERS, "--layers", min=1, max=2, help="Hidden layers of the classifier head (1 or 2)."),
    pool: Pool = typer.Option(DEFAULT_POOL, "--pool", help="Cross-attention pooling."),
    lr: float = typer.Option(d.LR, "--lr", help="AdamW learning rate."),
    modality_dropout: float = typer.Option(d.MODALITY_DROPOUT, "--modality-dropout",
                                           help="Chance of hiding each modality per sample while training."),
    strategy: Strategy = typer.Option(DEFAULT_STRATEGY, "--strategy", help="frozen: fusion on the stored embeddings, encoders untouched. "
                                 "joint: CT/X-ray/EEG encoders trained from their seeded init together with a fusion head on "
                                 "the labels (small cohorts). finetune: the same from the `clinfuse pretrain` weights, encoders "
                                 "at a lower learning rate. joint/finetune save new encoder versions and re-encode the store."),
    joint_epochs: int = typer.Option(d.JOINT_EPOCHS, "--joint-epochs", min=1, help="joint/finetune: maximum epochs of encoder + fusion training."),
    encoder_lr: float = typer.Option(0.0, "--encoder-lr", min=0.0, help="joint/finetune: encoder learning rate; 0 = --lr (joint) or --lr/10 (finetune)."),
    held_out_fraction: float = typer.Option(HELD_OUT_FRACTION, "--held-out-fraction", help="Patients never trained on, for evaluation."),
    synthetic: int = typer.Option(0, "--synthetic", help="Train on a synthetic cohort of N patients instead of the home's embeddings."),
    min_gain: float = typer.Option(0.0, "--min-gain", help="Held-out AUROC the new model must beat the champion by to replace it."),
    force: bool = typer.Option(False, "--force", help="Run even when nothing changed since the last successful run."),
) -> None:
    """Train one fusion model, evaluate it on the held-out patients, log it to MLflow and run the champion gate.

    When the embeddings, labels, encoders, models, registry, options and settings are as the last successful
    run left them, it says so and exits without training again.
    """
    from flows.commands.encoders import install_all, site_weights_from, with_site_weights
    from flows.commands.flow_runner import prepare, run_flow
    from flows.commands.up_to_date import inputs_now, nothing_to_do, remember, train_check
    from flows.settings import get_settings

    fusion, impute, pool, strategy = fusion.value, impute.value, pool.value, strategy.value
    console = make_console()
    site = site_weights_from([], get_settings().encoder_weights)  # CLINFUSE_ENCODER_WEIGHTS, checked
    check = with_site_weights(train_check(get_settings(), dict(
        fusion=fusion, impute=impute, epochs=epochs, hidden=hidden, layers=layers, pool=pool, lr=lr,
        modality_dropout=modality_dropout, strategy=strategy, joint_epochs=joint_epochs, encoder_lr=encoder_lr,
        held_out_fraction=held_out_fraction, synthetic=synthetic, min_gain=min_gain)), site)
    if nothing_to_do(console, get_settings(), check, force):
        return
    before = inputs_now(check)
    install_all(console, site, get_settings().encoders_dir, get_settings().seed)
    prepare(console)
    from flows.flows.train import train_flow

    result = run_flow(console, f"train {fusion} + {impute} ({strategy})", lambda: train_flow(
        fusion=fusion, impute=impute, epochs=epochs, hidden=hidden, layers=layers, pool=pool, lr=lr,
        modality_dropout=modality_dropout, strategy=strategy, joint_epochs=joint_epochs, encoder_lr=encoder_lr,
        held_out_fraction=held_out_fraction, synthetic=synthetic, min_gain=min_gain), epochs=epochs)
    trained, m = result.trained, result.evaluation.metrics
    for note in trained.notes:
        console.print(f"[yellow]{note}[/yellow]")
    console.print(f"trained on {trained.n_train} patients ({trained.n_complete} with every modality); best epoch "
                  f"{trained.best_epoch} val AUROC {trained.best_val_auroc:.3f}; temperature {trained.temperature:.2f}")
    console.print(f"held-out ({result.evaluation.n_held_out} patients): AUROC {m['auroc']:.3f} "
                  f"[{m['auroc_low']:.3f}, {m['auroc_high']:.3f}]; report {result.evaluation.report}")
    console.print(f"model [bold]{trained.model_id}[/bold] is clinfuse v{result.version} ([bold]{result.alias}[/bold]: "
                  f"{result.reason})")
    remember(get_settings().home, check, before)
