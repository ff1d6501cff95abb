"""Request counters and a latency histogram (prometheus_client), rendered in Prometheus' text
format.

Under the server every worker writes its counts to files in a private directory
(prometheus_client's multiprocess mode; `metrics_dir` makes it, for one server start), and the
supervisor renders them summed, with what only it knows: reloads, the model, live workers
(`render_server`). An app without a supervisor (tests, embedding) renders its own counts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

# Seconds. Fine below 10 ms, where a healthy fast path lives.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# prometheus_client reads it when a worker creates its metrics (hence set before they start).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
RELOAD_OUTCOMES = ("ok", "failed")


class Metrics:
    """One app's counters: into its own registry, or the multiprocess files under a server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "mlstack_requests",
            "Answered HTTP requests by path and status.",
            ["path", "status"],
            registry=self.registry,
        )
        self._errors = Counter(
            "mlstack_errors", "Requests answered with a 4xx or 5xx status.", registry=self.registry
        )
        self._latency = Histogram(
            "mlstack_invocation_seconds",
            "Time to answer /invocations.",
            buckets=BUCKETS,
            registry=self.registry,
        )
        self._model_calls = Counter(
            "mlstack_model_calls",
            "Calls of a tensor model by the fast path (batched requests share one).",
            registry=self.registry,
        )
        self._batched = Counter(
            "mlstack_batched_requests",
            "Requests answered by those calls.",
            registry=self.registry,
        )
        # labels() takes a lock and builds a key per call: the children, cached, cost less.
        self._by_label: dict[tuple[str, int], Counter] = {}

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        child = self._by_label.get((path, status))
        if child is None:
            child = self._by_label[(path, status)] = self._requests.labels(path, str(status))
        child.inc()
        if status >= 400:
            self._errors.inc()
        if path == "/invocations":
            self._latency.observe(seconds)

    def model_call(self, requests: int) -> None:
        """Count one tensor-model call that answered `requests` requests."""
        self._model_calls.inc()
        self._batched.inc(requests)

    def render(self, model: Mapping[str, object]) -> str:
        """This app's counts alone, as Prometheus text (no supervisor: one worker, no reloads)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Without(self.registry, "_created"))  # as the server's files render
        registry.register(_ServerFacts(model, workers=1, reloads={}))
        return generate_latest(registry).decode()


def render_server(
    directory: Path, model: Mapping[str, object], workers: int, reloads: Mapping[str, int]
) -> str:
    """The server's /metrics: every worker's counts in `directory` summed, then the reloads,
    the model being served and the live workers (the supervisor's)."""
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=str(directory))
    registry.register(_ServerFacts(model, workers, reloads))
    return generate_latest(registry).decode()


def worker_gone(directory: Path, pid: int) -> None:
    """prometheus_client's bookkeeping for a dead worker (its counts stay in the sums)."""
    mark_process_dead(pid, str(directory))


@contextlib.contextmanager
def metrics_dir() -> Iterator[Path]:
    """A private directory for one server start's multiprocess metrics, named in the
    environment the workers inherit while it lasts; removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="mlstack-metrics-"))
    before = os.environ.get(MULTIPROC_ENV)
    # prometheus_client takes the directory only from the environment, in each worker.
    os.environ[MULTIPROC_ENV] = str(directory)
    try:
        yield directory
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
        shutil.rmtree(directory, ignore_errors=True)


class _Without:
    """A registry's metrics less the samples whose names end in `suffix`."""

    def __init__(self, registry: CollectorRegistry, suffix: str) -> None:
        self.registry = registry
        self.suffix = suffix

    def collect(self) -> Iterable[Metric]:
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith(self.suffix)]
            yield family


class _ServerFacts:
    """Reload outcomes, the model being served (always 1) and the worker count."""

    def __init__(
        self, model: Mapping[str, object], workers: int, reloads: Mapping[str, int]
    ) -> None:
        self.model = model
        self.workers = workers
        self.reloads = reloads

    def collect(self) -> Iterable[Metric]:
        reloads = CounterMetricFamily(
            "mlstack_reloads", "Model reload attempts by outcome.", labels=["outcome"]
        )
        for outcome in RELOAD_OUTCOMES:
            reloads.add_metric([outcome], self.reloads.get(outcome, 0))
        yield reloads
        labels = {
            k: str(v) for k, v in self.model.items() if k in ("name", "version", "alias") and v
        }
        info = GaugeMetricFamily(
            "mlstack_model_info",
            "The model being served (value is always 1).",
            labels=list(labels),
        )
        info.add_metric(list(labels.values()), 1)
        yield info
        yield GaugeMetricFamily(
            "mlstack_workers", "Worker processes answering requests.", value=self.workers
        )
