"""Mounts from mountinfo: busy-by-mount shows only there (a mount adds no sysfs holder link)."""

from __future__ import annotations

import re

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.model import DevNum, Mount

# PID 1's view is the host's even when lhsweep runs in its own mount namespace.
MOUNTINFO_PATHS = ("/proc/1/mountinfo", "/proc/self/mountinfo")
_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def read_mounts(host: HostRoot) -> tuple[Mount, ...]:
    """The mounts of /proc/1/mountinfo, else /proc/self/mountinfo; raises HostReadError if neither.

    "No mountinfo" must not read as "nothing mounted".
    """
    failures = []
    for path in MOUNTINFO_PATHS:
        try:
            text = host.read_text(path)
        except HostReadError as exc:
            failures.append(str(exc))
            continue
        if text is not None:
            return parse_mountinfo(text)
        failures.append(f"{path}: missing")
    raise HostReadError(f"mounts unknown: {'; '.join(failures)}")


def parse_mountinfo(text: str) -> tuple[Mount, ...]:
    """Parse mountinfo lines: field 3 is major:minor, 5 the mount point, the source follows '-'."""
    mounts = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 10 or "-" not in fields[6:]:
            continue
        try:
            dev = DevNum.parse(fields[2])
        except ValueError:
            continue
        dash = fields.index("-", 6)
        source = fields[dash + 2] if len(fields) > dash + 2 else ""
        mounts.append(Mount(dev, unescape(fields[4]), unescape(source)))
    return tuple(mounts)


def unescape(text: str) -> str:
    """Undo the kernel's octal escapes in mountinfo (\\040 space, \\011 tab, \\012, \\134)."""
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)
