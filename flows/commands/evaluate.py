"""`clinfuse evaluate`: score a saved model on held-out patients, or run the whole comparative study.

Reports go to ``<reports_dir>/<run>/report.md`` with PNG plots. ``--study``
trains and compares every fusion type, unimodal baselines and the MCAR/MNAR
sweeps per imputation method (minutes on a CPU for a few hundred patients).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import typer


def evaluate(
    run_id: str = typer.Option("", "--run-id", help="Model folder under <home>/models to evaluate (default: the newest)."),
    study: bool = typer.Option(False, "--study/--no-study", help="Instead: train and compare all fusion types, unimodal baselines, missingness sweeps."),
    answers: Path | None = typer.Option(None, "--answers", help="Phantom answers.parquet (oracle risk, interaction flag); evaluation only."),
    synthetic: int = typer.Option(0, "--synthetic", help="Use a synthetic cohort of N patients (as `clinfuse train --synthetic N`)."),
    held_out_fraction: float = typer.Option(0.2, "--held-out-fraction", help="Same fraction as used by `clinfuse train`."),
    n_boot: int = typer.Option(500, "--n-boot", min=10, help="Bootstrap resamples for 95 % intervals."),
    epochs: int = typer.Option(150, "--epochs", min=1, help="Study only: maximum epochs per model."),
) -> None:
    """Write an evaluation report (metrics with bootstrap CIs, calibration, Shapley, sweeps) with PNG plots."""
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from flows.commands.train import held_out_split, load_home_features, read_answers
    from flows.settings import get_settings

    console = Console()
    settings = get_settings()
    settings.ensure_dirs()
    try:
        features, ans = load_home_features(settings, synthetic)
        if answers is not None:
            ans = read_answers(answers, settings.pseudonym_secret.get_secret_value())
    except (ValueError, FileNotFoundError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc

    if study:
        from dataclasses import replace

        from models.evaluation_study import StudyConfig, run_study, write_study_report

        config = StudyConfig(n_boot=n_boot, seed=settings.seed)
        config.train = replace(config.train, epochs=epochs, seed=settings.seed, device=settings.resolved_device())
        out = settings.reports_dir / datetime.now(timezone.utc).strftime("study-%Y%m%dT%H%M%S")
        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("study", total=None)
            result = run_study(features, ans, config, progress=lambda msg: bar.update(task, description=msg))
        path = write_study_report(result, out, title=f"clinfuse study ({len(features)} patients)")
        console.print(result.fusion_table.round(3).to_string(index=False))
        console.print(f"report: [bold]{path}[/bold]")
        return

    from models.evaluation import evaluate_model
    from models.trained_model import TrainedModel

    models_dir = settings.home / "models"
    runs = sorted((p for p in models_dir.glob("*") if (p / "model.json").exists()), key=lambda p: p.stat().st_mtime)
    if run_id:
        runs = [models_dir / run_id] if (models_dir / run_id / "model.json").exists() else []
    if not runs:
        console.print(f"[red]no trained model {'named ' + run_id + ' ' if run_id else ''}under {models_dir}: "
                      "run `clinfuse train` first[/red]")
        raise typer.Exit(2)
    model = TrainedModel.load(runs[-1], device=settings.resolved_device())
    _, held_out = held_out_split(features, held_out_fraction, settings.seed)
    with console.status(f"evaluating {runs[-1].name} on {len(held_out)} held-out patients…"):
        result = evaluate_model(model, held_out, settings.reports_dir / runs[-1].name, answers=ans, n_boot=n_boot,
                                seed=settings.seed)
    m = result["metrics"]
    console.print(f"AUROC {m['auroc']:.3f} [{m['auroc_low']:.3f}, {m['auroc_high']:.3f}]  "
                  f"AUPRC {m['auprc']:.3f}  Brier {m['brier']:.3f}  ECE {m['ece']:.3f}  "
                  f"abstain {m['abstain_rate']:.0%}")
    console.print(f"report: [bold]{result['report']}[/bold]")
