"""Install dependency groups of pyproject.toml into an image: the Dockerfile's only way to get
packages, so pins live in one place (pyproject.toml). Standard library only.

    python install.py GROUP [GROUP ...] [--slim-mlflow] [--warm "module module ..."]

GROUP is `core` ([project.dependencies]) or an extra of [project.optional-dependencies]; an
extra naming another (`mlstack[tensorflow]`) pulls that one in. Every pin in pyproject.toml is
also a constraint, so a package some dependency asks for by range (numpy, pandas, ...) gets our
pinned version in every image.

Everything is installed in one pip call, without bytecode (`--no-compile`): compiled files for
every module of every package would add about 160 MB to the serving image. `--warm` then
imports the modules a process of this image loads at start, so exactly those are compiled
(about 50 MB there, and a start in 1.5 s instead of 4 s). The test suites that pandas, scipy,
scikit-learn and numpy ship inside their wheels (51 MB, imported by nothing at run time) are
removed.

`--slim-mlflow` installs the `mlflow` pin without the dependencies its tracking server never
imports (DATA_SCIENCE below; the server then needs numpy and pandas only, and the image is
half the size). The Docker tier runs training, the registry, artifact proxying and the UI's
API against that image, which is what proves the list right.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import tempfile
import tomllib
from importlib.metadata import requires
from pathlib import Path

PYPROJECT = Path(__file__).with_name("pyproject.toml")
# Packages whose wheels carry their own test suites (`<package>/**/tests/`), never imported
# outside those suites.
SHIPPED_TEST_SUITES = ("pandas", "scipy", "sklearn", "numpy")
# Dependencies of the full `mlflow` package that `mlflow server` does not import.
DATA_SCIENCE = {"scikit-learn", "scipy", "pyarrow", "matplotlib", "skops"}
_SELF = re.compile(r"^mlstack\[(?P<extras>[^\]]+)\]$")
_NAME = re.compile(r"^[A-Za-z0-9._-]+")


def pins(pyproject: dict, groups: list[str]) -> list[str]:
    """The requirement lines of `groups`, extras that name other extras expanded, in order."""
    extras = pyproject["project"].get("optional-dependencies", {})
    lines: list[str] = []
    pending = list(groups)
    seen: set[str] = set()
    while pending:
        group = pending.pop(0)
        if group in seen:
            continue
        seen.add(group)
        if group == "core":
            found = pyproject["project"]["dependencies"]
        elif group in extras:
            found = extras[group]
        else:
            known = ", ".join(["core", *extras])
            raise SystemExit(f"install.py: unknown group {group!r}; known: {known}")
        for line in found:
            match = _SELF.match(line)
            if match:
                pending.extend(e.strip() for e in match["extras"].split(","))
            elif line not in lines:
                lines.append(line)
    return lines


def name_of(requirement: str) -> str:
    """The normalised distribution name of a requirement line."""
    match = _NAME.match(requirement.strip())
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def all_pins(pyproject: dict) -> list[str]:
    """Every pinned requirement of every group (pip constraints: no extras, no self-refs)."""
    groups = ["core", *pyproject["project"].get("optional-dependencies", {})]
    return [line for line in pins(pyproject, groups) if "==" in line]


def mlflow_server_needs(mlflow_pin: str, constraints: Path) -> list[str]:
    """Install `mlflow_pin` alone, then return its own requirements minus DATA_SCIENCE (extras
    dropped, environment markers kept for pip to judge)."""
    pip("--no-deps", "-c", str(constraints), mlflow_pin)
    needed = []
    for line in requires("mlflow") or []:
        if "extra ==" in line or name_of(line) in DATA_SCIENCE:
            continue
        needed.append(line)
    return needed


def pip(*args: str) -> None:
    """Run pip in this interpreter; stop the build on failure."""
    cmd = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--no-compile", *args]
    subprocess.run(cmd, check=True)


def strip_test_suites() -> None:
    """Delete the SHIPPED_TEST_SUITES' tests/ directories from site-packages."""
    import shutil
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    for package in SHIPPED_TEST_SUITES:
        for tests in sorted((site / package).glob("**/tests"), reverse=True):
            if tests.is_dir():
                shutil.rmtree(tests)


def warm(modules: list[str]) -> None:
    """Import each module with bytecode writing on, so what a process loads is compiled."""
    sys.dont_write_bytecode = False
    for module in modules:
        importlib.import_module(module)


def main(argv: list[str] | None = None) -> int:
    """Entry point: install the groups, then warm the modules."""
    p = argparse.ArgumentParser(prog="install.py", description=__doc__.splitlines()[0])
    p.add_argument("groups", nargs="+", help="core, or extras of pyproject.toml")
    p.add_argument("--slim-mlflow", action="store_true", help="mlflow without DATA_SCIENCE")
    p.add_argument("--warm", default="", help="modules to import (compile) after installing")
    p.add_argument("--pyproject", type=Path, default=PYPROJECT)
    args = p.parse_args(argv)
    pyproject = tomllib.loads(args.pyproject.read_text())
    requirements = pins(pyproject, args.groups)
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("\n".join(all_pins(pyproject)) + "\n")
        if args.slim_mlflow:
            mlflow = [r for r in requirements if name_of(r) == "mlflow"]
            if len(mlflow) != 1:
                raise SystemExit("install.py: --slim-mlflow needs a group that pins mlflow")
            requirements = [r for r in requirements if r not in mlflow]
            requirements += mlflow_server_needs(mlflow[0], constraints)
        pip("-c", str(constraints), *requirements)
    strip_test_suites()
    warm(args.warm.split())
    return 0


if __name__ == "__main__":
    sys.exit(main())
