"""Train the wine-quality ElasticNet and log it to MLflow (the MLproject `main` entry point).

    .venv/bin/python train.py --alpha 0.5 --l1-ratio 0.5 --register-as wine

With no MLFLOW_TRACKING_URI the run goes to the embedded store (mlflow.db + mlruns/ here).
"""

from __future__ import annotations

import argparse
import sys

# Light imports only: --help and a bad value answer before MLflow, scikit-learn or TensorFlow
# load (tests/unit/test_imports.py; benchmarks/startup.py times it).
from mlstack import cli
from mlstack.params import WINE_EXPERIMENT, WineParams

PROG = "train.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (ranges are checked by WineParams.validate)."""
    defaults = WineParams()
    p = cli.OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--alpha", type=float, default=defaults.alpha, help="regularisation, >= 0")
    p.add_argument(
        "--l1-ratio", type=float, default=defaults.l1_ratio, help="L1 share of the penalty, [0, 1]"
    )
    p.add_argument(
        "--data",
        default=None,
        help="wine CSV: local path or http(s) URL (default: $MLSTACK_WINE_DATA, else the UCI "
        "red-wine CSV, downloaded once into ~/.cache/mlstack)",
    )
    p.add_argument(
        "--test-size", type=float, default=defaults.test_size, help="held-out fraction, (0, 1)"
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="random seed for split and fit")
    cli.add_run_flags(p, experiment=WINE_EXPERIMENT, better="its rmse beats the champion's")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, train, print the run id, metrics and where to look."""
    cli.quiet_third_party_logs()
    args = parse_args(argv)
    params = WineParams(
        alpha=args.alpha, l1_ratio=args.l1_ratio, test_size=args.test_size, seed=args.seed
    )
    params.validate()
    from mlstack import wine  # the heavy part: MLflow and scikit-learn

    return cli.train_main(wine.train, params, args)


if __name__ == "__main__":
    sys.exit(cli.run_cli(PROG, main))
