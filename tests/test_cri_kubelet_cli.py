"""`lhsweep scan`/`sweep` with two CRI runtimes on one host tree: only kubelet's is asked."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.crifake import FakeCri, im_pod
from tests.hosttree import HostTree, fake_host

pytestmark = pytest.mark.process

REPO = Path(__file__).resolve().parents[1]
DISTRO = "/run/containerd/containerd.sock"
K3S = "/run/k3s/containerd/containerd.sock"
HOUR_NS = 3600 * 10**9


class TwoRuntimes:
    """A host tree (short /tmp path, for the sockets) with a distro containerd and k3s's own."""

    def __init__(self, tree: HostTree, stack: ExitStack) -> None:
        self.tree = tree
        self.runtimes = {}
        for socket in (DISTRO, K3S):
            os.makedirs(os.path.dirname(tree.p(socket)), exist_ok=True)
            self.runtimes[socket] = stack.enter_context(FakeCri(socket_path=tree.p(socket)))
        self.config = Path(tree.root).parent / "lhsweep.toml"
        self.config.write_text(f'[sweep]\ngrace_period = 0\n[state]\ndir = "{tree.root}.state"\n'
                               '[metrics]\nfile = ""\n', encoding="utf-8")

    def im_under_kubelets_runtime(self) -> None:
        """A live instance-manager in k3s's runtime, its kubelet pod dir, and k3s installed."""
        pod = im_pod(created_at_ns=1_700_000_000 * 10**9)
        self.runtimes[K3S].add_pod(*pod)
        os.makedirs(self.tree.p(f"/var/lib/kubelet/pods/{pod[0]['metadata']['uid']}"))
        os.makedirs(self.tree.p("/etc/rancher/k3s"), exist_ok=True)

    def lhsweep(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the real CLI on the tree."""
        argv = [sys.executable, "-m", "lhsweep", "--config", str(self.config),
                "--host-root", self.tree.root, *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=REPO, check=False)

    def json(self, *args: str) -> dict[str, Any]:
        """Run with --json and parse the answer."""
        done = self.lhsweep(*args, "--json")
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def removals(self) -> list[str]:
        """The fake tools' calls that remove or disconnect something."""
        path = Path(self.tree.p("/.fake/calls.log"))
        lines = path.read_text().splitlines() if path.exists() else []
        return [line for line in lines if "remove" in line or "disconnect" in line]


@pytest.fixture
def host(monkeypatch: pytest.MonkeyPatch) -> Iterator[TwoRuntimes]:
    base = tempfile.mkdtemp(prefix="kc", dir="/tmp")
    try:
        tree = fake_host(os.path.join(base, "h"), monkeypatch)
        with ExitStack() as stack:
            yield TwoRuntimes(tree, stack)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_the_live_instance_manager_under_kubelets_runtime_keeps_its_devices(
        host: TwoRuntimes) -> None:
    host.tree.add_longhorn_volume("pvc-1")
    host.im_under_kubelets_runtime()
    report = host.json("sweep")
    runtime = report["runtime"]
    assert (runtime["state"], runtime["endpoint"]) == ("known", "unix://" + host.tree.p(K3S))
    assert "k3s is installed" in runtime["endpoint_reason"]
    assert [im["alive"] for im in runtime["instance_managers"]] == [True]
    assert {e["verdict"] for e in report["entries"]} == {"live"}
    assert report["actions"] == [] and host.removals() == []
    assert host.runtimes[DISTRO].calls == []
    text = host.lhsweep("scan").stdout
    first = text.splitlines()[0]
    assert first.startswith("runtime: known (") and f"via unix://{host.tree.p(K3S)} (" in first
    assert "k3s is installed" in first and "knows 1 of 1 pod UID(s)" in first


def test_kubelets_runtime_not_answering_is_unknown_and_nothing_is_removed(
        host: TwoRuntimes) -> None:
    host.tree.add_longhorn_volume("pvc-1")
    host.im_under_kubelets_runtime()
    host.runtimes[K3S].stop()
    report = host.json("sweep")
    assert report["runtime"]["state"] == "unknown"
    assert host.tree.p(K3S) in report["runtime"]["reason"]
    assert {e["verdict"] for e in report["entries"]} == {"unknown"}
    assert host.removals() == [] and host.runtimes[DISTRO].calls == []
    first = host.lhsweep("scan").stdout.splitlines()[0]
    assert first.startswith("runtime: unknown (no CRI socket found: ")
    assert first.endswith("(endpoint: kubelet's runtime: k3s is installed (/etc/rancher/k3s or "
                          "/var/lib/rancher/k3s) and sets no container-runtime-endpoint)")
    host.runtimes[K3S].start()
    swept = host.json("sweep")  # the runtime is back: still alive, still kept
    assert {e["verdict"] for e in swept["entries"]} == {"live"}
    assert host.removals() == []
