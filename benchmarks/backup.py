"""Backup and restore benchmark: time and size for a populated stack and one 10x larger.

    make bench-backup                      # both sizes, throwaway native stacks on free ports
    .venv/bin/python -m benchmarks.backup --scales 1

How the stacks are made (tests/integration/populate.py, through the tracking server as a client
logs): scale 1 is 3 experiments x 18 runs, each with 3 params, 2 metrics of 10 steps, 2 tags, a
~4 KB text file and a JSON file; scale 10 is 30 experiments x 18 runs of the same. Each scale
is backed up from one stack and restored into a fresh second one.

Columns: runs and objects in the backup, its size, `backup` seconds, `restore` seconds (verify
included), and the reference: `pg_dump` of the MLflow database alone, so ours/pg_dump is what
copying every object and checking every byte costs on top.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _stack(root: Path, name: str):
    from mlstack.stack import NativeStack, StackConfig, find_free_ports

    state = root / name
    state.mkdir()
    state.chmod(0o755)
    stack = NativeStack(StackConfig(state_dir=state, **find_free_ports(), timeout_s=120))
    stack.up(echo=lambda _line: None)
    return stack


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_scale(scale: int, root: Path) -> dict[str, float]:
    """Populate, back up, pg_dump alone, restore into a fresh stack; the figures."""
    from mlstack.stack.backup import pg_tool
    from tests.integration.populate import log_runs

    source = _stack(root, f"source-{scale}")
    target = None
    try:
        t0 = time.perf_counter()
        log_runs(source.config.tracking_uri, experiments=3 * scale, runs_per_experiment=18)
        populate_s = time.perf_counter() - t0
        dest = root / f"backup-{scale}"
        t0 = time.perf_counter()
        manifest = source.backup(dest, echo=lambda _line: None)
        backup_s = time.perf_counter() - t0
        access = source.store_access()
        t0 = time.perf_counter()
        subprocess.run([pg_tool(access, "pg_dump"), "--format=custom", "-f", str(root / "ref.dump"),
                        "mlflow"], env=access.pg_env(), check=True)  # fmt: skip
        pg_dump_s = time.perf_counter() - t0
        source.down(purge=True)
        target = _stack(root, f"target-{scale}")
        t0 = time.perf_counter()
        target.restore(dest, echo=lambda _line: None)
        restore_s = time.perf_counter() - t0
        return {
            "scale": scale,
            "runs": manifest.counts.get("runs", 0),
            "objects": len(manifest.objects),
            "mb": _du(dest) / 1e6,
            "populate_s": populate_s,
            "backup_s": backup_s,
            "restore_s": restore_s,
            "pg_dump_s": pg_dump_s,
        }
    finally:
        source.down(purge=True)
        if target is not None:
            target.down(purge=True)


def main(argv: list[str] | None = None) -> int:
    """Run the scales and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scales", default="1,10", help="comma-separated sizes (1 = 54 runs)")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="mlstack-bench-backup-", dir="/var/tmp"))
    root.chmod(0o755)
    rows = []
    try:
        for scale in (int(s) for s in args.scales.split(",")):
            print(f"scale {scale}: populating, backing up, restoring ...", file=sys.stderr)
            rows.append(bench_scale(scale, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'scale':>5} {'runs':>5} {'objects':>7} {'size MB':>8} {'backup s':>9} "
          f"{'restore s':>10} {'pg_dump s':>10} {'backup/pg_dump':>15}")  # fmt: skip
    for r in rows:
        print(f"{r['scale']:>5} {r['runs']:>5} {r['objects']:>7} {r['mb']:>8.1f} "
              f"{r['backup_s']:>9.2f} {r['restore_s']:>10.2f} {r['pg_dump_s']:>10.2f} "
              f"{r['backup_s'] / r['pg_dump_s']:>14.1f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
