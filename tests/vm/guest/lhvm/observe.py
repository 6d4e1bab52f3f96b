"""What a scenario looks at: dmsetup/ls/nvme listings, the journal, facts for the host, the sysfs layout."""

from __future__ import annotations

import json
import os
from typing import Any

from lhvm.proc import read, run, sh

LAYOUT_ROOTS = (
    "/sys/block",
    "/sys/class/block",
    "/sys/class/nvme",
    "/sys/class/nvme-subsystem",
    "/sys/class/nvme-fabrics",
    "/sys/dev/block",
    "/dev/longhorn",
    "/dev/mapper",
)
# Attribute files whose values change with every I/O or boot: their presence is recorded, not their value.
VOLATILE = frozenset({"stat", "inflight", "diskseq", "uevent"})


def dm_names() -> list[str]:
    """Names of all dm devices (`dmsetup ls`)."""
    out = sh("dmsetup", "ls").strip()
    if not out or out.startswith("No devices found"):
        return []
    return sorted(line.split()[0] for line in out.splitlines())


def longhorn_nodes() -> list[str]:
    """Entries of /dev/longhorn."""
    return sorted(os.listdir("/dev/longhorn")) if os.path.isdir("/dev/longhorn") else []


def nvme_nqns() -> list[str]:
    """NQNs of the subsystems `nvme list-subsys` shows (nvme-cli's JSON)."""
    out = run("nvme", "list-subsys", "-o", "json").stdout.strip()
    if not out:
        return []
    found: list[str] = []
    _collect(json.loads(out), "NQN", found)
    return sorted(set(found))


def _collect(value: Any, key: str, found: list[str]) -> None:
    """Every string value under `key` anywhere in a JSON document."""
    if isinstance(value, dict):
        for name, item in value.items():
            if name == key and isinstance(item, str):
                found.append(item)
            else:
                _collect(item, key, found)
    elif isinstance(value, list):
        for item in value:
            _collect(item, key, found)


def listings() -> dict[str, str]:
    """The operator's view, verbatim: `dmsetup ls`, `ls -l /dev/longhorn`, `nvme list-subsys`."""
    return {
        "dmsetup ls": run("dmsetup", "ls").stdout,
        "ls -l /dev/longhorn": run("ls", "-l", "/dev/longhorn").stdout,
        "nvme list-subsys": run("nvme", "list-subsys").stdout,
    }


def snapshot() -> dict[str, Any]:
    """Device names plus the verbatim listings, for facts and failure messages."""
    return {"dm": dm_names(), "longhorn": longhorn_nodes(), "nvme": nvme_nqns(), "listings": listings()}


def check(condition: bool, message: str) -> None:
    """Fail the scenario with `message` and the current device listings unless `condition` holds."""
    if not condition:
        shown = listings()
        raise AssertionError(message + "\n" + "\n".join(f"$ {k}\n{v}" for k, v in shown.items()))


def cursor() -> str:
    """The cursor of the journal's newest entry: entries after it are "from now on"."""
    out = run("journalctl", "-n", "1", "-o", "cat", "--show-cursor", "--no-pager").stdout
    for line in out.splitlines():
        if line.startswith("-- cursor: "):
            return line[len("-- cursor: ") :]
    return ""


def journal(unit: str) -> list[dict[str, Any]]:
    """The unit's journal entries since boot (`journalctl -u unit -o json`)."""
    out = run("journalctl", "-u", unit, "-o", "json", "--no-pager", timeout=60).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


class Facts:
    """Named facts a scenario records for the host-side test (written to $LHVM_OUT/facts.json)."""

    def __init__(self) -> None:
        self.directory = os.environ.get("LHVM_OUT", "/tmp/lhvm-out")
        os.makedirs(self.directory, exist_ok=True)
        self.values: dict[str, Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value
        self.flush()

    def flush(self) -> None:
        """Write all facts so far (a scenario that dies half-way still leaves them)."""
        with open(f"{self.directory}/facts.json", "w") as handle:
            json.dump(self.values, handle, indent=1, sort_keys=True, default=str)

    def file(self, name: str, text: str) -> None:
        """Write a text file beside the facts."""
        with open(f"{self.directory}/{name}", "w") as handle:
            handle.write(text)


def _describe(root: str, path: str) -> str:
    """One line for a sysfs/dev entry below `root`: type, link target or device number, a short value."""
    real = root + path
    if os.path.islink(real):
        return f"{path} -> {os.readlink(real)}"
    if os.path.isdir(real):
        return f"{path}/"
    st = os.lstat(real)
    if not os.path.isfile(real):
        return f"{path} dev={os.major(st.st_rdev)}:{os.minor(st.st_rdev)} mode={oct(st.st_mode & 0o7777)}"
    if os.path.basename(path) in VOLATILE:
        return f"{path} = <changes>"
    try:
        with open(real, errors="replace") as handle:
            value = handle.read(200).strip().replace("\n", "\\n")
    except OSError as error:
        value = f"<{error.strerror}>"
    return f"{path} = {value}"


def layout(max_depth: int = 2, root: str = "") -> str:
    """The sysfs/dev layout of dm, nvme and loop devices, one entry a line.

    The class/block directories are listed as links; then each device they link to (unused,
    zero-sized loop devices left out) is described from its real directory. With `root`, the
    tree below that directory (a synthetic host) is described, paths shown as the host sees them.
    """
    lines: list[str] = []
    for top in LAYOUT_ROOTS:
        if os.path.isdir(root + top):
            _walk(root, top, 1, lines)
        else:
            lines.append(f"{top} (absent)")
    for top in ("/sys/block", "/sys/class/nvme", "/sys/class/nvme-subsystem"):
        for name in sorted(os.listdir(root + top)) if os.path.isdir(root + top) else ():
            real = os.path.realpath(f"{root}{top}/{name}")[len(root) :]
            if name.startswith("loop") and read(f"{root}{real}/size") == "0":
                continue
            lines.append(f"# {top}/{name} is {real}")
            _walk(root, real, max_depth, lines)
    return "\n".join(lines) + "\n"


def _walk(root: str, path: str, depth: int, lines: list[str]) -> None:
    """Describe `path` and, for real directories, its children down to `depth`."""
    lines.append(_describe(root, path))
    real = root + path
    if depth <= 0 or os.path.islink(real) or not os.path.isdir(real):
        return
    for name in sorted(os.listdir(real)):
        if name in ("power", "subsystem", "uevent", "trace", "queue", "integrity", "mq", "bdi"):
            continue
        _walk(root, f"{path}/{name}", depth - 1, lines)
