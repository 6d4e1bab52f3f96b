"""HostRoot: the one place that maps host paths below a root directory and reads them.

Below a root other than "/", every path is resolved by the kernel with openat2(RESOLVE_IN_ROOT):
absolute links and ".." stay inside the root, so the host's `/var/run -> /run` leads to
`<root>/run`, never to lhsweep's own /run.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from typing import Optional

from lhsweep.errors import HostReadError

# A path that is missing, or whose parent is a file, reads as "absent" rather than as an error.
_ABSENT = (FileNotFoundError, NotADirectoryError)
_CHUNK = 65536
_SYS_OPENAT2 = 437  # the same number on every architecture (added after the syscall table merge)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
_O_PATH = getattr(os, "O_PATH", 0o10000000)
_OPENAT2_TRIES = 8  # EAGAIN retried this often, then raised


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_HOW_SIZE = ctypes.sizeof(_OpenHow)
_libc = ctypes.CDLL(None, use_errno=True)


# One struct per (flags, mode), passed by a reference built with it: not per call (~50,000 a scan).
_HOWS: dict[tuple[int, int], object] = {}
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def _how(flags: int, mode: int) -> object:
    """A reference to the open_how struct of (flags, mode): close-on-exec, resolved inside the root."""
    key = (flags | os.O_CLOEXEC, mode if flags & os.O_CREAT else 0)
    how = _OpenHow(key[0], key[1], _RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    _HOWS[(flags, mode)] = ref = ctypes.byref(how)
    return ref


def _openat2(dir_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """openat2(dir_fd, path) resolved inside dir_fd; raises OSError like os.open.

    EAGAIN is the kernel's "try again": a rename or mount anywhere on the host raced a ".."
    step (sysfs links are full of them), so the walk could not be proven to stay inside.
    """
    how = _HOWS.get((flags, mode)) or _how(flags, mode)
    encoded = path.encode(_FS_ENCODING, _FS_ERRORS)
    for _ in range(_OPENAT2_TRIES):
        fd = _libc.syscall(_SYS_OPENAT2, dir_fd, encoded, how, _HOW_SIZE)
        if fd >= 0:
            return int(fd)
        err = ctypes.get_errno()
        if err != errno.EAGAIN:
            break
    raise OSError(err, os.strerror(err), path)


def _readlink_at(dir_fd: int, name: str) -> Optional[str]:
    """The text of the link `name` in the directory `dir_fd`, None when it is not a link (or
    went since the listing); any other failure raises."""
    try:
        return os.readlink(name, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            return None
        raise


class HostRoot:
    """The host's filesystem seen below `root` ("/" on the host, e.g. "/host" in a container)."""

    def __init__(self, root: str = "/") -> None:
        self.root = os.path.normpath(root) if root else "/"
        self._root_fd: Optional[int] = None  # opened on first use below a root other than /

    def __del__(self) -> None:
        fd = getattr(self, "_root_fd", None)  # absent when __init__ failed
        if fd is not None:
            os.close(fd)

    def __repr__(self) -> str:
        return f"HostRoot({self.root!r})"

    def open(self, host_path: str, flags: int, mode: int = 0o644) -> int:
        """os.open of the absolute host path, every component resolved inside the root."""
        if host_path[:1] != "/":
            raise ValueError(f"host path must be absolute: {host_path!r}")
        if self.root == "/":
            return os.open(host_path, flags | os.O_CLOEXEC, mode)
        if self._root_fd is None:
            self._root_fd = os.open(self.root, os.O_DIRECTORY | _O_PATH | os.O_CLOEXEC)
        try:
            return _openat2(self._root_fd, host_path.lstrip("/") or ".", flags, mode)
        except OSError as exc:
            if exc.errno == errno.ENOSYS:
                raise HostReadError(f"{host_path}: the kernel has no openat2(), which a host root "
                                    f"other than / needs (Linux 5.6+)") from None
            raise

    def path(self, host_path: str) -> str:
        """The real path of `host_path` below the root, its parent resolved inside the root.

        For consumers that need a path string (a device node to hand to ioctl); the last
        component is not followed.
        """
        if host_path[:1] != "/":
            raise ValueError(f"host path must be absolute: {host_path!r}")
        if self.root == "/":
            return host_path
        parent, name = os.path.split(host_path.rstrip("/") or "/")
        try:
            fd = self.open(parent, os.O_DIRECTORY | _O_PATH)
        except _ABSENT:
            return os.path.join(self.root, os.path.normpath(host_path).lstrip("/"))  # nothing to follow
        try:
            real_parent = os.readlink(f"/proc/self/fd/{fd}")
        finally:
            os.close(fd)
        return os.path.join(real_parent, name) if name else real_parent

    def read_text(self, host_path: str) -> Optional[str]:
        """The file's text (undecodable bytes replaced), None when it does not exist.

        Plain os.read calls up to end of file (about half the cost of open() on the
        10,000-device inventory path).
        """
        return self._read(host_path, whole_first_read=False)

    def read_attribute(self, host_path: str) -> Optional[str]:
        """A sysfs attribute's text, None when it does not exist: one read, no second one for EOF.

        The kernel hands a sysfs attribute (at most a page) whole to the first read() of a
        larger buffer; not for /proc files, whose reads may stop short of the end.
        """
        return self._read(host_path, whole_first_read=True)

    def _read(self, host_path: str, whole_first_read: bool) -> Optional[str]:
        try:
            fd = self.open(host_path, os.O_RDONLY)
        except _ABSENT:
            return None
        except OSError as exc:
            raise HostReadError(f"{host_path}: cannot read: {exc.strerror or exc}") from None
        try:
            chunks = [os.read(fd, _CHUNK)]
            while chunks[-1] and not (whole_first_read and len(chunks[-1]) < _CHUNK):
                chunks.append(os.read(fd, _CHUNK))
        except OSError as exc:
            raise HostReadError(f"{host_path}: cannot read: {exc.strerror or exc}") from None
        finally:
            os.close(fd)
        return b"".join(chunks).decode("utf-8", "replace")

    def listdir(self, host_path: str) -> list[str]:
        """The directory's entry names, sorted; empty when it does not exist."""
        try:
            if self.root == "/":
                return sorted(os.listdir(host_path))
            fd = self.open(host_path, os.O_RDONLY | os.O_DIRECTORY)
            try:
                return sorted(os.listdir(fd))
            finally:
                os.close(fd)
        except _ABSENT:
            return []
        except OSError as exc:
            raise HostReadError(f"{host_path}: cannot list: {exc.strerror or exc}") from None

    def read_links(self, host_path: str) -> dict[str, Optional[str]]:
        """Every entry of a directory with its link text (None: not a link), sorted by name;
        empty when the directory does not exist.

        The directory is opened once and each entry read relative to it (one name, never
        followed): one readlinkat() an entry instead of a resolution from the root each.
        """
        try:
            fd = self.open(host_path, os.O_RDONLY | os.O_DIRECTORY)
        except _ABSENT:
            return {}
        except OSError as exc:
            raise HostReadError(f"{host_path}: cannot list: {exc.strerror or exc}") from None
        try:
            return {name: _readlink_at(fd, name) for name in sorted(os.listdir(fd))}
        except OSError as exc:
            raise HostReadError(f"{host_path}: cannot list: {exc.strerror or exc}") from None
        finally:
            os.close(fd)

    def readlink(self, host_path: str) -> Optional[str]:
        """The text of the symlink `host_path` (never followed), None when it is absent or not a
        link; HostReadError when it cannot be read (never taken for "absent")."""
        try:
            if self.root == "/":
                return os.readlink(host_path)
            fd = self.open(host_path, _O_PATH | os.O_NOFOLLOW)
            try:
                return os.readlink("", dir_fd=fd)
            finally:
                os.close(fd)
        except _ABSENT:
            return None
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # there, and not a link
                return None
            raise HostReadError(f"{host_path}: cannot read the link: {exc.strerror or exc}") from None

    def lstat(self, host_path: str) -> Optional[os.stat_result]:
        """lstat() of `host_path` (links are not followed), None when it does not exist."""
        try:
            if self.root == "/":
                return os.lstat(host_path)
            fd = self.open(host_path, _O_PATH | os.O_NOFOLLOW)
            try:
                return os.stat(fd)
            finally:
                os.close(fd)
        except _ABSENT:
            return None
        except OSError as exc:
            raise HostReadError(f"{host_path}: cannot stat: {exc.strerror or exc}") from None

    def exists(self, host_path: str) -> bool:
        """True when `host_path` exists; a link counts only if its target exists (inside the root).

        HostReadError when that cannot be told (a refusal other than "no such file").
        """
        try:
            os.close(self.open(host_path, _O_PATH))
        except _ABSENT:
            return False
        except OSError as exc:
            raise HostReadError(f"{host_path}: cannot tell if it exists: {exc.strerror or exc}") from None
        return True

    def open_dir_fd(self, host_path: str) -> int:
        """Open the directory `host_path` (not through a link) for *at() calls; raises OSError."""
        return self.open(host_path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)

    def makedirs(self, host_path: str, mode: int = 0o755, _links: int = 40) -> None:
        """Create the directory `host_path` and its missing parents, each inside the root.

        A dangling link on the way (`var/run -> /run` with no run) is followed inside the root.
        """
        try:
            os.close(self.open(host_path, os.O_DIRECTORY | _O_PATH))
            return
        except FileNotFoundError:
            pass
        if _links <= 0:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), host_path)
        parent, name = os.path.split(host_path.rstrip("/"))
        self.makedirs(parent, mode, _links - 1)
        fd = self.open(parent, os.O_DIRECTORY | _O_PATH)
        try:
            os.mkdir(name, mode, dir_fd=fd)
        except FileExistsError:
            target = self.readlink(f"{parent.rstrip('/')}/{name}")
            if target is None:
                raise
            self.makedirs(os.path.join(parent, target), mode, _links - 1)
        finally:
            os.close(fd)
