"""`ficoco-edge` command line: the app, its error handling, and the commands from `ficoco_edge.commands`."""

from __future__ import annotations

import signal
import sys
import traceback
from typing import Annotated

import typer

from ficoco_edge.commands import analysis, export, profile, runtime, vqa
from ficoco_edge.errors import UsageError

# what the `export` extra installs (pyproject.toml); the runtime alone runs without them
EXPORT_TOOLS = ("torch", "transformers", "onnx", "safetensors", "gguf", "accelerate")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="FiCoCo token reduction for edge LLaVA inference.")


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks")] = False) -> None:
    """FiCoCo token reduction for edge LLaVA inference."""


for _module in (analysis, runtime, vqa, export, profile):
    for _name, _command in _module.COMMANDS:
        app.command(_name)(_command)


def main() -> None:
    """Entry point: UsageError and bad arguments -> one line and exit 2; other errors -> one line
    and exit 1; --debug adds the traceback, same exit code. SIGTERM unwinds like Ctrl-C, so
    temporary files are removed and outputs left as they were."""
    debug = "--debug" in sys.argv
    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = app(standalone_mode=False)  # a command's typer.Exit(n) comes back as n here
        if isinstance(code, int) and code:
            sys.exit(code)
    except UsageError as exc:
        _fail(str(exc), 2, debug)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # argument parsing: unknown option, value of the wrong type
        ctx, code = getattr(exc, "ctx", None), getattr(exc, "exit_code", 2)
        if not exc.format_message():  # no arguments at all: the help was printed
            sys.exit(code)
        _fail(f"{exc.format_message()} (see `{ctx.command_path if ctx else 'ficoco-edge'} --help`)", code, debug)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in EXPORT_TOOLS:
            _fail(f"{type(exc).__name__}: {exc}" + ("" if debug else " (rerun with --debug for the traceback)"), 1, debug)
        _fail(_missing_tools_message(exc.name.split(".")[0]), 2, debug)
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        _fail(f"{type(exc).__name__}: {exc}" + ("" if debug else " (rerun with --debug for the traceback)"), 1, debug)


def _missing_tools_message(module: str) -> str:
    args = sys.argv[1:]
    command = next((a for a in args if not a.startswith("-")), "")
    fix = "pip install 'ficoco-edge[export]'"
    where = ""
    if command == "run" and _option(args, "--backend") == "torch":
        where, fix = " (the PyTorch backend)", f"{fix}, or run an export with --backend ort"
    elif command == "run" and _option(args, "--export") is None:
        where = " (it makes the export on first use)"
        fix += ", or pass --export DIR (an export made on another machine)"
    return f"`ficoco-edge {command}` needs {module}{where}, one of the export tools this install lacks: {fix}"


def _option(args: list[str], name: str) -> str | None:
    """The value given to option `name` (`--name VALUE` or `--name=VALUE`), or None."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _fail(message: str, code: int, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    typer.echo(f"error: {message}", err=True)
    sys.exit(code)


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt
