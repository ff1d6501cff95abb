"""MLflow tracking setup and the run lifecycle shared by every training entry point.

`tracking_client(settings)` is a client on the store the settings name; `configure_tracking`
also points the process-wide URIs there, for the fluent APIs only. Both are explicit calls
(never done at import). `tracked_run` guarantees a run that started ends FINISHED or FAILED,
never RUNNING, even on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from types import FrameType
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from mlstack.errors import UsageError
from mlstack.provenance import check_container_store, image_code_tags
from mlstack.settings import PROJ_ROOT, Settings

if TYPE_CHECKING:
    from mlstack.registry import PromotionDecision

log = logging.getLogger(__name__)

# An MLflow 3 server with an S3 store tells clients to fetch artifacts (and send big ones)
# straight to S3 with presigned URLs. Those name the server's own S3 endpoint, which clients
# often cannot reach (under compose it is http://s3:8333): downloads then hang in retries.
# Keep all artifact traffic through the server, as --serve-artifacts intends.
PROXIED_ARTIFACTS_ONLY = {
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "false",
}
# MLflow's back-off between retries (seconds, doubling per retry); with Settings.server_retries
# it keeps a request to a broken server failing in seconds, not minutes.
SERVER_BACKOFF_FACTOR = "1"


@dataclass(frozen=True)
class TrainResult:
    """A finished training run: its id, final metrics, model URI and registry decision."""

    run_id: str
    experiment_id: str
    metrics: dict[str, float]
    model_uri: str
    promotion: PromotionDecision | None

    @classmethod
    def of(
        cls,
        run: Run,
        metrics: dict[str, float],
        model_uri: str,
        promotion: PromotionDecision | None,
    ) -> TrainResult:
        """The result of a finished training `run`."""
        return cls(run.info.run_id, run.info.experiment_id, metrics, model_uri, promotion)


def check_training_input(
    params: Any, register_as: str | None, settings: Settings | None
) -> Settings:
    """Validate a training run's parameters and model name (UsageError naming the first
    problem) before anything starts; the settings to use (read from the environment if None)."""
    from mlstack.registry import validate_model_name
    from mlstack.settings import get_settings

    params.validate()
    if register_as is not None:
        validate_model_name(register_as)
    return settings or get_settings()


def pinned_requirements(dists: tuple[str, ...]) -> list[str]:
    """`name==version` for each distribution as installed (the environment mirrors the pins).

    Logged models list these explicitly so MLflow does not spend seconds inferring them.
    """
    return [f"{d}=={version(d)}" for d in dists]


class Terminated(BaseException):
    """Raised in the main thread when the process gets SIGTERM, so cleanup code runs.

    A BaseException like KeyboardInterrupt: `except Exception` blocks must not swallow it.
    """


def tracking_uri(settings: Settings) -> str:
    """The tracking (and registry) URI `settings` name, made ready to use: the embedded store's
    directory exists, or the server answers and MLflow's request options follow `settings`.

    Changes no process-wide MLflow URI; pass the result to `client_for`, or to
    `configure_tracking` where fluent APIs need it.
    """
    # Our commands print one line with the run's link; MLflow's own "View run" line on stdout
    # would make that two (it prints it for server URIs). MLflow reads it from the environment
    # only, and so do the options below.
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    if settings.uses_embedded_store:
        settings.store_dir.mkdir(parents=True, exist_ok=True)
        return settings.embedded_tracking_uri
    uri = str(settings.tracking_uri)
    if uri.startswith(("http://", "https://")):
        check_server(uri)
        # MLflow reads these from the environment at each request, so they are set (not
        # defaulted) from these settings each time: the last settings configured apply, never
        # whichever came first. A value the user exported wins through Settings.server_retries.
        os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = str(settings.server_retries)
        os.environ["MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"] = SERVER_BACKOFF_FACTOR
        os.environ.update(PROXIED_ARTIFACTS_ONLY)
    return uri


def client_for(uri: str) -> MlflowClient:
    """An MlflowClient on `uri` for both tracking and the registry, whatever the process-wide
    URIs are (MlflowClient(uri) alone would take its registry from the process-wide one)."""
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def tracking_client(settings: Settings) -> MlflowClient:
    """A client on the store `settings` name (see tracking_uri); changes no global URI."""
    return client_for(tracking_uri(settings))


def configure_tracking(settings: Settings) -> str:
    """Point the process-wide MLflow URIs (tracking and registry) at the store `settings` name,
    for the fluent APIs (mlflow.start_run, mlflow.log_*, log_model), which take no client.

    Code that can take a client should use `tracking_client` instead.

    Returns:
        The tracking URI in use.
    """
    uri = tracking_uri(settings)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def check_server(
    uri: str,
    timeout_s: float = 5.0,
    *,
    what: str = "tracking server",
    fix: str = "start it (`make stack-up`) or unset MLFLOW_TRACKING_URI to use the embedded store",
) -> None:
    """Fail in seconds, with the fix, when the server at `uri` does not answer `/health`."""
    import requests

    try:
        resp = requests.get(f"{uri.rstrip('/')}/health", timeout=timeout_s)
    except requests.RequestException as exc:
        reason = "connection refused" if "refused" in str(exc) else type(exc).__name__
        raise UsageError(f"{what} {uri} is not reachable ({reason}); {fix}") from exc
    if resp.status_code != 200:
        raise UsageError(f"{what} {uri} answered /health with {resp.status_code}; {fix}")


def describe_server_error(exc: BaseException) -> str:
    """One line for a failed tracking-server call (MLflow's own message runs to a screenful)."""
    text = str(exc)
    if "too many 500 error responses" in text or "status code 500" in text:
        if "mlflow-artifacts" in text:
            return (
                "the tracking server could not store an artifact (HTTP 500): its S3 artifact "
                "store may be down; check `make stack-status` and the server log"
            )
        return "the tracking server failed a request (HTTP 500); check its log"
    if "refused" in text or "Max retries exceeded" in text:
        return "lost the connection to the tracking server; check `make stack-status`"
    return text.strip().splitlines()[0][:300]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "experiment"


def experiment_id_for(name: str, settings: Settings, client: Any = None) -> str:
    """The id of experiment `name`, created if missing.

    On the embedded store the artifact location is pinned to `<store_dir>/mlruns/<name>`;
    MLflow's default is relative to the current directory, which scatters artifacts.
    """
    client = client or mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if settings.uses_embedded_store:
        location = (settings.embedded_artifact_root / _slug(name)).as_uri()
    return client.create_experiment(name, artifact_location=location)


def ensure_experiment(name: str, settings: Settings) -> str:
    """Get or create experiment `name` (see experiment_id_for) and make it active; its id."""
    experiment_id = experiment_id_for(name, settings)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_tags() -> dict[str, str]:
    """Tags naming the code that ran: commit hash and whether the tree had local edits."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJ_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJ_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        # Inside the project image the code is copied without .git; `make image` records the
        # commit it was built from.
        return {"git_commit": os.environ.get("MLSTACK_IMAGE_COMMIT", "unknown")}
    return {"git_commit": commit, "git_dirty": str(bool(dirty)).lower()}


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` for the duration (main thread only)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated(f"received signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def tracked_run(
    experiment: str,
    settings: Settings,
    *,
    entry_point: str,
    run_name: str | None = None,
) -> Iterator[Run]:
    """Start (or, under `mlflow run`, resume) a run; end it FINISHED, or FAILED on any error.

    Under `mlflow run` the run already exists (MLFLOW_RUN_ID) in the experiment chosen on the
    `mlflow run` command line, so `experiment` is not applied there.
    """
    attached = bool(os.environ.get("MLFLOW_RUN_ID"))
    if attached:
        log.info("attaching to the run started by `mlflow run` (%s)", os.environ["MLFLOW_RUN_ID"])
        check_container_store(os.environ, mlflow.get_tracking_uri())
        run_name = None  # `mlflow run` named it already
    else:
        ensure_experiment(experiment, settings)
    with _sigterm_raises():
        run = mlflow.start_run(run_name=run_name)
        try:
            image_tags = image_code_tags(os.environ, run.data.tags) if attached else {}
            mlflow.set_tags({**git_tags(), **image_tags, "entry_point": entry_point})
            yield run
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run(status="FINISHED")


def log_params_once(params: dict[str, object]) -> None:
    """Log params the active run does not have yet.

    `mlflow run` logs the MLproject parameters as typed on its command line ("-P alpha=.5");
    logging "0.5" again under the same key would be rejected as a changed value.
    """
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_params_once needs an active run")
    existing = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    fresh = {k: v for k, v in params.items() if k not in existing}
    if fresh:
        mlflow.log_params(fresh)


def run_link(settings: Settings, experiment_id: str, run_id: str) -> str:
    """Where a person looks at a run: the server URL, or how to open the embedded UI."""
    path = f"#/experiments/{experiment_id}/runs/{run_id}"
    if settings.uses_embedded_store:
        return f"`make ui`, then http://127.0.0.1:5000/{path}"
    return f"{str(settings.tracking_uri).rstrip('/')}/{path}"
