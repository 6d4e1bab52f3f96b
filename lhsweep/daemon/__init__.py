"""`lhsweep daemon`: the long-running host service (boot sweep, triggers, notify, journal, metrics).

READY=1 is sent once the boot sweep has made its plan (or ended without one), whatever it
learnt: when the container runtime is not up yet at boot (it often starts after this unit),
waiting for it would hold up boot until systemd's start timeout killed us, and so would waiting
for removals stuck in the kernel. The STATUS line then says the runtime is unknown and when the
next attempt is; nothing is removed until a sweep has a known runtime.
"""

from __future__ import annotations

import sys

from lhsweep.config import Config, load
from lhsweep.container import container_mode
from lhsweep.daemon.cri_watch import CriWatcher, open_event_stream
from lhsweep.daemon.inotify import PodDirWatcher
from lhsweep.daemon.loop import Daemon, Parts
from lhsweep.daemon.notify import Notifier
from lhsweep.daemon.pidfds import ExitWatch
from lhsweep.daemon.uevents import UeventWatcher
from lhsweep.daemon.worker import SweepFn, TrackedRunner
from lhsweep.errors import ConfigError, LockBusyError, PrivilegeError, StateError
from lhsweep.journal import open_journal
from lhsweep.model import SweepReport
from lhsweep.progress import Progress

EXIT_USAGE = 64  # EX_USAGE; a bad configuration, privilege or state.dir: the error's own status

__all__ = ["Daemon", "Parts", "default_parts", "run"]


def default_sweeper(host_root: str, runner: TrackedRunner, progress: Progress) -> SweepFn:
    """The real sweep (inventory, CRI, plan, act) on `host_root`, sharing the daemon's runner,
    telling `progress` of its plan and of each outcome as they come."""
    from lhsweep.cri.view import query_runtime  # noqa: PLC0415 (grpc only when sweeping)
    from lhsweep.host import HostRoot  # noqa: PLC0415
    from lhsweep.sweep import run_sweep  # noqa: PLC0415

    host = HostRoot(host_root)

    def sweep(config: Config) -> SweepReport:
        return run_sweep(config, host, dry_run=config.sweep_dry_run, runner=runner,
                         query=query_runtime, should_stop=lambda: runner.stopping,
                         progress=progress)

    return sweep


def check_state_dir(state_dir: str) -> None:
    """Fail at start, once, when the sweep lock cannot be made (not root, read-only...)."""
    from lhsweep.sweep import sweep_lock  # noqa: PLC0415

    try:
        with sweep_lock(state_dir):
            return
    except LockBusyError:
        return  # a one-shot sweep runs: the directory is usable


def default_cri_watcher(config: Config, host_root: str) -> CriWatcher:
    """A started CRI watcher on the real runtime (kubelet's, found below `host_root`)."""
    # grpc.aio (the event stream's) is set up here, in the main thread: set up first in the
    # watcher's thread, the idle daemon woke ~1 time a second more (152 -> 210 a minute).
    import lhsweep.cri.events  # noqa: F401, PLC0415
    from lhsweep.cri.view import query_runtime  # noqa: PLC0415
    from lhsweep.host import HostRoot  # noqa: PLC0415

    host = HostRoot(host_root)
    watcher = CriWatcher(config, open_event_stream, lambda c: query_runtime(c, host),
                         exits=ExitWatch(host))
    watcher.start()
    return watcher


def default_parts(log_target: str, verbose: bool = False, host_root: str = "/") -> Parts:
    """The production pieces: real inotify, uevents, CRI, sd_notify and journal."""
    return Parts(sweeper=default_sweeper, pod_watcher=PodDirWatcher, uevents=UeventWatcher,
                 cri_watcher=lambda config: default_cri_watcher(config, host_root),
                 notifier=Notifier(),
                 journal=open_journal(log_target, verbose), state_dir_check=check_state_dir)


def run(config_path: str, host_root: str, log_target: str, verbose: bool = False) -> int:
    """Run the daemon until SIGTERM/SIGINT; the process exit code (78 for a bad config)."""
    try:
        config = load(config_path)
        check_state_dir(config.state_dir)
    except (ConfigError, PrivilegeError, StateError) as exc:
        print(exc.stderr_line(), file=sys.stderr)
        return exc.exit_status
    try:
        parts = default_parts(log_target, verbose, host_root)
    except ValueError as exc:
        print(f"lhsweep: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if container_mode():
        # The HTTP server (wsgiref, http.server, email, ssl) only where it serves the probes.
        from lhsweep.daemon.container import run_in_container  # noqa: PLC0415

        return run_in_container(config_path, host_root, config, parts, log_target)
    return Daemon(config_path, host_root, config, parts).run()
