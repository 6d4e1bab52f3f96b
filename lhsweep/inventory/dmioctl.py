"""The dm ioctl (include/uapi/linux/dm-ioctl.h, interface 4.x): codec and an in-process DmControl."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from collections.abc import Iterator
from typing import Callable, NamedTuple, Optional

from lhsweep.errors import HostReadError
from lhsweep.inventory.dmcontrol import DmState, parse_target
from lhsweep.model import DevNum, DmTarget
from lhsweep.tools import ToolResult, ToolRunner

# struct dm_ioctl: u32 version[3], data_size, data_start, target_count; s32 open_count;
# u32 flags, event_nr, padding; u64 dev; char name[128], uuid[129], data[7]  -> 312 bytes.
HEADER = struct.Struct("=6Ii3IQ128s129s7s")
# struct dm_target_spec: u64 sector_start, length; s32 status; u32 next; char target_type[16].
TARGET_SPEC = struct.Struct("=QQiI16s")
# struct dm_name_list: u64 dev; u32 next; then the NUL-terminated name.
NAME_LIST = struct.Struct("=QI")

DM_IOCTL_MAGIC = 0xFD
DM_VERSION_CMD = 0
DM_LIST_DEVICES_CMD = 2
DM_DEV_REMOVE_CMD = 4
# DM_TABLE_STATUS also fills in what DM_DEV_STATUS would (open count, flags, dev), so one
# call a device answers both.
DM_TABLE_STATUS_CMD = 12
# The interface version we speak: major must equal the kernel's, minor must not exceed it.
INTERFACE_VERSION = (4, 0, 0)

DM_SUSPEND_FLAG = 1 << 1
DM_STATUS_TABLE_FLAG = 1 << 4
DM_BUFFER_FULL_FLAG = 1 << 8
DM_DEFERRED_REMOVE = 1 << 17

_INITIAL_BUFFER = 16 * 1024
_MAX_BUFFER = 64 * 1024 * 1024

IoctlFunction = Callable[[int, int, bytearray, bool], int]


def request_number(command: int) -> int:
    """_IOWR(0xFD, command, struct dm_ioctl): 0xC138FD00 | command."""
    return (3 << 30) | (HEADER.size << 16) | (DM_IOCTL_MAGIC << 8) | command


class DmHeader(NamedTuple):
    """The decoded struct dm_ioctl of a reply."""

    version: tuple[int, int, int]
    data_size: int
    data_start: int
    target_count: int
    open_count: int
    flags: int
    dev: DevNum
    name: str
    uuid: str

    @property
    def buffer_full(self) -> bool:
        """True when the reply did not fit and must be asked again with a larger buffer."""
        return bool(self.flags & DM_BUFFER_FULL_FLAG)


def encode_request(size: int, name: str = "", flags: int = 0) -> bytearray:
    """A `size`-byte buffer starting with a struct dm_ioctl that asks about `name`."""
    raw = name.encode()
    if len(raw) >= 128:
        raise ValueError(f"dm name too long: {name!r}")
    if size < HEADER.size:
        raise ValueError(f"buffer smaller than struct dm_ioctl: {size}")
    buf = bytearray(size)
    HEADER.pack_into(buf, 0, *INTERFACE_VERSION, size, HEADER.size, 0, 0, flags, 0, 0, 0,
                     raw, b"", b"")
    return buf


def decode_header(buf: bytes | bytearray) -> DmHeader:
    """Decode the struct dm_ioctl at the start of `buf`; raises ValueError on garbage."""
    if len(buf) < HEADER.size:
        raise ValueError(f"dm ioctl reply shorter than {HEADER.size} bytes")
    v0, v1, v2, size, start, count, opens, flags, _event, _pad, dev, name, uuid, _ = (
        HEADER.unpack_from(buf, 0)
    )
    if start < HEADER.size or size > len(buf) or start > size:
        raise ValueError(f"dm ioctl reply has data_start {start} / data_size {size} out of range")
    return DmHeader((v0, v1, v2), size, start, count, opens, flags, _devnum(dev),
                    _cstring(name), _cstring(uuid))


def decode_name_list(buf: bytes | bytearray) -> list[tuple[str, DevNum]]:
    """The (name, dev) records of a DM_LIST_DEVICES reply."""
    header = decode_header(buf)
    offset = header.data_start
    if header.data_size - offset < NAME_LIST.size:
        return []
    names: list[tuple[str, DevNum]] = []
    while True:
        dev, step = NAME_LIST.unpack_from(buf, offset)
        if dev == 0 and not names:
            return names  # the kernel's "no devices" record
        end = buf.find(b"\0", offset + NAME_LIST.size, header.data_size)
        if end < 0:
            raise ValueError("dm name list entry runs past the reply")
        names.append((bytes(buf[offset + NAME_LIST.size:end]).decode("utf-8", "replace"),
                      _devnum(dev)))
        if step == 0:
            return names
        offset += step
        if offset + NAME_LIST.size > header.data_size:
            raise ValueError("dm name list entry points past the reply")


def decode_table(buf: bytes | bytearray) -> tuple[DmTarget, ...]:
    """The targets of a DM_TABLE_STATUS reply (asked with DM_STATUS_TABLE_FLAG).

    Each spec's `next` counts from data_start; the parameter string follows the spec.
    Only what parse_target keeps survives; the parameters (crypt keys) are not returned.
    """
    header = decode_header(buf)
    targets = []
    offset = header.data_start
    for _ in range(header.target_count):
        if offset + TARGET_SPEC.size > header.data_size:
            raise ValueError("dm target spec runs past the reply")
        start, length, _status, step, ttype = TARGET_SPEC.unpack_from(buf, offset)
        params_at = offset + TARGET_SPEC.size
        end = buf.find(b"\0", params_at, header.data_size)
        params = bytes(buf[params_at:end if end >= 0 else header.data_size])
        targets.append(parse_target(start, length, _cstring(ttype), params.decode("ascii", "replace")))
        offset = header.data_start + step
    return tuple(targets)


def _cstring(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _devnum(value: int) -> DevNum:
    """The kernel's huge_encode_dev() format is what glibc's major()/minor() decode."""
    return DevNum(os.major(value), os.minor(value))


class IoctlDmControl:
    """DmControl through the dm ioctl on a control node, in-process (no subprocess per device)."""

    def __init__(self, control_path: str, ioctl: IoctlFunction = fcntl.ioctl) -> None:
        self.control_path = control_path
        self.source = f"dm ioctl on {control_path}"
        self._ioctl = ioctl

    def read_all(self) -> dict[str, DmState]:
        """Every dm device: one DM_LIST_DEVICES, then one DM_TABLE_STATUS each."""
        with self._session() as fd:
            self._check_version(fd)
            states = {}
            for name, _dev in decode_name_list(self._call(fd, DM_LIST_DEVICES_CMD)):
                state = self._status(fd, name)
                if state is not None:
                    states[name] = state
            return states

    def read_one(self, name: str) -> Optional[DmState]:
        """One device by name; None when there is none."""
        with self._session() as fd:
            return self._status(fd, name)

    def remove(self, name: str, runner: ToolRunner) -> ToolResult:
        """DM_DEV_REMOVE by name through the kernel-call helper (flags 0: not deferred, not forced).

        The kernel refuses with EBUSY while the device is open; udev removes the /dev/mapper
        link on the remove uevent, as it does after `dmsetup remove`.
        """
        request = {"op": "ioctl", "path": self.control_path,
                   "request": request_number(DM_DEV_REMOVE_CMD),
                   "buf": encode_request(HEADER.size, name).hex()}
        return runner.call_helper(("dm-remove", name), request)

    @contextlib.contextmanager
    def _session(self) -> Iterator[int]:
        """The open control node; every failure inside becomes one HostReadError line."""
        try:
            fd = os.open(self.control_path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as exc:
            raise HostReadError(f"{self.control_path}: cannot open: {exc.strerror}") from None
        try:
            yield fd
        except OSError as exc:
            raise HostReadError(f"{self.control_path}: dm ioctl failed: {exc.strerror}") from None
        except ValueError as exc:
            raise HostReadError(f"{self.control_path}: {exc}") from None
        finally:
            os.close(fd)

    def _check_version(self, fd: int) -> None:
        version = decode_header(self._call(fd, DM_VERSION_CMD)).version
        if version[0] != INTERFACE_VERSION[0]:
            raise ValueError(f"kernel speaks dm ioctl {version[0]}.{version[1]}, not 4.x")

    def _status(self, fd: int, name: str) -> Optional[DmState]:
        """The device's open count, flags and table; None when it does not exist (ENXIO)."""
        try:
            buf = self._call(fd, DM_TABLE_STATUS_CMD, name, DM_STATUS_TABLE_FLAG)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return None
            raise
        header = decode_header(buf)
        return DmState(
            name=header.name or name,
            dev=header.dev,
            uuid=header.uuid,
            open_count=header.open_count,
            suspended=bool(header.flags & DM_SUSPEND_FLAG),
            deferred_remove=bool(header.flags & DM_DEFERRED_REMOVE),
            targets=decode_table(buf),
        )

    def _call(self, fd: int, command: int, name: str = "", flags: int = 0) -> bytearray:
        """Issue one ioctl (raises OSError), growing the buffer while the kernel says it is full."""
        size = _INITIAL_BUFFER
        while True:
            buf = encode_request(size, name, flags)
            self._ioctl(fd, request_number(command), buf, True)
            if not decode_header(buf).buffer_full:
                return buf
            if size >= _MAX_BUFFER:
                raise ValueError(f"dm ioctl {command} reply larger than {_MAX_BUFFER} bytes")
            size *= 4
