"""Kernel uevents for dm, NVMe and ublk devices (pyroute2's UeventSocket), filtered to what matters."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any, Callable, Optional, Protocol

_BLOCK_NAME = re.compile(r"(dm-\d+|nvme\d+(c\d+)?n\d+|ublkb\d+)")
_NVME_SUBSYSTEMS = frozenset({"nvme", "nvme-subsystem"})
_ACTIONS = frozenset({"add", "remove", "change"})
RCVBUF_BYTES = 8 * 1024 * 1024
SO_RCVBUFFORCE = 33  # Linux; the socket module does not name it


def is_relevant(props: Mapping[str, Any]) -> bool:
    """True for add/remove/change of a dm, NVMe namespace or ublk disk, or of an NVMe (sub)system."""
    if props.get("ACTION") not in _ACTIONS:
        return False
    subsystem = props.get("SUBSYSTEM")
    if subsystem in _NVME_SUBSYSTEMS:
        return True
    if subsystem != "block":
        return False
    name = str(props.get("DEVNAME") or props.get("DEVPATH", "").rsplit("/", 1)[-1])
    return _BLOCK_NAME.fullmatch(name.rsplit("/", 1)[-1]) is not None


class UeventSource(Protocol):
    """What the watcher needs of a uevent socket (pyroute2's UeventSocket has all of it)."""

    def bind(self) -> Any:
        """Join the kernel's uevent multicast group."""

    def fileno(self) -> int:
        """The socket fd, for a selector."""

    def get(self) -> Iterable[Mapping[str, Any]]:
        """The messages queued now (called only when the fd is readable)."""

    def close(self) -> None:
        """Close the socket."""


def open_uevent_socket() -> UeventSource:
    """A bound pyroute2 UeventSocket with a large receive buffer (bursts of thousands of events)."""
    sock: UeventSource = _uevent_socket_class()()
    try:
        _grow_buffer(sock)
        sock.bind()
    except Exception:
        sock.close()
        raise
    return sock


def _uevent_socket_class() -> Any:
    """pyroute2's UeventSocket, without running pyroute2/__init__.py when nothing has yet.

    That file imports every netlink family pyroute2 has (Debian's 0.7: 25 MiB of the daemon's RSS
    for one socket class). Its submodule is loaded below a bare package shell instead, and the
    shell is dropped again, so a later `import pyroute2` anywhere still gets the whole package.
    """
    if "pyroute2" in sys.modules:
        from pyroute2.netlink.uevent import UeventSocket  # noqa: PLC0415
        return UeventSocket
    spec = importlib.util.find_spec("pyroute2")
    shell = types.ModuleType("pyroute2")
    shell.__path__ = list(spec.submodule_search_locations or []) if spec else []
    sys.modules["pyroute2"] = shell
    try:
        from pyroute2.netlink.uevent import UeventSocket  # noqa: PLC0415
    finally:
        if sys.modules.get("pyroute2") is shell:
            del sys.modules["pyroute2"]
    return UeventSocket


def _grow_buffer(sock: Any) -> None:
    """Ask for a bigger receive buffer; best effort (an overflow still ends in a resync)."""
    import socket  # noqa: PLC0415

    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
    except (OSError, AttributeError):
        return


class UeventWatcher:
    """Reads uevents when the main loop says the socket is readable; names the trigger they make."""

    def __init__(self, factory: Callable[[], UeventSource] = open_uevent_socket) -> None:
        self._sock = factory()

    def fileno(self) -> int:
        """The socket fd, for a selector."""
        return self._sock.fileno()

    def handle(self) -> Optional[str]:
        """'uevent' for a relevant event, 'uevent-overflow' when the kernel dropped some, else None."""
        try:
            messages = list(self._sock.get())
        except OSError:
            # ENOBUFS: the kernel dropped events for us; only a full resync is safe.
            return "uevent-overflow"
        return "uevent" if any(is_relevant(m) for m in messages) else None

    def close(self) -> None:
        """Close the socket."""
        self._sock.close()
