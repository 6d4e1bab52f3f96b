"""The seed's reproduction on a real kernel: a crashed instance-manager's leftovers, swept by the
installed lhsweep service (needs dist/lhsweep_*_all.deb)."""

from __future__ import annotations

import pytest

from lhsweep import __version__
from lhsweep.journal import Event
from tests.vm.harness import ScenarioResult

pytestmark = pytest.mark.vm(scenario="seed", timeout=420, deb=True)


def test_service_removes_the_leftovers(vm_scenario: ScenarioResult) -> None:
    """dm device, /dev/longhorn node and NVMe controller are gone; the service stays active."""
    assert vm_scenario.passed, vm_scenario.describe()
    facts = vm_scenario.facts
    assert "pvc-seed" in facts["before"]["dm"] and "pvc-seed" in facts["before"]["longhorn"]
    assert "pvc-seed" not in facts["after"]["dm"] and "pvc-seed" not in facts["after"]["longhorn"]
    assert not [nqn for nqn in facts["after"]["nvme"] if "pvc-seed" in nqn]


def test_journal_names_the_removal(vm_scenario: ScenarioResult) -> None:
    """The removal is a journal entry with lhsweep's REMOVED MESSAGE_ID and the device's fields."""
    assert vm_scenario.passed, vm_scenario.describe()
    entry = vm_scenario.facts["removed_entry"]
    assert entry["MESSAGE_ID"] == Event.REMOVED.value
    assert entry["LHSWEEP_DEVICE"] == "pvc-seed" and entry["LHSWEEP_VOLUME"] == "pvc-seed"


def test_the_installed_package_answers_like_an_operator_expects(vm_scenario: ScenarioResult) -> None:
    """`lhsweep --version` works from the .deb, `systemctl cat lhsweep` shows the unit; the install
    left it disabled and stopped, like the RPM (docs/packaging.md)."""
    assert vm_scenario.passed, vm_scenario.describe()
    installed = vm_scenario.facts["installed"]
    assert installed["version"] == f"lhsweep {__version__}"
    assert "# /lib/systemd/system/lhsweep.service" in installed["unit"] or \
        "# /usr/lib/systemd/system/lhsweep.service" in installed["unit"]
    assert "Type=notify" in installed["unit"] and "ExecStart=/usr/bin/lhsweep daemon" in installed["unit"]
    assert installed["enabled"] == "disabled"
    assert installed["active"] == "inactive"
