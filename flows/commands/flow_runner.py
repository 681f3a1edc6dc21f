"""How every stage command runs: its flow, in this process (or reporting to the configured Prefect server).

A command parses its options, calls :func:`run_flow` with the flow's own
parameters, and prints a summary of the typed result. While the flow runs,
the stages' progress (``flows.progress``) drives Rich bars; Prefect's own
console log lines stay at WARNING so the bars and the summary are what a
person reads (the lines still reach the Prefect API and UI); MLflow is as quiet.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

QUIET = {"PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING", "MLFLOW_LOGGING_LEVEL": "WARNING",
         "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
"""During a command, Prefect's console handler and MLflow's loggers show warnings and errors only, and MLflow
draws no download bars: the command's own Rich progress and summary are the output (a variable already set
in the environment wins, e.g. ``PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL=INFO`` to see every task run)."""


def prepare(console: Console) -> Any:
    """The settings, with the home's folders made and Prefect pointed at them; call before importing a flow."""
    from flows.prefect_env import apply_prefect_env
    from flows.settings import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    apply_prefect_env(settings)
    for key, value in QUIET.items():
        os.environ.setdefault(key, value)
    _start_temporary_server_early(settings.prefect_template_dir)
    return settings


_EARLY_SERVER: list[threading.Thread] = []


def _start_temporary_server_early(template_dir: Path) -> None:
    """Start Prefect's temporary API server now, in the background, when no Prefect server is configured.

    Why: the temporary server (a subprocess that migrates the home's SQLite database: 20-27 s in a new home on
    2 cores) used to start only when the first flow ran, after this process had imported torch, MONAI and the
    flows (about 11 s). Started here, both proceed at once; :func:`run_flow` waits for it before the flow. It is
    Prefect's own server object, so the flow's client finds it running; if the start fails here, the flow's
    client starts it again and reports its error. Once it answers, and before any flow writes to it, a new
    home's database becomes the machine's template (``flows.prefect_template``), if it has none yet.
    """
    if _EARLY_SERVER:
        return

    def start() -> None:
        from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

        if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
            return
        from prefect.server.api.server import SubprocessASGIServer

        try:
            SubprocessASGIServer().start()
        except Exception:  # noqa: BLE001 - the flow's own client retries the start and reports it
            return
        from flows.prefect_template import save_template

        save_template(Path(os.environ["PREFECT_HOME"]), template_dir)

    thread = threading.Thread(target=start, name="prefect-temporary-server", daemon=True)
    thread.start()
    _EARLY_SERVER.append(thread)


def _wait_for_temporary_server() -> None:
    """Let a start begun by :func:`prepare` finish, so the flow's client never sees a half-started server."""
    for thread in _EARLY_SERVER:
        thread.join()


class StageBars:
    """A progress sink: one Rich bar per stage (and per modality while encoding)."""

    def __init__(self, bar: Progress, epochs: int = 0) -> None:
        self.bar, self.epochs, self.tasks = bar, epochs, {}

    def _task(self, name: str, total: float | None) -> Any:
        if name not in self.tasks:
            self.tasks[name] = self.bar.add_task(name, total=total, note="")
        return self.tasks[name]

    def __call__(self, stage: str, args: tuple[Any, ...]) -> None:
        if stage == "encode":
            modality, done, total = args
            self.bar.update(self._task(f"encode {modality}", max(total, 1)), completed=done if total else 1,
                            total=max(total, 1))
        elif stage == "train":
            epoch, row = args
            what = f"train ({row.get('stage', 'fusion')})"
            self.bar.update(self._task(what, self.epochs or None), completed=epoch + 1,
                            note=f"val AUROC {row.get('val_auroc', float('nan')):.3f}")
        elif stage == "pretrain":
            epoch, total, loss = args
            self.bar.update(self._task("pretrain", total), completed=epoch, total=total, note=f"loss {loss:.3f}")
        else:
            self.bar.update(self._task(stage, None), note=str(args[0]) if args else "")


def run_flow(console: Console, title: str, call: Callable[[], Any], epochs: int = 0) -> Any:
    """Run ``call`` (a flow with its parameters bound) under Rich progress; exit 2 with the reason on bad input."""
    from flows import progress

    _wait_for_temporary_server()
    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[note]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        overall = bar.add_task(title, total=None, note="")
        try:
            with progress.reporting(StageBars(bar, epochs)):
                result = call()
        except (ValueError, FileNotFoundError, LookupError) as exc:
            bar.update(overall, note="[red]stopped")
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
        except ConnectionError as exc:  # a server (MLflow, the PACS) that did not answer, after the retries
            bar.update(overall, note="[red]server down")
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(1) from exc
        except Exception as exc:
            full = disk_full_message(exc)
            if full is None:
                raise
            bar.update(overall, note="[red]disk full")
            console.print(f"[red]{full}[/red]")
            raise typer.Exit(1) from exc
        bar.update(overall, total=1, completed=1, note="[green]done")
    return result


def disk_full_message(exc: BaseException) -> str | None:
    """What to tell a person when ``exc`` came from a full disk, else None.

    Either the failure says so itself (a ``DiskFullError`` naming the folder, or an
    ``OSError`` with ENOSPC), or it is a Prefect API error while the home's own disk
    is full (the embedded Prefect database lives there, so the flow's failure could
    not even be recorded).
    """
    from flows.settings import get_settings
    from ingestion.atomic_files import LOW_SPACE_BYTES, DiskFullError, free_bytes, is_disk_full

    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, DiskFullError):
            return str(current)
        current = current.__cause__ or current.__context__
    home = get_settings().home
    free = free_bytes(home)
    if is_disk_full(exc) or (free is not None and free < LOW_SPACE_BYTES):
        where = getattr(exc, "filename", None) or home
        left = f"{free / 1e6:.1f} MB free" if free is not None else "free space unknown"
        return (f"disk full: no space left under {where} ({left}; the run stopped with {type(exc).__name__}); "
                "free space there and re-run: what was finished is kept")
    return None


def auroc_text(metrics: dict[str, float]) -> str:
    """``0.812 [0.760, 0.861]``, or why there is no AUROC (a held-out set of one class ranks nothing)."""
    import math

    if not math.isfinite(metrics.get("auroc", float("nan"))):
        return "undefined (the held-out patients are all of one class)"
    return f"{metrics['auroc']:.3f} [{metrics['auroc_low']:.3f}, {metrics['auroc_high']:.3f}]"
