"""Who uses block devices: mounts of every mount namespace, processes' open fds, loop devices.

Each fact is read whole or not at all: a /proc that cannot be fully read (permission, hidepid,
ProtectProc=) makes the fact Unknown, never an empty answer.

Why /proc/<pid>/fd and not an O_EXCL open probe here: a probe briefly claims the device, so
an instance-manager (or the kernel for it: dm table load, mount, mkfs) claiming the same device
in that instant would fail with EBUSY. A read-only scan of /proc cannot disturb anyone, sees
plain (non-exclusive) opens, which a probe cannot, and names the pid and command. Kernel claims
(dm, md, loop, swap) show as sysfs holders, dm open counts and loop backing files.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from typing import Optional

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory.mounts import parse_mountinfo
from lhsweep.model import DevNum, LoopDevice, Mount, Opener

PROC = "/proc"
SYS_BLOCK = "/sys/block"
# The process vanished between listing /proc and reading it: not a failure.
_GONE = (errno.ENOENT, errno.ESRCH)


class _Unreadable(Exception):
    """A part of /proc could not be read: the fact depending on it is unknown."""


def _pids(host: HostRoot) -> list[str]:
    """The numeric entries of /proc (every process lhsweep can see)."""
    try:
        pids = [p for p in host.listdir(PROC) if p.isdigit()]
    except HostReadError as exc:
        raise _Unreadable(str(exc)) from None
    if not pids:
        raise _Unreadable(f"{PROC}: no processes listed (not the host's /proc?)")
    return pids


def _comm(pid_fd: int) -> str:
    try:
        fd = os.open("comm", os.O_RDONLY | os.O_CLOEXEC, dir_fd=pid_fd)
    except OSError:
        return "?"
    try:
        return os.read(fd, 64).decode("utf-8", "replace").strip() or "?"
    except OSError:
        return "?"
    finally:
        os.close(fd)


def _processes(host: HostRoot) -> Iterator[tuple[int, int]]:
    """(pid, fd of /proc/<pid>) for every live process; the fd is closed after each step."""
    for pid in _pids(host):
        try:
            pid_fd = host.open(f"{PROC}/{pid}", os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            if exc.errno in _GONE:
                continue
            raise _Unreadable(f"{PROC}/{pid}: {exc.strerror}") from None
        try:
            yield int(pid), pid_fd
        finally:
            os.close(pid_fd)


def _hidden_processes(host: HostRoot) -> str:
    """Why the /proc below the root may hide processes ('' when it shows them all)."""
    real = os.path.realpath(host.path(PROC))
    for line in (host_self_mountinfo() or "").splitlines():
        fields = line.split(" ")
        if len(fields) > 4 and fields[4] == real and "proc" in fields:
            options = ",".join(fields[5:6] + fields[-1:])
            for option in options.split(","):
                key, _, value = option.partition("=")
                if (key == "hidepid" and value not in ("0", "off")) or (key == "subset" and value == "pid"):
                    return f"{PROC} is mounted with {option}: other users' processes are hidden"
    return ""


def host_self_mountinfo() -> Optional[str]:
    """lhsweep's own mountinfo (how its /proc is mounted), None when unreadable."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def read_mount_namespaces(host: HostRoot) -> tuple[Mount, ...]:
    """The mounts of every distinct mount namespace of a running process; raises HostReadError.

    A mount made with `unshare -m` is in its namespace's mountinfo only, not in PID 1's.
    An empty result is not "nothing mounted" (a live system always has mounts): an error.
    """
    try:
        hidden = _hidden_processes(host)
        if hidden:
            raise _Unreadable(hidden)
        mounts = _scan_namespaces(host)
    except _Unreadable as exc:
        raise HostReadError(f"mounts unknown: {exc}") from None
    if not mounts:
        raise HostReadError(f"mounts unknown: no mountinfo under {PROC} lists any mount")
    return mounts


def _process_dirs(pid: int, pid_fd: int) -> Iterator[str]:
    """"" (the process's own directory), then, only when asked for more, each task/<tid>/.

    A thread-group leader that called pthread_exit() stays a zombie while its other threads run:
    its own fd/ lists nothing and its ns/mnt is gone, while theirs show the process's open files
    and mounts. Only a read that came back empty or gone asks for them: for a process that is
    gone, or a kernel thread, that is one more empty read.
    """
    yield ""
    try:
        task_fd = os.open("task", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pid_fd)
    except OSError as exc:
        if exc.errno in _GONE:
            return
        raise _Unreadable(f"{PROC}/{pid}/task: {exc.strerror}") from None
    try:
        tids = sorted(os.listdir(task_fd))
    except OSError as exc:
        if exc.errno in _GONE:
            return
        raise _Unreadable(f"{PROC}/{pid}/task: {exc.strerror}") from None
    finally:
        os.close(task_fd)
    yield from (f"task/{tid}/" for tid in tids if tid.isdigit() and tid != str(pid))


