"""The `clinfuse` command line: one Typer app; each command lives in `flows/commands/<name>.py`.

Commands import their heavy dependencies inside the function so that
`clinfuse --help` stays fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="clinfuse",
    help=(
        "Multimodal clinical ML: generate or read a cohort of CT/X-ray DICOM, EEG and notes, "
        "ingest and de-identify it, encode each modality, train fusion models that cope with "
        "missing modalities, register them in MLflow, predict in batch and browse the results."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)



def _version(value: bool) -> None:
    """``--version``: the installed distribution's version (package metadata), then exit."""
    if value:
        from importlib.metadata import version

        typer.echo(f"clinfuse {version('clinfuse')}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the installed clinfuse version and exit."),
) -> None:
    """Multimodal clinical ML platform. Run `clinfuse COMMAND --help` for a command's options."""


# --- command registrations (one line pair per command module) ---
from flows.commands.doctor import doctor  # noqa: E402

app.command("doctor")(doctor)
from flows.commands.dashboard import dashboard  # noqa: E402

app.command("dashboard")(dashboard)
from flows.commands.ingest import ingest  # noqa: E402

app.command("ingest")(ingest)
from flows.commands.phantom import phantom  # noqa: E402

app.command("phantom")(phantom)
from flows.choices import ALIAS_CONTEXT  # noqa: E402
from flows.commands.pipeline import pipeline, predict  # noqa: E402

app.command("pipeline", context_settings=ALIAS_CONTEXT)(pipeline); app.command("predict")(predict)
from flows.commands.serve import deploy, serve  # noqa: E402

app.command("serve")(serve); app.command("deploy")(deploy)
from flows.commands.encode import encode  # noqa: E402

app.command("encode")(encode)
from flows.commands.pretrain import pretrain  # noqa: E402

app.command("pretrain")(pretrain)
from flows.commands.train import train  # noqa: E402

app.command("train", context_settings=ALIAS_CONTEXT)(train)
from flows.commands.evaluate import evaluate  # noqa: E402

app.command("evaluate")(evaluate)
from flows.commands.audit import audit_app  # noqa: E402
from flows.commands.users import users_app  # noqa: E402

app.add_typer(users_app, name="users"); app.add_typer(audit_app, name="audit")
from flows.commands.outbox import outbox_app  # noqa: E402

app.add_typer(outbox_app, name="outbox")
from flows.commands.encoders import encoders_app  # noqa: E402

app.add_typer(encoders_app, name="encoders")
# --- end of command registrations ---


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
