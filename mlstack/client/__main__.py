"""`python -m mlstack.client [--server-url URL] [--port 8501]`: the web client on 127.0.0.1.

Starts Streamlit on the page in app.py. It needs only our model server's URL; --mlflow-url is
where the page's links to runs and reports point (the browser's view of the MLflow UI).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mlstack.cli import OneLineErrorParser

PROG = "python -m mlstack.client"
APP = Path(__file__).with_name("app.py")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--server-url", default="http://127.0.0.1:8080", help="our model server")
    p.add_argument("--mlflow-url", default="http://127.0.0.1:5000", help="for links only")
    p.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8501, help="port (default 8501)")
    args = p.parse_args(argv)
    if not args.server_url.startswith(("http://", "https://")):
        p.error(f"--server-url {args.server_url!r}: give a URL like http://127.0.0.1:8080")
    if not 0 < args.port < 65536:
        p.error(f"--port {args.port} is not a TCP port (1-65535)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Replace this process with Streamlit serving the page."""
    args = parse_args(argv)
    env = os.environ | {
        "MLSTACK_CLIENT_SERVER_URL": args.server_url,
        "MLSTACK_CLIENT_MLFLOW_URL": args.mlflow_url,
        # Streamlit runs app.py as a script: the library must be importable from anywhere.
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(APP.parents[2]), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    argv = [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.address", args.host, "--server.port", str(args.port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false",
            "--server.fileWatcherType", "none", "--global.developmentMode", "false",
            "--client.toolbarMode", "viewer"]  # fmt: skip
    print(f"client on http://{args.host}:{args.port} for {args.server_url}", flush=True)  # noqa: T201
    os.execve(sys.executable, argv, env)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
