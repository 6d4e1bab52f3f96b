"""The daemon in container mode: decisions on stdout, and the HTTP server beside the main loop."""

from __future__ import annotations

import dataclasses

from lhsweep.config import Config
from lhsweep.container import StdoutJournal
from lhsweep.daemon.http import Health, HttpServer
from lhsweep.daemon.loop import Daemon, Parts
from lhsweep.journal import ERR, INFO, Event


def run_in_container(config_path: str, host_root: str, config: Config, parts: Parts,
                     log_target: str) -> int:
    """Run the daemon like the host service, logging to stdout unless a target was asked for."""
    if log_target == "auto":
        parts = dataclasses.replace(parts, journal=StdoutJournal(parts.journal.verbose))
    daemon = Daemon(config_path, host_root, config, parts)
    try:
        server = HttpServer(Health(daemon), config.metrics_port)
    except OSError as exc:
        daemon.journal.emit(ERR, f"cannot serve HTTP on port {config.metrics_port} (metrics.port "
                            f"in {config_path}): {exc.strerror or exc}", Event.LIFECYCLE)
        return 1
    server.start()
    daemon.journal.emit(INFO, f"serving /metrics, /healthz and /readyz on port {server.port}",
                        Event.LIFECYCLE)
    try:
        return daemon.run()
    finally:
        server.close()
