"""`python -m mlstack.serving --model-uri models:/wine@champion [--port P] [--workers N]`.

Binds the port and checks the model exists first (a port in use or a missing model stops here
with one line, exit 2), then serves it: a supervisor process and N workers (supervisor.py).
See mlstack/serving/__init__.py for the routes.
"""

from __future__ import annotations

import logging
import os
import sys

from mlstack.cli import run_cli
from mlstack.serving.options import PROG, parse_args


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mlstack.serving`."""
    options = parse_args(argv)
    # TensorFlow's C++ info and warnings tell an operator nothing; its errors still show.
    # Before anything imports TensorFlow, here or in a worker. (The oneDNN notice comes
    # before TensorFlow reads it: once per process at start-up, never per request.)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    def serve() -> int:
        from mlstack.serving.supervisor import serve

        return serve(options)

    return run_cli(PROG, serve)


if __name__ == "__main__":
    sys.exit(main())
