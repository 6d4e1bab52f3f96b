"""The dm ioctl codec on bytes laid out by hand per include/uapi/linux/dm-ioctl.h, and the
in-process DmControl against a simulated kernel (this machine has no device-mapper)."""

from __future__ import annotations

import errno
import os
import struct
from typing import Any, Callable, Optional

import pytest

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.inventory import DmsetupDmControl, read_inventory
from lhsweep.inventory.dmioctl import (
    IoctlDmControl,
    decode_header,
    decode_name_list,
    decode_table,
    encode_request,
    request_number,
)
from lhsweep.model import DevNum, DmTarget
from lhsweep.tools import ToolResult, ToolRunner
from tests.hosttree import FAKE_KEY, HostTree, fake_host

KEY = "c0ffee" * 10 + "beef"
# Byte offsets in struct dm_ioctl, counted by hand from the uapi header.
OFF_VERSION, OFF_DATA_SIZE, OFF_DATA_START, OFF_TARGET_COUNT = 0, 12, 16, 20
OFF_OPEN_COUNT, OFF_FLAGS, OFF_EVENT, OFF_DEV, OFF_NAME, OFF_UUID = 24, 28, 32, 40, 48, 176
SIZEOF_DM_IOCTL = 312
SUSPEND, STATUS_TABLE, BUFFER_FULL, DEFERRED_REMOVE = 1 << 1, 1 << 4, 1 << 8, 1 << 17


def kernel_dev(major: int, minor: int) -> int:
    """huge_encode_dev(): minor low byte, major, then the minor's high bits."""
    return (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12)


def reply(size: int, *, name: str = "", uuid: str = "", dev: int = 0, open_count: int = 0,
          flags: int = 0, target_count: int = 0, data: bytes = b"") -> bytearray:
    """A reply buffer: header fields written one by one at their offsets, data after 312 bytes."""
    buf = bytearray(size)
    struct.pack_into("<III", buf, OFF_VERSION, 4, 48, 0)
    struct.pack_into("<I", buf, OFF_DATA_SIZE, SIZEOF_DM_IOCTL + len(data))
    struct.pack_into("<I", buf, OFF_DATA_START, SIZEOF_DM_IOCTL)
    struct.pack_into("<I", buf, OFF_TARGET_COUNT, target_count)
    struct.pack_into("<i", buf, OFF_OPEN_COUNT, open_count)
    struct.pack_into("<I", buf, OFF_FLAGS, flags)
    struct.pack_into("<Q", buf, OFF_DEV, dev)
    buf[OFF_NAME:OFF_NAME + len(name)] = name.encode()
    buf[OFF_UUID:OFF_UUID + len(uuid)] = uuid.encode()
    buf[SIZEOF_DM_IOCTL:SIZEOF_DM_IOCTL + len(data)] = data
    return buf


def pad8(raw: bytes) -> bytes:
    return raw + b"\0" * (-len(raw) % 8)


def name_list(entries: list[tuple[str, int]]) -> bytes:
    """struct dm_name_list records: dev u64, next u32 (0 on the last), name; 8-byte aligned."""
    records = [pad8(struct.pack("<QI", dev, 0) + name.encode() + b"\0" + struct.pack("<II", 0, 0))
               for name, dev in entries]
    out = b""
    for i, record in enumerate(records):
        step = len(record) if i + 1 < len(records) else 0
        out += record[:8] + struct.pack("<I", step) + record[12:]
    return out


def table(specs: list[tuple[int, int, str, str]]) -> bytes:
    """struct dm_target_spec + params records; `next` counts from data_start (the first spec)."""
    out = b""
    for start, length, kind, params in specs:
        body = pad8(params.encode() + b"\0")
        step = len(out) + 40 + len(body)
        out += struct.pack("<QQiI16s", start, length, 0, step, kind.encode()) + body
    return out


