"""A kernel NVMe/TCP target on 127.0.0.1 and the host-side `nvme connect`, as Longhorn V2 uses them.

Subsystems are exported on TCP port 4420 (configfs port 1) unless another `service` is given:
port 4420 + n is configfs port 1 + n, created on first use and dropped by `drop_port`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from typing import Optional

from lhvm.proc import read, sh, wait_for

NQN_PREFIX = "nqn.2023-01.io.longhorn.spdk:"
CONFIGFS = "/sys/kernel/config/nvmet"
PORT = "1"
ADDRESS = "127.0.0.1"
SERVICE = "4420"
LOOP_DIR = "/var/lib/lhvm/loops"
MODULES = ("nvmet", "nvmet-tcp", "nvme-fabrics", "nvme-tcp", "dm-mod", "loop")
_HEAD = re.compile(r"nvme\d+n\d+")
_CONTROLLER = re.compile(r"nvme\d+")


@dataclass(frozen=True)
class Target:
    """One exported subsystem: its NQN and the loop device (and file) behind namespace 1."""

    nqn: str
    loop: str
    backing_file: str


def engine_nqn(volume: str, style: str = "engine") -> str:
    """The engine-frontend NQN: `<vol>-e-<8hex>` (v1.6-v1.11) or `volume-<vol>` (v1.12+)."""
    if style == "volume":
        return f"{NQN_PREFIX}volume-{volume}"
    suffix = hashlib.sha256(volume.encode()).hexdigest()[:8]
    return f"{NQN_PREFIX}{volume}-e-{suffix}"


def load_modules() -> None:
    """Load the target, initiator, dm and loop modules (idempotent)."""
    sh("modprobe", "-a", *MODULES)
    if not os.path.isdir(CONFIGFS):
        sh("mount", "-t", "configfs", "none", "/sys/kernel/config", check=False)


def sparse_file(name: str, size_mib: int) -> str:
    """A sparse file of `size_mib` MiB in LOOP_DIR (removed by the reset); its path."""
    os.makedirs(LOOP_DIR, exist_ok=True)
    path = f"{LOOP_DIR}/{name}.img"
    with open(path, "wb") as handle:
        handle.truncate(size_mib * 1024 * 1024)
    return path


def make_loop(name: str, size_mib: int) -> tuple[str, str]:
    """A sparse file of `size_mib` MiB attached to a free loop device: (loop device, file)."""
    path = sparse_file(name, size_mib)
    return sh("losetup", "--find", "--show", path).strip(), path


def _port_dir(service: str) -> str:
    """The configfs port directory for TCP port `service` on 127.0.0.1."""
    return f"{CONFIGFS}/ports/{int(PORT) + int(service) - int(SERVICE)}"


def _ensure_port(service: str = SERVICE) -> str:
    """The TCP port 127.0.0.1:`service` in configfs, created on first use."""
    port = _port_dir(service)
    if not os.path.isdir(port):
        os.mkdir(port)
        for attr, value in (
            ("addr_trtype", "tcp"),
            ("addr_adrfam", "ipv4"),
            ("addr_traddr", ADDRESS),
            ("addr_trsvcid", service),
        ):
            _put(f"{port}/{attr}", value)
    return port


def _put(path: str, value: str) -> None:
    """Write one configfs attribute."""
    with open(path, "w") as handle:
        handle.write(value)


def export(nqn: str, size_mib: int = 64, service: str = SERVICE) -> Target:
    """Export a new subsystem `nqn` with one namespace on a fresh loop device, on TCP port `service`."""
    load_modules()
    loop, backing = make_loop(re.sub(r"[^A-Za-z0-9._-]", "_", nqn), size_mib)
    add_subsystem(nqn, loop, service)
    return Target(nqn, loop, backing)


def add_subsystem(nqn: str, device_path: str, service: str = SERVICE) -> None:
    """Export subsystem `nqn` with namespace 1 on `device_path` (a block device or a plain file)."""
    subsystem = f"{CONFIGFS}/subsystems/{nqn}"
    os.mkdir(subsystem)
    _put(f"{subsystem}/attr_allow_any_host", "1")
    os.mkdir(f"{subsystem}/namespaces/1")
    _put(f"{subsystem}/namespaces/1/device_path", device_path)
    _put(f"{subsystem}/namespaces/1/enable", "1")
    os.symlink(subsystem, f"{_ensure_port(service)}/subsystems/{nqn}")


def unexport(nqn: str) -> None:
    """Remove a subsystem from the target at once (the initiator is not told: a crashed target)."""
    ports = f"{CONFIGFS}/ports"
    for port in os.listdir(ports) if os.path.isdir(ports) else ():
        link = f"{ports}/{port}/subsystems/{nqn}"
        if os.path.islink(link):
            os.unlink(link)
    subsystem = f"{CONFIGFS}/subsystems/{nqn}"
    namespace = f"{subsystem}/namespaces/1"
    if os.path.isdir(namespace):
        _put(f"{namespace}/enable", "0")
        os.rmdir(namespace)
    if os.path.isdir(subsystem):
        os.rmdir(subsystem)


def crash(target: Target) -> None:
    """Tear the target down without a clean shutdown, then drop its loop device and file."""
    unexport(target.nqn)
    sh("losetup", "-d", target.loop, check=False)
    if os.path.exists(target.backing_file):
        os.unlink(target.backing_file)


def drop_port(service: str) -> None:
    """Close the target's TCP port `service` (its subsystems unexported first): nothing listens there."""
    port = _port_dir(service)
    if os.path.isdir(port):
        for link in os.listdir(f"{port}/subsystems"):
            os.unlink(f"{port}/subsystems/{link}")
        os.rmdir(port)