def _mount_namespace(pid: int, pid_fd: int) -> Optional[tuple[str, str]]:
    """(its ns/mnt link, the directory that was read in) of a live process; None once it is gone."""
    for base in _process_dirs(pid, pid_fd):
        try:
            return os.readlink(f"{base}ns/mnt", dir_fd=pid_fd), base
        except OSError as exc:
            if exc.errno not in _GONE:
                raise _Unreadable(f"{PROC}/{pid}/{base}ns/mnt: {exc.strerror}") from None
    return None


def _scan_namespaces(host: HostRoot) -> tuple[Mount, ...]:
    seen: dict[str, int] = {}
    mounts: dict[tuple[DevNum, str], Mount] = {}
    for pid, pid_fd in _processes(host):
        found = _mount_namespace(pid, pid_fd)
        if found is None or found[0] in seen:
            continue
        namespace, base = found
        try:
            text = _read_at(pid_fd, f"{base}mountinfo")
        except OSError as exc:
            if exc.errno in _GONE:
                continue
            raise _Unreadable(f"{PROC}/{pid}: {exc.strerror}") from None
        # The first is PID 1's; a mount another namespace only copied from it is named once.
        where = f"mount namespace of pid {pid} ({_comm(pid_fd)})" if seen else ""
        seen[namespace] = pid
        for m in parse_mountinfo(text):
            mounts.setdefault((m.dev, m.mount_point), Mount(m.dev, m.mount_point, m.source, where))
    return tuple(mounts.values())


def _read_at(dir_fd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        chunks: list[bytes] = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks).decode("utf-8", "replace")
            chunks.append(chunk)
    finally:
        os.close(fd)


def read_openers(host: HostRoot) -> tuple[Opener, ...]:
    """Every (block device, process) pair where the process holds an fd on the device.

    Raises HostReadError when any process's fd table cannot be read (the fact is then unknown).
    """
    try:
        hidden = _hidden_processes(host)
        if hidden:
            raise _Unreadable(hidden)
        return tuple(o for pid, pid_fd in _processes(host) for o in _process_openers(pid, pid_fd))
    except _Unreadable as exc:
        raise HostReadError(f"open block devices unknown: {exc}") from None


def _process_openers(pid: int, pid_fd: int) -> list[Opener]:
    devs: set[DevNum] = set()
    for base in _process_dirs(pid, pid_fd):
        listed = _open_block_devs(pid, pid_fd, f"{base}fd", devs)
        if listed:
            break  # threads share the leader's fd table (a thread that unshared it: docs/design.md)
    comm = _comm(pid_fd) if devs else ""
    return [Opener(dev, pid, comm) for dev in sorted(devs)]


def _open_block_devs(pid: int, pid_fd: int, fd_path: str, devs: set[DevNum]) -> int:
    """Add the block devices the fds under `fd_path` are open on; returns how many fds it lists."""
    try:
        fd_dir = os.open(fd_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=pid_fd)
    except OSError as exc:
        if exc.errno in _GONE:
            return 0
        raise _Unreadable(f"{PROC}/{pid}/{fd_path}: {exc.strerror}") from None
    try:
        names = os.listdir(fd_dir)
        devs.update(dev for dev in (_fd_block_dev(fd_dir, name) for name in names) if dev is not None)
    except OSError as exc:
        if exc.errno in _GONE:
            return 0
        raise _Unreadable(f"{PROC}/{pid}/{fd_path}: {exc.strerror}") from None
    finally:
        os.close(fd_dir)
    return len(names)


def _fd_block_dev(fd_dir: int, name: str) -> Optional[DevNum]:
    """The block device fd `name` is open on; None for anything else or an fd closed meanwhile."""
    try:
        if not os.readlink(name, dir_fd=fd_dir).startswith("/"):
            return None  # socket:[..], pipe:[..], anon_inode:..: never a block device
        st = os.stat(name, dir_fd=fd_dir)  # follows the fd's own link to the open file
    except FileNotFoundError:
        return None
    return DevNum(os.major(st.st_rdev), os.minor(st.st_rdev)) if stat.S_ISBLK(st.st_mode) else None


def read_loops(host: HostRoot) -> tuple[LoopDevice, ...]:
    """Bound loop devices and the block device backing each (None when it cannot be resolved)."""
    loops = []
    for name in host.listdir(SYS_BLOCK):
        if not name.startswith("loop"):
            continue
        backing_file = host.read_text(f"{SYS_BLOCK}/{name}/loop/backing_file")
        if backing_file is None:
            continue  # not bound
        loops.append(LoopDevice(name, backing_file.strip(), _backing_dev(host, backing_file.strip())))
    return tuple(loops)


def _backing_dev(host: HostRoot, path: str) -> Optional[DevNum]:
    """The device number of a block-device backing file; DevNum(0, 0) for a regular file.

    None when the path is gone ("(deleted)") or cannot be resolved: it may have been a node.
    """
    if not path.startswith("/") or path.endswith(" (deleted)"):
        return None
    try:
        fd = host.open(path, os.O_RDONLY | getattr(os, "O_PATH", 0o10000000))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if stat.S_ISBLK(st.st_mode):
        return DevNum(os.major(st.st_rdev), os.minor(st.st_rdev))
    return DevNum(0, 0) if stat.S_ISREG(st.st_mode) else None
