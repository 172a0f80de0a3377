"""The runtime and the CLI's startup import no torch or transformers (a Jetson or laptop install)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["ficoco_edge.runtime", "ficoco_edge.cli", "ficoco_edge.manifest"])
def test_import_loads_no_torch(module):
    code = f"import {module}, sys; heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; print(heavy)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
