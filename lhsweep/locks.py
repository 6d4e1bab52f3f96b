"""go-spdk-helper's flocks (per volume, and the older global one), taken below a host root without
waiting, as Longhorn's own host operations take them."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator

from lhsweep.errors import LhsweepError
from lhsweep.host import HostRoot
from lhsweep.longhorn import LEGACY_LOCK, volume_lock_path


class LockUnavailable(LhsweepError):
    """A Longhorn lock is held by another process, or cannot be opened or taken; says which."""


@contextlib.contextmanager
def longhorn_locks(host: HostRoot, volume: str) -> Iterator[None]:
    """Hold the volume's flock and the global one; LockUnavailable at once when either is not free."""
    try:
        paths = (volume_lock_path(volume), LEGACY_LOCK)
    except ValueError as exc:
        raise LockUnavailable(str(exc)) from None
    with contextlib.ExitStack() as stack:
        for path in paths:
            stack.enter_context(_flock(host, path))
        yield


@contextlib.contextmanager
def _flock(host: HostRoot, path: str) -> Iterator[None]:
    """flock `path` below the host root, each component (and the file) created inside it."""
    try:
        host.makedirs(os.path.dirname(path))
        # Read-only is enough for flock, and works where the sandbox keeps /run read-only.
        fd = host.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise LockUnavailable(f"cannot open Longhorn lock {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockUnavailable(f"Longhorn lock {path} is held by another process") from None
            raise LockUnavailable(f"cannot lock {path}: {exc.strerror}") from None
        yield
    finally:
        os.close(fd)
