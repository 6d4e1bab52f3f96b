"""One sweep: ask the runtime, read the host, plan, and (unless scanning) act; one at a time."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import os
import time
from collections.abc import Iterator
from typing import Callable, Optional

from lhsweep.config import Config
from lhsweep.cri import query_runtime
from lhsweep.errors import LhsweepError, LockBusyError, PrivilegeError, StateError
from lhsweep.host import HostRoot
from lhsweep.inventory import DmControl, read_inventory
from lhsweep.model import (
    ActionOutcome,
    ActionResult,
    Kind,
    RuntimeState,
    RuntimeView,
    SweepReport,
)
from lhsweep.plan import make_plan
from lhsweep.progress import Progress
from lhsweep.tools import ToolRunner

RuntimeQuery = Callable[[Config, HostRoot], RuntimeView]
LOCK_NAME = "sweep.lock"


def scan(config: Config, host: HostRoot, *, query: RuntimeQuery = query_runtime,
         dm_control: Optional[DmControl] = None) -> SweepReport:
    """Read runtime and host and plan, touching nothing."""
    started = time.time()
    # Runtime first: an instance-manager that starts after this answer makes devices that the
    # inventory may see; the grace period, the re-confirmation and Longhorn's locks cover that.
    runtime = query(config, host)
    with collector_paused():
        inventory = read_inventory(host, dm_control, config.longhorn_data_path, _claims_off(runtime))
        plan = make_plan(inventory, runtime, config, time.time())
    return SweepReport(runtime=runtime, plan=plan, started_at=started,
                       duration_s=time.time() - started, problems=inventory.problems)


def _claims_off(runtime: RuntimeView) -> str:
    """Why Longhorn namespaces are not probed for claims now ("" when they may be).

    An O_EXCL probe claims the device for an instant: an instance-manager building a dm device on
    it then would fail. With one alive, or the runtime unknown, no namespace's users are asked.
    """
    if runtime.state is not RuntimeState.KNOWN:
        return "the runtime is unknown"
    if runtime.live_instance_managers:
        return "an instance-manager runs and may be building on it"
    return ""


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while the inventory and the plan are built.

    At 10,000 volumes they allocate hundreds of thousands of records that hold no cycles
    (reference counting frees them), and every full collection walked them all: a quarter of
    the scan's CPU time. What was allocated meanwhile goes straight to the oldest generation
    (freeze and unfreeze splice the lists, walking nothing): else the first young collection
    after it walks every record once more. Cycles made meanwhile are collected with that
    generation.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.unfreeze()
        gc.enable()


def run_sweep(config: Config, host: HostRoot, *, dry_run: bool, runner: ToolRunner,
              query: RuntimeQuery = query_runtime,
              dm_control: Optional[DmControl] = None,
              should_stop: Callable[[], bool] = lambda: False,
              progress: Optional[Progress] = None) -> SweepReport:
    """Scan, then remove what is stale; raises LockBusyError while another sweep runs.

    `should_stop` is asked before each removal; once it says yes the rest are skipped.
    """
    told = progress or Progress()
    with sweep_lock(config.state_dir):
        report = scan(config, host, query=query, dm_control=dm_control)._replace(dry_run=dry_run)
        told.planned(report)
        removals = report.plan.removals
        if not removals:
            return report
        if not dry_run and config.sweep_removal != "tools" and \
                any(e.kind is not Kind.NODE for e in removals):
            runner.start_helper()  # its start overlaps the runtime's second answer
        try:
            confirmed = RuntimeConfirmation(report.runtime, lambda: query(config, host), dry_run)
            changed = confirmed.changed()
            if changed:
                outcomes = tuple(ActionOutcome(e.kind, e.name, ActionResult.SKIPPED, changed, e.volume)
                                 for e in removals)
                for entry, outcome in zip(removals, outcomes):
                    told.acted(entry, outcome)
            else:
                from lhsweep.act import Actor  # noqa: PLC0415 - a scan loads no removal code

                actor = Actor(host, runner, dm_control, should_stop, told.acted,
                              use_tools=config.sweep_removal == "tools",
                              runtime_changed=confirmed.changed)
                outcomes = actor.execute(report.plan, dry_run)
        finally:
            runner.close_helper()
        return report._replace(outcomes=outcomes, duration_s=time.time() - report.started_at)


# The runtime's answer removals rest on is asked again before the next removal once it is this old:
# a new instance-manager needs seconds (sandbox, container, SPDK, an engine and its NVMe connection)
# before it has a device on the host, so no removal acts on an answer older than that.
RECONFIRM_AFTER_S = 1.0
# An answer is as old as its query (the sandbox list is read first): one that took RECONFIRM_AFTER_S
# to come is already too old. It is asked again this many times in all before nothing is removed.
CONFIRM_ATTEMPTS = 3


class RuntimeConfirmation:
    """The runtime asked again right before acting, and again before a removal once that is old."""

    def __init__(self, planned: RuntimeView, ask: Callable[[], RuntimeView], dry_run: bool,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._planned = planned
        self._ask = ask
        self._clock = clock
        self._changed = ""
        self._asked_at: Optional[float] = None
        self._needed = not dry_run  # a dry run removes nothing: nothing rests on the runtime

    def changed(self) -> str:
        """Why no removal may start now ("" while the runtime still says what the plan saw)."""
        if not self._needed or self._changed:
            return self._changed
        if self._asked_at is None or self._clock() - self._asked_at >= RECONFIRM_AFTER_S:
            self._changed = self._confirm()
        return self._changed

    def _confirm(self) -> str:
        """Ask until an answer comes within RECONFIRM_AFTER_S of being asked for, or give up."""
        took = 0.0
        for _ in range(CONFIRM_ATTEMPTS):
            started = self._clock()
            changed = _runtime_changed(self._planned, self._ask())
            took = self._clock() - started
            if changed or took < RECONFIRM_AFTER_S:
                self._asked_at = started
                return changed
        return (f"the runtime took {took:.1f}s to answer, {CONFIRM_ATTEMPTS} times: an answer that "
                f"old (over {RECONFIRM_AFTER_S:g}s) is not acted on")


def _runtime_changed(before: RuntimeView, now: RuntimeView) -> str:
    """Re-ask the runtime right before acting; any doubt means act on nothing this time.

    An alive instance-manager is the planned one only by its sandbox and its container (None
    while none is listed): a new sandbox, or a container made since, is one the plan never saw.
    """
    if now.state is not RuntimeState.KNOWN:
        return f"runtime became unknown before acting: {now.reason}"
    old = {(im.sandbox_id, im.container_id) for im in before.live_instance_managers}
    new = [im.pod_name for im in now.live_instance_managers
           if (im.sandbox_id, im.container_id) not in old]
    if new:
        return f"instance-manager {', '.join(sorted(new))} started during the sweep; re-planning"
    return ""


@contextlib.contextmanager
def sweep_lock(state_dir: str) -> Iterator[None]:
    """Hold <state_dir>/sweep.lock exclusively for one sweep, or raise LockBusyError."""
    path = os.path.join(state_dir, LOCK_NAME)
    try:
        os.makedirs(state_dir, mode=0o755, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise state_dir_error(state_dir, path, exc) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LockBusyError(f"{path}: another lhsweep sweep is running") from None
        yield
    finally:
        os.close(fd)


def state_dir_error(state_dir: str, path: str, exc: OSError) -> LhsweepError:
    """One line for a state directory lhsweep cannot use; a missing privilege says which."""
    if exc.errno in (errno.EACCES, errno.EPERM) and os.geteuid() != 0:
        return PrivilegeError(
            f"{path}: {exc.strerror}: lhsweep sweeps as root only (it needs root's write access "
            f"to state.dir {state_dir}, and CAP_SYS_ADMIN for device-mapper)")
    if exc.errno == errno.EEXIST and not os.path.isdir(state_dir):
        return StateError(f"state.dir {state_dir}: not a directory")
    return StateError(f"state.dir {state_dir}: cannot create {path}: {exc.strerror}")


def read_incomplete(report: SweepReport) -> bool:
    """True when parts of the host could not be read: the report is not the whole truth."""
    return bool(report.problems)
