"""The Prefect flow: one retraining pipeline run (retrain.py), its steps as Prefect tasks, so
the Prefect UI shows each run, its steps and their logs. Deployments are named
`retrain/<model>`."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from mlstack.pipelines.retrain import run_pipeline

FLOW_NAME = "retrain"
GC_FLOW_NAME = "stack-gc"


def as_task(name: str, function: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one pipeline step as a Prefect task (never cached: every run looks afresh)."""
    return task(function, name=name, cache_policy=NO_CACHE)(*args, **kwargs)


@flow(name=FLOW_NAME)
def retrain(
    model: str = "wine",
    last: int = 1000,
    params: dict[str, Any] | None = None,
    data: str | None = None,
) -> dict[str, Any]:
    """Monitor `model`'s prediction log; retrain and register it when new labelled rows exist."""
    from prefect.logging import get_run_logger
    from prefect.runtime import flow_run

    result = run_pipeline(
        model,
        last=last,
        params=params,
        data=data,
        tags={"mlstack.prefect_flow_run_id": str(flow_run.id)},
        step=as_task,
    )
    get_run_logger().info(result.line())  # shown with the run in the Prefect UI
    return {
        "pipeline_run_id": result.run_id,
        "version": result.version,
        "promoted": result.promoted,
    }


@flow(name=GC_FLOW_NAME)
def stack_gc(state_dir: str, older_than: str = "30d") -> list[str]:
    """`python -m mlstack.stack gc --older-than` on the native stack of `state_dir` (deployed
    only when asked: `serve --gc-older-than`); the lines it reported."""
    from pathlib import Path

    from prefect.logging import get_run_logger

    from mlstack.stack import NativeStack, StackConfig

    logger = get_run_logger()
    lines: list[str] = []

    def report(line: str) -> None:
        lines.append(line)
        logger.info(line)

    NativeStack(StackConfig.load(Path(state_dir))).gc(older_than, echo=report)
    return lines
