"""`python -m mlstack.pipelines serve|run`: retraining deployments on a Prefect server.

    python -m mlstack.pipelines serve --models wine,digits --every 5   # the runner: blocks
    python -m mlstack.pipelines run wine                               # one run, now, waited on

`serve` registers one deployment per model (`retrain/<model>`) scheduled every N minutes and
runs what the server schedules; `run` asks the server for a run of a deployment and waits for
it, then prints what the pipeline did. Both need a real Prefect server (`make pipelines-up`):
Prefect's temporary server cannot schedule. The server is PREFECT_API_URL, else
http://127.0.0.1:4200/api; --prefect-url overrides both (settings.PipelinesSettings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from mlstack import cli
from mlstack.errors import UsageError
from mlstack.settings import DEFAULT_PREFECT_URL, PipelinesSettings

PROG = "python -m mlstack.pipelines"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = cli.OneLineErrorParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument(
        "--prefect-url", help=f"Prefect API (default $PREFECT_API_URL or {DEFAULT_PREFECT_URL})"
    )
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="schedule and run the retraining deployments")
    serve.add_argument("--models", default="wine", help="comma-separated (default wine)")
    serve.add_argument("--every", type=float, default=5.0, help="minutes between runs (default 5)")
    serve.add_argument("--last", type=int, default=1000, help="window: newest N predictions")
    serve.add_argument(
        "--gc-older-than",
        help="also deploy stack-gc/<stack>: `mlstack.stack gc --older-than` this (off by default)",
    )
    serve.add_argument("--gc-every", type=float, default=24.0, help="hours between gc runs (24)")
    serve.add_argument("--gc-state-dir", help="the native stack gc cleans (its state directory)")
    run = sub.add_parser("run", help="run one model's deployment now and wait for it")
    run.add_argument("model", help="registered model name, e.g. wine")
    run.add_argument("--last", type=int, default=1000, help="window: newest N predictions")
    run.add_argument("--params", default="{}", help='training overrides, JSON: {"alpha": 0.1}')
    run.add_argument("--data", help="training data instead of the champion's")
    run.add_argument("--timeout", type=float, default=1800, help="seconds to wait (default 1800)")
    args = p.parse_args(argv)
    if args.command == "serve" and args.every <= 0:
        p.error(f"--every {args.every}: give minutes > 0")
    if args.command == "serve" and args.gc_older_than:
        from mlstack.stack.config import StackUsageError
        from mlstack.stack.gc import parse_age

        try:
            parse_age(args.gc_older_than, "--gc-older-than")
        except StackUsageError as exc:
            p.error(str(exc))
        if not args.gc_state_dir or args.gc_every <= 0:
            p.error("--gc-older-than needs --gc-state-dir DIR (the stack's) and --gc-every > 0")
    if args.command == "run":
        try:
            args.params = json.loads(args.params)
        except json.JSONDecodeError:
            p.error(f"--params {args.params!r} is not JSON; e.g. --params '{{\"alpha\": 0.1}}'")
        if not isinstance(args.params, dict):
            p.error("--params must be a JSON object")
    return args


def check_prefect(url: str) -> None:
    """Fail in seconds, with the fix, when no Prefect server answers at `url`."""
    from mlstack.tracking import check_server

    fix = "start it with `make pipelines-up` (or set PREFECT_API_URL to a running one)"
    check_server(url, what="Prefect server", fix=fix)


def configure_prefect(settings: PipelinesSettings, url: str | None = None) -> str:
    """Point Prefect at the server (`url`, else the settings' PREFECT_API_URL); the URL used.

    Prefect takes its settings from the environment only, read when it is imported and again
    by each flow-run process the runner starts (they inherit this environment), so they are
    written there, from `settings`, before anything imports Prefect.
    """
    url = url or settings.prefect_api_url
    os.environ["PREFECT_API_URL"] = url
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = str(settings.prefect_analytics).lower()
    return url


def deployments(args: argparse.Namespace) -> list:
    """What `serve` deploys: `retrain/<model>` for each model, and `stack-gc/<stack>` only when
    --gc-older-than asks for it."""
    from datetime import timedelta
    from pathlib import Path

    from mlstack.pipelines.flows import retrain, stack_gc

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    out = [
        retrain.to_deployment(
            name=model,
            interval=timedelta(minutes=args.every),
            parameters={"model": model, "last": args.last},
        )
        for model in models
    ]
    if args.gc_older_than:
        state_dir = str(Path(args.gc_state_dir).resolve())
        out.append(
            stack_gc.to_deployment(
                name=Path(state_dir).name,
                interval=timedelta(hours=args.gc_every),
                parameters={"state_dir": state_dir, "older_than": args.gc_older_than},
            )
        )
    return out


def serve(args: argparse.Namespace) -> int:
    """Register the deployments and run what the server schedules (blocks until stopped)."""
    from prefect import serve as prefect_serve

    planned = deployments(args)
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in planned)
    print(f"serving {names} (retraining every {args.every:g} min)", flush=True)  # noqa: T201
    prefect_serve(*planned)
    return 0


def run(args: argparse.Namespace) -> int:
    """Run `retrain/<model>` through the server, wait, print the pipeline's line."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    from mlstack.pipelines.flows import FLOW_NAME

    name = f"{FLOW_NAME}/{args.model}"
    parameters = {"model": args.model, "last": args.last, "params": args.params or None}
    if args.data:
        parameters["data"] = args.data
    try:
        flow_run = run_deployment(name, parameters=parameters, timeout=args.timeout)
    except ObjectNotFound as exc:
        raise UsageError(
            f"no deployment {name} on the Prefect server: start the runner (make pipelines-up, "
            f"or {PROG} serve --models {args.model})"
        ) from exc
    state = flow_run.state
    if state is None or not state.is_final():
        raise UsageError(
            f"{name} run {flow_run.id} did not finish within {args.timeout:g} s (state "
            f"{state.name if state else 'unknown'}): is a runner serving it?"
        )
    line = pipeline_line(str(flow_run.id), args.model)
    print(f"{name} run {flow_run.id}: {state.name}; {line}")  # noqa: T201
    return 0 if state.is_completed() else 1


def pipeline_line(flow_run_id: str, model: str) -> str:
    """What the pipeline run of a Prefect flow run recorded (its decision), from MLflow."""
    from mlstack.settings import get_settings
    from mlstack.tracking import tracking_client

    client = tracking_client(get_settings())
    experiment = client.get_experiment_by_name(f"{model}-pipelines")  # see retrain.run_pipeline
    if experiment is None:
        return "no pipeline run was recorded"
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlstack.prefect_flow_run_id` = '{flow_run_id}'",
        max_results=1,
    )
    if not runs:
        return "no pipeline run was recorded"
    tags = runs[0].data.tags
    return f"{tags.get('mlstack.decision', '')} (pipeline run {runs[0].info.run_id})"


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    cli.quiet_third_party_logs()
    args = parse_args(argv)
    url = configure_prefect(PipelinesSettings(), args.prefect_url)
    check_prefect(url)
    return serve(args) if args.command == "serve" else run(args)


if __name__ == "__main__":
    sys.exit(cli.run_cli(PROG, main))
