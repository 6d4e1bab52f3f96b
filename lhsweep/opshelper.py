"""The kernel-call helper: a child process that does lhsweep's removal system calls one at a time.

It runs as `python3 -I -S opshelper.py`, imports nothing of lhsweep, and reads one JSON request
a line on stdin, answering each with one JSON line on stdout:

    {"op": "ioctl", "path": P, "request": N, "buf": HEX}                 -> {"errno": E, "error": S}
    {"op": "write", "dir": D, "file": F, "data": TEXT, "expect": {A: V}}  -> {"errno": E, "error": S}

(the ioctl's reply buffer is not sent back: removals need only whether they worked).

A call the kernel never returns from (a dm removal or an NVMe controller deletion stuck in D
state) blocks only this process: the parent stops waiting, abandons it, and starts another
(lhsweep.tools.ToolRunner.call_helper). Paths come from the parent, already inside the host root.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import sys
from typing import Any


def _ioctl(request: dict[str, Any]) -> dict[str, Any]:
    """Issue one read-write ioctl on a freshly opened `path`."""
    buf = bytearray(bytes.fromhex(request["buf"]))
    fd = os.open(request["path"], os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fcntl.ioctl(fd, int(request["request"]), buf, True)
    finally:
        os.close(fd)
    return {"errno": 0, "error": ""}


def _write(request: dict[str, Any]) -> dict[str, Any]:
    """Write `data` in one write() to the attribute `file` of the directory `dir`, once every
    attribute named in `expect` there reads as given (ESTALE when one does not).

    The directory is opened once and everything is opened relative to it: its fd stays with the
    kernel object it was opened for, so a name the kernel hands to another device meanwhile (a
    controller's nvmeN) cannot redirect the write.
    """
    if "/" in request["file"]:
        raise ValueError(f"file must be a name in dir: {request['file']!r}")
    dir_fd = os.open(request["dir"], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name, value in request.get("expect", {}).items():
            found = _read_at(dir_fd, name)
            if found != value:
                return {"errno": errno.ESTALE,
                        "error": f"{request['dir']}: {name} is {found!r}, not {value!r}: another device now"}
        fd = os.open(request["file"], os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            os.write(fd, request["data"].encode())
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    return {"errno": 0, "error": ""}


def _read_at(dir_fd: int, name: str) -> str:
    """The attribute `name` of the directory `dir_fd`, whitespace stripped."""
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        return os.read(fd, 4096).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)


_OPS = {"ioctl": _ioctl, "write": _write}


def answer(line: str) -> dict[str, Any]:
    """The reply to one request line; a failed call is an errno, a bad request errno EINVAL."""
    try:
        request = json.loads(line)
        return _OPS[request["op"]](request)
    except OSError as exc:
        return {"errno": exc.errno or 0, "error": exc.strerror or str(exc)}
    except (ValueError, KeyError, TypeError) as exc:
        return {"errno": errno.EINVAL, "error": f"bad request: {type(exc).__name__}: {exc}"}


def main() -> None:
    """Serve requests until stdin closes."""
    for line in sys.stdin:
        sys.stdout.write(json.dumps(answer(line)) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
