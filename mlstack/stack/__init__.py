"""The native tracking stack, without Docker: PostgreSQL + SeaweedFS S3 + MLflow server.

    python -m mlstack.stack up|down|status|env [--state-dir DIR] [--mlflow-port N ...]

The same layout as docker-compose.yml: PostgreSQL is the backend store, an S3 bucket is the
artifact store, and the MLflow server proxies artifacts (`--serve-artifacts`), so clients need
only MLFLOW_TRACKING_URI. Everything binds to 127.0.0.1. State (data, logs, generated
credentials, pids) lives in one directory; `down` stops exactly the processes `up` started.

Modules: config (ports, names, generated credentials), processes (pids, ports, health waits),
service (the interface each service implements), postgres, s3, mlflow_server (one per
service), native (NativeStack: the services in order), __main__ (the command line).
"""

from mlstack.stack.config import Credentials, StackConfig, StackError
from mlstack.stack.native import NativeStack
from mlstack.stack.processes import find_free_ports, free_port

__all__ = [
    "Credentials",
    "NativeStack",
    "StackConfig",
    "StackError",
    "find_free_ports",
    "free_port",
]
