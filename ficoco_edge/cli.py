"""`ficoco-edge` command line: the app, its error handling, and the commands from `ficoco_edge.commands`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ficoco_edge.commands import analysis, export, profile, runtime, vqa
from ficoco_edge.errors import UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="FiCoCo token reduction for edge LLaVA inference.")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    """FiCoCo token reduction for edge LLaVA inference."""


for _module in (analysis, runtime, vqa, export, profile):
    for _name, _command in _module.COMMANDS:
        app.command(_name)(_command)


def main() -> None:
    """Entry point: UsageError -> one line and exit 2; other errors -> one line and exit 1."""
    debug = "--debug" in sys.argv
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n here
        if isinstance(code, int) and code:
            sys.exit(code)
    except UsageError as exc:
        if debug:
            raise
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if debug:
            raise
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # typer's own usage errors
            exc.show()
            sys.exit(exc.exit_code)
        typer.echo(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", err=True)
        sys.exit(1)
