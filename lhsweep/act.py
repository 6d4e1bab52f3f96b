"""Actions: re-check each stale entry right before removing it, take Longhorn's locks, remove."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable, Optional

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory import DmControl, read_dm_device, read_mounts, read_subsystems
from lhsweep.longhorn import LEGACY_LOCK, volume_lock_path
from lhsweep.model import (
    ActionOutcome,
    ActionResult,
    DevNum,
    Entry,
    Kind,
    Plan,
    table_fingerprint,
)
from lhsweep.tools import ToolResult, ToolRunner

LONGHORN_DEV_DIR = "/dev/longhorn"


class _Skip(Exception):
    """The entry is left alone this sweep; the message says why."""


class _Satisfied(_Skip):
    """Not removed now, yet what waits for it may go ahead (already gone, or a dry run)."""


@dataclass
class Actor:
    """Carries out a plan's removals on one host, in order, each after its own re-check."""

    host: HostRoot
    runner: ToolRunner
    dm_control: Optional[DmControl] = None
    should_stop: Callable[[], bool] = lambda: False
    # Told of each outcome as soon as it is known, so that it is recorded before the next action.
    on_outcome: Callable[[Entry, ActionOutcome], None] = lambda entry, outcome: None

    def execute(self, plan: Plan, dry_run: bool) -> tuple[ActionOutcome, ...]:
        """Remove every stale entry whose prerequisites went first; one outcome per removal."""
        done: set[tuple[Kind, str]] = set()
        outcomes = []
        for entry in plan.removals:
            outcomes.append(self._one(entry, done, dry_run))
            self.on_outcome(entry, outcomes[-1])
        return tuple(outcomes)

    def _one(self, entry: Entry, done: set[tuple[Kind, str]], dry_run: bool) -> ActionOutcome:
        started = time.monotonic()
        waiting = [f"{k.value} {n}" for k, n in entry.after if (k, n) not in done]
        try:
            if self.should_stop():
                raise _Skip("not started: lhsweep is stopping")
            if waiting:
                raise _Skip(f"waits for {', '.join(waiting)}, which was not removed")
            self._refuse_if_stuck(entry)
            result = self._remove(entry, dry_run)
        except _Satisfied as satisfied:
            done.add((entry.kind, entry.name))
            return self._outcome(entry, ActionResult.SKIPPED, str(satisfied), started)
        except _Skip as skip:
            return self._outcome(entry, ActionResult.SKIPPED, str(skip), started)
        except HostReadError as exc:
            return self._outcome(entry, ActionResult.SKIPPED, f"cannot re-check it: {exc}", started)
        if result.ok:
            done.add((entry.kind, entry.name))
            return self._outcome(entry, ActionResult.REMOVED, result.summary(), started)
        return ActionOutcome(entry.kind, entry.name, ActionResult.FAILED, result.summary(),
                             entry.volume, time.monotonic() - started, result.stuck)

    @staticmethod
    def _outcome(entry: Entry, result: ActionResult, detail: str, started: float) -> ActionOutcome:
        return ActionOutcome(entry.kind, entry.name, result, detail, entry.volume,
                             time.monotonic() - started)

    def _refuse_if_stuck(self, entry: Entry) -> None:
        for proc in self.runner.stuck():
            if entry.name in proc.argv:
                raise _Skip(f"an earlier {proc.argv[0]} (pid {proc.pid}) for it is still stuck")

    def _remove(self, entry: Entry, dry_run: bool) -> ToolResult:
        recheck = {Kind.DM: self._recheck_dm, Kind.NODE: self._recheck_node, Kind.NVME: self._recheck_nvme}
        # In a dry run the prerequisites stay, so only an entry without any can be re-checked.
        if not (dry_run and entry.after):
            recheck[entry.kind](entry)
        if dry_run:
            raise _Satisfied("dry run: would remove")
        with self._longhorn_locks(entry.volume or entry.name):
            recheck[entry.kind](entry)
            if entry.kind is Kind.DM:
                return self.runner.run(["dmsetup", "remove", entry.name])
            if entry.kind is Kind.NVME:
                return self.runner.run(["nvme", "disconnect", "--nqn", entry.name])
            return self._unlink_node(entry)

    # ------------------------------------------------------------ re-checks (rule 5)

    def _recheck_dm(self, entry: Entry) -> None:
        dm = read_dm_device(self.host, entry.name, self.dm_control)
        if dm is None:
            raise _Satisfied("already gone")
        if dm.targets is None:
            raise _Skip("its table could not be read right before removal")
        if dm.dev != entry.identity.dev:
            raise _Skip(f"now {dm.dev}, planned as {entry.identity.dev}: re-created since")
        if table_fingerprint(dm.targets) != entry.identity.fingerprint:
            raise _Skip("its table changed since it was planned (reloaded?)")
        busy = self._dm_busy_now(dm.dev, dm.open_count, dm.holders, dm.suspended, dm.deferred_remove)
        if busy:
            raise _Skip(f"became busy: {busy}")

    def _dm_busy_now(self, dev: DevNum, opens: Optional[int], holders: tuple[str, ...],
                     suspended: bool, deferred: bool) -> str:
        if opens is None:
            return "open count unreadable"
        mounted = [m.mount_point for m in read_mounts(self.host) if m.dev == dev]
        facts = [
            f"open {opens} time(s)" if opens else "",
            f"mounted on {', '.join(mounted)}" if mounted else "",
            f"held by {', '.join(holders)}" if holders else "",
            "suspended" if suspended else "",
            "deferred removal pending" if deferred else "",
        ]
        return "; ".join(f for f in facts if f)

    def _recheck_node(self, entry: Entry) -> None:
        with self._dev_longhorn() as dir_fd:
            self._same_node(dir_fd, entry)

    def _same_node(self, dir_fd: int, entry: Entry) -> None:
        """Rule 6: lstat relative to the directory fd; only the very block node planned qualifies."""
        try:
            st = os.stat(entry.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise _Satisfied("already gone") from None
        if not stat.S_ISBLK(st.st_mode):
            raise _Skip("no longer a block node")
        rdev = DevNum(os.major(st.st_rdev), os.minor(st.st_rdev))
        if rdev != entry.identity.dev or st.st_ino != entry.identity.inode:
            raise _Skip(f"replaced since it was planned (now {rdev}, inode {st.st_ino})")

    def _recheck_nvme(self, entry: Entry) -> None:
        found = [s for s in read_subsystems(self.host) if s.nqn == entry.name and s.controllers]
        if not found:
            raise _Satisfied("already gone")
        mounts = {m.dev for m in read_mounts(self.host)}
        for ns in (ns for s in found for ns in s.namespaces):
            if ns.holders or ns.dev in mounts:
                raise _Skip(f"became busy: {ns.name} is held or mounted")

    # ------------------------------------------------------------ removal helpers

    @contextlib.contextmanager
    def _dev_longhorn(self) -> Iterator[int]:
        try:
            fd = self.host.open_dir_fd(LONGHORN_DEV_DIR)
        except OSError as exc:
            raise _Skip(f"cannot open {LONGHORN_DEV_DIR}: {exc.strerror}") from None
        try:
            yield fd
        finally:
            os.close(fd)

    def _unlink_node(self, entry: Entry) -> ToolResult:
        started = time.monotonic()
        argv = ("unlink", f"{LONGHORN_DEV_DIR}/{entry.name}")
        with self._dev_longhorn() as dir_fd:
            self._same_node(dir_fd, entry)
            try:
                os.unlink(entry.name, dir_fd=dir_fd)
            except OSError as exc:
                return ToolResult(argv, 1, "", exc.strerror or str(exc), time.monotonic() - started)
        return ToolResult(argv, 0, "", "", time.monotonic() - started)

    @contextlib.contextmanager
    def _longhorn_locks(self, volume: str) -> Iterator[None]:
        """Rule 4: take go-spdk-helper's per-volume and global flocks without waiting."""
        with contextlib.ExitStack() as stack:
            for path in (volume_lock_path(volume), LEGACY_LOCK):
                stack.enter_context(self._flock(path))
            yield

    @contextlib.contextmanager
    def _flock(self, path: str) -> Iterator[None]:
        real = self.host.path(path)
        try:
            os.makedirs(os.path.dirname(real), mode=0o755, exist_ok=True)
            # Read-only is enough for flock, and works where the sandbox keeps /run read-only.
            fd = os.open(real, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _Skip(f"cannot open Longhorn lock {path}: {exc.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise _Skip(f"Longhorn lock {path} is held by another process") from None
                raise _Skip(f"cannot lock {path}: {exc.strerror}") from None
            yield
        finally:
            os.close(fd)
