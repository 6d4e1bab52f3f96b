"""Longhorn-style host devices made the way go-spdk-helper makes them, plus the foreign ones around them."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from lhvm import nvmet
from lhvm.proc import read, run, sh

LONGHORN_DIR = "/dev/longhorn"
KEY_FILE = "/run/lhvm/luks.key"
MOUNT_BASE = "/mnt/lhvm"


@dataclass(frozen=True)
class V2Volume:
    """A V2 engine frontend: target, NVMe namespace head, dm linear `name`, /dev/longhorn/`name`."""

    name: str
    nqn: str
    target: nvmet.Target
    namespace: str
    dev: str  # the dm device's "major:minor"


def dm_dev(name: str) -> str:
    """A dm device's "major:minor" (from dmsetup, as go-spdk-helper reads it)."""
    out = sh("dmsetup", "info", "-c", "--noheadings", "--separator", ":", "-o", "major,minor", name)
    return out.strip()


def sectors(device: str) -> int:
    """The size of a block device in 512-byte sectors (from sysfs)."""
    return int(read(f"/sys/class/block/{os.path.basename(device)}/size"))


def make_node(name: str, dev: str) -> str:
    """mknod /dev/longhorn/<name> b M m, mode 0660, owner 0:6 (disk), like go-spdk-helper."""
    os.makedirs(LONGHORN_DIR, mode=0o755, exist_ok=True)
    major, minor = (int(x) for x in dev.split(":"))
    path = f"{LONGHORN_DIR}/{name}"
    os.mknod(path, stat.S_IFBLK | 0o660, os.makedev(major, minor))
    os.chown(path, 0, 6)
    os.chmod(path, 0o660)
    return path


def dm_linear(name: str, device: str) -> str:
    """dmsetup create <name> with one linear segment over all of `device`; returns "M:m"."""
    sh("dmsetup", "create", name, "--table", f"0 {sectors(device)} linear {device} 0")
    return dm_dev(name)


def make_v2_volume(
    name: str, size_mib: int = 64, nqn_style: str = "engine", ctrl_loss_tmo: int = 30, node: bool = True,
    service: str = nvmet.SERVICE,
) -> V2Volume:
    """Attach a V2 volume: export (on TCP port `service`), nvme connect, dm linear, and (with `node`)
    /dev/longhorn/<name>."""
    nqn = nvmet.engine_nqn(name, nqn_style)
    target = nvmet.export(nqn, size_mib, service)
    namespace = nvmet.connect(nqn, ctrl_loss_tmo, service)
    dev = dm_linear(name, f"/dev/{namespace}")
    if node:
        make_node(name, dev)
    return V2Volume(name, nqn, target, namespace, dev)


def crash_target(volume: V2Volume, wait_gone: bool = False, timeout: float = 90.0) -> None:
    """The instance-manager died: its target vanishes, nothing on the host is cleaned up."""
    nvmet.crash(volume.target)
    if wait_gone:
        nvmet.wait_controllers_gone(volume.nqn, timeout)


def detach_cleanly(volume: V2Volume) -> None:
    """What a clean shutdown does: dmsetup remove, rm the node, nvme disconnect, then the target goes."""
    sh("dmsetup", "remove", volume.name)
    path = f"{LONGHORN_DIR}/{volume.name}"
    if os.path.lexists(path):
        os.unlink(path)
    sh("nvme", "disconnect", "--nqn", volume.nqn)
    nvmet.crash(volume.target)


def _key_file() -> str:
    """A throw-away LUKS key file."""
    os.makedirs(os.path.dirname(KEY_FILE), exist_ok=True)
    if not os.path.exists(KEY_FILE):
        with open(KEY_FILE, "w") as handle:
            handle.write("lhvm-test-passphrase")
        os.chmod(KEY_FILE, 0o600)
    return KEY_FILE


def luks_open(device: str, name: str) -> str:
    """luksFormat `device` (cheap PBKDF: the guest is emulated) and open it as dm-crypt `name`."""
    key = _key_file()
    sh(
        "cryptsetup",
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
        "--key-file",
        key,
        device,
        timeout=120,
    )
    sh("cryptsetup", "open", "--key-file", key, device, name, timeout=120)
    return dm_dev(name)


def make_v1_encrypted(name: str, size_mib: int = 32, node_at: str = "backing") -> str:
    """A V1 encrypted volume: crypt `name` on a disk, /dev/longhorn/<name> beside it; returns crypt "M:m".

    V1's /dev/longhorn/<name> is the engine's block device (here a loop standing in for the
    iSCSI disk) and the crypt device is named exactly <name>; `node_at="crypt"` points the node
    at the crypt device instead.
    """
    loop, _ = nvmet.make_loop(f"v1-{name}", size_mib)
    dev = luks_open(loop, name)
    make_node(name, dev if node_at == "crypt" else read(f"/sys/class/block/{os.path.basename(loop)}/dev"))
    return dev


def make_v2_encrypted(
    name: str, size_mib: int = 64, nqn_style: str = "engine", ctrl_loss_tmo: int = 30
) -> tuple[V2Volume, str]:
    """An encrypted V2 volume: crypt `<name>-encrypted` over linear `<name>`; returns (volume, crypt M:m)."""
    volume = make_v2_volume(name, size_mib, nqn_style, ctrl_loss_tmo)
    return volume, luks_open(f"/dev/mapper/{name}", f"{name}-encrypted")


def make_lvm(vg: str = "lhvmvg", lv: str = "data", size_mib: int = 32) -> str:
    """An LVM logical volume on a loop device; returns its dm name (<vg>-<lv>)."""
    loop, _ = nvmet.make_loop(f"lvm-{vg}", size_mib)
    only = ("--devices", loop)
    sh("pvcreate", "-q", *only, loop)
    sh("vgcreate", "-q", *only, vg, loop)
    sh("lvcreate", "-q", "--yes", *only, "-L", "8M", "-n", lv, vg)
    return f"{vg}-{lv}"


def make_plain_linear(name: str, size_mib: int = 16) -> str:
    """A dm linear device on a loop, with no /dev/longhorn node; returns "M:m"."""
    loop, _ = nvmet.make_loop(f"plain-{name}", size_mib)
    return dm_linear(name, loop)


def mount_ext4(device: str, name: str) -> str:
    """mkfs.ext4 `device` and mount it at /mnt/lhvm/<name>; returns the mount point."""
    sh("mkfs.ext4", "-q", "-F", "-E", "nodiscard", device, timeout=120)
    mount_point = f"{MOUNT_BASE}/{name}"
    os.makedirs(mount_point, exist_ok=True)
    sh("mount", device, mount_point)
    return mount_point


def reset_devices() -> list[str]:
    """Best-effort teardown of everything the helpers make; returns what failed (for the log)."""
    problems: list[str] = []
    steps = (
        ["sh", "-c", f"grep -o ' {MOUNT_BASE}/[^ ]*' /proc/mounts | xargs -r -n1 umount -l"],
        ["sh", "-c", "vgchange -an -q 2>/dev/null; true"],
        ["dmsetup", "remove_all"],
        ["nvme", "disconnect-all"],
    )
    for argv in steps:
        done = run(*argv, timeout=120)
        if done.returncode != 0:
            problems.append(f"{' '.join(argv)}: {done.stderr.strip()}")
    nvmet.clear_target()
    run("losetup", "-D")
    if os.path.isdir(LONGHORN_DIR):
        for entry in os.listdir(LONGHORN_DIR):
            os.unlink(f"{LONGHORN_DIR}/{entry}")
    return problems
