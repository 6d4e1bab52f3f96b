"""A DmControl through the dmsetup tool: two batched calls (`info`, `table`), never one per device."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

from lhsweep.errors import HostReadError
from lhsweep.inventory.dmcontrol import DmState, parse_target
from lhsweep.model import DevNum, DmTarget
from lhsweep.tools import ToolResult, ToolRunner

DEFAULT_TIMEOUT_S = 10.0
_NO_DEVICES = "No devices found"
_MISSING = ("does not exist", "not found", "No such device")


class DmsetupDmControl:
    """DmControl through `dmsetup info` (long form: it alone shows DEFERRED REMOVE) and `dmsetup table`.

    `dmsetup table` masks crypt keys itself; the parameters are dropped here all the same.
    """

    source = "dmsetup"

    def __init__(self, runner: Optional[ToolRunner] = None, dmsetup: str = "dmsetup") -> None:
        self._runner = runner or ToolRunner(DEFAULT_TIMEOUT_S)
        self._dmsetup = dmsetup

    def read_all(self) -> dict[str, DmState]:
        """Every dm device from one `dmsetup info` and one `dmsetup table`.

        A device is left out (so its table and open count are unknown) unless the table listing
        gave it exactly as many segments as `info` counts, and unless its lines could be another
        device's: `table` prefixes each line with "<name>: ", so a name holding a colon makes its
        own lines and those of every device named like its start ambiguous.
        """
        infos = parse_info(self._run("info") or "")
        tables = parse_tables(self._run("table") or "")
        ambiguous = _colon_prefixes(info.name for info in infos)
        states = {}
        for info in infos:
            # A device without a table has no `table` line; one whose count differs came or
            # changed between the two calls, or a name injected lines.
            targets = tables.get(info.name, ())
            if len(targets) == info.target_count and info.name not in ambiguous:
                states[info.name] = info.with_targets(targets)
        return states

    def read_one(self, name: str) -> Optional[DmState]:
        """The device `name` from `dmsetup info <name>` and `dmsetup table <name>`."""
        info_text = self._run("info", name)
        table_text = self._run("table", name) if info_text is not None else None
        if info_text is None or table_text is None:
            return None
        infos = parse_info(info_text)
        if len(infos) != 1 or infos[0].name != name:
            raise HostReadError(f"dmsetup info {name}: unexpected answer")
        targets = parse_tables(table_text, name)[name]
        if len(targets) != infos[0].target_count:
            raise HostReadError(f"dmsetup table {name}: {len(targets)} segment(s), but dmsetup info "
                                f"counts {infos[0].target_count}")
        return infos[0].with_targets(targets)

    def remove(self, name: str, runner: ToolRunner) -> ToolResult:
        """`dmsetup remove -- <name>` (no --force, no --deferred), bounded by `runner`."""
        return runner.run([self._dmsetup, "remove", "--", name])

    def _run(self, command: str, name: str = "") -> Optional[str]:
        """stdout of `dmsetup <command> [name]`; None when the named device does not exist."""
        argv = [self._dmsetup, command, *(["--", name] if name else [])]
        result = self._runner.run(argv)
        if result.ok:
            return result.stdout
        if name and result.returncode is not None and any(m in result.stderr for m in _MISSING):
            return None
        raise HostReadError(f"dmsetup {command}{' ' + name if name else ''}: {result.summary()}")


class _Info:
    """One `dmsetup info` block, before its table is known."""

    def __init__(self) -> None:
        self.name = ""
        self.dev: Optional[DevNum] = None
        self.uuid = ""
        self.open_count: Optional[int] = None
        self.target_count: Optional[int] = None
        self.state = ""
        self.keys: set[str] = set()

    def with_targets(self, targets: tuple[DmTarget, ...]) -> DmState:
        """The finished DmState; raises HostReadError when the block lacked a needed line."""
        if not self.name or self.dev is None or self.open_count is None or not self.state:
            raise HostReadError(f"dmsetup info: incomplete entry for {self.name or '?'}")
        return DmState(self.name, self.dev, self.uuid, self.open_count,
                       self.state.startswith("SUSPENDED"), "(DEFERRED REMOVE)" in self.state,
                       targets)


def parse_info(text: str) -> list[_Info]:
    """Parse the long form of `dmsetup info` (blocks of 'Key: value' lines, blank-separated).

    A listing that does not fit that form (a line without a key, a key twice in one block, a
    name twice: what a device name holding a newline prints) cannot be told apart: HostReadError.
    """
    if text.strip() == _NO_DEVICES:
        return []
    blocks: list[_Info] = []
    names: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            if line.strip():
                raise HostReadError(f"dmsetup info: a line that is no 'Key: value' ({line[:40]!r})")
            continue
        value = value.strip()
        if key == "Name":
            if value in names:
                raise HostReadError(f"dmsetup info: {value!r} listed twice")
            names.add(value)
            blocks.append(_Info())
            blocks[-1].name = value
        elif blocks:
            _apply(blocks[-1], key, value)
    return blocks


def _apply(info: _Info, key: str, value: str) -> None:
    if key in info.keys:
        raise HostReadError(f"dmsetup info: {key!r} twice for {info.name}")
    info.keys.add(key)
    try:
        if key == "State":
            info.state = value
        elif key == "Open count":
            info.open_count = int(value)
        elif key == "Number of targets":
            info.target_count = int(value)
        elif key == "Major, minor":
            major, _, minor = value.partition(",")
            info.dev = DevNum(int(major), int(minor))
        elif key == "UUID":
            info.uuid = value
    except ValueError:
        raise HostReadError(f"dmsetup info: bad {key!r} line for {info.name}") from None


def _colon_prefixes(names: Iterable[str]) -> frozenset[str]:
    """Each name holding a colon, and each of its starts that ends before one of its colons."""
    return frozenset(name[:end] for name in names if ":" in name
                     for end in (len(name), *(i for i, char in enumerate(name) if char == ":")))


def parse_tables(text: str, only: str = "") -> dict[str, tuple[DmTarget, ...]]:
    """Parse `dmsetup table` ('name: start length type params' lines; no prefix with `only`)."""
    tables: dict[str, list[DmTarget]] = {only: []} if only else {}
    if text.strip() == _NO_DEVICES:
        return {}
    for line in text.splitlines():
        if only:
            name, rest = only, line
        else:
            name, sep, rest = line.partition(": ")
            if not sep:
                name, rest = line.rstrip(":"), ""
        targets = tables.setdefault(name, [])
        if rest.strip():
            targets.append(_target(name, rest))
    return {name: tuple(targets) for name, targets in tables.items() if name}


def _target(name: str, line: str) -> DmTarget:
    fields = line.split(None, 3)
    if len(fields) < 3 or not fields[0].isdigit() or not fields[1].isdigit():
        raise HostReadError(f"dmsetup table: unreadable line for {name}")
    return parse_target(int(fields[0]), int(fields[1]), fields[2],
                        fields[3] if len(fields) > 3 else "")
