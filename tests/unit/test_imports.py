"""Importing the light parts of the library loads no heavy library, and the training scripts
answer --help and bad arguments before loading one: at once, as cli.py's docstring says."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import PROJ_ROOT

LIGHT = (
    "mlstack",
    "mlstack.errors",
    "mlstack.settings",
    "mlstack.params",
    "mlstack.data",
    "mlstack.cli",
)
HEAVY = ("mlflow", "tensorflow", "keras", "sklearn")


def test_light_modules_import_no_heavy_library() -> None:
    code = (
        f"import sys\nimport {', '.join(LIGHT)}\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJ_ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# Runs an entry script as `python SCRIPT ARGS` would, then reports which heavy libraries it
# loaded, whatever way it exits (argparse exits through SystemExit).
AFTER_SCRIPT = f"""
import runpy, sys
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_path(sys.argv[0], run_name="__main__")
except SystemExit as exc:
    code = exc.code
print("loaded:", sorted(m for m in {HEAVY + ("pandas",)!r} if m in sys.modules), file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["train.py", "--help"], 0),
        (["train.py", "--alpha", "-1"], 2),  # out of range: WineParams.validate
        (["train.py", "--alpha", "abc"], 2),  # not a number: argparse
        (["train_digits.py", "--help"], 0),
        (["train_digits.py", "--epochs", "0"], 2),
    ],
)
def test_entry_scripts_answer_help_and_bad_values_before_heavy_imports(
    args: list[str], code: int
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", AFTER_SCRIPT, *args],
        cwd=PROJ_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.splitlines()[-1] == "loaded: []", proc.stderr
    if code == 2:
        assert proc.stderr.startswith(f"{args[0]}: error: "), proc.stderr


# The client image installs only the `client` group (streamlit, pillow, pydantic-settings):
# its modules must import with everything else missing, as there.
NOT_IN_CLIENT_IMAGE = ("mlflow", "sklearn", "tensorflow", "scipy", "prometheus_client", "skops")
BLOCK_AND_IMPORT = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {NOT_IN_CLIENT_IMAGE!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (not in the client image)")
sys.meta_path.insert(0, Block())
import mlstack.client.app, mlstack.client.inputs, mlstack.client.api
"""


def test_client_modules_import_with_only_the_client_groups_packages() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_AND_IMPORT],
        cwd=PROJ_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
