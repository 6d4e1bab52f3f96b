"""KernelTree: the kernel-made part of a fake host below a directory (sysfs, /dev, /proc).

Stdlib only: the fake dmsetup and nvme executables act on it, and tests/hosttree.py builds
scenarios with it. What sysfs cannot show (dm tables, open counts, pending deferred removal)
lives in <root>/.fake/dm.json, which only the fake tools read, never lhsweep itself.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any, Optional

DM_MAJOR, NVME_MAJOR, NVME_CHAR_MAJOR, UBLK_MAJOR, SD_MAJOR, LOOP_MAJOR = 253, 259, 242, 251, 8, 7
NVME_GENERIC_MAJOR = 241  # the per-namespace generic char devices ngXnY
VIRTUAL = "/sys/devices/virtual"
CTL = f"{VIRTUAL}/nvme-fabrics/ctl"
HOST_MNT_NS = "4026531841"
SUBSYS = f"{VIRTUAL}/nvme-subsystem"
SCSI = "/sys/devices/platform/host0/target0:0:0"


class KernelTree:
    """A fake host below `root`; every change keeps sysfs, /dev, mountinfo and dm.json consistent."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._batch = 0
        for d in ("/sys/dev/block", "/sys/block", "/sys/class/block", "/sys/class/nvme",
                  "/sys/class/nvme-subsystem", f"{VIRTUAL}/block", CTL, SUBSYS, "/dev/longhorn",
                  "/run", "/var/lib/longhorn", "/.fake"):  # Longhorn's data path, as on its nodes
            os.makedirs(self.p(d), exist_ok=True)
        if not os.path.lexists(self.p("/var/run")):
            os.symlink("/run", self.p("/var/run"))  # absolute, as Debian makes it
        if not os.path.exists(self.p("/proc/1/mountinfo")):
            self.add_process(1, "systemd", HOST_MNT_NS,
                             "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n")
        self.state: dict[str, Any] = {"devices": {}, "nvme": {}, "hang_seconds": 0, "fail": ""}
        if os.path.exists(self.p("/.fake/dm.json")):
            with open(self.p("/.fake/dm.json"), encoding="utf-8") as handle:
                self.state = json.load(handle)
        self._used: dict[str, set[int]] = {}
        self._hint: dict[str, int] = {}
        self._subsystems: Optional[dict[str, str]] = None  # nqn -> subsystem

    # ------------------------------------------------------------ files and links

    def p(self, host_path: str) -> str:
        """The real path of `host_path` inside the tree."""
        return self.root + host_path

    def write(self, host_path: str, text: str) -> None:
        """Write a file (parents created)."""
        os.makedirs(os.path.dirname(self.p(host_path)), exist_ok=True)
        with open(self.p(host_path), "w", encoding="utf-8") as handle:
            handle.write(text)

    def link(self, host_path: str, target: str) -> None:
        """A relative symlink at `host_path` to the host path `target`, as sysfs makes them."""
        real = self.p(host_path)
        os.makedirs(os.path.dirname(real), exist_ok=True)
        os.symlink(os.path.relpath(self.p(target), os.path.dirname(real)), real)

    def raw_link(self, host_path: str, text: str) -> None:
        """A symlink whose text is given as the kernel writes it (e.g. '../../nvme-subsys0')."""
        real = self.p(host_path)
        os.makedirs(os.path.dirname(real), exist_ok=True)
        os.symlink(text, real)

    def unlink(self, host_path: str) -> None:
        """Remove a file or link when present."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.p(host_path))

    def rmtree(self, host_path: str) -> None:
        """Remove a directory tree when present (links inside are removed, not followed)."""
        shutil.rmtree(self.p(host_path), ignore_errors=True)

    def device_dir(self, kernel_name: str) -> Optional[str]:
        """The host path of a block device's sysfs directory, None when it is gone."""
        # /sys/class/block has partitions too; /sys/block has whole disks only.
        real = os.path.realpath(self.p(f"/sys/class/block/{kernel_name}"))
        return real[len(self.root):] if os.path.isdir(real) else None

    def _allocate(self, kind: str, directory: str, prefix: str) -> int:
        """The lowest free number (the kernel's ida/minor reuse), as first seen in `directory`."""
        if kind not in self._used:
            names = os.listdir(self.p(directory))
            self._used[kind] = {_number(n[len(prefix):]) for n in names if n.startswith(prefix)}
            self._hint[kind] = 0
        n = self._hint[kind]
        while n in self._used[kind]:
            n += 1
        self._used[kind].add(n)
        self._hint[kind] = n + 1
        return n

    def _free(self, kind: str, n: int) -> None:
        if kind in self._used:
            self._used[kind].discard(n)
            self._hint[kind] = min(self._hint[kind], n)

    def _block(self, directory: str, name: str, dev: str, *, with_dev: bool = True) -> None:
        """A block device directory with holders/ and slaves/, linked from /sys/block,
        /sys/class/block and /sys/dev/block; one without a number is a hidden path disk."""
        os.makedirs(self.p(f"{directory}/holders"), exist_ok=True)
        os.makedirs(self.p(f"{directory}/slaves"), exist_ok=True)
        self.write(f"{directory}/hidden", "0\n" if with_dev else "1\n")
        self.link(f"/sys/block/{name}", directory)
        self.link(f"/sys/class/block/{name}", directory)
        if with_dev:
            self.write(f"{directory}/dev", f"{dev}\n")
            self.link(f"/sys/dev/block/{dev}", directory)

    def _drop_block(self, name: str, dev: str) -> None:
        self.unlink(f"/sys/block/{name}")
        self.unlink(f"/sys/class/block/{name}")
        if dev:
            self.unlink(f"/sys/dev/block/{dev}")

    # ------------------------------------------------------------ state file

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Write dm.json once at the end instead of after every change (for big trees)."""
        self._batch += 1
        try:
            yield
        finally:
            self._batch -= 1
            self.save()

    def save(self) -> None:
        """Write .fake/dm.json (deferred inside batch())."""
        if self._batch == 0:
            self.write("/.fake/dm.json", json.dumps(self.state, indent=1, sort_keys=True))

    def dm(self, name: str) -> dict[str, Any]:
        """The dm.json record of the dm device `name` (KeyError when there is none)."""
        record: dict[str, Any] = self.state["devices"][name]
        return record

    def set_dm(self, name: str, **fields: Any) -> None:
        """Change a dm device's record: open, suspended, deferred_remove, hang_seconds, fail."""
        self.dm(name).update(fields)
        if "suspended" in fields:
            self.write(f"{VIRTUAL}/block/{self.dm(name)['kernel']}/dm/suspended",
                       "1\n" if fields["suspended"] else "0\n")
        self.save()

    def set_tool(self, *, hang_seconds: float = 0, fail: str = "") -> None:
        """Make every fake dmsetup call hang or fail."""
        self.state.update(hang_seconds=hang_seconds, fail=fail)
        self.save()

    def set_nvme(self, nqn: str, *, hang_seconds: float = 0, fail: str = "") -> None:
        """Make the fake `nvme disconnect` of `nqn` hang or fail."""
        self.state["nvme"][nqn] = {"hang_seconds": hang_seconds, "fail": fail}
        self.save()

    # ------------------------------------------------------------ device mapper

    def add_dm(self, name: str, targets: list[tuple[int, int, str, str]], *, slaves: tuple[str, ...] = (),
               uuid: str = "", open_count: int = 0, suspended: bool = False,
               deferred_remove: bool = False, **behaviour: Any) -> tuple[str, str]:
        """A dm device over the block devices `slaves` (kernel names); returns (dm-N, 'M:m')."""
        if name in self.state["devices"]:
            raise ValueError(f"dm device {name} exists")
        minor = self._allocate("dm", "/sys/devices/virtual/block", "dm-")
        kernel, dev = f"dm-{minor}", f"{DM_MAJOR}:{minor}"
        base = f"{VIRTUAL}/block/{kernel}"
        self._block(base, kernel, dev)
        for attr, value in (("name", name), ("uuid", uuid), ("suspended", "1" if suspended else "0"),
                            ("use_blk_mq", "0"), ("rq_based_seq_io_merge_deadline", "0")):
            self.write(f"{base}/dm/{attr}", f"{value}\n")
        for slave in slaves:
            slave_dir = self.device_dir(slave)
            if slave_dir is None:
                raise ValueError(f"no block device {slave}")
            self.link(f"{base}/slaves/{slave}", slave_dir)
            self.link(f"{slave_dir}/holders/{kernel}", base)
        self.raw_link(f"/dev/mapper/{name}", f"../{kernel}")  # udev's link
        self.state["devices"][name] = {
            "kernel": kernel, "dev": dev, "uuid": uuid, "open": open_count,
            "suspended": suspended, "deferred_remove": deferred_remove,
            "targets": [list(t) for t in targets], "hang_seconds": 0, "fail": "", **behaviour,
        }
        self.save()
        return kernel, dev

    def dm_busy(self, name: str) -> str:
        """Why the kernel would refuse to remove `name` now ('' when it would not)."""
        record = self.dm(name)
        holders = os.listdir(self.p(f"{VIRTUAL}/block/{record['kernel']}/holders"))
        if record["open"] > 0 or holders or self.mounted(record["dev"]):
            return "Device or resource busy"
        return ""

    def remove_dm(self, name: str) -> None:
        """What a successful DM_DEV_REMOVE does to sysfs (and the lower devices it held open)."""
        record = self.state["devices"].pop(name)
        kernel, dev = record["kernel"], record["dev"]
        base = f"{VIRTUAL}/block/{kernel}"
        slave_links = []
        for slave in os.listdir(self.p(f"{base}/slaves")):
            slave_links.append(os.readlink(self.p(f"{base}/slaves/{slave}")))
            slave_dir = self.device_dir(slave)
            if slave_dir is not None:
                self.unlink(f"{slave_dir}/holders/{kernel}")
                self._release(slave)
        self.rmtree(base)
        self._drop_block(kernel, dev)
        self.unlink(f"/dev/mapper/{name}")
        self._free("dm", int(kernel[3:]))
        for link in slave_links:
            self._maybe_free_subsystem(link)
        self.save()

    def _release(self, kernel_name: str) -> None:
        """A dm device stacked on `kernel_name` went: the lower dm loses one opener."""
        for record in self.state["devices"].values():
            if record["kernel"] == kernel_name and record["open"] > 0:
                record["open"] -= 1

    # ------------------------------------------------------------ other block devices

    def add_disk(self) -> tuple[str, str]:
        """A SCSI disk sdX (8:16k), e.g. an iSCSI disk; returns (name, 'M:m')."""
        index = self._allocate("sd", "/sys/block", "sd")
        name = f"sd{chr(ord('a') + index)}"
        dev = f"{SD_MAJOR}:{16 * index}"
        self._block(f"{SCSI}/block/{name}", name, dev)
        return name, dev

    def add_loop(self, backing_file: str = "/var/tmp/disk.img") -> tuple[str, str]:
        """A loop device loopN (7:N) over `backing_file`."""
        n = self._allocate("loop", f"{VIRTUAL}/block", "loop")
        name, dev = f"loop{n}", f"{LOOP_MAJOR}:{n}"
        self._block(f"{VIRTUAL}/block/{name}", name, dev)
        self.write(f"{VIRTUAL}/block/{name}/loop/backing_file", f"{backing_file}\n")
        if not os.path.lexists(self.p(backing_file)):
            self.write(backing_file, "")  # the image file (a regular file: no block device's user)
        return name, dev

    def add_ublk(self) -> tuple[str, str]:
        """A ublk block device ublkbN."""
        n = self._allocate("ublk", f"{VIRTUAL}/block", "ublkb")
        name, dev = f"ublkb{n}", f"{UBLK_MAJOR}:{n}"
        self._block(f"{VIRTUAL}/block/{name}", name, dev)
        return name, dev

    def remove_block(self, name: str) -> None:
        """A non-dm block device disappears (its holders' slaves links start dangling)."""
        directory = self.device_dir(name)
        dev = self.read(f"{directory}/dev").strip() if directory else ""
        if directory:
            self.rmtree(directory)
        self._drop_block(name, dev)

    def read(self, host_path: str) -> str:
        """A file's text."""
        with open(self.p(host_path), encoding="utf-8") as handle:
            return handle.read()

    # ------------------------------------------------------------ NVMe over fabrics

    def connect(self, nqn: str, *, traddr: str = "127.0.0.1", trsvcid: str = "4420",
                state: str = "live") -> tuple[str, str, str, str]:
        """`nvme connect`: a controller, its subsystem, the head and the hidden path disk.

        Returns (subsystem, controller, namespace head, head 'M:m').
        """
        subsystem = self.subsystem_of(nqn)
        if subsystem is None:
            subsystem = f"nvme-subsys{self._allocate('subsys', SUBSYS, 'nvme-subsys')}"
            self.write(f"{SUBSYS}/{subsystem}/subsysnqn", f"{nqn}\n")
            self.write(f"{SUBSYS}/{subsystem}/iopolicy", "numa\n")
            self.link(f"/sys/class/nvme-subsystem/{subsystem}", f"{SUBSYS}/{subsystem}")
            if self._subsystems is not None:
                self._subsystems[nqn] = subsystem
        ctrl_n = self._allocate("ctrl", CTL, "nvme")
        ctrl = f"nvme{ctrl_n}"
        base = f"{CTL}/{ctrl}"
        address = f"traddr={traddr},trsvcid={trsvcid},src_addr=127.0.0.1"
        for attr, value in (("subsysnqn", nqn), ("state", state), ("transport", "tcp"),
                            ("address", address), ("cntrltype", "io"), ("model", "Linux".ljust(40)),
                            ("ctrl_loss_tmo", "30"), ("kato", "5"), ("dev", f"{NVME_CHAR_MAJOR}:{ctrl_n}")):
            self.write(f"{base}/{attr}", f"{value}\n")
        self.link(f"/sys/class/nvme/{ctrl}", base)
        self.link(f"{SUBSYS}/{subsystem}/{ctrl}", base)
        self.raw_link(f"{base}/device", "../../ctl")
        instance = subsystem[len("nvme-subsys"):]
        head = f"nvme{instance}n1"
        if not os.path.isdir(self.p(f"{SUBSYS}/{subsystem}/{head}")):
            self._add_head(subsystem, head, f"ng{instance}n1")
        head_dev = self.read(f"{SUBSYS}/{subsystem}/{head}/dev").strip()
        path = f"nvme{instance}c{ctrl_n}n1"
        self._block(f"{base}/{path}", path, "", with_dev=False)
        self.raw_link(f"{base}/{path}/device", f"../../{ctrl}")
        return subsystem, ctrl, head, head_dev

    def add_partition(self, disk: str, number: int) -> tuple[str, str]:
        """A partition `<disk>p<number>` of an NVMe disk, as the kernel's partition scan makes it;
        returns (name, 'M:m')."""
        disk_dir = self.device_dir(disk)
        if disk_dir is None:
            raise ValueError(f"no block device {disk}")
        name = f"{disk}p{number}"
        dev = f"{NVME_MAJOR}:{self._allocate('ns', '/sys/dev/block', f'{NVME_MAJOR}:')}"
        directory = f"{disk_dir}/{name}"
        os.makedirs(self.p(f"{directory}/holders"), exist_ok=True)
        self.write(f"{directory}/partition", f"{number}\n")
        self.write(f"{directory}/dev", f"{dev}\n")
        self.link(f"/sys/class/block/{name}", directory)
        self.link(f"/sys/dev/block/{dev}", directory)
        self.write(f"/dev/{name}", "")
        return name, dev

    def _drop_partition(self, directory: str, name: str) -> None:
        dev = self.read(f"{directory}/dev").strip()
        self.unlink(f"/sys/class/block/{name}")
        self.unlink(f"/sys/dev/block/{dev}")
        self.unlink(f"/dev/{name}")
        self._free("ns", int(dev.split(":")[1]))

    def _add_head(self, subsystem: str, head: str, generic: str) -> None:
        """The multipath namespace head (block) and its generic char device, below the subsystem."""
        head_dev = f"{NVME_MAJOR}:{self._allocate('ns', '/sys/dev/block', f'{NVME_MAJOR}:')}"
        self._block(f"{SUBSYS}/{subsystem}/{head}", head, head_dev)
        self.write(f"/dev/{head}", "")  # udev's node; a plain file, so an O_EXCL open succeeds
        self.raw_link(f"{SUBSYS}/{subsystem}/{head}/device", f"../../{subsystem}")
        self.write(f"{SUBSYS}/{subsystem}/{generic}/dev", f"{NVME_GENERIC_MAJOR}:{head_dev.split(':')[1]}\n")
        self.raw_link(f"{SUBSYS}/{subsystem}/{generic}/device", f"../../{subsystem}")

    def subsystem_of(self, nqn: str) -> Optional[str]:
        """The subsystem whose subsysnqn is `nqn` (indexed on first use, then kept up to date)."""
        if self._subsystems is None:
            self._subsystems = {}
            for name in sorted(os.listdir(self.p(SUBSYS)), reverse=True):
                if os.path.exists(self.p(f"{SUBSYS}/{name}/subsysnqn")):
                    self._subsystems[self.read(f"{SUBSYS}/{name}/subsysnqn").strip()] = name
        return self._subsystems.get(nqn)

    def set_controller_state(self, ctrl: str, state: str) -> None:
        """E.g. 'connecting' while the target is unreachable within ctrl_loss_tmo."""
        self.write(f"{CTL}/{ctrl}/state", f"{state}\n")

    def disconnect(self, nqn: str) -> int:
        """Controllers and heads of `nqn` vanish (disconnect, or ctrl_loss_tmo expiry); returns count.

        The subsystem directory stays while a dm device still holds its (gone) head.
        """
        subsystem = self.subsystem_of(nqn)
        if subsystem is None:
            return 0
        base = f"{SUBSYS}/{subsystem}"
        count = 0
        for entry in sorted(os.listdir(self.p(base))):
            path = f"{base}/{entry}"
            if os.path.islink(self.p(path)) and entry.startswith("nvme") and entry[4:].isdigit():
                count += self._drop_controller(entry)
                self.unlink(path)
            elif entry.startswith("ng"):
                self.rmtree(path)
            elif os.path.isdir(self.p(path)) and os.path.exists(self.p(f"{path}/dev")):
                for part in [p for p in os.listdir(self.p(path)) if p.startswith(f"{entry}p")]:
                    self._drop_partition(f"{path}/{part}", part)
                head_dev = self.read(f"{path}/dev").strip()
                self._drop_block(entry, head_dev)
                self.unlink(f"/dev/{entry}")
                self.rmtree(path)
                self._free("ns", int(head_dev.split(":")[1]))
        self._maybe_free_subsystem(f"{base}/")
        return count

    kill_target = disconnect

    def _drop_controller(self, ctrl: str) -> int:
        for entry in os.listdir(self.p(f"{CTL}/{ctrl}")):
            if "c" in entry[4:]:
                self._drop_block(entry, "")
        self.rmtree(f"{CTL}/{ctrl}")
        self.unlink(f"/sys/class/nvme/{ctrl}")
        self._free("ctrl", int(ctrl[4:]))
        return 1

    def _maybe_free_subsystem(self, link: str) -> None:
        """Free the subsystem named in `link` once nothing is left in it and no dm holds it."""
        marker = "nvme-subsystem/"
        if marker not in link:
            return
        subsystem = link.split(marker, 1)[1].split("/", 1)[0]
        base = f"{SUBSYS}/{subsystem}"
        if not os.path.isdir(self.p(base)):
            return
        if any(e.startswith("nvme") for e in os.listdir(self.p(base))):
            return
        for record in self.state["devices"].values():
            slaves = self.p(f"{VIRTUAL}/block/{record['kernel']}/slaves")
            if any(f"/{subsystem}/" in os.readlink(os.path.join(slaves, s)) for s in os.listdir(slaves)):
                return
        self.rmtree(base)
        self.unlink(f"/sys/class/nvme-subsystem/{subsystem}")
        self._free("subsys", int(subsystem[len("nvme-subsys"):]))
        self._subsystems = None

    # ------------------------------------------------------------ mounts

    def add_process(self, pid: int, comm: str, mnt_ns: str = HOST_MNT_NS, mountinfo: str = "",
                    open_paths: tuple[str, ...] = (), leader_exited_thread: int = 0) -> None:
        """/proc/<pid>: comm, ns/mnt (a link whose text names the namespace), mountinfo (PID 1's
        when empty and in the host's namespace), and fd/N links to files of the tree.

        With `leader_exited_thread`, the leader called pthread_exit(): its own fd/ is empty and
        its ns/mnt gone, and all of it is under task/<that thread>/ (task/<pid>/ is the zombie's).
        """
        self.write(f"/proc/{pid}/comm", f"{comm}\n")
        base = f"/proc/{pid}"
        if leader_exited_thread:
            os.makedirs(self.p(f"{base}/fd"))
            os.makedirs(self.p(f"{base}/task/{pid}/fd"))
            base = f"{base}/task/{leader_exited_thread}"
        os.makedirs(self.p(f"{base}/ns"), exist_ok=True)
        os.symlink(f"mnt:[{mnt_ns}]", self.p(f"{base}/ns/mnt"))
        if not mountinfo and mnt_ns == HOST_MNT_NS and pid != 1:
            mountinfo = self.read("/proc/1/mountinfo")
        self.write(f"{base}/mountinfo", mountinfo)
        os.makedirs(self.p(f"{base}/fd"), exist_ok=True)
        for fd, path in enumerate(open_paths, start=3):
            os.symlink(self.p(path), self.p(f"{base}/fd/{fd}"))

    def add_mount(self, dev: str, mount_point: str, source: str = "/dev/longhorn/x",
                  fstype: str = "ext4", pid: int = 1) -> None:
        """Append a mountinfo line for `dev` at `mount_point` to /proc/<pid>/mountinfo."""
        line = (f"{900 + len(self.mounts())} 22 {dev} / {escape(mount_point)} rw,relatime"
                f" - {fstype} {escape(source)} rw\n")
        with open(self.p(f"/proc/{pid}/mountinfo"), "a", encoding="utf-8") as handle:
            handle.write(line)

    def mounts(self) -> list[list[str]]:
        """PID 1's mountinfo lines split into fields."""
        return [line.split(" ") for line in self.read("/proc/1/mountinfo").splitlines() if line]

    def mounted(self, dev: str) -> bool:
        """True when `dev` appears in PID 1's mountinfo."""
        return any(fields[2] == dev for fields in self.mounts())

    def remove_mount(self, mount_point: str) -> None:
        """umount: drop the mountinfo lines of `mount_point`."""
        for pid in (p for p in os.listdir(self.p("/proc")) if p.isdigit()):
            path = f"/proc/{pid}/mountinfo"
            lines = self.read(path).splitlines(keepends=True)
            self.write(path, "".join(x for x in lines if x.split(" ")[4] != escape(mount_point)))


def escape(path: str) -> str:
    """The kernel's mountinfo escaping of space, tab, newline and backslash."""
    return "".join(f"\\{ord(c):03o}" if c in " \t\n\\" else c for c in path)


def _number(text: str) -> int:
    """'12' -> 12; a letter suffix ('b' of sdb) -> its index; anything else -> -1."""
    if text.isdigit():
        return int(text)
    return ord(text) - ord("a") if len(text) == 1 and text.isalpha() else -1
