"""Startup benchmark: how fast the training scripts answer `--help`, against bare Python.

    make bench-startup
    .venv/bin/python -m benchmarks.startup --repeats 20

Each row is the median wall clock of --repeats runs of a fresh interpreter (after one warm-up
run, so the file cache is warm), and its ratio to `python -c pass`. The `import` rows are what
`--help` cost when the scripts imported their model module (and with it MLflow) to read the
defaults; they now parse and check arguments first, so only a real run pays for it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from mlstack.settings import PROJ_ROOT

ROWS = (
    ("python -c pass", ["-c", "pass"]),
    ("train.py --help", ["train.py", "--help"]),
    ("train_digits.py --help", ["train_digits.py", "--help"]),
    ("import mlstack.wine", ["-c", "import mlstack.wine"]),
    ("import mlstack.digits", ["-c", "import mlstack.digits"]),
)


def median_seconds(args: list[str], repeats: int) -> float:
    """Median wall clock of `python ARGS` from the project root (one warm-up run first)."""
    samples = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, *args], cwd=PROJ_ROOT, check=True, stdout=subprocess.DEVNULL
        )
        if i:  # the first run warms the file cache
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def table(timings: dict[str, float]) -> list[str]:
    """The rows as text: command, median ms, ratio to bare Python."""
    bare = timings["python -c pass"]
    lines = [f"{'command':<26} {'median ms':>10} {'x python':>9}"]
    for name, seconds in timings.items():
        lines.append(f"{name:<26} {seconds * 1000:>10.0f} {seconds / bare:>9.1f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Time every row and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=10, help="timed runs per row (median)")
    args = p.parse_args(argv)
    timings = {name: median_seconds(cmd, args.repeats) for name, cmd in ROWS}
    print("\n".join(table(timings)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
