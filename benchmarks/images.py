"""Image sizes: every target of the Dockerfile, built now, against its goal and a reference.

    make bench-images                   # needs a Docker engine (DOCKER_HOST); ~3 min warm
    .venv/bin/python -m benchmarks.images --no-reference

Sizes are what `docker image inspect` reports (uncompressed, base image included), and the
size over the base image, which does not depend on which `python:3.11-slim` the engine has.
The reference for the serving image is `mlflow models build-docker --env-manager local` for the
same kind of model (a wine ElasticNet trained in a throwaway embedded store), built in the
same run; `--no-reference` skips it (about 100 s).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from mlstack.settings import PROJ_ROOT

BASE = "python:3.11-slim"
MB = 1_000_000
TF_SERVE = ["--target", "serve", "--build-arg", "SERVE_DEPS=tensorflow"]
# (tag, docker build arguments, goal in MB or None)
TARGETS = (
    ("mlstack-mlflow-server:3.17.2", ["--target", "mlflow-server"], 600),
    ("mlstack-serve-core", ["--target", "serve"], 600),
    ("mlstack-serve-tensorflow", TF_SERVE, None),
    ("mlstack-train", ["--target", "train"], None),
    ("mlstack-dev", ["--target", "dev"], None),
    ("mlstack-pipelines", ["--target", "pipelines"], None),
    ("mlstack-client", ["--target", "client"], None),
)
REFERENCE = "mlstack-bench-build-docker"


def docker(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    """The docker client; stop the benchmark on failure."""
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"docker {args[0]} failed: {proc.stderr.strip()[-800:]}")
    return proc


def size_mb(tag: str) -> float:
    """The image's size in MB (10^6 bytes, as `docker images` shows)."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout) / MB


def build_reference() -> str:
    """Train wine in a throwaway store and build MLflow's own serving image of it."""
    from mlstack import wine
    from mlstack.settings import Settings

    with tempfile.TemporaryDirectory(prefix="mlstack-bench-images-") as store:
        shared = PROJ_ROOT.parent / "shared" / "data" / "winequality-red.csv"
        settings = Settings(_env_file=None, tracking_uri=None, store_dir=Path(store))
        data = str(shared) if shared.exists() else None
        result = wine.train(wine.WineParams(), data=data, settings=settings)
        env = os.environ | {"MLFLOW_TRACKING_URI": settings.embedded_tracking_uri}
        mlflow = str(Path(sys.executable).parent / "mlflow")
        cmd = [mlflow, "models", "build-docker", "-m", result.model_uri, "-n", REFERENCE,
               "--env-manager", "local"]  # fmt: skip
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise SystemExit(f"mlflow models build-docker failed: {proc.stderr[-800:]}")
    return REFERENCE


def main(argv: list[str] | None = None) -> int:
    """Build, measure, print the table."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.images", description=__doc__)
    p.add_argument("--no-reference", action="store_true", help="skip mlflow's build-docker image")
    args = p.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    for tag, build_args, _ in TARGETS:
        print(f"building {tag} ...", flush=True)
        docker("build", "-q", "--build-arg", f"SOURCE_COMMIT={commit.stdout.strip()}",
               *build_args, "-t", tag, str(PROJ_ROOT), timeout=3600)  # fmt: skip
    reference = None
    if not args.no_reference:
        print("building the reference (mlflow models build-docker) ...", flush=True)
        reference = size_mb(build_reference())
    base = size_mb(BASE)
    print(f"\nbase {BASE}: {base:.0f} MB")
    print(f"{'image':30} {'size MB':>8} {'over base':>10} {'goal':>6}  vs build-docker")
    for tag, _, goal in TARGETS:
        size = size_mb(tag)
        ratio = ""
        if reference and tag == "mlstack-serve-core":
            ratio = f"{size / reference:.2f}x of {reference:.0f} MB"
        goal_text = f"<={goal}" if goal else "-"
        print(f"{tag:30} {size:8.0f} {size - base:10.0f} {goal_text:>6}  {ratio}")
    print(json.dumps({tag: round(size_mb(tag)) for tag, _, _ in TARGETS}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
