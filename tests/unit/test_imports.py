"""Importing the light parts of the library loads no heavy library: entry points answer
--help and bad arguments at once, and the package's docstring tells the truth."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import PROJ_ROOT

LIGHT = ("mlstack", "mlstack.errors", "mlstack.settings", "mlstack.data", "mlstack.cli")
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
