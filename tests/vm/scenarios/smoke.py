"""Guest scenario: the harness works and a crashed instance-manager leaves what docs/design.md describes.

Checks dm-mod, a Longhorn V2 volume made like go-spdk-helper makes it, the foreign devices around
it, an instance-manager pod under real containerd listed by CRI, and the leftovers after SIGKILL +
target tear-down. Records the real sysfs layout (attached and crashed) for the hosttree fixture.
"""

from __future__ import annotations

import os

from lhvm import nvmet, runtime, volumes
from lhvm.cri import Cri, state_name
from lhvm.observe import Facts, check, layout, snapshot
from lhvm.proc import read, run, sh

VOLUME = "pvc-smoke"
CTRL_LOSS_TMO = 5
IM_LABELS = {"longhorn.io/component": "instance-manager", "longhorn.io/data-engine": "v2"}


def dm_sysfs(name: str) -> str:
    """/sys/block/dm-N of the dm device called `name`."""
    for entry in os.listdir("/sys/block"):
        if read(f"/sys/block/{entry}/dm/name") == name:
            return f"/sys/block/{entry}"
    raise AssertionError(f"no /sys/block/dm-*/dm/name reads {name}")


def instance_manager_listed(facts: Facts) -> runtime.InstanceManager:
    """Run the instance-manager pod and check CRI lists it with Longhorn's labels, running."""
    runtime.start_containerd()
    manager = runtime.run_instance_manager()
    client = Cri()
    try:
        facts["cri_version"] = str(client.version())
        pods = client.list_pod_sandbox(IM_LABELS)
        containers = client.list_containers(manager.sandbox_id)
    finally:
        client.close()
    facts["im_pods"] = [p.metadata.name for p in pods]
    facts["im_container_states"] = {c.metadata.name: state_name(c.state) for c in containers}
    check([p.id for p in pods] == [manager.sandbox_id], f"CRI lists {facts.values['im_pods']}")
    check(facts.values["im_container_states"] == {"instance-manager": "running"}, "container not running")
    return manager


def main() -> None:
    """The smoke scenario."""
    facts = Facts()
    run("systemctl", "stop", "lhsweep.service")  # installed and started by the .deb when a boot has one
    sh("modprobe", "dm-mod")
    check(
        os.path.isdir("/sys/module/dm_mod") and os.path.exists("/dev/mapper/control"), "dm-mod did not load"
    )
    manager = instance_manager_listed(facts)

    volume = volumes.make_v2_volume(VOLUME, ctrl_loss_tmo=CTRL_LOSS_TMO)
    v1_dev = volumes.make_v1_encrypted("pvc-v1crypt")
    enc, enc_dev = volumes.make_v2_encrypted("pvc-v2enc", ctrl_loss_tmo=CTRL_LOSS_TMO)
    lvm_name = volumes.make_lvm()
    plain_dev = volumes.make_plain_linear("plain-linear")
    attached = snapshot()
    facts["attached"] = attached
    facts["devs"] = {"volume": volume.dev, "v1crypt": v1_dev, "v2enc": enc_dev, "plain": plain_dev}
    check(
        {VOLUME, "pvc-v1crypt", "pvc-v2enc", "pvc-v2enc-encrypted", lvm_name, "plain-linear"}
        <= set(attached["dm"]),
        "dmsetup ls misses a device",
    )
    check({VOLUME, "pvc-v1crypt", "pvc-v2enc"} <= set(attached["longhorn"]), "/dev/longhorn misses a node")
    check({volume.nqn, enc.nqn} <= set(attached["nvme"]), "nvme list-subsys misses a Longhorn NQN")
    check(os.stat(f"/dev/longhorn/{VOLUME}").st_mode & 0o7777 == 0o660, "node mode is not 0660")
    check(os.stat(f"/dev/longhorn/{VOLUME}").st_gid == 6, "node group is not 6")
    facts["table"] = sh("dmsetup", "table", VOLUME).strip()
    check(facts.values["table"].split()[2] == "linear", "the volume is not one linear segment")
    sysdm = dm_sysfs(VOLUME)
    facts["dm_uuid"] = read(f"{sysdm}/dm/uuid")
    facts["slaves_attached"] = sorted(os.listdir(f"{sysdm}/slaves"))
    facts["enc_holders"] = sorted(os.listdir(f"{dm_sysfs('pvc-v2enc')}/holders"))
    head_dev = read(f"/sys/block/{volume.namespace}/dev")
    facts["namespace"] = {
        "name": volume.namespace,
        "dev": head_dev,
        "subsysnqn": read(f"/sys/block/{volume.namespace}/device/subsysnqn"),
    }
    facts["controllers_attached"] = nvmet.controllers(volume.nqn)
    facts.file("layout-attached.txt", layout())

    runtime.kill_instance_manager(manager)
    facts["im_state_after_kill"] = runtime.container_state(manager.container_id)
    volumes.crash_target(volume)
    volumes.crash_target(enc)
    facts["controllers_connecting"] = nvmet.controllers(volume.nqn)
    nvmet.wait_controllers_gone(volume.nqn, timeout=CTRL_LOSS_TMO + 60)
    nvmet.wait_controllers_gone(enc.nqn, timeout=CTRL_LOSS_TMO + 60)
    crashed = snapshot()
    facts["crashed"] = crashed
    facts["table_after"] = sh("dmsetup", "table", VOLUME).strip()
    facts["info_after"] = sh("dmsetup", "info", "-c", "--noheadings", "-o", "name,attr,open", VOLUME).strip()
    facts["slaves_crashed"] = {
        n: os.path.exists(f"{sysdm}/slaves/{n}") for n in facts.values["slaves_attached"]
    }
    facts["head_dev_exists"] = os.path.exists(f"/sys/dev/block/{head_dev}")
    facts["subsystem_dir_after"] = nvmet.subsystem_dir(volume.nqn)
    facts.file("layout-crashed.txt", layout())
    check(VOLUME in crashed["dm"] and VOLUME in crashed["longhorn"], "the leftovers are not there")
    check(facts.values["table_after"] == facts.values["table"], "the stale dm table changed")
    check(not facts.values["head_dev_exists"], "the namespace head survived ctrl_loss_tmo")


if __name__ == "__main__":
    main()
