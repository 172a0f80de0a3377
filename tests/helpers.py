"""Shared test helpers."""

import sys

from ficoco_edge.cli import main


def run_cli(monkeypatch, capsys, *args):
    """Run `ficoco-edge *args` in-process -> (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["ficoco-edge", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err
