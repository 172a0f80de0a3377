"""The runtime install (pyproject's base dependencies, no `export` extra) on a Jetson or a laptop:
importing the runtime or the CLI loads no torch or transformers, the commands that need no model
work with every export tool missing, and the others say in one line what to install."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ficoco_edge.cli import EXPORT_TOOLS

# a Python prelude that makes the export tools uninstalled, as in a runtime-only environment
BLOCK_EXPORT_TOOLS = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {EXPORT_TOOLS!r}:
            raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)
sys.meta_path.insert(0, Block())
"""


def cli_without_export_tools(*args: str) -> subprocess.CompletedProcess:
    code = BLOCK_EXPORT_TOOLS + f"sys.argv = ['ficoco-edge', *{list(args)!r}]\nfrom ficoco_edge.cli import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", ["ficoco_edge.runtime", "ficoco_edge.cli", "ficoco_edge.manifest"])
def test_import_loads_no_torch(module):
    code = f"import {module}, sys; heavy = [m for m in ('torch', 'transformers') if m in sys.modules]; print(heavy)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_export_tools_are_the_export_extra():
    """What the CLI calls the export tools is what `pip install ficoco-edge[export]` adds."""
    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    extra = {re.split(r"[<>=!~ ]", spec)[0] for spec in project["optional-dependencies"]["export"]}
    assert extra == set(EXPORT_TOOLS)
    assert not extra & {re.split(r"[<>=!~ ]", spec)[0] for spec in project["dependencies"]}


@pytest.mark.parametrize("args, expect", [
    (("plan", "--method", "ficoco-v", "--budget", "1.5"), "TFLOPs"),
    (("methods",), "ficoco-vl"),
    (("profile", "--methods", "none,ficoco-v"), "KV"),
])
def test_model_free_commands_need_no_export_tools(args, expect):
    done = cli_without_export_tools(*args)
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout


@pytest.mark.parametrize("args, needle", [
    (("export", "--budget", "1.5"), "`ficoco-edge export` needs"),
    (("eval", "--limit", "2"), "`ficoco-edge eval` needs"),
    (("bench", "--budgets", "1.5", "--quant", "int8"), "the transformers row needs"),
])
def test_commands_that_need_a_model_say_what_to_install(args, needle):
    done = cli_without_export_tools(*args)
    assert done.returncode == 2
    assert needle in done.stderr and "pip install 'ficoco-edge[export]'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
