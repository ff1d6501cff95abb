"""Train the digits CNN (TensorFlow/Keras) and log it to MLflow (MLproject entry point `digits`).

    .venv/bin/python train_digits.py --epochs 15 --register-as digits

Without --data it uses scikit-learn's 8x8 digits (offline); --data takes a Keras-style mnist.npz.
"""

from __future__ import annotations

import argparse
import sys

# Light imports only: --help and a bad value answer before MLflow, scikit-learn or TensorFlow
# load (tests/unit/test_imports.py; benchmarks/startup.py times it).
from mlstack import cli
from mlstack.params import DIGITS_EXPERIMENT, DigitsParams

PROG = "train_digits.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line (ranges are checked by DigitsParams.validate)."""
    defaults = DigitsParams()
    p = cli.OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="training epochs, >= 1")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="batch size, >= 1")
    p.add_argument(
        "--learning-rate", type=float, default=defaults.learning_rate, help="Adam step, > 0"
    )
    p.add_argument(
        "--data",
        default=None,
        help="MNIST-style .npz (x_train, y_train, x_test, y_test); default: sklearn 8x8 digits",
    )
    p.add_argument(
        "--test-size",
        type=float,
        default=defaults.test_size,
        help="held-out fraction for the 8x8 set or an .npz holding only x, y",
    )
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed for split, init, shuffle")
    cli.add_run_flags(
        p, experiment=DIGITS_EXPERIMENT, better="it is more accurate than the champion"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, train, print the run id, metrics and where to look."""
    cli.quiet_third_party_logs()
    args = parse_args(argv)
    params = DigitsParams(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        test_size=args.test_size,
        seed=args.seed,
    )
    params.validate()
    from mlstack import digits  # the heavy part: MLflow and TensorFlow

    return cli.train_main(digits.train, params, args)


if __name__ == "__main__":
    sys.exit(cli.run_cli(PROG, main))
