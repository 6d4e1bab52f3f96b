"""What the dm control interface tells beyond sysfs, behind one small interface.

Sysfs shows a dm device's name, uuid, suspended flag, holders and slaves, but not its
table (target types and backing devices), its open count or a pending deferred removal:
the kernel exposes those only through the dm ioctl on /dev/mapper/control (which
`dmsetup` uses too). Ownership needs the table and busy detection needs the open count,
so they come from a DmControl: the ioctl in-process, or one batched set of dmsetup calls.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Protocol

from lhsweep.model import DevNum, DmTarget
from lhsweep.tools import ToolResult, ToolRunner

# Target types whose parameters name a backing device, and that field's index.
_BACKING_FIELD = {"linear": 0, "crypt": 3}


class DmState(NamedTuple):
    """One dm device as the control interface reports it; never the raw table parameters."""

    name: str
    dev: DevNum
    uuid: str
    open_count: int
    suspended: bool
    deferred_remove: bool
    targets: tuple[DmTarget, ...]


class DmControl(Protocol):
    """Reads dm tables, open counts and flags (raising HostReadError when it cannot), and removes."""

    source: str

    def read_all(self) -> dict[str, DmState]:
        """Every dm device by name (a device that vanished while being read is left out)."""
        ...

    def read_one(self, name: str) -> Optional[DmState]:
        """The device called `name`, None when there is none."""
        ...

    def remove(self, name: str, runner: ToolRunner) -> ToolResult:
        """Remove the device `name` through `runner`'s bounded calls: never forced, never deferred."""
        ...


def parse_target(start: int, length: int, target_type: str, params: str) -> DmTarget:
    """Reduce one table line to a DmTarget, keeping only the backing device of linear/crypt.

    Rule never-log-dm-table: the parameters are dropped here, never stored (a crypt table has its key).
    """
    backing = offset = None
    index = _BACKING_FIELD.get(target_type)
    if index is not None:
        fields = params.split(None, index + 2)
        if len(fields) > index:
            backing = _devnum_or_none(fields[index])
        if target_type == "linear" and len(fields) == 2 and fields[1].isascii() and fields[1].isdigit():
            offset = int(fields[1])
    return DmTarget(start, length, target_type, backing, offset)


def _devnum_or_none(text: str) -> Optional[DevNum]:
    """'M:m' as the kernel prints table devices; anything else (a path) gives None."""
    major, sep, minor = text.partition(":")
    if not sep or not major.isdigit() or not minor.isdigit():
        return None
    return DevNum(int(major), int(minor))
