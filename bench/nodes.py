"""Synthetic nodes of a given size: HostTree layouts built fast enough for 10,000 volumes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from tests.fakes.kerneltree import SUBSYS
from tests.hosttree import HostTree

# Share of the volumes whose instance-manager died (target gone): the plan's stale work. Their
# targets die once every volume is built (a freed namespace number is not reused by a later
# volume), first-built first (KernelTree looks for a dm holder of a killed target in creation order).
STALE_EVERY = 10
# Share that are encrypted V2 volumes (crypt `<vol>-encrypted` over the linear device).
ENCRYPTED_EVERY = 25
# Foreign dm devices (LVM and a Longhorn-shaped linear on a loop device) per this many volumes.
FOREIGN_EVERY = 10


class BulkHostTree(HostTree):
    """HostTree whose NQN lookup is indexed: KernelTree.subsystem_of reads every subsysnqn file,
    which makes building n volumes O(n^2) (10,000 volumes would take ~10 minutes)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._by_nqn: dict[str, str] = {}

    def subsystem_of(self, nqn: str) -> Optional[str]:
        """The subsystem of `nqn`: the index, checked against sysfs; unknown NQNs are new ones."""
        name = self._by_nqn.get(nqn)
        if name is None:
            return None
        path = self.p(f"{SUBSYS}/{name}/subsysnqn")
        if os.path.exists(path) and self.read(f"{SUBSYS}/{name}/subsysnqn").strip() == nqn:
            return name
        del self._by_nqn[nqn]
        return super().subsystem_of(nqn)

    def connect(self, nqn: str, *, traddr: str = "127.0.0.1", trsvcid: str = "4420",
                state: str = "live") -> tuple[str, str, str, str]:
        """KernelTree.connect, remembering the subsystem of `nqn`."""
        made = super().connect(nqn, traddr=traddr, trsvcid=trsvcid, state=state)
        self._by_nqn[nqn] = made[0]
        return made


@dataclass(frozen=True)
class NodeShape:
    """What a synthetic node holds."""

    volumes: int
    stale: int
    encrypted: int
    foreign: int

    @property
    def dm_devices(self) -> int:
        """dm devices in the tree (volumes, their crypt children, foreign ones)."""
        return self.volumes + self.encrypted + self.foreign


def shape_for(volumes: int) -> NodeShape:
    """The mix used at every size: 1 in 10 stale, 1 in 25 encrypted, 1 foreign per 10 volumes."""
    stale = volumes // STALE_EVERY
    encrypted = len(range(1, volumes, ENCRYPTED_EVERY))
    return NodeShape(volumes, stale, encrypted, max(2, volumes // FOREIGN_EVERY))


def build_node(root: str, volumes: int) -> NodeShape:
    """A node below `root` with `volumes` Longhorn V2 volumes and foreign devices; needs root."""
    shape = shape_for(volumes)
    tree = BulkHostTree(root)
    os.makedirs(tree.p("/var/lib/kubelet/pods"), exist_ok=True)
    with tree.batch():
        made = [tree.add_longhorn_volume(f"pvc-{i:05d}", encrypted=i % ENCRYPTED_EVERY == 1)
                for i in range(volumes)]
        for volume in made[:shape.stale]:
            tree.kill_target(volume.nqn)
        for i in range(shape.foreign):
            if i % 2:
                tree.add_lvm(vg=f"vg{i}")
            else:
                tree.add_plain_linear_on_loop(f"plain-{i}")
        tree.add_v1_encrypted_volume("pvc-v1crypt")
        tree.add_multipath()
    return NodeShape(shape.volumes, shape.stale, shape.encrypted, shape.foreign + 2)
