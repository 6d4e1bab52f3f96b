"""NVMe subsystems, their NVMe-oF controllers and namespace heads, from sysfs."""

from __future__ import annotations

import re
from typing import Optional

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory.sysfs import Problems
from lhsweep.model import DevNum, NvmeController, NvmeNamespace, NvmeSubsystem

SUBSYSTEMS = "/sys/class/nvme-subsystem"
CONTROLLERS = "/sys/class/nvme"
_CONTROLLER = re.compile(r"nvme\d+")
# A namespace block device: the multipath head (nvme<subsys>n<nsid>, below the subsystem) or,
# without native multipath, the controller's own disk (below the controller). The hidden
# per-path disk nvme<s>c<c>n<n> has no device number and does not match.
_NAMESPACE = re.compile(r"nvme\d+n\d+")


def read_subsystems(host: HostRoot, problems: Optional[Problems] = None) -> tuple[NvmeSubsystem, ...]:
    """Every NVMe subsystem in /sys/class/nvme-subsystem with its controllers and namespaces."""
    problems = problems if problems is not None else Problems()
    subsystems = []
    for name in host.listdir(SUBSYSTEMS):
        try:
            subsystem = _read_subsystem(host, name, problems)
        except HostReadError as exc:
            problems.add(str(exc))
            continue
        if subsystem is not None:
            subsystems.append(subsystem)
    return tuple(subsystems)


def _read_subsystem(host: HostRoot, name: str, problems: Problems) -> Optional[NvmeSubsystem]:
    base = f"{SUBSYSTEMS}/{name}"
    nqn = host.read_text(f"{base}/subsysnqn")
    if nqn is None:
        if host.exists(base):
            problems.add(f"{base}/subsysnqn: missing")
        return None
    entries = host.listdir(base)
    controllers = tuple(
        c for c in (_read_controller(host, e, problems) for e in entries if _CONTROLLER.fullmatch(e))
        if c is not None
    )
    namespaces = {
        ns.name: ns for ns in (_read_namespace(host, f"{base}/{e}", e, problems)
                               for e in entries if _NAMESPACE.fullmatch(e)) if ns is not None
    }
    for ctrl in controllers:
        for entry in host.listdir(f"{CONTROLLERS}/{ctrl.name}"):
            if _NAMESPACE.fullmatch(entry) and entry not in namespaces:
                ns = _read_namespace(host, f"{CONTROLLERS}/{ctrl.name}/{entry}", entry, problems)
                if ns is not None:
                    namespaces[entry] = ns
    return NvmeSubsystem(name, nqn.strip(), controllers,
                         tuple(namespaces[n] for n in sorted(namespaces)))


def _read_controller(host: HostRoot, name: str, problems: Problems) -> Optional[NvmeController]:
    base = f"{CONTROLLERS}/{name}"
    values = [host.read_text(f"{base}/{attr}") for attr in ("transport", "address", "state")]
    if values[2] is None:
        if host.exists(base):
            problems.add(f"{base}/state: missing")
        return None  # gone while reading
    transport, address, state = ((v or "").strip() for v in values)
    return NvmeController(name, transport, address, state)


def _read_namespace(host: HostRoot, path: str, name: str,
                    problems: Problems) -> Optional[NvmeNamespace]:
    text = host.read_text(f"{path}/dev")
    if text is None:
        return None
    try:
        dev = DevNum.parse(text)
    except ValueError:
        problems.add(f"{path}/dev: expected major:minor, got {text.strip()[:40]!r}")
        return None
    return NvmeNamespace(name, dev, tuple(host.listdir(f"{path}/holders")))
