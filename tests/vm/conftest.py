"""pytest glue for the VM tests: one guest boot runs every selected scenario of a boot group.

A test names its guest scenario on the `vm` marker and takes the `vm_scenario` fixture:

    @pytest.mark.vm(scenario="smoke", timeout=300)            # boot="main", deb=False by default
    def test_smoke(vm_scenario): assert vm_scenario.passed, vm_scenario.describe()

The first test of a boot group boots the guest once with all scenarios of that group that the
session selected (in collection order); later tests read the cached results. `deb=True` puts
dist/lhsweep_*_all.deb on the payload disk and installs it before the group's first scenario;
`image=True` adds dist/lhsweep-image.tar and the DaemonSet's pod spec (tests/vm/podspec.py).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from typing import Union

import pytest

from tests.vm.harness import REPO, GuestError, GuestRun, Scenario, ScenarioResult, find_deb, run_guest
from tests.vm.podspec import pod_files

OUT_ROOT = REPO / ".cache" / "vm"


@dataclass(frozen=True)
class Wanted:
    """A scenario some selected test asked for, with its boot group and needs."""

    scenario: Scenario
    boot: str
    deb: bool
    image: bool = False


@dataclass
class VmBoots:
    """The boot groups of this session and, once booted, their runs (or why they failed)."""

    wanted: dict[str, Wanted]
    runs: dict[str, Union[GuestRun, str]] = field(default_factory=dict)

    @classmethod
    def from_items(cls, items: list[pytest.Item]) -> VmBoots:
        """Collect the scenarios named by the `vm` markers of the selected tests."""
        wanted: dict[str, Wanted] = {}
        for item in items:
            marker = item.get_closest_marker("vm")
            if marker is None or "scenario" not in marker.kwargs:
                continue
            name = marker.kwargs["scenario"]
            scenario = Scenario(name, float(marker.kwargs.get("timeout", 300)))
            wanted.setdefault(
                name, Wanted(scenario, marker.kwargs.get("boot", "main"), marker.kwargs.get("deb", False),
                             marker.kwargs.get("image", False))
            )
        return cls(wanted)

    def result(self, name: str) -> ScenarioResult:
        """The result of scenario `name`, booting its group first if needed."""
        boot = self.wanted[name].boot
        if boot not in self.runs:
            self.runs[boot] = self._boot(boot)
        run = self.runs[boot]
        if isinstance(run, str):
            pytest.fail(run, pytrace=False)
        if name not in run.results:
            pytest.fail(f"guest scenario {name} left no result; see {run.out_dir}", pytrace=False)
        return run.results[name]

    def _boot(self, boot: str) -> Union[GuestRun, str]:
        """Boot one group; a failure becomes the text every test of the group fails with."""
        members = [w for w in self.wanted.values() if w.boot == boot]
        deb = find_deb() if any(w.deb for w in members) else None
        if any(w.deb for w in members) and deb is None:
            return "dist/lhsweep_*_all.deb is missing: build it with `make deb` before the VM tests"
        out_dir = OUT_ROOT / boot
        try:
            extra = pod_files(out_dir.parent) if any(w.image for w in members) else []
            return run_guest([w.scenario for w in members], out_dir, deb=deb, extra=extra)
        except (GuestError, FileNotFoundError) as error:
            return str(error)


@pytest.fixture(scope="session")
def vm_boots(request: pytest.FixtureRequest) -> VmBoots:
    """The session's boot groups; fails at once when the host cannot run the guest."""
    missing = [
        tool for tool in ("qemu-system-x86_64", "debootstrap", "debugfs", "protoc") if not shutil.which(tool)
    ]
    if missing:
        pytest.fail(f"VM tests need {', '.join(missing)}: run dev/setup (dev/deps/vm.apt)", pytrace=False)
    boots = VmBoots.from_items(request.session.items)
    request.config.stash[BOOTS_KEY] = boots
    return boots


@pytest.fixture
def vm_scenario(request: pytest.FixtureRequest, vm_boots: VmBoots) -> ScenarioResult:
    """The result of the scenario named on this test's `vm` marker."""
    marker = request.node.get_closest_marker("vm")
    if marker is None or "scenario" not in marker.kwargs:
        pytest.fail("vm_scenario needs @pytest.mark.vm(scenario=...)", pytrace=False)
    return vm_boots.result(marker.kwargs["scenario"])


BOOTS_KEY = pytest.StashKey[VmBoots]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """Print how long each guest boot and scenario took."""
    boots = config.stash.get(BOOTS_KEY, None)
    if boots is None or not boots.runs:
        return
    terminalreporter.section("VM timings")
    for boot, run in boots.runs.items():
        if isinstance(run, str):
            terminalreporter.write_line(f"boot {boot}: failed")
            continue
        terminalreporter.write_line(
            f"boot {boot}: {run.total_s:.1f} s in qemu, guest ready after {run.boot_s:.1f} s"
        )
        if run.install:
            terminalreporter.write_line(f"  dpkg -i: {run.install['duration_s']:.1f} s")
        for result in run.results.values():
            verdict = "passed" if result.passed else "FAILED"
            terminalreporter.write_line(f"  {result.name}: {result.duration_s:.1f} s, {verdict}")
