"""HostTree: fake hosts for tests, built from what Longhorn, LUKS, LVM and multipath leave on a node.

The layout is what a real kernel shows (see docs/design.md); tests/fakes/kerneltree.py keeps it
consistent and the fake dmsetup/nvme tools act on the same tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.kerneltree import KernelTree

LONGHORN_PREFIX = "nqn.2023-01.io.longhorn.spdk:"
FAKE_KEY = "b1" * 32  # a dm-crypt key that must never show up in lhsweep's output
VOLUME_SECTORS = 2 * 1024 * 1024


@dataclass(frozen=True)
class Volume:
    """What a helper built; device numbers as 'M:m' text."""

    name: str
    dm: str
    dm_dev: str
    backing: str
    backing_dev: str
    nqn: str = ""
    controller: str = ""
    subsystem: str = ""
    crypt_name: str = ""
    crypt_dev: str = ""


def crypt_params(backing_dev: str) -> str:
    """A dm-crypt table's parameters, key included, as the kernel's table status returns them."""
    return f"aes-xts-plain64 {FAKE_KEY} 0 {backing_dev} 32768"


class HostTree(KernelTree):
    """A fake host with high-level helpers for the devices lhsweep must tell apart."""

    def add_longhorn_volume(self, name: str, *, nqn: str = "", with_node: bool = True,
                            backing_gone: bool = False, mounted: bool = False,
                            encrypted: bool = False, ublk: bool = False, open_count: int = 0,
                            **dm_fields: Any) -> Volume:
        """A V2 engine frontend: NVMe-oF namespace (or ublk), dm linear, /dev/longhorn node."""
        controller = subsystem = ""
        if ublk:
            backing, backing_dev = self.add_ublk()
            nqn = ""
        else:
            nqn = nqn or f"{LONGHORN_PREFIX}volume-{name}"
            subsystem, controller, backing, backing_dev = self.connect(nqn)
        dm, dm_dev = self.add_dm(name, [(0, VOLUME_SECTORS, "linear", f"{backing_dev} 0")],
                                 slaves=(backing,), open_count=open_count, **dm_fields)
        crypt_name = crypt_dev = ""
        top_dev = dm_dev
        if encrypted:
            crypt_name = f"{name}-encrypted"
            _, crypt_dev = self.add_dm(
                crypt_name, [(0, VOLUME_SECTORS - 32768, "crypt", crypt_params(dm_dev))],
                slaves=(dm,), uuid=f"CRYPT-LUKS2-{'0123abcd' * 4}-{crypt_name}",
            )
            self.set_dm(name, open=self.dm(name)["open"] + 1)
            top_dev = crypt_dev
        if with_node:
            self.add_node(name, dm_dev)
        if mounted:
            self.mount(crypt_name or name, top_dev)
        if backing_gone and not ublk:
            self.kill_target(nqn)
        return Volume(name, dm, dm_dev, backing, backing_dev, nqn, controller, subsystem,
                      crypt_name, crypt_dev)

    def mount(self, dm_name: str, dev: str) -> str:
        """Mount a dm device where kubelet would (one opener more); returns the mount point."""
        point = f"/var/lib/kubelet/pods/0a1b-uid/volumes/kubernetes.io~csi/{dm_name}/mount"
        self.add_mount(dev, point, f"/dev/mapper/{dm_name}")
        self.set_dm(dm_name, open=self.dm(dm_name)["open"] + 1)
        return point

    def add_v1_encrypted_volume(self, name: str, *, mounted: bool = True) -> Volume:
        """A V1 encrypted volume: iSCSI disk, /dev/longhorn/<name> on it, LUKS dm named <name>."""
        disk, disk_dev = self.add_disk()
        self.add_node(name, disk_dev)
        dm, dm_dev = self.add_dm(name, [(0, VOLUME_SECTORS - 32768, "crypt", crypt_params(disk_dev))],
                                 slaves=(disk,), uuid=f"CRYPT-LUKS2-{'89ef4567' * 4}-{name}")
        if mounted:
            self.mount(name, dm_dev)
        return Volume(name, dm, dm_dev, disk, disk_dev)

    def add_lvm(self, vg: str = "vg0", lv: str = "data") -> Volume:
        """An LVM logical volume on a loop device (dm name <vg>-<lv>, uuid LVM-...)."""
        loop, loop_dev = self.add_loop()
        name = f"{vg}-{lv}"
        uuid = f"LVM-{'A1b2C3d4' * 4}{'E5f6G7h8' * 4}"
        dm, dm_dev = self.add_dm(name, [(0, 204800, "linear", f"{loop_dev} 2048")],
                                 slaves=(loop,), uuid=uuid)
        return Volume(name, dm, dm_dev, loop, loop_dev)

    def add_multipath(self, name: str = "mpatha", paths: int = 2) -> Volume:
        """A multipath map over `paths` SCSI disks (uuid mpath-<wwid>)."""
        disks = [self.add_disk() for _ in range(paths)]
        groups = " ".join(f"{dev} 1" for _, dev in disks)
        params = f"0 0 1 1 service-time 0 {paths} 1 {groups}"
        dm, dm_dev = self.add_dm(name, [(0, 20971520, "multipath", params)],
                                 slaves=tuple(d for d, _ in disks), uuid="mpath-36001405abcdef0123456789")
        return Volume(name, dm, dm_dev, disks[0][0], disks[0][1])

    def add_plain_linear_on_loop(self, name: str = "plain") -> Volume:
        """A uuid-less linear dm over a loop device: Longhorn-shaped, yet not Longhorn's."""
        loop, loop_dev = self.add_loop()
        dm, dm_dev = self.add_dm(name, [(0, 204800, "linear", f"{loop_dev} 0")], slaves=(loop,))
        return Volume(name, dm, dm_dev, loop, loop_dev)

    # ------------------------------------------------------------ /dev/longhorn (made by Longhorn)

    def add_node(self, name: str, dev: str, mode: int = 0o660) -> None:
        """mknod /dev/longhorn/<name> b M m (needs root)."""
        major, minor = (int(x) for x in dev.split(":"))
        path = self.p(f"/dev/longhorn/{name}")
        os.mknod(path, mode | 0o060000, os.makedev(major, minor))
        os.chmod(path, mode)  # not subject to the umask, as Longhorn's mknod -m

    add_dangling_node = add_node

    def add_node_symlink(self, name: str, target: str) -> None:
        """A symlink in /dev/longhorn (never followed by lhsweep)."""
        os.symlink(target, self.p(f"/dev/longhorn/{name}"))

    def add_node_file(self, name: str, text: str = "") -> None:
        """A regular file in /dev/longhorn."""
        self.write(f"/dev/longhorn/{name}", text)

    def remove_node(self, name: str) -> None:
        """rm /dev/longhorn/<name>."""
        self.unlink(f"/dev/longhorn/{name}")


FAKES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fakes")


def fake_host(root: str, monkeypatch: pytest.MonkeyPatch) -> HostTree:
    """A HostTree at `root` with the fake dmsetup/nvme first on PATH; skips unless root (mknod)."""
    if os.geteuid() != 0:
        pytest.skip("block nodes in /dev/longhorn need mknod, which needs root")
    monkeypatch.setenv("LHSWEEP_FAKE_ROOT", root)
    monkeypatch.setenv("PATH", f"{FAKES}{os.pathsep}{os.environ.get('PATH', '')}")
    return HostTree(root)
