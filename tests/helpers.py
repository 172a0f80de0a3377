"""Shared test helpers."""

import os
import shutil
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


def copy_export(source, directory, edited=("manifest.json",)):
    """A copy of the export at `source` in `directory` that costs no disk: hard links, but for the
    files `edited`, which are real copies, so writing them in place leaves `source` intact."""
    shutil.copytree(source, directory, copy_function=os.link)
    for name in edited:
        (directory / name).unlink()
        shutil.copy(source / name, directory / name)
    return directory
