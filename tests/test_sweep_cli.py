"""`lhsweep scan` and `lhsweep sweep` end to end: host trees, a real gRPC CRI server, fake tools."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lhsweep.act import Actor
from lhsweep.config import load
from lhsweep.host import HostRoot
from lhsweep.inventory import read_subsystems
from lhsweep.sweep import scan
from lhsweep.tools import ToolRunner
from tests.crifake import FakeCri, im_pod
from tests.hosttree import FAKE_KEY, LONGHORN_PREFIX, HostTree, fake_host

pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parents[1]
HOUR_NS = 3600 * 10**9


class Rig:
    """A host tree, a CRI server and a config pointing at both."""

    def __init__(self, tree: HostTree, cri: FakeCri, base: Path) -> None:
        self.tree, self.cri = tree, cri
        self.config = base / "lhsweep.toml"
        self.state_dir = base / "state"
        self.write_config(f'endpoints = ["{cri.endpoint}"]\ntimeout = 2')

    def write_config(self, cri_section: str) -> None:
        """Config with this [cri] body; no grace period so fresh tree nodes count as old."""
        self.config.write_text(
            f"[cri]\n{cri_section}\n[sweep]\ngrace_period = 0\naction_timeout = 5\n"
            f'[state]\ndir = "{self.state_dir}"\n[metrics]\nfile = ""\n', encoding="utf-8")

    def lhsweep(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the real CLI against the tree."""
        argv = [sys.executable, "-m", "lhsweep", "--config", str(self.config),
                "--host-root", self.tree.root, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)

    def json(self, *args: str) -> dict[str, Any]:
        """Run with --json and parse the answer."""
        done = self.lhsweep(*args, "--json")
        assert done.returncode in (0, 1), done.stderr
        assert FAKE_KEY not in done.stdout + done.stderr, "a dm-crypt key leaked"
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def calls(self, verb: str) -> list[list[str]]:
        """The fake tools' calls whose first argument is `verb` (remove, disconnect)."""
        path = Path(self.tree.p("/.fake/calls.log"))
        lines = path.read_text().splitlines() if path.exists() else []
        return [c for c in map(json.loads, lines) if len(c) > 1 and c[1] == verb]

    def add_exited_im(self) -> None:
        """An instance-manager that crashed: sandbox ready, container exited."""
        self.cri.add_pod(*im_pod(container_state="CONTAINER_EXITED"))

    def add_running_im(self, created_at_ns: int) -> None:
        """A running V2 instance-manager created at `created_at_ns`."""
        self.cri.add_pod(*im_pod(created_at_ns=created_at_ns))


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    tree = fake_host(str(tmp_path / "host"), monkeypatch)
    with FakeCri() as cri:
        yield Rig(tree, cri, tmp_path)


