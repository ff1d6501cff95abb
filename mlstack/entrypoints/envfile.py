"""Write `.env` from `.env.example`, replacing every CHANGE_ME with a fresh random secret.

    python3 -m mlstack.entrypoints.envfile [--example .env.example] [--out .env] [--force]

Standard library only, so `make env` works before the virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
from pathlib import Path

PLACEHOLDER = "CHANGE_ME"
PROJ_ROOT = Path(__file__).resolve().parents[2]


def secret_for(key: str) -> str:
    """A random value suited to `key`: S3 access keys alphanumeric, others URL-safe."""
    if key.endswith("ACCESS_KEY"):
        return "mlstack" + secrets.token_hex(8)
    return secrets.token_urlsafe(24)


def render(example: str) -> str:
    """The example's text with each `KEY=CHANGE_ME` given its own random value."""

    def fill(match: re.Match[str]) -> str:
        return f"{match.group(1)}={secret_for(match.group(1))}"

    return re.sub(rf"^([A-Z0-9_]+)={PLACEHOLDER}$", fill, example, flags=re.M)


def write(example: Path, out: Path, force: bool = False) -> Path:
    """Render `example` into `out` (mode 0600). Refuses to replace an existing file."""
    if out.exists() and not force:
        raise FileExistsError(
            f"{out} already exists (it holds the stack's credentials); delete it first or pass "
            "--force (make env FORCE=1) - a running stack keeps the old passwords"
        )
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(render(example.read_text()))
    out.chmod(0o600)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python3 -m mlstack.entrypoints.envfile` (used by `make env`)."""
    p = argparse.ArgumentParser(prog="python3 -m mlstack.entrypoints.envfile", description=__doc__)
    p.add_argument("--example", type=Path, default=PROJ_ROOT / ".env.example")
    p.add_argument("--out", type=Path, default=PROJ_ROOT / ".env")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    args = p.parse_args(argv)
    try:
        path = write(args.example, args.out, args.force)
    except (FileExistsError, FileNotFoundError) as exc:
        print(f"{p.prog}: error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    print(f"wrote {path} with fresh random credentials (mode 0600)")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