def connect(nqn: str, ctrl_loss_tmo: int = 30, service: str = SERVICE) -> str:
    """`nvme connect` with Longhorn's options; returns the namespace head's name (nvmeXnY)."""
    sh(
        "nvme",
        "connect",
        "-t",
        "tcp",
        "--nqn",
        nqn,
        "--ctrl-loss-tmo",
        str(ctrl_loss_tmo),
        "--keep-alive-tmo",
        "5",
        "--reconnect-delay",
        "2",
        "-a",
        ADDRESS,
        "-s",
        service,
    )
    return wait_for(f"a namespace head of {nqn}", lambda: _live_head(nqn), timeout=30)


def subsystem_dir(nqn: str) -> Optional[str]:
    """/sys/class/nvme-subsystem/<name> whose subsysnqn is `nqn`, if any."""
    base = "/sys/class/nvme-subsystem"
    for name in sorted(os.listdir(base)) if os.path.isdir(base) else ():
        if read(f"{base}/{name}/subsysnqn") == nqn:
            return f"{base}/{name}"
    return None


def heads(nqn: str) -> list[str]:
    """Namespace heads (nvmeXnY) of the subsystem with `nqn`."""
    found = subsystem_dir(nqn)
    return sorted(n for n in os.listdir(found) if _HEAD.fullmatch(n)) if found else []


def controllers(nqn: str) -> dict[str, str]:
    """Controllers of the subsystem with `nqn`: name -> state ({} once the subsystem is gone)."""
    found = subsystem_dir(nqn)
    try:
        names = sorted(os.listdir(found)) if found else []
    except FileNotFoundError:  # it went between the lookup and the listing (lhsweep disconnected it)
        return {}
    return {n: read(f"{found}/{n}/state") for n in names if _CONTROLLER.fullmatch(n)}


def _live_head(nqn: str) -> Optional[str]:
    """A namespace head of `nqn` that has a block device (its `dev` file and /dev node)."""
    for head in heads(nqn):
        if read(f"/sys/block/{head}/dev") and os.path.exists(f"/dev/{head}"):
            return head
    return None


def wait_controllers_gone(nqn: str, timeout: float = 90.0) -> None:
    """Wait until no controller of `nqn` is left (ctrl_loss_tmo after the target died)."""
    wait_for(f"the controllers of {nqn} to go", lambda: not controllers(nqn), timeout=timeout, every=0.5)


def clear_target() -> None:
    """Remove every exported subsystem and port (the test's target side only)."""
    ports = f"{CONFIGFS}/ports"
    for port in os.listdir(ports) if os.path.isdir(ports) else ():
        for link in os.listdir(f"{ports}/{port}/subsystems"):
            os.unlink(f"{ports}/{port}/subsystems/{link}")
    subsystems = f"{CONFIGFS}/subsystems"
    for nqn in os.listdir(subsystems) if os.path.isdir(subsystems) else ():
        unexport(nqn)
    for port in os.listdir(ports) if os.path.isdir(ports) else ():
        os.rmdir(f"{ports}/{port}")
    shutil.rmtree(LOOP_DIR, ignore_errors=True)
