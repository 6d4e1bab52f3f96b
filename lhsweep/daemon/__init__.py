"""`lhsweep daemon`: the long-running host service (boot sweep, triggers, notify, journal, metrics).

READY=1 is sent after the first sweep attempt whatever it learnt: when the container runtime
is not up yet at boot (it often starts after this unit), waiting for it would hold up boot
until systemd's start timeout killed us. The STATUS line then says the runtime is unknown and
when the next attempt is; nothing is removed until a sweep has a known runtime.
"""

from __future__ import annotations

import sys

from lhsweep.config import Config, load
from lhsweep.container import container_mode
from lhsweep.daemon.container import run_in_container
from lhsweep.daemon.cri_watch import CriWatcher, open_event_stream
from lhsweep.daemon.inotify import PodDirWatcher
from lhsweep.daemon.loop import Daemon, Parts
from lhsweep.daemon.notify import Notifier
from lhsweep.daemon.uevents import UeventWatcher
from lhsweep.daemon.worker import SweepFn, TrackedRunner
from lhsweep.errors import ConfigError
from lhsweep.journal import open_journal
from lhsweep.model import SweepReport

EXIT_OK = 0
EXIT_USAGE = 64
EXIT_CONFIG = 78  # EX_CONFIG; systemd's RestartPreventExitStatus= can name it

__all__ = ["EXIT_CONFIG", "Daemon", "Parts", "default_parts", "run"]


def default_sweeper(host_root: str, runner: TrackedRunner) -> SweepFn:
    """The real sweep (inventory, CRI, plan, act) on `host_root`, sharing the daemon's runner."""
    from lhsweep.cri.view import query_runtime  # noqa: PLC0415 (grpc only when sweeping)
    from lhsweep.host import HostRoot  # noqa: PLC0415
    from lhsweep.sweep import run_sweep  # noqa: PLC0415

    host = HostRoot(host_root)

    def sweep(config: Config) -> SweepReport:
        return run_sweep(config, host, dry_run=config.sweep_dry_run, runner=runner,
                         query=query_runtime, should_stop=lambda: runner.stopping)

    return sweep


def default_cri_watcher(config: Config) -> CriWatcher:
    """A CRI watcher on the real runtime."""
    from lhsweep.cri.view import query_runtime  # noqa: PLC0415

    return CriWatcher(config, open_event_stream, query_runtime)


def default_parts(log_target: str, verbose: bool = False) -> Parts:
    """The production pieces: real inotify, uevents, CRI, sd_notify and journal."""
    return Parts(sweeper=default_sweeper, pod_watcher=PodDirWatcher, uevents=UeventWatcher,
                 cri_watcher=default_cri_watcher, notifier=Notifier(),
                 journal=open_journal(log_target, verbose))


def run(config_path: str, host_root: str, log_target: str, verbose: bool = False) -> int:
    """Run the daemon until SIGTERM/SIGINT; the process exit code (78 for a bad config)."""
    try:
        config = load(config_path)
    except ConfigError as exc:
        print(f"lhsweep: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        parts = default_parts(log_target, verbose)
    except ValueError as exc:
        print(f"lhsweep: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if container_mode():
        return run_in_container(config_path, host_root, config, parts, log_target)
    return Daemon(config_path, host_root, config, parts).run()
