"""deploy/kubernetes: valid Kubernetes objects (checked offline), and no privilege the program
does not use: every host path, privilege and namespace is derived from lhsweep's own code and
defaults here, never copied from the manifest."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from lhsweep import longhorn
from lhsweep.act import LONGHORN_DEV_DIR
from lhsweep.config import WELL_KNOWN_CRI_SOCKETS, Config, parse
from lhsweep.daemon import default_parts
from lhsweep.daemon.http import LIVE_PATH, READY_PATH
from lhsweep.daemon.uevents import UeventWatcher
from lhsweep.inventory import DM_CONTROL_NODE
from tests import deploy_manifest as dm

REPO = Path(__file__).resolve().parent.parent
HOST_ROOT = "/host"
KINDS = {"DaemonSet": "V1DaemonSet", "ServiceAccount": "V1ServiceAccount",
         "PriorityClass": "V1PriorityClass", "ConfigMap": "V1ConfigMap"}


# ------------------------------------------------------------------ schema (offline)

def schema_errors(value: Any, type_name: str, where: str) -> list[str]:
    """Every field of `value` checked against the Kubernetes API type `type_name`
    (python3-kubernetes' generated models): unknown keys, wrong types."""
    client = pytest.importorskip("kubernetes.client")
    inner = re.fullmatch(r"list\[(.+)\]", type_name)
    if inner:
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [e for i, v in enumerate(value) for e in schema_errors(v, inner[1], f"{where}[{i}]")]
    inner = re.fullmatch(r"dict\(str, (.+)\)", type_name)
    if inner:
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        return [e for k, v in value.items() for e in schema_errors(v, inner[1], f"{where}.{k}")]
    primitive = {"str": str, "int": int, "bool": bool, "float": (int, float), "object": object}
    if type_name in primitive:
        ok = isinstance(value, primitive[type_name]) and not (
            type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{where}: expected {type_name}, got {value!r}"]
    model = getattr(client, type_name)
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} mapping"]
    by_json = {json: attr for attr, json in model.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{where}.{key}: no such field in {type_name}")
        else:
            errors += schema_errors(item, model.openapi_types[by_json[key]], f"{where}.{key}")
    return errors


def required_errors(obj: dict[str, Any]) -> list[str]:
    """Required fields and enum values: the models' own checks when built from the object."""
    client = pytest.importorskip("kubernetes.client")
    try:
        client.ApiClient()._ApiClient__deserialize(obj, KINDS[obj["kind"]])
    except ValueError as exc:
        return [f"{obj['kind']}: {exc}"]
    return []


@pytest.mark.parametrize("obj", dm.objects(), ids=lambda o: o["kind"])
def test_every_object_is_a_valid_kubernetes_object(obj: dict[str, Any]) -> None:
    assert obj["kind"] in KINDS
    assert schema_errors(obj, KINDS[obj["kind"]], obj["kind"]) == []
    assert required_errors(obj) == []


def test_the_schema_check_catches_a_misspelt_field_and_a_wrong_type() -> None:
    daemonset = dm.one("DaemonSet")
    spec = daemonset["spec"]["template"]["spec"]
    spec["hostNetwrok"] = True
    spec["containers"][0]["ports"][0]["containerPort"] = "9845"
    errors = schema_errors(daemonset, "V1DaemonSet", "DaemonSet")
    assert errors == ["DaemonSet.spec.template.spec.containers[0].ports[0].containerPort: "
                      "expected int, got '9845'",
                      "DaemonSet.spec.template.spec.hostNetwrok: no such field in V1PodSpec"]
    del daemonset["spec"]["selector"]
    assert required_errors(daemonset)


def test_kustomization_names_only_files_that_exist() -> None:
    kust = dm.kustomization()
    assert set(kust) <= {"apiVersion", "kind", "namespace", "resources", "configMapGenerator",
                         "images"}
    assert kust["kind"] == "Kustomization"
    files = kust["resources"] + [f for g in kust["configMapGenerator"] for f in g["files"]]
    assert all((dm.DEPLOY / f).is_file() for f in files)


# ------------------------------------------------------------------ what the program uses

def host_path(path: str) -> str:
    """A host path as the host resolves it: /var/run is Debian's (and most distros') link to /run."""
    return "/run" + path[len("/var/run"):] if path.startswith("/var/run/") else path


def program_host_paths() -> dict[str, str]:
    """Host paths lhsweep writes below its host root, with what for (from its code)."""
    return {
        "/dev": f"dm ioctls on {DM_CONTROL_NODE}, unlinks in {LONGHORN_DEV_DIR}, dmsetup and nvme-cli",
        host_path(longhorn.LOCK_DIR): "go-spdk-helper's per-volume flocks",
        host_path(longhorn.LEGACY_LOCK): "go-spdk-helper's global flock",
    }


def excess_privileges(pod: dict[str, Any], config: Config) -> list[str]:
    """What the pod spec asks for beyond what lhsweep uses, each with a reason."""
    return mount_problems(pod, config) + privilege_problems(pod)


def mount_problems(pod: dict[str, Any], config: Config) -> list[str]:
    """Host paths lhsweep does not use, or mounted where it does not look for them."""
    problems = []
    writes = program_host_paths()
    state = config.state_dir  # a path in the pod, mounted from the same host path
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    for mount in container["volumeMounts"]:
        source = volumes[mount["name"]].get("hostPath")
        if source is None:
            continue
        path, target = source["path"], mount["mountPath"]
        if path == "/":
            if target != HOST_ROOT or not mount.get("readOnly", False):
                problems.append(f"host / must be read-only at {HOST_ROOT}, is at {target}")
            if mount.get("mountPropagation") != "HostToContainer":
                problems.append("host / without HostToContainer would pin every volume "
                                "mounted on the host while the pod runs")
        elif path in writes:
            if target not in (HOST_ROOT + path, path):
                problems.append(f"host {path} mounted at {target}, not at {HOST_ROOT}{path}")
        elif path != state or target != state:
            problems.append(f"host path {path} at {target} is not one lhsweep uses")
    return problems


def privilege_problems(pod: dict[str, Any]) -> list[str]:
    """Privileges, namespaces and credentials lhsweep does not use."""
    problems = []
    (container,) = pod["containers"]
    security = container.get("securityContext", {})
    extra = security.get("capabilities", {}).get("add", [])
    if extra:
        problems.append(f"capabilities {extra}: privileged already has every one lhsweep uses")
    if security.get("privileged") is not True:
        problems.append(f"not privileged: the device cgroup refuses {DM_CONTROL_NODE}")
    uses_uevents = default_parts("stderr").uevents is UeventWatcher
    if bool(pod.get("hostNetwork")) != uses_uevents:
        problems.append(f"hostNetwork {pod.get('hostNetwork')}: needed exactly when the daemon "
                        "listens to kernel uevents (they reach only the host's netns)")
    for key in ("hostPID", "hostIPC"):
        if pod.get(key):
            problems.append(f"{key}: lhsweep reads the host's /proc below {HOST_ROOT} instead")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("a service account token: lhsweep never calls the Kubernetes API")
    return problems


def test_the_daemonset_asks_for_no_host_path_or_privilege_the_program_does_not_use() -> None:
    assert excess_privileges(dm.pod_spec(), parse(dm.config_text(), "lhsweep.toml")) == []


@pytest.mark.parametrize("change", [
    "extra-host-path", "capability", "host-pid", "root-writable", "no-propagation", "token",
])
def test_each_excess_privilege_is_reported(change: str) -> None:
    pod = dm.pod_spec()
    (container,) = pod["containers"]
    if change == "extra-host-path":
        pod["volumes"].append({"name": "etc", "hostPath": {"path": "/etc"}})
        container["volumeMounts"].append({"name": "etc", "mountPath": "/host/etc"})
    elif change == "capability":
        container["securityContext"]["capabilities"] = {"add": ["SYS_PTRACE"]}
    elif change == "host-pid":
        pod["hostPID"] = True
    elif change == "root-writable":
        next(m for m in container["volumeMounts"] if m["name"] == "host-root")["readOnly"] = False
    elif change == "no-propagation":
        del next(m for m in container["volumeMounts"] if m["name"] == "host-root")[
            "mountPropagation"]
    else:
        pod["automountServiceAccountToken"] = True
    assert len(excess_privileges(pod, Config())) == 1


def test_the_manifest_covers_every_host_path_the_program_writes() -> None:
    pod = dm.pod_spec()
    mounted = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert set(program_host_paths()) | {"/", Config().state_dir} == mounted


# ------------------------------------------------------------------ the pod and the program agree

def test_configmap_is_a_valid_config_reaching_the_runtime_through_the_host_root() -> None:
    config = parse(dm.config_text(), "deploy/kubernetes/lhsweep.toml")
    assert config.cri_endpoints is not None
    seen = {e[len("unix://" + HOST_ROOT):] for e in config.cri_endpoints}
    assert all(e.startswith(f"unix://{HOST_ROOT}/") for e in config.cri_endpoints)
    assert seen == set(WELL_KNOWN_CRI_SOCKETS)  # the sockets the host service would try
    assert config.metrics_file == ""


def test_container_runs_the_daemon_below_the_host_root_with_the_configmap() -> None:
    pod = dm.pod_spec()
    (container,) = pod["containers"]
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    args = container["args"]
    assert args[args.index("--host-root") + 1] == HOST_ROOT and args[-1] == "daemon"
    assert os.path.dirname(args[args.index("--config") + 1]) == config_mount["mountPath"]
    assert next(v for v in pod["volumes"] if v["name"] == "config")["configMap"]["name"] == \
        dm.one("ConfigMap")["metadata"]["name"]


def test_probes_ask_the_paths_and_port_the_daemon_serves() -> None:
    (container,) = dm.pod_spec()["containers"]
    port = parse(dm.config_text(), "lhsweep.toml").metrics_port
    (named,) = container["ports"]
    assert named["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": LIVE_PATH, "port": named["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": named["name"]}


def test_namespace_image_and_priority() -> None:
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.M)
    assert version is not None
    assert dm.kustomization()["namespace"] == Config().longhorn_namespace
    daemonset = dm.one("DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == f"localhost/lhsweep:{version[1]}"
    assert pod["priorityClassName"] == dm.one("PriorityClass")["metadata"]["name"]
    assert pod["serviceAccountName"] == dm.one("ServiceAccount")["metadata"]["name"]
    # Longhorn's selective V2 activation: nodes labelled "true" run no V2 instance-manager.
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"]
    assert {"key": "node.longhorn.io/disable-v2-data-engine", "operator": "NotIn",
            "values": ["true"]} in term["matchExpressions"]
