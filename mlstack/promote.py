"""Move a registry alias (default `champion`) to a given model version by hand.

    .venv/bin/python -m mlstack.promote --name wine --version 3

Also the MLproject `promote` entry point. Unknown models or versions exit 2 and change nothing.
"""

from __future__ import annotations

import argparse
import sys

from mlstack import cli

PROG = "python -m mlstack.promote"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse --name, --version and --alias."""
    from mlstack.registry import CHAMPION

    p = cli.OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="registered model name, e.g. wine")
    p.add_argument("--version", required=True, help="version number to point the alias at")
    p.add_argument("--alias", default=CHAMPION, help=f"alias to move (default {CHAMPION})")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: validate, move the alias, say what moved."""
    cli.quiet_third_party_logs()
    args = parse_args(argv)
    from mlstack import registry, tracking
    from mlstack.settings import get_settings

    client = tracking.tracking_client(get_settings())
    previous = registry.promote(args.name, args.version, alias=args.alias, client=client)
    was = f"v{previous}" if previous else "unset"
    print(f"{args.name}@{args.alias} now points at v{args.version.strip()} (was {was})")
    return 0


if __name__ == "__main__":
    sys.exit(cli.run_cli(PROG, main))
