"""Watches <kubelet root>/pods for pod directories coming and going, falling back to a parent.

pyroute2's Inotify (identical in Debian's 0.7 and PyPI's 0.9) is on the design card, but it is not
used here: its unregister_path() is a no-op (the parent fallback must drop a watch), it stores a
failed inotify_add_watch's -1 as a watch descriptor, its parse() raises KeyError on IN_Q_OVERFLOW
(wd -1) and it opens the inotify fd blocking and without close-on-exec. The few libc calls are
made here through ctypes instead, on a non-blocking fd the main loop polls.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from dataclasses import dataclass
from typing import Optional

from lhsweep.daemon.wakeup import read_available

IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC

_EVENT_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len
_SELF_GONE = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED
TARGET_MASK = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF
PARENT_MASK = IN_CREATE | IN_MOVED_TO | IN_DELETE_SELF | IN_MOVE_SELF


@dataclass(frozen=True)
class InotifyEvent:
    """One decoded inotify event."""

    wd: int
    mask: int
    cookie: int
    name: str


def parse_events(data: bytes) -> list[InotifyEvent]:
    """Decode a buffer of struct inotify_event records (a short tail is ignored)."""
    events = []
    offset = 0
    while offset + _EVENT_HEADER.size <= len(data):
        wd, mask, cookie, length = _EVENT_HEADER.unpack_from(data, offset)
        offset += _EVENT_HEADER.size
        raw = data[offset:offset + length].split(b"\0", 1)[0]
        offset += length
        events.append(InotifyEvent(wd, mask, cookie, os.fsdecode(raw)))
    return events


class Inotify:
    """A non-blocking inotify instance with add/remove of watches."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise _os_error("inotify_init1")
        self._fd: int = fd

    def fileno(self) -> int:
        """The inotify fd, for a selector."""
        return self._fd

    def add_watch(self, path: str, mask: int) -> int:
        """Watch `path`; returns the watch descriptor; raises OSError."""
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask)
        if wd < 0:
            raise _os_error(path)
        return int(wd)

    def rm_watch(self, wd: int) -> None:
        """Drop a watch; one the kernel already dropped is fine."""
        self._libc.inotify_rm_watch(self._fd, wd)

    def read(self) -> list[InotifyEvent]:
        """Every event queued now (never blocks)."""
        return parse_events(read_available(self._fd))

    def close(self) -> None:
        """Close the fd (and with it every watch)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _os_error(what: str) -> OSError:
    err = ctypes.get_errno() or errno.EIO
    return OSError(err, os.strerror(err), what)


class PodDirWatcher:
    """Turns inotify events on the pods directory (or its nearest parent) into trigger names."""

    def __init__(self, target: str, inotify: Optional[Inotify] = None) -> None:
        self.target = os.path.normpath(target)
        self._inotify = inotify or Inotify()
        self._wd = -1
        self.watched = ""
        self.arm()

    def fileno(self) -> int:
        """The inotify fd, for a selector."""
        return self._inotify.fileno()

    @property
    def on_target(self) -> bool:
        """True when the pods directory itself is watched (not a parent)."""
        return self.watched == self.target

    def arm(self) -> None:
        """Watch the target, or its nearest existing parent when it does not exist (yet)."""
        if self._wd >= 0:
            self._inotify.rm_watch(self._wd)
            self._wd = -1
        path = self.target
        while True:
            mask = TARGET_MASK if path == self.target else PARENT_MASK
            try:
                self._wd = self._inotify.add_watch(path, mask | IN_ONLYDIR)
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR) or path == "/":
                    raise
                path = os.path.dirname(path)
                continue
            self.watched = path
            if path == self.target or not os.path.isdir(self._next_step()):
                return
            # The next directory appeared between the failed watch and this one: go down again.
            self._inotify.rm_watch(self._wd)
            path = self.target

    def _next_step(self) -> str:
        """The directory one level below the watched parent on the way to the target."""
        rest = os.path.relpath(self.target, self.watched).split(os.sep)[0]
        return os.path.join(self.watched, rest)

    def handle(self) -> Optional[str]:
        """Read queued events; the trigger they amount to (None when nothing relevant)."""
        trigger: Optional[str] = None
        for event in self._inotify.read():
            if event.mask & IN_Q_OVERFLOW:
                self.arm()
                return "inotify-overflow"
            if event.wd != self._wd:
                continue  # a watch dropped by arm(): its late events and IN_IGNORED
            if event.mask & _SELF_GONE:
                self.arm()
                return "pods-dir-lost"
            if not self.on_target:
                if event.name == os.path.basename(self._next_step()):
                    self.arm()
                    trigger = "pods-dir-appeared" if self.on_target else trigger
                continue
            trigger = "pod-dir"
        return trigger

    def close(self) -> None:
        """Stop watching."""
        self._inotify.close()
