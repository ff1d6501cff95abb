"""Request counters and a latency histogram, rendered in Prometheus' text format.

Per worker process; /metrics merges every worker's snapshot (see supervisor.py).
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from typing import Any

# Seconds. Fine below 10 ms, where a healthy fast path lives.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Thread-safe counters for /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, int]] = Counter()
        self.bucket_counts = [0] * (len(BUCKETS) + 1)
        self.latency_sum = 0.0
        self.latency_count = 0
        self.reloads: Counter[str] = Counter()

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        with self._lock:
            self.requests[(path, status)] += 1
            if path == "/invocations":
                self.bucket_counts[bisect.bisect_left(BUCKETS, seconds)] += 1
                self.latency_sum += seconds
                self.latency_count += 1

    def reloaded(self, outcome: str) -> None:
        """Count a reload attempt ("ok" or "failed")."""
        with self._lock:
            self.reloads[outcome] += 1

    def snapshot(self) -> dict[str, Any]:
        """Everything counted, as plain data (sent between processes)."""
        with self._lock:
            return {
                "requests": [[path, status, n] for (path, status), n in self.requests.items()],
                "bucket_counts": list(self.bucket_counts),
                "latency_sum": self.latency_sum,
                "latency_count": self.latency_count,
                "reloads": dict(self.reloads),
            }

    @classmethod
    def merged(cls, snapshots: list[dict[str, Any]]) -> Metrics:
        """The sum of several workers' snapshots."""
        total = cls()
        for snap in snapshots:
            for path, status, n in snap["requests"]:
                total.requests[(path, status)] += n
            total.bucket_counts = [
                a + b for a, b in zip(total.bucket_counts, snap["bucket_counts"], strict=True)
            ]
            total.latency_sum += snap["latency_sum"]
            total.latency_count += snap["latency_count"]
            total.reloads.update(snap["reloads"])
        return total

    def render(self, model: dict[str, object], workers: int = 1) -> str:
        """The Prometheus text exposition of everything counted so far."""
        with self._lock:
            lines = [
                "# HELP mlstack_requests_total Answered HTTP requests by path and status.",
                "# TYPE mlstack_requests_total counter",
            ]
            for (path, status), n in sorted(self.requests.items()):
                lines.append(f'mlstack_requests_total{{path="{path}",status="{status}"}} {n}')
            lines += [
                "# HELP mlstack_errors_total Requests answered with a 4xx or 5xx status.",
                "# TYPE mlstack_errors_total counter",
                f"mlstack_errors_total {sum(n for (_, s), n in self.requests.items() if s >= 400)}",
                "# HELP mlstack_invocation_seconds Time to answer /invocations.",
                "# TYPE mlstack_invocation_seconds histogram",
            ]
            cumulative = 0
            for bound, n in zip((*BUCKETS, float("inf")), self.bucket_counts, strict=True):
                cumulative += n
                le = "+Inf" if bound == float("inf") else repr(bound)
                lines.append(f'mlstack_invocation_seconds_bucket{{le="{le}"}} {cumulative}')
            lines += [
                f"mlstack_invocation_seconds_sum {self.latency_sum}",
                f"mlstack_invocation_seconds_count {self.latency_count}",
                "# HELP mlstack_reloads_total Model reload attempts by outcome.",
                "# TYPE mlstack_reloads_total counter",
            ]
            for outcome in ("ok", "failed"):
                count = self.reloads[outcome]
                lines.append(f'mlstack_reloads_total{{outcome="{outcome}"}} {count}')
        labels = ",".join(
            f'{k}="{v}"' for k, v in model.items() if k in ("name", "version", "alias") and v
        )
        lines += [
            "# HELP mlstack_model_info The model being served (value is always 1).",
            "# TYPE mlstack_model_info gauge",
            f"mlstack_model_info{{{labels}}} 1",
            "# HELP mlstack_workers Worker processes answering requests.",
            "# TYPE mlstack_workers gauge",
            f"mlstack_workers {workers}",
        ]
        return "\n".join(lines) + "\n"