def verdicts(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(kind, name) -> verdict."""
    return {(e["kind"], e["name"]): e["verdict"] for e in report["entries"]}


def test_crashed_instance_manager_volume_is_stale(rig: Rig) -> None:
    rig.add_exited_im()
    rig.tree.add_longhorn_volume("pvc-crash")
    report = rig.json("scan")
    nqn = f"{LONGHORN_PREFIX}volume-pvc-crash"
    assert report["runtime"]["state"] == "known"
    assert report["runtime"]["instance_managers"][0]["container_state"] == "exited"
    assert verdicts(report) == {("dm", "pvc-crash"): "stale", ("node", "pvc-crash"): "stale",
                                ("nvme", nqn): "stale"}
    assert report["actions"] == []
    assert rig.calls("remove") == []


def test_every_kind_of_neighbour_gets_its_verdict(rig: Rig) -> None:
    rig.add_running_im(time.time_ns() - HOUR_NS)
    rig.tree.add_longhorn_volume("pvc-live")
    rig.tree.add_v1_encrypted_volume("pvc-v1")
    lvm, mpath = rig.tree.add_lvm(), rig.tree.add_multipath()
    rig.tree.add_node_symlink("pvc-link", "/dev/sda")
    rig.tree.add_node_file("pvc-file", "x")
    v = verdicts(rig.json("scan"))
    assert v[("dm", "pvc-live")] == "live" and v[("node", "pvc-live")] == "live"
    assert v[("dm", "pvc-v1")] == "foreign" and v[("node", "pvc-v1")] == "foreign"
    assert v[("dm", lvm.name)] == "foreign" and v[("dm", mpath.name)] == "foreign"
    assert v[("node", "pvc-link")] == "foreign" and v[("node", "pvc-file")] == "foreign"


def test_mounted_stale_volume_is_busy_and_survives_a_sweep(rig: Rig) -> None:
    rig.tree.add_longhorn_volume("pvc-busy", mounted=True)
    report = rig.json("sweep")
    v = verdicts(report)
    assert v[("dm", "pvc-busy")] == "busy" and v[("node", "pvc-busy")] == "busy"
    reason = next(e["reason"] for e in report["entries"] if e["name"] == "pvc-busy")
    assert "mounted on /var/lib/kubelet/pods/" in reason
    assert rig.calls("remove") == [] and rig.calls("disconnect") == []
    assert os.path.exists(rig.tree.p("/dev/longhorn/pvc-busy"))


def test_dangling_node_is_stale_and_removed(rig: Rig) -> None:
    rig.tree.add_dangling_node("pvc-gone", "253:77")
    report = rig.json("sweep")
    assert verdicts(report) == {("node", "pvc-gone"): "stale"}
    assert report["actions"][0]["result"] == "removed"
    assert not os.path.lexists(rig.tree.p("/dev/longhorn/pvc-gone"))


def test_unreachable_runtime_removes_nothing(rig: Rig) -> None:
    rig.tree.add_longhorn_volume("pvc-1")
    rig.write_config(f'endpoints = ["{rig.tree.root}/no-such.sock"]')
    report = rig.json("sweep")
    assert report["runtime"]["state"] == "unknown"
    assert "no-such.sock" in report["runtime"]["reason"]
    assert set(verdicts(report).values()) == {"unknown"}
    assert report["actions"] == [] and rig.calls("remove") == []


def test_sweep_removes_child_first_then_node_then_controller(rig: Rig) -> None:
    rig.add_exited_im()
    vol = rig.tree.add_longhorn_volume("pvc-enc", encrypted=True)
    rig.tree.add_lvm()
    done = rig.lhsweep("sweep", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(a["kind"], a["name"], a["result"]) for a in report["actions"]] == [
        ("dm", "pvc-enc-encrypted", "removed"), ("dm", "pvc-enc", "removed"),
        ("node", "pvc-enc", "removed"), ("nvme", vol.nqn, "removed")]
    assert [c[1:] for c in rig.calls("remove")] == [
        ["remove", "--", "pvc-enc-encrypted"], ["remove", "--", "pvc-enc"]]
    assert [c[1:] for c in rig.calls("disconnect")] == [["disconnect", "--nqn", vol.nqn]]
    assert FAKE_KEY not in done.stdout
    after = rig.json("scan")
    assert {k for k, _ in verdicts(after)} == {"dm"} and set(verdicts(after).values()) == {"foreign"}


def test_a_failed_step_exits_1_and_the_next_sweep_finishes_the_job(rig: Rig) -> None:
    vol = rig.tree.add_longhorn_volume("pvc-part")
    rig.tree.set_nvme(vol.nqn, fail="failed to disconnect")
    first = rig.lhsweep("sweep", "--json")
    assert first.returncode == 1
    results = {a["kind"]: a["result"] for a in json.loads(first.stdout)["actions"]}
    assert results == {"dm": "removed", "node": "removed", "nvme": "failed"}
    HostTree(rig.tree.root).set_nvme(vol.nqn)  # re-read: the fake tools changed the tree
    second = rig.json("sweep")
    assert [(a["kind"], a["result"]) for a in second["actions"]] == [("nvme", "removed")]
    assert rig.json("scan")["entries"] == []


def test_dry_run_removes_nothing_but_says_what_it_would(rig: Rig) -> None:
    rig.tree.add_longhorn_volume("pvc-dry")
    report = rig.json("sweep", "--dry-run")
    assert {a["result"] for a in report["actions"]} == {"skipped"}
    assert all(a["detail"] == "dry run: would remove" for a in report["actions"])
    assert rig.calls("remove") == [] and rig.calls("disconnect") == []


def test_a_held_longhorn_lock_skips_the_volume_until_released(rig: Rig) -> None:
    rig.tree.add_longhorn_volume("pvc-lock")
    os.makedirs(rig.tree.p("/run/longhorn"), exist_ok=True)
    fd = os.open(rig.tree.p("/run/longhorn/spdk-pvc-lock.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        held = rig.json("sweep")
        assert all(a["result"] == "skipped" for a in held["actions"])
        assert "is held by another process" in held["actions"][0]["detail"]
        assert rig.calls("remove") == []
    finally:
        os.close(fd)
    released = rig.json("sweep")
    assert [a["result"] for a in released["actions"]] == ["removed", "removed", "removed"]


def test_a_device_recreated_after_planning_is_not_removed(rig: Rig) -> None:
    """Rule recheck-before-action: device numbers are compared; a re-created same-name device stays."""
    rig.tree.add_longhorn_volume("pvc-re")
    host = HostRoot(rig.tree.root)
    plan = scan(load(str(rig.config)), host).plan
    rig.tree.remove_dm("pvc-re")
    rig.tree.add_plain_linear_on_loop("filler")
    rig.tree.add_plain_linear_on_loop("pvc-re")
    outcomes = Actor(host, ToolRunner(5)).execute(plan, dry_run=False)
    dm = next(o for o in outcomes if o.kind.value == "dm")
    assert dm.result.value == "skipped" and "re-created since" in dm.detail
    assert rig.calls("remove") == []


def test_scan_prints_an_aligned_table_for_people(rig: Rig) -> None:
    rig.tree.add_longhorn_volume("pvc-t")
    rig.tree.add_lvm()
    done = rig.lhsweep("scan")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    header = next(line for line in lines if line.startswith("KIND"))
    col = header.index("VERDICT")
    rows = [line for line in lines if line.startswith(("dm ", "node ", "nvme "))]
    assert len(rows) == 4 and all(row[col:].split()[0] in ("stale", "foreign") for row in rows)


def test_usage_and_config_errors_have_their_exit_codes(rig: Rig) -> None:
    assert rig.lhsweep("scan", "--bogus").returncode == 2
    bogus = subprocess.run([sys.executable, "-m", "lhsweep", "--bogus"], capture_output=True,
                           text=True, timeout=60, cwd=REPO, check=False)
    assert bogus.returncode == 2 and "unrecognized arguments: --bogus" in bogus.stderr
    rig.config.write_text("[sweep]\ngrace_period = -1\n")
    bad = rig.lhsweep("scan")
    assert bad.returncode == 78
    assert bad.stderr.strip() == (f"lhsweep: configuration error: {rig.config}: sweep.grace_period: "
                                  "expected seconds, from 0 to 86400, got -1")


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_a_host_root_that_is_no_directory_is_a_usage_error(tmp_path: Path, kind: str) -> None:
    """Else every host path would read as absent: an empty host, nothing said."""
    root = str(tmp_path / "host")
    if kind == "file":
        Path(root).write_text("")
    found = "no such directory" if kind == "missing" else "not a directory"
    for command in ("scan", "sweep", "daemon"):
        done = subprocess.run([sys.executable, "-m", "lhsweep", "--host-root", root, command],
                              capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
        assert done.returncode == 2, (command, done.stderr)
        assert done.stderr.splitlines()[-1].endswith(f"error: --host-root {root}: {found}")


def test_one_shot_sweep_logs_its_decisions_when_asked(rig: Rig) -> None:
    rig.tree.add_longhorn_volume("pvc-log", mounted=True)
    rig.tree.add_dangling_node("pvc-old", "253:90")
    done = rig.lhsweep("--log-target", "stderr", "sweep")
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert any("removed stale node pvc-old" in line for line in lines), done.stderr
    busy = next(line for line in lines if "dm pvc-log is a busy leftover" in line)
    assert 'holder="pvc-log is open 1 time(s); pvc-log is mounted on' in busy


def test_controllers_go_through_sysfs_delete_controller_where_the_kernel_has_it(rig: Rig) -> None:
    rig.add_exited_im()
    vol = rig.tree.add_longhorn_volume("pvc-sysfs")
    [subsystem] = [s for s in read_subsystems(HostRoot(rig.tree.root))[0] if s.nqn == vol.nqn]
    attributes = [Path(rig.tree.p(f"/sys/class/nvme/{c.name}/delete_controller"))
                  for c in subsystem.controllers]
    for attribute in attributes:
        attribute.write_text("")
    report = rig.json("sweep")
    assert ("nvme", vol.nqn, "removed") in [(a["kind"], a["name"], a["result"]) for a in report["actions"]]
    # As `nvme disconnect --nqn` does it, in-process: "1" into each controller's attribute.
    assert [a.read_text() for a in attributes] == ["1"] * len(attributes) and attributes
    assert rig.calls("disconnect") == []


def test_a_process_opening_the_device_after_planning_stops_its_removal(rig: Rig) -> None:
    """The re-check right before removal reads the kernel's open count: a new opener counts, and
    the next plan names it."""
    rig.tree.add_longhorn_volume("pvc-op")
    host = HostRoot(rig.tree.root)
    plan = scan(load(str(rig.config)), host).plan
    assert len(plan.removals) == 3
    # What open(2) of the node does on a real kernel: an fd in /proc, and one open more of the dm.
    rig.tree.add_process(777, "reader", open_paths=("/dev/longhorn/pvc-op",))
    rig.tree.set_dm("pvc-op", open=1)
    outcomes = Actor(host, ToolRunner(5)).execute(plan, dry_run=False)
    dm = next(o for o in outcomes if o.kind.value == "dm")
    assert dm.result.value == "skipped" and "became busy: pvc-op is open 1 time(s)" in dm.detail
    assert rig.calls("remove") == []
    entry = next(e for e in scan(load(str(rig.config)), host).plan.entries if e.kind.value == "dm")
    assert entry.verdict.value == "busy" and "open by pid 777 (reader)" in entry.reason


def test_longhorn_locks_are_taken_below_the_root_through_its_absolute_var_run_link(rig: Rig) -> None:
    """<root>/var/run -> /run: the locks are <root>/run/longhorn..., never lhsweep's own /run."""
    assert os.readlink(rig.tree.p("/var/run")) == "/run"
    rig.tree.add_longhorn_volume("pvc-rootlock")
    assert [a["result"] for a in rig.json("sweep")["actions"]] == ["removed", "removed", "removed"]
    assert os.path.isfile(rig.tree.p("/run/longhorn/spdk-pvc-rootlock.lock"))
    assert os.path.isfile(rig.tree.p("/run/longhorn-spdk.lock"))
    assert not os.path.exists("/run/longhorn/spdk-pvc-rootlock.lock")


def test_global_options_are_taken_after_the_command_too(rig: Rig) -> None:
    rig.tree.add_dangling_node("pvc-after", "253:91")
    argv = [sys.executable, "-m", "lhsweep", "scan", "--json", "--host-root", rig.tree.root,
            "--config", str(rig.config), "--log-target", "stderr"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert verdicts(json.loads(done.stdout))[("node", "pvc-after")] == "stale"


def test_names_with_control_characters_cannot_forge_table_rows(rig: Rig) -> None:
    forged = "pvc-x\nnode  pvc-fake  live  \x1b[31mred\u202e\x07\r"
    rig.tree.add_dangling_node(forged, "253:92")
    done = rig.lhsweep("scan")
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "\u202e" not in done.stdout and "\x07" not in done.stdout
    assert "\r" not in done.stdout
    rows = [line for line in done.stdout.splitlines() if line.startswith("node")]
    assert rows == [next(r for r in rows if "pvc-x\\nnode  pvc-fake" in r)]
    assert "\\x1b[31mred\\u202e\\x07\\r" in rows[0]


@pytest.mark.parametrize("breakage", ["file", "unreadable-mounts"])
def test_a_host_that_could_not_be_read_exits_1(rig: Rig, breakage: str) -> None:
    if breakage == "file":
        os.rmdir(rig.tree.p("/dev/longhorn"))
        rig.tree.write("/dev/longhorn", "")
    else:
        for path in ("/proc/1/mountinfo", "/proc/self/mountinfo"):
            if os.path.exists(rig.tree.p(path)):
                os.unlink(rig.tree.p(path))
    scanned, swept = rig.lhsweep("scan"), rig.lhsweep("sweep")
    assert (scanned.returncode, swept.returncode) == (1, 1), scanned.stdout
    assert "problem: " in scanned.stdout and "problem: " in swept.stdout


@pytest.mark.parametrize("breakage", ["under-a-file", "read-only", "a-file"])
def test_an_unusable_state_dir_is_one_line_and_exit_73(rig: Rig, tmp_path: Path,
                                                        breakage: str) -> None:
    (tmp_path / "plain").write_text("")
    state_dir = tmp_path / "plain" / "state"
    if breakage == "a-file":
        state_dir = tmp_path / "plain"
    if breakage == "read-only":
        state_dir = tmp_path / "ro" / "state"
        (tmp_path / "ro").mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(tmp_path / "ro")],
                          check=False).returncode != 0:
            pytest.skip("cannot mount a read-only tmpfs here")
    rig.config.write_text(rig.config.read_text().replace(str(rig.state_dir), str(state_dir)))
    try:
        done = rig.lhsweep("sweep")
    finally:
        if breakage == "read-only":
            subprocess.run(["umount", str(tmp_path / "ro")], check=True)
    assert done.returncode == 73, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    expected = "not a directory" if breakage == "a-file" else f"cannot create {state_dir}"
    assert done.stderr.startswith(f"lhsweep: state.dir {state_dir}: {expected}")


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root with setpriv")
def test_non_root_is_told_which_privilege_is_missing() -> None:
    # Defaults: state.dir /run/lhsweep, which only root may create or write in.
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
            "lhsweep", "--config", "/nonexistent/lhsweep.toml", "sweep"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 77, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("lhsweep: missing privilege: ")
    assert "as root" in done.stderr and "CAP_SYS_ADMIN" in done.stderr


def test_scan_imports_neither_the_daemon_nor_its_libraries(rig: Rig) -> None:
    """`lhsweep scan` (a cold start each time) loads no daemon part, pyroute2 or prometheus_client,
    and none of lhsweep's removal, journal or event-stream code."""
    rig.tree.add_longhorn_volume("pvc-1")
    code = ("import sys\nfrom lhsweep.cli import main\nrc = main(sys.argv[1:])\n"
            "print(*sorted(sys.modules), sep='\\n', file=sys.stderr)\nsys.exit(rc)\n")
    argv = [sys.executable, "-c", code, "--config", str(rig.config), "--host-root", rig.tree.root,
            "scan", "--json"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert ("dm", "pvc-1") in verdicts(json.loads(done.stdout)), "the scan did not reach its report"
    loaded = set(done.stderr.split())
    assert "lhsweep.sweep" in loaded and "lhsweep.cri.client" in loaded
    unwanted = sorted(m for m in loaded
                      if m.split(".")[0] in ("pyroute2", "prometheus_client")
                      or m == "lhsweep.daemon" or m.startswith("lhsweep.daemon.")
                      or m in ("lhsweep.metrics", "lhsweep.act", "lhsweep.journal", "lhsweep.cri.events"))
    assert unwanted == []