def test_request_number_and_size_match_the_uapi() -> None:
    assert request_number(0) == 0xC138FD00
    assert request_number(12) == 0xC138FD0C
    buf = encode_request(16384, "pvc-1", STATUS_TABLE)
    assert len(buf) == 16384
    assert struct.unpack_from("<III", buf, OFF_VERSION) == (4, 0, 0)
    assert struct.unpack_from("<I", buf, OFF_DATA_SIZE)[0] == 16384
    assert struct.unpack_from("<I", buf, OFF_DATA_START)[0] == SIZEOF_DM_IOCTL
    assert struct.unpack_from("<I", buf, OFF_FLAGS)[0] == STATUS_TABLE
    assert buf[OFF_NAME:OFF_NAME + 6] == b"pvc-1\0"


def test_encode_refuses_names_that_do_not_fit() -> None:
    with pytest.raises(ValueError):
        encode_request(16384, "x" * 128)


def test_header_fields_decode_from_their_offsets() -> None:
    uuid = "CRYPT-LUKS2-" + "a" * 32 + "-vol"
    buf = reply(4096, name="vol", uuid=uuid, dev=kernel_dev(253, 300), open_count=2,
                flags=SUSPEND | DEFERRED_REMOVE, target_count=1)
    header = decode_header(buf)
    assert (header.name, header.uuid, header.dev) == ("vol", uuid, DevNum(253, 300))
    assert (header.open_count, header.target_count, header.version) == (2, 1, (4, 48, 0))
    assert header.flags & DEFERRED_REMOVE and header.flags & SUSPEND
    assert not header.buffer_full


def test_header_garbage_is_refused() -> None:
    with pytest.raises(ValueError):
        decode_header(bytes(100))
    buf = reply(1024)
    struct.pack_into("<I", buf, OFF_DATA_SIZE, 99999)
    with pytest.raises(ValueError):
        decode_header(buf)


def test_name_list_records_and_the_empty_list() -> None:
    entries = [("pvc-1", kernel_dev(253, 0)), ("a-much-longer-volume-name", kernel_dev(253, 1)),
               ("vg0-data", kernel_dev(254, 260))]
    names = decode_name_list(reply(8192, data=name_list(entries)))
    assert names == [("pvc-1", DevNum(253, 0)), ("a-much-longer-volume-name", DevNum(253, 1)),
                     ("vg0-data", DevNum(254, 260))]
    assert decode_name_list(reply(8192, data=struct.pack("<QI", 0, 0) + b"\0\0\0\0")) == []


def test_name_list_pointing_past_the_reply_is_refused() -> None:
    data = bytearray(name_list([("a", kernel_dev(253, 0)), ("b", kernel_dev(253, 1))]))
    struct.pack_into("<I", data, 8, 5000)
    with pytest.raises(ValueError):
        decode_name_list(reply(8192, data=bytes(data)))


def test_table_keeps_types_extents_and_backing_but_never_the_crypt_key() -> None:
    specs = [(0, 2048, "linear", "259:3 0"), (2048, 4096, "crypt", f"aes-xts-plain64 {KEY} 0 253:7 4096"),
             (6144, 10, "striped", "2 128 8:0 0 8:16 0")]
    targets = decode_table(reply(8192, target_count=3, data=table(specs)))
    assert targets == (DmTarget(0, 2048, "linear", DevNum(259, 3), 0),
                       DmTarget(2048, 4096, "crypt", DevNum(253, 7)),
                       DmTarget(6144, 10, "striped", None))
    assert KEY not in repr(targets)


def test_table_spec_past_the_reply_is_refused() -> None:
    with pytest.raises(ValueError):
        decode_table(reply(8192, target_count=2, data=table([(0, 8, "linear", "259:3 0")])))


