"""Output files written whole or not at all (no torch: the runtime imports this).

A command checks its --out path before any slow work (`check_output`), then writes through
`atomic_output`: a temporary sibling renamed over the target at the end, so an interrupted or
failed run leaves any previous file untouched, and a replaced file keeps its permissions.
"""

from __future__ import annotations

import importlib.util
import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from ficoco_edge.errors import UsageError


def check_output(path: Path, *inputs: Path, flag: str = "--out") -> None:
    """Refuse an output file path that is a directory, lies under a file, or is one of `inputs`."""
    path = Path(path)
    if not str(path) or path.is_dir():
        raise UsageError(f"{flag} {str(path)!r} is a directory; give a file path")
    check_parent(path, flag)
    for source in inputs:
        if path.exists() and Path(source).exists() and path.samefile(source):
            raise UsageError(f"{flag} {path} is also an input file; write the output to another path")


def check_parent(path: Path, flag: str = "--out") -> None:
    """Refuse a path whose nearest existing ancestor is a file (its parents could not be made)."""
    ancestor = Path(path).parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"{flag} {path} cannot be created: {ancestor} is a file, not a directory")


def check_plot_path(path: str | Path, flag: str = "--plot") -> Path:
    """The path as a Path, or a UsageError unless it is a writable-looking path ending in .png and
    matplotlib, which draws it, is installed (checked before anything is printed or written)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise UsageError(f"{flag} writes a PNG; give a path ending in .png, got {str(path)!r}")
    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError(f"{flag} needs matplotlib: `pip install matplotlib`, or leave out {flag}")
    check_output(path, flag=flag)
    return path


@contextmanager
def atomic_output(path: Path, binary: bool = False) -> Iterator[IO]:
    """A file handle (text, or bytes if `binary`) whose contents replace `path` only when the block
    ends without error."""
    path = Path(path)
    check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise UsageError(f"cannot write {path} ({exc.strerror}); choose another location") from exc
    try:
        with os.fdopen(fd, "wb" if binary else "w") as sink:
            yield sink
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _mode_for(path: Path) -> int:
    """The replaced file's permission bits, or what open() would give a new file (0o666 - umask)."""
    if path.exists():
        return stat.S_IMODE(path.stat().st_mode)
    umask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(umask)
    return 0o666 & ~umask
