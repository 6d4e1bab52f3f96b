"""NVMe subsystems, their NVMe-oF controllers and namespace heads, from sysfs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory.sysfs import Problems, read_holders, summary
from lhsweep.model import DevNum, NvmeController, NvmeNamespace, NvmeSubsystem

SUBSYSTEMS = "/sys/class/nvme-subsystem"
CONTROLLERS = "/sys/class/nvme"
_CONTROLLER = re.compile(r"nvme\d+")
# A namespace block device: the multipath head (nvme<subsys>n<nsid>, below the subsystem) or,
# without native multipath, the controller's own disk (below the controller). The hidden
# per-path disk nvme<s>c<c>n<n> has no device number and does not match.
_NAMESPACE = re.compile(r"nvme\d+n\d+")


def read_subsystems(host: HostRoot, problems: Optional[Problems] = None,
                    devs: Optional[Mapping[str, DevNum]] = None) -> tuple[tuple[NvmeSubsystem, ...], str]:
    """Every NVMe subsystem in /sys/class/nvme-subsystem with its controllers and namespaces.

    `devs` (kernel name -> number, from /sys/dev/block) saves reading each namespace's `dev`.
    The second value says why a subsystem could not be read whole and was left out ("" when
    none was): a namespace missing from the first may then still belong to an NVMe subsystem.
    """
    reader = _Reader(host, problems if problems is not None else Problems(), devs or {})
    subsystems, unread = [], []
    for name in host.listdir(SUBSYSTEMS):
        try:
            subsystem = reader.subsystem(name)
        except HostReadError as exc:
            reader.problems.add(str(exc))
            unread.append(str(exc))
            continue
        if subsystem is not None:
            subsystems.append(subsystem)
    return tuple(subsystems), summary(unread)


@dataclass(frozen=True)
class _Reader:
    """Reads one subsystem at a time, recording problems."""

    host: HostRoot
    problems: Problems
    devs: Mapping[str, DevNum]

    def subsystem(self, name: str) -> Optional[NvmeSubsystem]:
        """The subsystem `name`; None when it vanished."""
        base = f"{SUBSYSTEMS}/{name}"
        nqn = self.host.read_attribute(f"{base}/subsysnqn")
        if nqn is None:
            if self.host.exists(base):
                raise HostReadError(f"{base}/subsysnqn: missing")
            return None
        entries = self.host.listdir(base)
        controllers = tuple(c for c in (self.controller(e) for e in entries if _CONTROLLER.fullmatch(e))
                            if c is not None)
        namespaces = self.namespaces(base, entries)
        if not namespaces:  # no native multipath: the namespaces hang below the controllers
            for ctrl in controllers:
                path = f"{CONTROLLERS}/{ctrl.name}"
                namespaces += self.namespaces(path, self.host.listdir(path))
        return NvmeSubsystem(name, nqn.strip(), controllers, tuple(sorted(namespaces, key=lambda n: n.name)))

    def controller(self, name: str) -> Optional[NvmeController]:
        """The controller `name`; None when it vanished.

        Raises HostReadError when it is there without a readable state: its subsystem is then
        not known whole (without native multipath its namespaces hang below it).
        """
        base = f"{CONTROLLERS}/{name}"
        # Only its state: the plan needs the controller's name; transport and address are
        # not read (two files a volume at 10,000 volumes).
        state = self.host.read_attribute(f"{base}/state")
        if state is None:
            if self.host.exists(base):
                raise HostReadError(f"{base}/state: missing")
            return None
        return NvmeController(name, state.strip())

    def namespaces(self, directory: str, entries: list[str]) -> list[NvmeNamespace]:
        """The namespace block devices among `entries` of `directory`."""
        found = []
        for entry in entries:
            if _NAMESPACE.fullmatch(entry):
                ns = self.namespace(f"{directory}/{entry}", entry)
                if ns is not None:
                    found.append(ns)
        return found

    def namespace(self, path: str, name: str) -> Optional[NvmeNamespace]:
        """The namespace at `path`; None when it is gone.

        Raises HostReadError when it is there without a readable device number: the subsystem
        is then not known whole (its namespaces' users decide whether it may be disconnected).
        """
        dev = self.devs.get(name)
        if dev is None:
            text = self.host.read_attribute(f"{path}/dev")
            if text is None:
                if self.host.exists(path):
                    raise HostReadError(f"{path}/dev: missing")
                return None
            try:
                dev = DevNum.parse(text)
            except ValueError:
                raise HostReadError(f"{path}/dev: expected major:minor, got {text.strip()[:40]!r}") from None
        return NvmeNamespace(name, dev, read_holders(self.host, f"{path}/holders"))
