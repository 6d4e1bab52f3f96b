"""Guest scenario (needs the .deb): two CRI runtimes on one node, lhsweep asks only kubelet's.

kubelet's containerd (/run/containerd/containerd.sock, named by containerRuntimeEndpoint in
kubeadm's /var/lib/kubelet/config.yaml) runs the instance-manager, which has an idle volume with
its target alive; a second containerd with no pods answers on /run/k3s/containerd/containerd.sock.
While kubelet's runtime answers nothing (SIGSTOP), the sweeps must see an unknown runtime, not the
other runtime's "no instance-manager", and remove nothing. Once it answers again the volume stays
(its instance-manager runs); when the instance-manager then crashes, the leftover is swept.
"""

from __future__ import annotations

from typing import Any

from lhvm import crash, runtime, service, volumes
from lhvm.observe import Facts, check, snapshot

from lhsweep.journal import Event  # installed by the .deb under test

VOLUME = "pvc-twort"
KUBELET_ENDPOINT = "unix:///var/run/containerd/containerd.sock"  # as kubeadm writes it


def summary(state: dict[str, Any]) -> dict[str, Any]:
    """What the host-side test looks at in one sweep's state file."""
    return {"number": state["sweep_number"], "runtime": state["report"]["runtime"],
            "counts": state["counts"]}


def main() -> None:
    """The two-runtimes scenario."""
    facts = Facts()
    manager = crash.begin()
    runtime.write_kubelet_config(KUBELET_ENDPOINT)
    runtime.start_other_containerd()
    volume = volumes.make_v2_volume(VOLUME, ctrl_loss_tmo=crash.CTRL_LOSS_TMO)
    since = service.mark()
    service.start()
    facts["both_answering"] = summary(service.force_sweep())
    facts["scan_both"] = service.scan()
    runtime.freeze_containerd()
    try:
        facts["while_frozen"] = [summary(service.force_sweep()) for _ in range(2)]
        facts["scan_frozen"] = service.scan()
        facts["frozen"] = snapshot()
    finally:
        runtime.thaw_containerd()
    facts["thawed"] = summary(service.force_sweep())
    facts["removed_while_alive"] = service.entries(since, Event.REMOVED)
    check(VOLUME in facts.values["frozen"]["dm"] and VOLUME in facts.values["frozen"]["longhorn"],
          "the live instance-manager's volume was removed while kubelet's runtime did not answer")
    check(facts.values["removed_while_alive"] == [], "something was removed while the manager ran")
    check(all(s["runtime"]["state"] == "unknown" for s in facts.values["while_frozen"]),
          "a sweep saw a runtime while kubelet's did not answer")
    crashed = service.mark()
    crash.crash(manager, volume)
    removed = service.wait_entry(Event.REMOVED, crashed, timeout=90, LHSWEEP_DEVICE=VOLUME,
                                 LHSWEEP_KIND="dm")
    facts["removed_entry"] = service.fields_of(removed)
    facts["after"] = crash.wait_swept(volume)
    facts["after_crash"] = summary(service.force_sweep())


if __name__ == "__main__":
    main()
