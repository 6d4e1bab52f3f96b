"""A non-blocking self-pipe: other threads (and signal handlers) wake the main loop through it."""

from __future__ import annotations

import os


def read_available(fd: int, chunk_size: int = 65536) -> bytes:
    """Everything readable now from the non-blocking `fd` (never blocks)."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, chunk_size)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class WakePipe:
    """The read end goes into the selector; poke() or signal.set_wakeup_fd write to the other."""

    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def fileno(self) -> int:
        """The read end, for a selector."""
        return self._read

    @property
    def write_fd(self) -> int:
        """The write end (for signal.set_wakeup_fd)."""
        return self._write

    def poke(self) -> None:
        """Wake the reader; a full pipe already means it will wake."""
        try:
            os.write(self._write, b"\0")
        except BlockingIOError:
            return

    def drain(self) -> bytes:
        """Everything written since the last drain."""
        return read_available(self._read)

    def close(self) -> None:
        """Close both ends."""
        for fd in (self._read, self._write):
            os.close(fd)
