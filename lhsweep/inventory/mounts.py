"""Parsing mountinfo: busy-by-mount shows only there (a mount adds no sysfs holder link)."""

from __future__ import annotations

import re

from lhsweep.model import DevNum, Mount

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


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
