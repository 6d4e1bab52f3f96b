"""The fixture builder writes a real kernel's layout, and the fake dmsetup/nvme act on it like the tools."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from tests.hosttree import FAKE_KEY, FAKES, LONGHORN_PREFIX, HostTree, fake_host

pytestmark = pytest.mark.process


@pytest.fixture
def tree(tmp_path, monkeypatch: pytest.MonkeyPatch) -> HostTree:
    return fake_host(str(tmp_path), monkeypatch)


def run(*argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def target(tree: HostTree, host_path: str) -> str:
    """Where a link in the tree resolves, as a host path."""
    return os.path.realpath(tree.p(host_path))[len(tree.root):]


def test_dm_device_layout_matches_the_kernel(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    assert (vol.dm, vol.dm_dev, vol.backing, vol.backing_dev) == ("dm-0", "253:0", "nvme0n1", "259:0")
    base = "/sys/devices/virtual/block/dm-0"
    for link in ("/sys/block/dm-0", "/sys/dev/block/253:0"):
        assert not os.readlink(tree.p(link)).startswith("/"), "sysfs links are relative"
        assert target(tree, link) == base
    assert tree.read(f"{base}/dev") == "253:0\n"
    assert tree.read(f"{base}/dm/name") == "pvc-1\n" and tree.read(f"{base}/dm/uuid") == "\n"
    assert sorted(os.listdir(tree.p(f"{base}/dm"))) == [
        "name", "rq_based_seq_io_merge_deadline", "suspended", "use_blk_mq", "uuid"]
    head = "/sys/devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1"
    assert target(tree, f"{base}/slaves/nvme0n1") == head
    assert target(tree, f"{head}/holders/dm-0") == base
    st = os.lstat(tree.p("/dev/longhorn/pvc-1"))
    assert (os.major(st.st_rdev), os.minor(st.st_rdev), oct(st.st_mode)) == (253, 0, "0o60660")


def test_nvme_layout_matches_the_kernel(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1")
    ctl = "/sys/devices/virtual/nvme-fabrics/ctl/nvme0"
    assert target(tree, "/sys/class/nvme/nvme0") == ctl
    subsys = "/sys/devices/virtual/nvme-subsystem/nvme-subsys0"
    assert target(tree, "/sys/class/nvme-subsystem/nvme-subsys0") == subsys
    assert target(tree, "/sys/class/nvme-subsystem/nvme-subsys0/nvme0") == ctl
    assert tree.read(f"{ctl}/subsysnqn") == f"{LONGHORN_PREFIX}volume-pvc-1\n"
    assert (tree.read(f"{ctl}/state"), tree.read(f"{ctl}/transport")) == ("live\n", "tcp\n")
    assert tree.read("/sys/block/nvme0n1/device/subsysnqn") == f"{LONGHORN_PREFIX}volume-pvc-1\n"
    assert target(tree, "/sys/dev/block/259:0").endswith("/nvme-subsys0/nvme0n1")
    assert target(tree, "/sys/block/nvme0c0n1") == f"{ctl}/nvme0c0n1"
    assert not os.path.exists(tree.p(f"{ctl}/nvme0c0n1/dev")), "the hidden path disk has no number"


def test_numbers_are_reused_lowest_first_like_the_kernel(tree: HostTree) -> None:
    for name in ("a", "b", "c"):
        tree.add_longhorn_volume(name)
    tree.remove_dm("b")
    assert tree.add_plain_linear_on_loop("d").dm_dev == "253:1"
    tree.disconnect(f"{LONGHORN_PREFIX}volume-a")
    tree.disconnect(f"{LONGHORN_PREFIX}volume-b")  # no dm holds b's subsystem: it goes
    again = tree.add_longhorn_volume("e")
    assert (again.controller, again.subsystem, again.backing_dev) == ("nvme0", "nvme-subsys1", "259:0")
    assert HostTree(tree.root).add_lvm().dm_dev == "253:4", "a new builder sees the numbers in use"


def test_dmsetup_remove_of_a_busy_device_fails_like_the_real_one(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1", mounted=True)
    tree.add_longhorn_volume("pvc-2", encrypted=True)
    for name in ("pvc-1", "pvc-2"):
        result = run("dmsetup", "remove", "--", name)
        assert result.returncode == 1
        assert result.stderr == (f"device-mapper: remove ioctl on {name}  failed: Device or resource busy\n"
                                 "Command failed.\n")
    assert set(tree.__class__(tree.root).state["devices"]) == {"pvc-1", "pvc-2", "pvc-2-encrypted"}
    missing = run("dmsetup", "remove", "--", "nope")
    assert (missing.returncode, missing.stderr) == (1, "Device nope not found\nCommand failed.\n")


def test_dmsetup_remove_takes_the_device_out_of_the_tree(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1", backing_gone=True, encrypted=True)
    assert os.path.isdir(tree.p(f"/sys/class/nvme-subsystem/{vol.subsystem}/"))
    assert run("dmsetup", "remove", "--", "pvc-1-encrypted").returncode == 0
    assert run("dmsetup", "remove", "--", "pvc-1").returncode == 0
    assert not os.path.lexists(tree.p(f"/sys/block/{vol.dm}"))
    assert not os.path.lexists(tree.p(f"/sys/dev/block/{vol.dm_dev}"))
    assert not os.path.exists(tree.p(f"/sys/devices/virtual/block/{vol.dm}"))
    subsystem_link = tree.p(f"/sys/class/nvme-subsystem/{vol.subsystem}")
    assert not os.path.lexists(subsystem_link), "freed with its last holder"
    assert HostTree(tree.root).state["devices"] == {}
    assert os.path.exists(tree.p("/dev/longhorn/pvc-1")), "dmsetup does not touch /dev/longhorn"


def test_dmsetup_never_accepts_force_or_deferred(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1")
    for flag in ("--force", "--deferred"):
        assert run("dmsetup", "remove", flag, "pvc-1").returncode == 2
    assert "pvc-1" in HostTree(tree.root).state["devices"]


def test_dmsetup_queries_mask_crypt_keys_and_log_each_call(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1", encrypted=True)
    table = run("dmsetup", "table").stdout
    assert "pvc-1: 0 2097152 linear 259:0 0\n" in table
    assert "pvc-1-encrypted: 0 2064384 crypt aes-xts-plain64 " in table and FAKE_KEY not in table
    assert run("dmsetup", "table", "--", "pvc-1").stdout == "0 2097152 linear 259:0 0\n"
    info = run("dmsetup", "info", "--", "pvc-1").stdout
    assert "Open count:        1\n" in info and "Major, minor:      253, 0\n" in info
    assert run("dmsetup", "info", "--", "nope").returncode == 1
    with open(tree.p("/.fake/calls.log"), encoding="utf-8") as handle:
        logged = [json.loads(line) for line in handle]
    assert logged == [["dmsetup", "table"], ["dmsetup", "table", "--", "pvc-1"],
                      ["dmsetup", "info", "--", "pvc-1"], ["dmsetup", "info", "--", "nope"]]


def test_dmsetup_hangs_and_fails_on_request(tree: HostTree) -> None:
    tree.add_longhorn_volume("pvc-1", hang_seconds=30)
    tree.add_longhorn_volume("pvc-2", fail="Input/output error")
    with pytest.raises(subprocess.TimeoutExpired):
        run("dmsetup", "remove", "--", "pvc-1", timeout=1)
    failed = run("dmsetup", "remove", "--", "pvc-2")
    assert failed.returncode == 1
    assert failed.stderr.startswith("device-mapper: remove ioctl on pvc-2  failed: Input/output error\n")
    started = time.monotonic()
    assert run("dmsetup", "table").returncode == 0, "batched queries are not hung by one device"
    assert time.monotonic() - started < 10


def test_nvme_disconnect_removes_controllers_and_heads(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    result = run("nvme", "disconnect", "--nqn", vol.nqn)
    assert (result.returncode, result.stdout) == (0, f"NQN:{vol.nqn} disconnected 1 controller(s)\n")
    for gone in (f"/sys/class/nvme/{vol.controller}", f"/sys/block/{vol.backing}",
                 f"/sys/dev/block/{vol.backing_dev}", "/sys/block/nvme0c0n1"):
        assert not os.path.lexists(tree.p(gone)), gone
    assert os.path.isdir(tree.p(f"/sys/class/nvme-subsystem/{vol.subsystem}/")), "held by the dm device"
    assert not os.path.exists(tree.p(f"/sys/block/{vol.dm}/slaves/{vol.backing}")), "now dangling"
    again = run("nvme", "disconnect", f"--nqn={vol.nqn}")
    assert (again.returncode, again.stdout) == (0, f"NQN:{vol.nqn} disconnected 0 controller(s)\n")


def test_nvme_disconnect_hang_and_failure(tree: HostTree) -> None:
    vol = tree.add_longhorn_volume("pvc-1")
    tree.set_nvme(vol.nqn, fail="Operation not permitted")
    failed = run("nvme", "disconnect", "-n", vol.nqn)
    assert failed.returncode == 1 and "Operation not permitted" in failed.stderr
    tree.set_nvme(vol.nqn, hang_seconds=30)
    with pytest.raises(subprocess.TimeoutExpired):
        run("nvme", "disconnect", "-n", vol.nqn, timeout=1)


def test_fakes_refuse_to_run_without_a_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LHSWEEP_FAKE_ROOT", raising=False)
    result = run(os.path.join(FAKES, "dmsetup"), "info")
    assert result.returncode == 2 and "LHSWEEP_FAKE_ROOT" in result.stderr
