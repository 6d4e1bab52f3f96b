"""Actions: re-check each stale entry right before removing it, take Longhorn's locks, remove."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable, Optional

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory import (
    DmControl,
    DmsetupDmControl,
    read_dm_device,
    read_subsystems,
    read_usage,
    select_dm_control,
)
from lhsweep.inventory.sysfs import SYS_BLOCK, kernel_name_of, read_holders
from lhsweep.locks import LockUnavailable, longhorn_locks
from lhsweep.model import (
    ActionOutcome,
    ActionResult,
    DevNum,
    DmDevice,
    Entry,
    Identity,
    Kind,
    Plan,
    device_at,
    table_fingerprint,
)
from lhsweep.tools import ToolResult, ToolRunner
from lhsweep.usage import DeviceUse, dm_kernel_use

LONGHORN_DEV_DIR = "/dev/longhorn"


class _Skip(Exception):
    """The entry is left alone this sweep; the message says why."""


class _Satisfied(_Skip):
    """Not removed now, yet what waits for it may go ahead (already gone, or a dry run)."""


def _same_dm(dm: DmDevice, planned: Identity, whose: str) -> None:
    """Skip unless `dm` is still the planned device: its number and its table's shape."""
    if dm.targets is None:
        raise _Skip(f"{whose}its table could not be read right before removal")
    if dm.dev != planned.dev:
        raise _Skip(f"{whose}now {dm.dev}, planned as {planned.dev}: re-created since")
    if table_fingerprint(dm.targets) != planned.fingerprint:
        raise _Skip(f"{whose}its table changed since it was planned (reloaded?)")


