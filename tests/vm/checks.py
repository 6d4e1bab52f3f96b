"""Host-side reading of a guest scenario's results: lhsweep's journal entries and device snapshots."""

from __future__ import annotations

from typing import Any

from lhsweep.journal import Event
from tests.vm.harness import ScenarioResult

UNIT = "lhsweep.service"


def events(result: ScenarioResult, event: Event, **fields: str) -> list[dict[str, Any]]:
    """lhsweep's journal entries of kind `event` written during the scenario, with `fields`, in order."""
    return [
        e
        for e in result.journal(UNIT)
        if e.get("MESSAGE_ID") == event.value and all(e.get(k) == v for k, v in fields.items())
    ]


def removed(result: ScenarioResult, volume: str = "") -> list[tuple[str, str]]:
    """(kind, device) of every REMOVED entry (of `volume`, if given), in journal order."""
    found = events(result, Event.REMOVED, **({"LHSWEEP_VOLUME": volume} if volume else {}))
    return [(e["LHSWEEP_KIND"], e["LHSWEEP_DEVICE"]) for e in found]


def volume_swept(got: list[tuple[str, str]], volume: str) -> bool:
    """`got` (from `removed`) is a crashed volume's sweep: its dm device, its node, then at most its
    controller (lhsweep's to disconnect too, unless the controller's ctrl_loss_tmo ran out first)."""
    rest = got[2:]
    return got[:2] == [("dm", volume), ("node", volume)] and len(rest) <= 1 and \
        all(kind == "nvme" and f":{volume}-" in nqn for kind, nqn in rest)


def devices(snapshot: dict[str, Any]) -> set[str]:
    """dm names and /dev/longhorn entries of a guest snapshot (`dmsetup ls`, `ls /dev/longhorn`)."""
    return {f"dm:{n}" for n in snapshot["dm"]} | {f"node:{n}" for n in snapshot["longhorn"]}


def volume_devices(name: str) -> set[str]:
    """The dm device and /dev/longhorn node a V2 volume `name` has."""
    return {f"dm:{name}", f"node:{name}"}


def guest_passed(result: ScenarioResult) -> None:
    """Fail with the guest's own output unless the guest-side checks all held."""
    assert result.passed, result.describe()


def watchdog_kept(result: ScenarioResult) -> None:
    """Over a minute with an action hung (facts from lhvm.hang.while_hung): no watchdog timeout in
    the journal, no restart, the same main process."""
    facts = result.facts
    assert facts["held_for_s"] > 60
    assert facts["unit"]["NRestarts"] == "0" and facts["unit"]["MainPID"] == facts["main_pid_before"]
    assert not [e for e in result.journal() if "Watchdog timeout" in str(e.get("MESSAGE", ""))]
