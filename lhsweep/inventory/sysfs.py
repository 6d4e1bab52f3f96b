"""Block devices, dm devices and ublk devices as sysfs shows them (read-only, links never acted on)."""

from __future__ import annotations

import posixpath
from collections.abc import Container
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.model import BlockDevice, DevNum

SYS_DEV_BLOCK = "/sys/dev/block"
SYS_BLOCK = "/sys/block"


@dataclass
class Problems:
    """Collects one-line descriptions of what could not be read."""

    lines: list[str] = field(default_factory=list)

    def add(self, line: str) -> None:
        """Record one problem."""
        self.lines.append(line)


class DmLinks(NamedTuple):
    """A dm device's holders/, and the link texts of its slaves/ whose targets are gone."""

    holders: Optional[tuple[str, ...]]  # None: holders/ could not be listed
    dangling_slaves: tuple[str, ...]


class DmSysfs(NamedTuple):
    """A dm device's sysfs facts (everything but the table and the open count)."""

    kernel_name: str
    name: str
    dev: DevNum
    uuid: str
    suspended: bool
    links: DmLinks


def read_block_devices(host: HostRoot, problems: Problems) -> tuple[tuple[BlockDevice, ...], str]:
    """Every block device with a number: /sys/dev/block/M:m links name the kernel device.

    The second value says why an entry could not be read ("" when all were): a device
    missing from the first may then still exist.
    """
    devices, unread = [], []
    for entry, link in host.read_links(SYS_DEV_BLOCK).items():
        try:
            dev = DevNum.parse(entry)
        except ValueError:
            unread.append(f"{SYS_DEV_BLOCK}/{entry}: not a major:minor name")
            continue
        if link is None:
            unread.append(f"{SYS_DEV_BLOCK}/{entry}: not a link")
            continue
        devices.append(BlockDevice(link.rstrip("/").rpartition("/")[2], dev))  # its basename
    for line in unread:
        problems.add(line)
    return tuple(devices), summary(unread)


def summary(lines: list[str]) -> str:
    """The first of `lines` and how many more there are ("" for none): one reason for many."""
    if not lines:
        return ""
    return lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")


def read_dm_sysfs(host: HostRoot, kernel_name: str, dev: DevNum, problems: Problems,
                  present: Container[str] = ()) -> Optional[DmSysfs]:
    """/sys/block/dm-N/{dm/name,dm/uuid,dm/suspended,holders,slaves}; None if it vanished."""
    base = f"{SYS_BLOCK}/{kernel_name}"
    name = host.read_attribute(f"{base}/dm/name")
    if name is None or not name.strip():
        if host.exists(base):
            problems.add(f"{base}/dm/name: missing or empty")
        return None
    return DmSysfs(
        kernel_name=kernel_name,
        name=name.strip(),
        dev=dev,
        uuid=(host.read_attribute(f"{base}/dm/uuid") or "").strip(),
        suspended=_flag(host, f"{base}/dm/suspended", problems),
        links=read_dm_links(host, kernel_name, present),
    )


def read_dm_links(host: HostRoot, kernel_name: str, present: Container[str] = (),
                  backing_gone: bool = True) -> DmLinks:
    """holders/ and slaves/ of a dm device; a slave not in `present` (kernel names known to
    exist) is checked, and its link text kept when its target is gone.

    slaves/ is listed only when `backing_gone` (a backing device of the table is not a block
    device, or the table is unknown): only then does the plan ask for the links' texts.
    """
    base = f"{SYS_BLOCK}/{kernel_name}"
    if not backing_gone:
        return DmLinks(read_holders(host, f"{base}/holders"), ())
    unknown = tuple(s for s in host.listdir(f"{base}/slaves") if s not in present)
    return DmLinks(read_holders(host, f"{base}/holders"), _dangling(host, f"{base}/slaves", unknown))


def read_holders(host: HostRoot, directory: str) -> Optional[tuple[str, ...]]:
    """The entries of a holders/ directory; None when it cannot be listed (unknown, not empty)."""
    try:
        return tuple(host.listdir(directory))
    except HostReadError:
        return None


def find_dm_kernel_name(host: HostRoot, name: str) -> Optional[tuple[str, DevNum]]:
    """The dm-N kernel name and number of the dm device called `name`, by a sysfs scan."""
    for device in read_block_devices(host, Problems())[0]:
        if device.name.startswith("dm-"):
            text = host.read_attribute(f"{SYS_BLOCK}/{device.name}/dm/name")
            if text is not None and text.strip() == name:
                return device.name, device.dev
    return None


def kernel_name_of(host: HostRoot, dev: DevNum) -> Optional[str]:
    """The kernel name /sys/dev/block/M:m points at, None when there is no such device."""
    link = host.readlink(f"{SYS_DEV_BLOCK}/{dev}")
    return posixpath.basename(link.rstrip("/")) if link else None


def _flag(host: HostRoot, path: str, problems: Problems) -> bool:
    """A sysfs 0/1 file; unreadable or garbage reads as True (the cautious answer) with a problem."""
    try:
        text = host.read_attribute(path)
    except HostReadError as exc:
        problems.add(str(exc))
        return True
    if text is not None and text.strip() in ("0", "1"):
        return text.strip() == "1"
    problems.add(f"{path}: expected 0 or 1, got {_short(text)}")
    return True


def _dangling(host: HostRoot, directory: str, entries: tuple[str, ...]) -> tuple[str, ...]:
    """The link texts of the entries whose target is gone (the text is read, never followed)."""
    dangling = []
    for entry in entries:
        path = f"{directory}/{entry}"
        if not host.exists(path):
            link = host.readlink(path)
            if link is not None:
                dangling.append(link)
    return tuple(dangling)


def _short(text: Optional[str]) -> str:
    if text is None:
        return "nothing (missing)"
    return repr(text.strip()[:40])
