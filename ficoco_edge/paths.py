"""Where ficoco-edge keeps files it creates for the user (no torch: the runtime imports this)."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "FICOCO_EDGE_CACHE"


def cache_root() -> Path:
    """$FICOCO_EDGE_CACHE, else $XDG_CACHE_HOME/ficoco-edge, else ~/.cache/ficoco-edge."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ficoco-edge"


def example_image(name: str = "red-triangle.png") -> Path:
    """A bundled example image: `ficoco_edge/_examples/<name>` in an installed wheel, else the
    checkout's `examples/<name>`."""
    package = Path(__file__).resolve().parent
    installed = package / "_examples" / name
    return installed if installed.is_file() else package.parent / "examples" / name