class FakeKernel:
    """Answers dm ioctls like the kernel does, from a dict of devices; counts the calls."""

    def __init__(self, devices: dict[str, tuple[int, int, int, list[tuple[int, int, str, str]]]],
                 major: int = 4, uuids: Optional[dict[str, str]] = None) -> None:
        self.devices = devices  # name -> (dev, open count, flags, table)
        self.major = major
        self.uuids = uuids or {}
        self.calls: list[tuple[int, str, int]] = []

    def __call__(self, fd: int, request: int, buf: bytearray, mutate: bool) -> int:
        assert mutate and (request & 0xFFFFFF00) == 0xC138FD00
        command = request & 0xFF
        name = bytes(buf[OFF_NAME:OFF_NAME + 128]).split(b"\0")[0].decode()
        self.calls.append((command, name, len(buf)))
        if command == 0:
            out = reply(len(buf))
            struct.pack_into("<I", out, OFF_VERSION, self.major)
        elif command == 2:
            out = self._fit(buf, name_list([(n, d[0]) for n, d in self.devices.items()]))
        elif command == 12:
            assert struct.unpack_from("<I", buf, OFF_FLAGS)[0] & STATUS_TABLE
            if name not in self.devices:
                raise OSError(errno.ENXIO, os.strerror(errno.ENXIO))
            dev, opens, flags, specs = self.devices[name]
            out = self._fit(buf, table(specs), name=name, uuid=self.uuids.get(name, ""), dev=dev,
                            open_count=opens, flags=flags, target_count=len(specs))
        else:
            raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
        buf[:] = out
        return 0

    @staticmethod
    def _fit(buf: bytearray, data: bytes, **header: object) -> bytearray:
        if SIZEOF_DM_IOCTL + len(data) > len(buf):
            return reply(len(buf), flags=BUFFER_FULL)
        return reply(len(buf), data=data, **header)  # type: ignore[arg-type]


@pytest.fixture
def control_file(tmp_path) -> str:
    path = tmp_path / "control"
    path.write_bytes(b"")
    return str(path)


def test_ioctl_control_reads_every_device_in_process(control_file: str) -> None:
    kernel = FakeKernel({
        "pvc-1": (kernel_dev(253, 0), 0, 0, [(0, 2048, "linear", "259:0 0")]),
        "pvc-1-encrypted": (kernel_dev(253, 1), 1, DEFERRED_REMOVE,
                            [(0, 2000, "crypt", f"aes-xts-plain64 {KEY} 0 253:0 48")]),
        "empty": (kernel_dev(253, 2), 0, SUSPEND, []),
    })
    states = IoctlDmControl(control_file, kernel).read_all()
    assert set(states) == {"pvc-1", "pvc-1-encrypted", "empty"}
    assert states["pvc-1"].targets == (DmTarget(0, 2048, "linear", DevNum(259, 0), 0),)
    crypt = states["pvc-1-encrypted"]
    assert (crypt.dev, crypt.open_count, crypt.deferred_remove, crypt.suspended) == (
        DevNum(253, 1), 1, True, False)
    assert states["empty"].suspended and states["empty"].targets == ()
    assert KEY not in repr(states)
    assert [c[0] for c in kernel.calls] == [0, 2, 12, 12, 12]


def test_ioctl_control_grows_the_buffer_when_the_kernel_says_full(control_file: str) -> None:
    names = {f"pvc-{i:04d}-with-a-long-name": (kernel_dev(253, i), 0, 0, []) for i in range(600)}
    kernel = FakeKernel(names)
    states = IoctlDmControl(control_file, kernel).read_all()
    assert len(states) == 600
    list_calls = [c for c in kernel.calls if c[0] == 2]
    assert len(list_calls) == 2 and list_calls[1][2] > list_calls[0][2]


def test_ioctl_control_read_one_and_a_missing_device(control_file: str) -> None:
    kernel = FakeKernel({"pvc-1": (kernel_dev(253, 5), 3, 0, [(0, 8, "linear", "259:1 0")])})
    control = IoctlDmControl(control_file, kernel)
    one = control.read_one("pvc-1")
    assert one is not None and (one.dev, one.open_count) == (DevNum(253, 5), 3)
    assert control.read_one("nope") is None


