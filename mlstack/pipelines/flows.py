"""The Prefect flow: one retraining pipeline run (retrain.py), its steps as Prefect tasks, so
the Prefect UI shows each run, its steps and their logs. Deployments are named
`retrain/<model>`."""

from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from mlstack.pipelines.retrain import run_pipeline

FLOW_NAME = "retrain"


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