@dataclass
class Actor:
    """Carries out a plan's removals on one host, in order, each after its own re-check."""

    host: HostRoot
    runner: ToolRunner
    dm_control: Optional[DmControl] = None
    should_stop: Callable[[], bool] = lambda: False
    # Told of each outcome as soon as it is known, so that it is recorded before the next action.
    on_outcome: Callable[[Entry, ActionOutcome], None] = lambda entry, outcome: None
    # Remove through dmsetup and nvme-cli rather than in-process (config sweep.removal = "tools").
    use_tools: bool = False
    # Why no removal may start now ("" while the runtime still says what the plan saw).
    runtime_changed: Callable[[], str] = lambda: ""

    def execute(self, plan: Plan, dry_run: bool) -> tuple[ActionOutcome, ...]:
        """Remove every stale entry whose prerequisites went first; one outcome per removal."""
        done: set[tuple[Kind, str]] = set()
        outcomes = []
        try:
            for entry in plan.removals:
                outcomes.append(self._one(entry, done, dry_run))
                self.on_outcome(entry, outcomes[-1])
        finally:
            self.runner.close_helper()
        return tuple(outcomes)

    def _one(self, entry: Entry, done: set[tuple[Kind, str]], dry_run: bool) -> ActionOutcome:
        started = time.monotonic()
        waiting = [f"{k.value} {n}" for k, n in entry.after if (k, n) not in done]
        try:
            if self.should_stop():
                raise _Skip("not started: lhsweep is stopping")
            if waiting:
                raise _Skip(f"waits for {', '.join(waiting)}, which was not removed")
            self._confirm_runtime()
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
        if dry_run:
            # The prerequisites stay, so only an entry without any can be re-checked; under the
            # same locks as a removal: the re-check probes namespaces for claims (O_EXCL).
            if not entry.after:
                with self._longhorn_locks(entry.volume or entry.name):
                    self._recheck(entry)
            raise _Satisfied("dry run: would remove")
        with self._longhorn_locks(entry.volume or entry.name):
            # The runtime once more after the re-check (which may read every process's tables):
            # the removal itself never rests on an answer older than RECONFIRM_AFTER_S.
            if entry.kind is Kind.DM:
                self._recheck_dm(entry)
                self._confirm_runtime()
                return self._control().remove(entry.name, self.runner)
            if entry.kind is Kind.NVME:
                controllers = self._recheck_nvme(entry)
                self._confirm_runtime()
                return self._disconnect(entry.name, controllers)
            self._recheck_node(entry)
            self._confirm_runtime()
            return self._unlink_node(entry)

    def _confirm_runtime(self) -> None:
        changed = self.runtime_changed()
        if changed:
            raise _Skip(f"not started: {changed}")

    def _recheck(self, entry: Entry) -> None:
        if entry.kind is Kind.DM:
            self._recheck_dm(entry)
        elif entry.kind is Kind.NODE:
            self._recheck_node(entry)
        else:
            self._recheck_nvme(entry)

    def _control(self) -> DmControl:
        """dmsetup when asked for the tools, else the control the inventory used, else the host's own."""
        if self.use_tools:
            return DmsetupDmControl()
        control = self.dm_control if self.dm_control is not None else select_dm_control(self.host)[0]
        if control is None:
            raise _Skip("no dm control to remove it with (no /dev/mapper/control, no dmsetup)")
        return control

    # ------------------------------------------------------------ re-checks (rule recheck-before-action)

    def _recheck_dm(self, entry: Entry) -> None:
        dm = read_dm_device(self.host, entry.name, self.dm_control)
        if dm is None:
            raise _Satisfied("already gone")
        _same_dm(dm, entry.identity, "")
        parent = entry.identity.parent
        if parent is not None:  # an -encrypted child goes only while its parent is the one planned
            found = read_dm_device(self.host, parent.name, self.dm_control)
            if found is None:
                raise _Skip(f"its parent dm {parent.name} is gone")
            _same_dm(found, parent, f"its parent dm {parent.name}: ")
        gone = entry.identity.backing_gone
        back = kernel_name_of(self.host, gone) if gone is not None else None
        if back is not None:
            raise _Skip(f"its backing {gone}, gone when planned, is {back} now: a connection made "
                        "since took its number (re-adopted?)")
        # The kernel's own count of its users (a stacked child went before, so none is expected):
        # the plan named them from the host's tables; here being open at all is what matters.
        self._refuse_if_used(dm_kernel_use(dm))

    @staticmethod
    def _refuse_if_used(use: DeviceUse) -> None:
        if use.busy:
            raise _Skip(f"became busy: {'; '.join(use.busy)}")
        if use.unknown:
            raise _Skip(f"cannot tell whether it is in use: {'; '.join(use.unknown)}")

    def _recheck_node(self, entry: Entry) -> None:
        with self._dev_longhorn() as dir_fd:
            self._same_node(dir_fd, entry)
        dev = entry.identity.dev
        if dev is None:  # a node is only ever planned with its number
            raise _Skip("planned without a device number")
        kernel_name = kernel_name_of(self.host, dev)
        now = device_at(kernel_name, self._dm_name(kernel_name))
        # Rule node-name-matches-device: a device made since (dm reuses the freed minor) may
        # already have adopted this very node; it is that device's node now.
        if now != entry.identity.points_at:
            raise _Skip(f"its number {dev} is now {now or 'free'}, planned as "
                        f"{entry.identity.points_at or 'free'}: a device was made or replaced since")
        if kernel_name is None and any(kind is Kind.DM for kind, _ in entry.after):
            return  # its dm device was removed idle and nothing has its number: nothing can use it
        holders = read_holders(self.host, f"{SYS_BLOCK}/{kernel_name}/holders") if kernel_name else ()
        self._refuse_if_used(read_usage(self.host).of_device(entry.name, dev, holders))

    def _dm_name(self, kernel_name: Optional[str]) -> Optional[str]:
        """The dm name of the kernel device `kernel_name`, None when it is not a dm device."""
        if kernel_name is None or not kernel_name.startswith("dm-"):
            return None
        text = self.host.read_attribute(f"{SYS_BLOCK}/{kernel_name}/dm/name")
        return "?" if text is None else text.strip()

    def _same_node(self, dir_fd: int, entry: Entry) -> None:
        """Rule no-links-block-nodes-only: lstat at the directory fd; only the very block node planned."""
        try:
            st = os.stat(entry.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            raise _Satisfied("already gone") from None
        if not stat.S_ISBLK(st.st_mode):
            raise _Skip("no longer a block node")
        rdev = DevNum(os.major(st.st_rdev), os.minor(st.st_rdev))
        if rdev != entry.identity.dev or st.st_ino != entry.identity.inode:
            raise _Skip(f"replaced since it was planned (now {rdev}, inode {st.st_ino})")

    def _recheck_nvme(self, entry: Entry) -> tuple[str, ...]:
        """The subsystem's controllers, once it is known to be unused still."""
        # Only this NQN's subsystems are read and probed for claims: only its volume's lock is held.
        subsystems, unread = read_subsystems(self.host, only_nqn=entry.name)
        if unread:  # one not read whole may be this NQN's, made again since with other controllers
            raise _Skip(f"cannot re-read the NVMe subsystems: {unread}")
        found = [s for s in subsystems if s.nqn == entry.name and s.controllers]
        if not found:
            raise _Satisfied("already gone")
        planned = set(entry.identity.controllers)
        for subsystem in found:
            new = [c.name for c in subsystem.controllers if c.name not in planned]
            if subsystem.name != entry.identity.name or new:
                raise _Skip(f"re-connected since it was planned: now {subsystem.name} with "
                            f"controllers {', '.join(c.name for c in subsystem.controllers)}")
        usage = read_usage(self.host)
        for ns in (ns for s in found for ns in s.namespaces):
            self._refuse_if_used(usage.of_namespace(ns, ns.holders))
        return tuple(c.name for s in found for c in s.controllers)

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

    def _disconnect(self, nqn: str, controllers: tuple[str, ...]) -> ToolResult:
        """Delete the subsystem's controllers through sysfs, as `nvme disconnect --nqn` does.

        Each write goes through the kernel-call helper (a dead target can hold it in D state);
        `nvme disconnect` is the fallback where the attribute is missing (a tree that is not sysfs).
        """
        directories = [f"/sys/class/nvme/{name}" for name in controllers]
        if self.use_tools or not all(self.host.exists(f"{d}/delete_controller") for d in directories):
            return self.runner.run(["nvme", "disconnect", "--nqn", nqn])
        result = ToolResult(("nvme-delete", nqn), 0, "", "", 0.0)
        for name, directory in zip(controllers, directories):
            # Written only while the controller is still one of `nqn`'s: its name may have been
            # given to a new connection since the re-check (the old one reached ctrl_loss_tmo).
            request = {"op": "write", "dir": self.host.path(directory), "file": "delete_controller",
                       "data": "1", "expect": {"subsysnqn": nqn}}
            result = self.runner.call_helper(("nvme-delete", nqn, name), request)
            if not result.ok:
                break
        return result

    @contextlib.contextmanager
    def _longhorn_locks(self, volume: str) -> Iterator[None]:
        """Rule respect-live-instance-manager: go-spdk-helper's volume and global flocks, no waiting."""
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(longhorn_locks(self.host, volume))
            except LockUnavailable as exc:
                raise _Skip(str(exc)) from None
            yield
