"""Guest scenario (needs the .deb): the seed's reproduction, swept by the installed, running service.

A V2 volume is attached under a running instance-manager; the container is SIGKILLed and its target
torn down with no clean shutdown; the running lhsweep service must remove the dm device, the
/dev/longhorn node and the NVMe controller, and say so in the journal.
"""

from __future__ import annotations

from lhvm import crash, service, volumes
from lhvm.observe import Facts, snapshot
from lhvm.proc import sh

from lhsweep.journal import Event  # installed by the .deb under test

VOLUME = "pvc-seed"


def main() -> None:
    """The seed scenario."""
    facts = Facts()
    # The install test: the packaged command and unit, as an operator would look at them.
    facts["installed"] = {"version": sh("lhsweep", "--version").strip(),
                          "unit": sh("systemctl", "cat", "lhsweep"),
                          "enabled": sh("systemctl", "is-enabled", "lhsweep", check=False).strip(),
                          "active": sh("systemctl", "is-active", "lhsweep", check=False).strip()}
    manager = crash.begin()
    service.start()
    volume = volumes.make_v2_volume(VOLUME, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    facts["before"] = snapshot()
    facts["scan_before"] = service.scan()
    since = service.mark()
    crash.crash(manager, volume)
    removed = service.wait_entry(Event.REMOVED, since, timeout=60, LHSWEEP_DEVICE=VOLUME, LHSWEEP_KIND="dm")
    facts["removed_entry"] = service.fields_of(removed)
    after = crash.wait_swept(volume)
    facts["after"] = after
    facts["scan_after"] = service.scan()
    facts["journal"] = [e.get("MESSAGE", "") for e in service.entries(since)]
    facts["service_state"] = service.active_state()
    assert VOLUME not in after["dm"], after["listings"]
    assert VOLUME not in after["longhorn"], after["listings"]
    assert volume.nqn not in after["nvme"], after["listings"]
    assert facts.values["service_state"] == "active"


if __name__ == "__main__":
    main()
