"""The kernel-call helper: a child process that does lhsweep's removal system calls one at a time.

It runs as `python3 -I -S opshelper.py`, imports nothing of lhsweep, and reads one JSON request
a line on stdin, answering each with one JSON line on stdout:

    {"op": "ioctl", "path": P, "request": N, "buf": HEX}  -> {"errno": E, "error": S}
    {"op": "write", "path": P, "data": TEXT}              -> {"errno": E, "error": S}

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
    """Write `data` to the attribute file `path` in one write()."""
    fd = os.open(request["path"], os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        os.write(fd, request["data"].encode())
    finally:
        os.close(fd)
    return {"errno": 0, "error": ""}


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
