"""`clinfuse pipeline` and `clinfuse predict`: run the flows in-process (or against the configured server)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from flows.choices import DEFAULT_FUSION, DEFAULT_IMPUTE, Fusion, Impute
from flows.commands.console import make_console
from models import defaults as d


def _check_source(source: Path, cohort: Path | None) -> None:
    if not source.is_dir():
        make_console().print(f"[red]source folder {source} does not exist; pass --source DIR (a cohort export)[/red]")
        raise typer.Exit(2)
    if cohort is not None and not cohort.is_file():
        make_console().print(f"[red]cohort table {cohort} does not exist; pass --cohort FILE.csv[/red]")
        raise typer.Exit(2)


def _bin(name: str) -> str:
    """This environment's console script ``name``, relative to the working directory when it lies under it.

    Why: the printed next steps must run as pasted, and a fresh clone has no
    activated virtualenv, so a bare ``mlflow`` or ``clinfuse`` is not on the PATH.
    """
    path = Path(sys.executable).parent / name
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _where_to_look(settings) -> list[str]:
    """Where the results are, as commands that run as printed (explicit home when it is not the default)."""
    home = "" if settings.home == (Path.cwd() / ".clinfuse").resolve() else f"CLINFUSE_HOME={settings.home} "
    mlflow = f"{_bin('mlflow')} ui --host {settings.bind_host} --backend-store-uri {settings.tracking_uri}"
    if not settings.tracking_uri.startswith("http"):
        mlflow += f" --default-artifact-root {settings.artifact_root}"
    return [
        f"Predictions: {settings.predictions_dir} (Parquet, one file per batch; "
        f"query with DuckDB or models.stores.predictions.read_latest_batch)",
        f"MLflow UI:   {mlflow}",
        f"Dashboard:   {home}{_bin('clinfuse')} dashboard",
    ]


def outbox_lines(outbox: dict | None, settings) -> list[str]:
    """What the batch left in the outbox and what was sent (counts only: no ids)."""
    if not outbox:
        return []
    written, sent = outbox["written"], outbox.get("sent")
    lines = [f"Outbox:      {settings.outbox_dir} ({written.sr_written} SR written, {written.sr_present} already "
             f"there; FHIR bundle {Path(written.bundle).name or 'none'})"]
    if written.failed:
        lines.append(f"Left out:    {len(written.failed)} result(s) of the outbox (reasons in the run log), e.g. "
                     f"{written.failed[0]}")
    if sent is not None:
        lines.append(f"Sent:        {sent.sent['sr']} SR, {sent.sent['fhir']} FHIR bundle(s); {sent.n_failed} failed"
                     + (" (kept in the outbox: clinfuse outbox status)" if sent.n_failed else ""))
    return lines


def pipeline(
    source: Path = typer.Option(..., "--source", help="Cohort export folder: DICOM, EEG, notes (e.g. from `clinfuse phantom`)."),
    cohort: Path | None = typer.Option(None, "--cohort", help="Cohort CSV with patient_id and label; default SOURCE/cohort.csv."),
    fusion: Fusion = typer.Option(DEFAULT_FUSION, "--fusion", help="Fusion model."),
    impute: Impute = typer.Option(DEFAULT_IMPUTE, "--impute", help="Missing modalities: auto (chosen by nested "
                                  "validation on the training patients) or one method."),
    epochs: int = typer.Option(d.EPOCHS, "--epochs", min=1, help="Maximum training epochs (early stopping applies)."),
    dask: bool = typer.Option(False, "--dask/--no-dask", help="Fan tasks out over Dask (settings.dask_address, or a local cluster)."),
    answers: Path | None = typer.Option(
        None, "--answers", help="Phantom answers.parquet (evaluation only): never ingested, used to report "
                                "AUROC against the Bayes-optimal oracle. Default SOURCE/answers.parquet if present."),
    force: bool = typer.Option(False, "--force", help="Run even when nothing changed since the last successful run."),
) -> None:
    """Ingest -> encode -> train (+ champion gate) -> evaluate -> predict, as Prefect flows.

    With no Prefect server configured the flows run in this process; a re-run on
    unchanged data is all cache hits, and when no file, option or setting changed
    since the last successful run it says so without starting the flows.
    """
    from flows.commands.encoders import install_all, site_weights_from, with_site_weights
    from flows.commands.flow_runner import auroc_text, prepare, run_flow
    from flows.commands.up_to_date import inputs_now, nothing_to_do, pipeline_check, remember
    from flows.settings import get_settings

    console = make_console()
    cohort = cohort or (source / "cohort.csv" if (source / "cohort.csv").is_file() else None)
    answers = answers or (source / "answers.parquet" if (source / "answers.parquet").is_file() else None)
    _check_source(source, cohort)
    site = site_weights_from([], get_settings().encoder_weights)  # CLINFUSE_ENCODER_WEIGHTS, checked
    check = with_site_weights(pipeline_check(get_settings(), source, cohort, {
        "source": str(source.resolve()), "cohort": str(cohort.resolve()) if cohort else None, "fusion": fusion.value,
        "impute": impute.value, "epochs": epochs, "dask": dask, "answers": str(answers.resolve()) if answers else None}),
        site)
    if nothing_to_do(console, get_settings(), check, force):
        return
    before = inputs_now(check)
    install_all(console, site, get_settings().encoders_dir, get_settings().seed)
    settings = prepare(console)
    from flows.flows.pipeline import pipeline_flow

    result = run_flow(console, "pipeline: ingest, encode, train, evaluate, predict", lambda: pipeline_flow(
        source=str(source.resolve()), cohort_csv=str(cohort.resolve()) if cohort else None, fusion=fusion.value,
        impute=impute.value, epochs=epochs, dask=dask, answers=str(answers.resolve()) if answers else None), epochs=epochs)
    ing, train, m = result.ingest, result.train, result.evaluation.metrics
    console.print(f"[green]Done.[/green] Ingest: {ing.new} new, {ing.skipped} unchanged, {ing.n_quarantined} "
                  f"quarantined. Model {train.trained.model_id} is clinfuse v{train.version} "
                  f"[bold]{train.alias}[/bold] ({train.reason}).")
    ratio = m.get("auroc_over_oracle", float("nan"))
    oracle = f", {ratio:.0%} of the oracle's" if ratio == ratio else ""  # NaN: no AUROC to compare
    console.print(f"Champion on {result.evaluation.n_held_out} held-out patients: AUROC {auroc_text(m)}"
                  f"{oracle}; report {result.evaluation.report}")
    console.print(f"Latest batch: {result.predict['path']} ({result.predict['n']} patients)")
    for line in outbox_lines(result.predict.get("outbox"), settings):
        console.print(line, soft_wrap=True)
    for line in _where_to_look(settings):
        console.print(line, soft_wrap=True)  # whole lines, so the commands can be copied
    remember(settings.home, check, before)


def predict(
    source: Path = typer.Option(..., "--source", help="Folder with the new patients' files (DICOM, EEG, notes)."),
    cohort: Path | None = typer.Option(None, "--cohort", help="Cohort CSV of the patients to score; default SOURCE/cohort.csv."),
    n_mc: int = typer.Option(30, "--n-mc", min=0, help="Monte-Carlo draws for the interval of imputed patients."),
) -> None:
    """Score a cohort with models:/clinfuse@champion (ingest + encode new patients first) and store the batch."""
    from flows.commands.flow_runner import prepare, run_flow

    console = make_console()
    _check_source(source, cohort)
    settings = prepare(console)
    from flows.flows.predict import predict_flow

    result = run_flow(console, "predict: ingest, encode, score", lambda: predict_flow(
        source=str(source.resolve()), cohort_csv=str(cohort.resolve()) if cohort else None, n_mc=n_mc))
    console.print(f"[green]Stored[/green] {result['n']} predictions of clinfuse v{result['model_version']} "
                  f"in {result['path']} ({result['abstained']} abstained).")
    for line in outbox_lines(result.get("outbox"), settings):
        console.print(line, soft_wrap=True)
    console.print(_where_to_look(settings)[-1], soft_wrap=True)