def test_ioctl_control_failures_are_one_line_host_read_errors(control_file: str, tmp_path) -> None:
    with pytest.raises(HostReadError, match="control: dm ioctl failed: Permission denied"):
        IoctlDmControl(control_file, _failing(errno.EACCES)).read_all()
    with pytest.raises(HostReadError, match=r"not 4\.x"):
        IoctlDmControl(control_file, FakeKernel({}, major=5)).read_all()
    with pytest.raises(HostReadError, match="cannot open"):
        IoctlDmControl(str(tmp_path / "absent"), FakeKernel({})).read_all()


def _failing(code: int) -> Callable[[int, int, bytearray, bool], int]:
    def ioctl(fd: int, request: int, buf: bytearray, mutate: bool) -> int:
        raise OSError(code, os.strerror(code))
    return ioctl


def kernel_of(tree: HostTree) -> FakeKernel:
    """A simulated kernel holding the tree's dm devices (what dm.json says sysfs cannot)."""
    devices = {}
    for name, record in tree.state["devices"].items():
        major, minor = (int(x) for x in record["dev"].split(":"))
        flags = (SUSPEND if record["suspended"] else 0) | (
            DEFERRED_REMOVE if record["deferred_remove"] else 0)
        devices[name] = (kernel_dev(major, minor), record["open"], flags,
                         [tuple(t) for t in record["targets"]])
    uuids = {name: record["uuid"] for name, record in tree.state["devices"].items()}
    return FakeKernel(devices, uuids=uuids)  # type: ignore[arg-type]


def test_both_dm_controls_give_the_same_inventory(tmp_path, monkeypatch: pytest.MonkeyPatch,
                                                   control_file: str) -> None:
    tree = fake_host(str(tmp_path / "host"), monkeypatch)
    tree.add_longhorn_volume("pvc-1", encrypted=True, mounted=True, deferred_remove=True)
    tree.add_longhorn_volume("pvc-2", backing_gone=True, suspended=True)
    tree.add_v1_encrypted_volume("pvc-3")
    tree.add_lvm()
    tree.add_multipath()
    host = HostRoot(tree.root)
    through_ioctl = read_inventory(host, IoctlDmControl(control_file, kernel_of(tree)))
    through_dmsetup = read_inventory(host, DmsetupDmControl())
    assert through_ioctl == through_dmsetup
    assert through_ioctl.problems == () and len(through_ioctl.dm_devices) == 6
    assert FAKE_KEY not in repr(through_ioctl)


class RecordingRunner(ToolRunner):
    """Records helper requests instead of running them."""

    def __init__(self) -> None:
        super().__init__(1)
        self.requests: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def call_helper(self, label: tuple[str, ...], request: dict[str, Any],
                    timeout: Optional[float] = None) -> ToolResult:
        self.requests.append((label, request))
        return ToolResult(label, 0, "", "", 0.0)


def test_ioctl_removal_asks_dm_dev_remove_by_name_never_deferred(control_file: str) -> None:
    runner = RecordingRunner()
    assert IoctlDmControl(control_file).remove("pvc-1", runner).ok
    [(label, request)] = runner.requests
    assert label == ("dm-remove", "pvc-1")
    assert request["op"] == "ioctl" and request["path"] == control_file
    assert request["request"] == 0xC138FD04  # _IOWR(0xFD, DM_DEV_REMOVE_CMD = 4, struct dm_ioctl)
    raw = bytes.fromhex(request["buf"])
    header = decode_header(raw)
    assert header.name == "pvc-1" and header.version == (4, 0, 0)
    # No DM_DEFERRED_REMOVE (1 << 17) nor any other flag: the kernel refuses an open device.
    assert struct.unpack_from("=I", raw, OFF_FLAGS)[0] == 0
