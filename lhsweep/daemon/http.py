"""Container mode's HTTP server: /metrics (Prometheus text), /healthz and /readyz for the probes."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from socketserver import ThreadingMixIn
from typing import Any, Callable, Optional
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from lhsweep.daemon.loop import STALL_SLACK_S, Daemon
from lhsweep.metrics import CONTENT_TYPE
from lhsweep.tools import KILL_GRACE_S

StartResponse = Callable[..., Any]

METRICS_PATH, LIVE_PATH, READY_PATH = "/metrics", "/healthz", "/readyz"


class Health:
    """Liveness and readiness of a Daemon, as the probes see them.

    Live: no sweep is stalled, and a sweep finished (or the daemon started) within one resync
    interval plus the bound on one sweep. Sweeps end at least once per resync interval
    whatever happens (a lock held, the runtime down), so a longer silence means the loop is
    dead. The change of the sweep count is noticed when a probe asks: probes come every few
    seconds, so the age is at most one probe period short.
    Ready: the boot sweep has finished.
    """

    def __init__(self, daemon: Daemon, clock: Callable[[], float] = time.monotonic) -> None:
        self.daemon = daemon
        self.clock = clock
        self._lock = threading.Lock()
        self._count = daemon.reporter.sweep_number
        self._since = clock()

    def live(self) -> tuple[bool, str]:
        """(alive, why) for /healthz."""
        now = self.clock()
        with self._lock:
            if self.daemon.reporter.sweep_number != self._count:
                self._count, self._since = self.daemon.reporter.sweep_number, now
            count, age = self._count, now - self._since
        stalled = self.daemon.stalled_for(now)
        if stalled is not None:
            return False, f"the running sweep made no progress for {stalled:.0f}s"
        config = self.daemon.config
        limit = config.daemon_resync_interval + config.sweep_action_timeout + KILL_GRACE_S \
            + STALL_SLACK_S
        what = f"sweep {count} finished" if count else "started"
        if age > limit:
            return False, f"{what} {age:.0f}s ago, more than {limit:.0f}s"
        return True, f"{what} {age:.0f}s ago"

    def ready(self) -> tuple[bool, str]:
        """(ready, why) for /readyz: the daemon's current status line."""
        return self.daemon.ready, self.daemon.reporter.status


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes and scrapes are not decisions: no log line each."""


def make_app(health: Health) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    """The WSGI application: /metrics, /healthz, /readyz, 404 elsewhere."""
    metrics = health.daemon.reporter.metrics
    checks = {LIVE_PATH: health.live, READY_PATH: health.ready}

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == METRICS_PATH:
            start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
            return [metrics.render().encode()]
        check = checks.get(path)
        if check is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics, /healthz or /readyz\n"]
        ok, why = check()
        start_response("200 OK" if ok else "503 Service Unavailable",
                       [("Content-Type", "text/plain")])
        return [f"{'ok' if ok else 'failing'}: {why}\n".encode()]

    return app


class HttpServer:
    """The server, bound at once, serving on its own thread after start(); close() stops it."""

    def __init__(self, health: Health, port: int, address: str = "") -> None:
        self._server = make_server(address, port, make_app(health), _Server, _QuietHandler)
        self.port = self._server.server_port
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Serve on a thread of its own."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="lhsweep-http",
                                        daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
