"""deploy/kubernetes read as kustomize would build it: the objects, the ConfigMap, the pod spec.

Shared by tests/test_deploy_manifests.py and the VM scenarios that run the DaemonSet's pod
under containerd, so the manifest and what is tested cannot drift apart.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"

Obj = dict[str, Any]


def kustomization() -> Obj:
    """deploy/kubernetes/kustomization.yaml."""
    return _load(DEPLOY / "kustomization.yaml")


def _load(path: Path) -> Obj:
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    assert isinstance(data, dict), f"{path}: not one YAML mapping"
    return data


def objects() -> list[Obj]:
    """Every object `kubectl apply -k` creates: the resources (namespace and image set as
    kustomize sets them) and the generated ConfigMap (without kustomize's name hash)."""
    kust = kustomization()
    made = [_load(DEPLOY / name) for name in kust["resources"]]
    for generator in kust.get("configMapGenerator", []):
        data = {Path(f).name: (DEPLOY / f).read_text(encoding="utf-8") for f in generator["files"]}
        made.append({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": generator["name"]}, "data": data})
    for obj in made:
        if obj["kind"] not in ("PriorityClass",):  # cluster-scoped kinds keep no namespace
            obj["metadata"]["namespace"] = kust["namespace"]
    _set_images(made, kust.get("images", []))
    return made


def _set_images(made: list[Obj], images: list[Obj]) -> None:
    for obj in made:
        if obj["kind"] != "DaemonSet":
            continue
        for container in obj["spec"]["template"]["spec"]["containers"]:
            name, _, tag = container["image"].rpartition(":")
            for image in images:
                if image["name"] == name:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"


def one(kind: str) -> Obj:
    """The one object of `kind` (a deep copy, free to change)."""
    found = [o for o in objects() if o["kind"] == kind]
    assert len(found) == 1, f"deploy/kubernetes has {len(found)} {kind} objects"
    return copy.deepcopy(found[0])


def pod_spec() -> Obj:
    """The DaemonSet's pod spec."""
    spec: Obj = one("DaemonSet")["spec"]["template"]["spec"]
    return spec


def config_text() -> str:
    """The lhsweep.toml the ConfigMap carries."""
    text: str = one("ConfigMap")["data"]["lhsweep.toml"]
    return text
