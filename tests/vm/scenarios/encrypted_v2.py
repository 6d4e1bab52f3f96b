"""Guest scenario (needs the .deb): an encrypted V2 volume's leftovers (`<vol>-encrypted` crypt over
linear `<vol>`, the node, the still-reconnecting controller) are removed child first."""

from __future__ import annotations

from lhvm import crash, service, volumes
from lhvm.observe import Facts, check, snapshot

from lhsweep.journal import Event  # installed by the .deb under test

VOLUME = "pvc-enc"


def main() -> None:
    """The encrypted V2 scenario."""
    facts = Facts()
    manager = crash.begin()
    service.start()
    since = service.mark()
    volume, crypt_dev = volumes.make_v2_encrypted(VOLUME)  # Longhorn's 30 s ctrl_loss_tmo
    facts["devs"] = {"linear": volume.dev, "crypt": crypt_dev}
    facts["before"] = snapshot()
    crash.crash(manager, volume)
    service.wait_entry(Event.REMOVED, since, timeout=90, LHSWEEP_DEVICE=volume.nqn, LHSWEEP_KIND="nvme")
    removed = service.matching(service.entries(since, Event.REMOVED), LHSWEEP_VOLUME=VOLUME)
    facts["removed"] = [service.fields_of(e) for e in removed]  # in journal order
    after = snapshot()
    facts["after"] = after
    order = [(e["LHSWEEP_KIND"], e["LHSWEEP_DEVICE"]) for e in removed]
    facts["order"] = order
    expected = [("dm", f"{VOLUME}-encrypted"), ("dm", VOLUME), ("node", VOLUME), ("nvme", volume.nqn)]
    check(order == expected, f"removal order {order}, expected {expected}")
    check(not {VOLUME, f"{VOLUME}-encrypted"} & set(after["dm"]), "a dm device of the volume stayed")


if __name__ == "__main__":
    main()
