"""What the pod scenarios take into the guest: the image archive and the DaemonSet as kubelet sees it.

The pod spec and the ConfigMap's lhsweep.toml are read from deploy/kubernetes here (through
tests/deploy_manifest.py) and handed to the guest as JSON; lhvm/pod.py turns them into CRI calls.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests import deploy_manifest
from tests.vm.harness import REPO

IMAGE_TAR = REPO / "dist" / "lhsweep-image.tar"


def pod_files(directory: Path) -> list[Path]:
    """[the image archive, daemonset.json]; raises FileNotFoundError without `make image`."""
    if not IMAGE_TAR.exists():
        raise FileNotFoundError(f"{IMAGE_TAR} is missing: build it with `make image` first")
    daemonset = deploy_manifest.one("DaemonSet")
    spec = {"namespace": daemonset["metadata"]["namespace"],
            "name": daemonset["metadata"]["name"],
            "labels": daemonset["spec"]["template"]["metadata"]["labels"],
            "pod": daemonset["spec"]["template"]["spec"],
            "config_map": deploy_manifest.one("ConfigMap")}
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "daemonset.json"
    path.write_text(json.dumps(spec, indent=1))
    return [IMAGE_TAR, path]
