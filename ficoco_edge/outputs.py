"""Output files written whole or not at all (no torch: the runtime imports this).

A command checks its --out path before any slow work (`check_output`), then writes through
`atomic_output`: a temporary sibling renamed over the target at the end, so an interrupted or
failed run leaves any previous file untouched, and a replaced file keeps its permissions.
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

from ficoco_edge.errors import UsageError


def check_output(path: Path, *inputs: Path) -> None:
    """Refuse an --out that is a directory, lies under a file, or is one of `inputs`."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"--out {path} is a directory; give a file path, e.g. {path / 'out.json'}")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(f"--out {path} cannot be created: {ancestor} is a file, not a directory")
    for source in inputs:
        if path.exists() and Path(source).exists() and path.samefile(source):
            raise UsageError(f"--out {path} is also the input file; write the output to another path")


@contextmanager
def atomic_output(path: Path, binary: bool = False) -> Iterator[IO]:
    """A file handle (text, or bytes if `binary`) whose contents replace `path` only when the block
    ends without error."""
    path = Path(path)
    check_output(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
