"""The synthetic HostTree against a real kernel: same sysfs/dev files, links and link shapes.

tests/vm/data/sysfs-layout-{attached,crashed}.txt were recorded by the VM smoke scenario on the
Debian 6.1 kernel (a Longhorn V2 volume `pvc-smoke` over NVMe/TCP, attached, then after its
target died and ctrl_loss_tmo passed). The same walker (tests/vm/guest/lhvm/observe.layout)
describes a HostTree holding the same volume; both are cut down to that volume's objects (its dm
device, namespace head, hidden per-path disk, controller, subsystem, /dev nodes) and their
numbers and names replaced by placeholders.

Compared: every directory, link (with its target's shape) and device node, and the values of the
attribute files lhsweep reads or docs/design.md states as facts; the other attribute files (stat,
alignment_offset, ...) only in one direction: the fake must not have files the kernel lacks.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.hosttree import HostTree

GUEST_LIB = Path(__file__).resolve().parent / "vm" / "guest"
DATA = Path(__file__).resolve().parent / "vm" / "data"
VOLUME = "pvc-smoke"
NQN = "nqn.2023-01.io.longhorn.spdk:pvc-smoke-e-f4535d45"  # as recorded
# Attribute files whose values are compared: what lhsweep reads, and what docs/design.md relies on
# (ctrl_loss_tmo is not: it is whatever `nvme connect` asked for, 5 s in the recording).
VALUES = frozenset({
    "dm/name", "dm/uuid", "dm/suspended", "dev", "subsysnqn", "state", "transport", "address",
    "cntrltype", "kato", "hidden",
})  # fmt: skip

sys.path.insert(0, str(GUEST_LIB))
from lhvm.observe import layout  # noqa: E402  (the guest library: stdlib only)


def _first(pattern: str, text: str) -> str:
    """The first group of the first line matching `pattern` ('' when none does)."""
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1) if match else ""


def volume_names(text: str, volume: str) -> dict[str, str]:
    """The kernel names and numbers of `volume`'s objects in a layout -> their placeholders."""
    nvme, ctl = "/sys/devices/virtual/nvme-subsystem", "/sys/devices/virtual/nvme-fabrics/ctl"
    dm_dir = _first(rf"^(/sys/devices/virtual/block/dm-\d+)/dm/name = {re.escape(volume)}$", text)
    found = {os.path.basename(dm_dir): "<DM>", _first(rf"^{dm_dir}/dev = (\S+)$", text): "<DM_DEV>"}
    head = _first(rf"^{dm_dir}/slaves/(nvme\d+n\d+) -> ", text)
    subsys = _first(rf"^{dm_dir}/slaves/{head} -> \S*/(nvme-subsys\d+)/{head}$", text)
    ctrl = _first(rf"^{nvme}/{subsys}/(nvme\d+) -> ", text)
    found.update({
        head: "<HEAD>", subsys: "<SUBSYS>", ctrl: "<CTRL>",
        _first(rf"^{nvme}/{subsys}/{head}/dev = (\S+)$", text): "<HEAD_DEV>",
        _first(rf"^/sys/block/(nvme\d+c\d+n\d+) -> \S*/ctl/{ctrl}/", text) if ctrl else "": "<PATH>",
        _first(rf"^{ctl}/{ctrl}/dev = (\S+)$", text) if ctrl else "": "<CTRL_DEV>",
        _first(rf"^{nvme}/{subsys}/(ng\d+n\d+)/$", text): "<NG>",
        volume: "<VOL>",
    })  # fmt: skip
    found.pop("", None)
    generic = next((name for name, mark in found.items() if mark == "<NG>"), "")
    if generic:
        found[_first(rf"^{nvme}/{subsys}/{generic}/dev = (\S+)$", text)] = "<NG_DEV>"
    return found


def normalise(text: str, names: dict[str, str]) -> tuple[set[str], set[str]]:
    """(structural entries and compared values, other attribute files) of `names`' objects."""
    structure: set[str] = set()
    other: set[str] = set()
    for line in text.splitlines():
        path = line.split(" ", 1)[0].rstrip("/")
        if line.startswith("#") or not any(part in names for part in path.split("/")):
            continue
        shaped = " ".join(_shape(word, names) for word in line.split(" "))
        if " = " not in line:
            structure.add(shaped)
        elif os.path.basename(path) in VALUES or "/".join(path.split("/")[-2:]) in VALUES:
            structure.add(re.sub(r" +", " ", shaped.replace(NQN, "<NQN>")).strip())
        else:
            other.add(shaped.split(" = ", 1)[0])
    return structure, other


def _shape(word: str, names: dict[str, str]) -> str:
    """A path (or dev=M:m) with the volume's names and numbers replaced by placeholders."""
    if word.startswith("dev="):
        return "dev=" + names.get(word[4:], word[4:])
    return "/".join(names.get(part, part) for part in word.split("/"))


def fake_layout(tmp_path: Path, crashed: bool) -> str:
    """The layout walker's view of a HostTree holding the recorded volume, attached or crashed."""
    if os.geteuid() != 0:
        pytest.skip("block nodes in /dev/longhorn need mknod, which needs root")
    tree = HostTree(str(tmp_path))
    tree.add_longhorn_volume(VOLUME, nqn=NQN, backing_gone=crashed)
    return layout(root=str(tmp_path))


@pytest.mark.parametrize("state", ["attached", "crashed"])
def test_hosttree_matches_the_real_kernel(tmp_path: Path, state: str) -> None:
    """Same entries both ways (structure and compared values); no attribute file the kernel lacks."""
    real_text = (DATA / f"sysfs-layout-{state}.txt").read_text()
    fake_text = fake_layout(tmp_path, crashed=state == "crashed")
    real, real_other = normalise(real_text, volume_names(real_text, VOLUME))
    fake, fake_other = normalise(fake_text, volume_names(fake_text, VOLUME))
    missing = sorted(real - fake)
    invented = sorted((fake - real) | (fake_other - real_other))
    assert not missing and not invented, (
        f"{state}: the kernel has, the HostTree lacks:{_listed(missing)}\n"
        f"the HostTree has, the kernel lacks (or shows differently):{_listed(invented)}"
    )


def _listed(entries: list[str]) -> str:
    """Entries one per indented line, or ' none'."""
    return "".join(f"\n  {e}" for e in entries) or " none"


@pytest.mark.parametrize("state", ["attached", "crashed"])
def test_recorded_layout_names_the_volume(state: str) -> None:
    """The recording holds the volume's dm device and, when attached, its whole NVMe chain."""
    names = set(volume_names((DATA / f"sysfs-layout-{state}.txt").read_text(), VOLUME).values())
    assert {"<DM>", "<DM_DEV>", "<HEAD>", "<SUBSYS>", "<VOL>"} <= names
    if state == "attached":
        assert {"<CTRL>", "<PATH>", "<HEAD_DEV>", "<CTRL_DEV>"} <= names
