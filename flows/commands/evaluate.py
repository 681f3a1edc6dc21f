"""`clinfuse evaluate`: the evaluate flow on a model (the champion, or one by id), or the comparative study.

Reports go to ``<reports_dir>/<held-out hash>-<model id>/report.md`` with PNG
plots. ``--study`` trains and compares every fusion type, unimodal baselines
and the MCAR/MNAR sweeps per imputation method (minutes on a CPU for a few
hundred patients).
"""

from __future__ import annotations

from pathlib import Path

import typer

from flows.commands.console import make_console
from models import defaults as d
from models.held_out import HELD_OUT_FRACTION


def evaluate(
    model_id: str = typer.Option("", "--model-id", help="Model folder under <home>/models (printed by `clinfuse train`); "
                                 "default: the registry's champion."),
    study: bool = typer.Option(False, "--study/--no-study", help="Instead: train and compare all fusion types, unimodal baselines, missingness sweeps."),
    answers: Path | None = typer.Option(None, "--answers", help="Phantom answers.parquet (oracle risk, interaction flag); evaluation only."),
    synthetic: int = typer.Option(0, "--synthetic", help="Use a synthetic cohort of N patients (as `clinfuse train --synthetic N`)."),
    held_out_fraction: float = typer.Option(HELD_OUT_FRACTION, "--held-out-fraction", help="Same fraction as used by `clinfuse train`."),
    n_boot: int = typer.Option(d.N_BOOT, "--n-boot", min=10, help="Bootstrap resamples for 95 % intervals."),
    epochs: int = typer.Option(d.EPOCHS, "--epochs", min=1, help="Study only: maximum epochs per model."),
) -> None:
    """Write an evaluation report (metrics with bootstrap CIs, calibration, Shapley, sweeps) with PNG plots."""
    from flows.commands.flow_runner import auroc_text, prepare, run_flow

    console = make_console()
    prepare(console)
    answers_path = str(answers.resolve()) if answers else None
    if study:
        from flows.flows.study import study_flow

        outcome = run_flow(console, "study", lambda: study_flow(synthetic=synthetic, answers=answers_path,
                                                                epochs=epochs, n_boot=n_boot))
        console.print(outcome.fusion_table.round(3).to_string(index=False))
        console.print(f"report: [bold]{outcome.report}[/bold]")
        return
    from flows.flows.evaluate import evaluate_flow

    result = run_flow(console, f"evaluate {model_id or 'champion'}", lambda: evaluate_flow(
        model_id=model_id or None, held_out_fraction=held_out_fraction, answers=answers_path, n_boot=n_boot,
        synthetic=synthetic))
    m = result.metrics
    console.print(f"{result.n_held_out} held-out patients: AUROC {auroc_text(m)}  AUPRC {m['auprc']:.3f}  Brier {m['brier']:.3f}  ECE {m['ece']:.3f}  "
                  f"abstain {m['abstain_rate']:.0%}")
    console.print(f"report: [bold]{result.report}[/bold]")
