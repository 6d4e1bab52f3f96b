"""The crash every service scenario builds on: an instance-manager with attached volumes dies uncleanly."""

from __future__ import annotations

from typing import Any

from lhvm import nvmet, runtime, service
from lhvm.observe import snapshot
from lhvm.proc import wait_for
from lhvm.volumes import V2Volume

CTRL_LOSS_TMO = 5  # seconds: short, so a dead controller vanishes quickly (Longhorn uses 30)


def begin(**overrides: dict[str, Any]) -> runtime.InstanceManager:
    """Stop lhsweep, write its test config, start containerd and a running V2 instance-manager pod."""
    service.stop()
    service.configure(**overrides)
    runtime.start_containerd()
    return runtime.run_instance_manager()


def crash(manager: runtime.InstanceManager, *volumes: V2Volume, wait_gone: bool = False) -> None:
    """SIGKILL the instance-manager and drop its targets; nothing on the host is cleaned up.

    With `wait_gone` also wait out ctrl_loss_tmo, until the controllers and namespace heads have
    vanished (the dm devices' backing is gone); otherwise the controllers are still `connecting`.
    """
    runtime.kill_instance_manager(manager)
    for volume in volumes:
        nvmet.crash(volume.target)
    if wait_gone:
        for volume in volumes:
            nvmet.wait_controllers_gone(volume.nqn, timeout=CTRL_LOSS_TMO + 60)


def wait_swept(*volumes: V2Volume, timeout: float = 120) -> dict[str, Any]:
    """Wait until no dm device, /dev/longhorn node or controller of `volumes` is left; the snapshot then.

    The three go one after another (a controller may also expire by itself, ctrl_loss_tmo, before
    lhsweep has unlinked the node), so one gone is no sign the others are.
    """
    def swept() -> dict[str, Any] | None:
        now = snapshot()
        left = any(v.name in now["dm"] or v.name in now["longhorn"] or v.nqn in now["nvme"] for v in volumes)
        return None if left else now
    return wait_for(f"{', '.join(v.name for v in volumes)} to be swept", swept, timeout=timeout)
