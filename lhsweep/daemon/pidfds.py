"""pidfds of running instance-managers' main processes: a prompt wake when one exits.

Only a trigger for the polling CRI watch: nothing learnt here reaches a verdict, and a pid that
cannot be learnt, opened or proven to be the container's leaves that container without a pidfd.
A pid is the container's when, after pidfd_open(), its /proc/<pid>/cgroup on the host names the
container id; pids are only compared at all when lhsweep shares the host's pid namespace (a
container without hostPID does not). A pidfd follows the process it was opened on, yet a pid
number passes to another process once its own is reaped, so the open or the cgroup read can meet
another process than the runtime meant: that costs at most a missed or an early wake, since an
exit only makes the watcher ask the runtime sooner.
"""

from __future__ import annotations

import math
import os
import select
from collections.abc import Iterable
from typing import Callable, Optional

from lhsweep.errors import HostReadError, RuntimeQueryError
from lhsweep.host import HostRoot

PidLookup = Callable[[str, float, Iterable[str]], dict[str, int]]


def runtime_pids(endpoint: str, timeout: float, container_ids: Iterable[str]) -> dict[str, int]:
    """Each container's main process pid as the runtime names it; the others left out."""
    from lhsweep.cri.client import CriClient  # noqa: PLC0415 (grpc only in the daemon)

    pids: dict[str, int] = {}
    with CriClient(endpoint, timeout) as client:
        for container_id in container_ids:
            try:
                pid = client.container_pid(container_id)
            except RuntimeQueryError:
                continue
            if pid is not None:
                pids[container_id] = pid
    return pids


def same_pid_namespace(host: HostRoot) -> bool:
    """True when the host's /proc/1 is in lhsweep's own pid namespace (runtime pids are ours)."""
    try:
        own = os.readlink("/proc/self/ns/pid")
        host_init = host.readlink("/proc/1/ns/pid")
    except (OSError, HostReadError):
        return False
    return host_init is not None and host_init == own


def open_pidfd(host: HostRoot, container_id: str, pid: int) -> Optional[int]:
    """A pidfd of `pid` when its host cgroup names the container, else None."""
    if pid <= 1 or not container_id:
        return None
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return None
    try:
        cgroup = host.read_text(f"/proc/{pid}/cgroup")
    except HostReadError:
        cgroup = None
    if cgroup is None or container_id not in cgroup:
        os.close(fd)
        return None
    return fd


class ExitWatch:
    """Holds a pidfd per watched container; wait() reports the ones whose process exited."""

    def __init__(self, host: Optional[HostRoot], lookup: PidLookup = runtime_pids) -> None:
        self._host = host
        self._lookup = lookup
        self._asked: Optional[tuple[str, frozenset[str]]] = None
        self._pidfds: dict[int, str] = {}
        self.watched: frozenset[str] = frozenset()

    def track(self, endpoint: str, timeout: float, container_ids: frozenset[str]) -> None:
        """Hold pidfds for these containers' processes (none for host None); no-op if unchanged."""
        if (endpoint, container_ids) == self._asked:
            return
        self.close()
        self._asked = (endpoint, container_ids)
        if self._host is None or not endpoint or not container_ids:
            return
        if not same_pid_namespace(self._host):
            return
        try:
            pids = self._lookup(endpoint, timeout, sorted(container_ids))
        except Exception:  # a bug here must not end the watch: no pidfds, polling goes on
            return
        for container_id, pid in sorted(pids.items()):
            fd = open_pidfd(self._host, container_id, pid)
            if fd is not None:
                self._pidfds[fd] = container_id
        self.watched = frozenset(self._pidfds.values())

    def wait(self, stop_fd: int, timeout: float) -> list[str]:
        """Block until `stop_fd` or a pidfd is readable, at most `timeout` s; the exited ones."""
        poller = select.poll()
        for fd in (stop_fd, *self._pidfds):
            poller.register(fd, select.POLLIN)
        ready = [fd for fd, _ in poller.poll(math.ceil(max(timeout, 0.0) * 1000))
                 if fd in self._pidfds]
        exited = sorted(self._pidfds.pop(fd) for fd in ready)
        for fd in ready:
            os.close(fd)
        self.watched = frozenset(self._pidfds.values())
        return exited

    def close(self) -> None:
        """Close every pidfd; the next track() asks again whatever it is given."""
        fds, self._pidfds = self._pidfds, {}
        self.watched = frozenset()
        self._asked = None
        for fd in fds:
            os.close(fd)
