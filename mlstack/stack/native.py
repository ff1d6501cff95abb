"""NativeStack: the services of one state directory, started in order (each waited on until
healthy), stopped in reverse, and their status."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

from mlstack.polling import poll_until
from mlstack.stack.config import HOST, Credentials, StackConfig, StackError, StackUsageError
from mlstack.stack.mlflow_server import MlflowServer
from mlstack.stack.pipelines import PrefectServer, RetrainRunner
from mlstack.stack.postgres import Postgres
from mlstack.stack.processes import ProcessTable, port_free
from mlstack.stack.s3 import SeaweedS3
from mlstack.stack.service import Service

log = logging.getLogger(__name__)

STOP_GRACE_S = 20.0  # then SIGKILL


class NativeStack:
    """Start, check and stop the services of one state directory."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state: Path = config.state_dir
        self.pids = ProcessTable(self.state)
        self.postgres = Postgres(config, self.pids)
        self.s3 = SeaweedS3(config, self.pids)
        self.mlflow = MlflowServer(config, self.pids, self.postgres, self.s3)
        started: list[Service] = [self.postgres, self.s3, self.mlflow]
        if config.pipelines:
            started += [
                PrefectServer(config, self.pids, self.postgres),
                RetrainRunner(config, self.pids),
            ]
        # Start order; stopped in reverse.
        self.services: dict[str, Service] = {s.name: s for s in started}

    @property
    def creds(self) -> Credentials:
        """The stack's credentials (generated on first use)."""
        return self.postgres.creds

    def s3_client(self):
        """A boto3 client on the artifact store with the stack's keys (checks and tests)."""
        return self.s3.client()

    def up(self, echo: Callable[[str], None] = log.info) -> None:
        """Start whatever is not running yet, in order, each waited on until healthy."""
        self.config.logs.mkdir(parents=True, exist_ok=True)
        self.config.save()
        # Everything that can be checked is checked before anything starts, so a missing
        # binary or a taken port never leaves half a stack running. Binaries first: a missing
        # one is this machine's problem whatever ports are chosen.
        for service in self.services.values():
            service.preflight()
        self._check_ports()
        for name, service in self.services.items():
            pid = self.pids.alive_pid(name)
            if pid:
                self._adopt(service, pid)
                echo(f"{name:9} already running (pid {pid})")
                continue
            started = time.monotonic()
            echo(f"{name:9} starting ...")
            service.start()
            echo(f"{name:9} ready in {time.monotonic() - started:.1f}s")

    def down(self, purge: bool = False, echo: Callable[[str], None] = log.info) -> None:
        """Stop the recorded processes (reverse order); with `purge`, delete all state too."""
        for name in reversed(self.services):
            self.stop_service(name, echo=echo)
        if purge and self.state.exists():
            shutil.rmtree(self.state)
            echo(f"purged {self.state}")

    def start_service(self, name: str) -> None:
        """Start one service (which must be stopped) and wait until it is healthy."""
        self.services[name].start()

    def stop_service(self, name: str, echo: Callable[[str], None] = log.info) -> None:
        """Stop one service by its recorded pid (its stop signal, SIGKILL after 20 s)."""
        pid = self.pids.alive_pid(name)
        if pid is None:
            self.pids.forget(name)
            return
        os.kill(pid, self.services[name].stop_signal)

        def still_running() -> str | None:
            return "still running" if self.pids.alive_pid(name) else None

        if poll_until(still_running, STOP_GRACE_S, interval_s=0.1) is not None:
            os.kill(pid, signal.SIGKILL)
        self.pids.forget(name)
        echo(f"{name:9} stopped (pid {pid})")

    def status(self) -> dict[str, str]:
        """Per service: 'running (pid N), healthy' (or what is wrong), or 'stopped'."""
        out = {}
        for name, service in self.services.items():
            pid = self.pids.alive_pid(name)
            if pid is None:
                out[name] = "stopped"
                continue
            problem = service.problem()
            out[name] = f"running (pid {pid}), " + (
                f"unhealthy: {problem}" if problem else "healthy"
            )
        return out

    def _adopt(self, service: Service, pid: int) -> None:
        """A service left running by an earlier `up` must be healthy."""
        if problem := service.problem():
            raise StackError(
                f"{service.name} is running (pid {pid}) but unhealthy ({problem}); see "
                f"{service.log_file}, or restart it with `down` then `up`"
            )
        service.adopt()

    def _check_ports(self) -> None:
        for name, service in self.services.items():
            if self.pids.alive_pid(name):
                continue
            for label, port in service.ports().items():
                if not port_free(port):
                    raise StackUsageError(
                        f"port {port} ({label}) on {HOST} is already in use; free it or "
                        f"choose another with {service.port_flag}"
                    )
