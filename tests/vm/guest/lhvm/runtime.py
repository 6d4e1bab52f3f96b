"""Real containerd in the guest running a Longhorn V2 "instance-manager" pod through CRI."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import tarfile
import uuid
from dataclasses import dataclass
from typing import Any, Optional

from lhvm import cri_admin_pb2 as pb
from lhvm.cri import SOCKET, Cri, state_name
from lhvm.proc import sh, wait_for

IMAGE = "docker.io/library/lhvm-busybox:1"
NAMESPACE = "longhorn-system"
KUBELET_PODS = "/var/lib/kubelet/pods"
CONFIG_PATH = "/etc/containerd/config.toml"
# docs/vm.md: restrict_oom_score_adj (no CAP_SYS_RESOURCE); the pause image is our local busybox.
CONFIG = f"""version = 2
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
"""


@dataclass(frozen=True)
class InstanceManager:
    """A running instance-manager pod: names, ids and the container's main pid."""

    pod_name: str
    pod_uid: str
    sandbox_id: str
    container_id: str
    pid: int


def _blob(layout: tarfile.TarFile, data: bytes) -> dict[str, Any]:
    """Add `data` under blobs/sha256/ of an OCI layout; returns its descriptor fields."""
    digest = hashlib.sha256(data).hexdigest()
    _add(layout, f"blobs/sha256/{digest}", data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def _add(archive: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    """Add one regular file to a tar archive."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    archive.addfile(info, io.BytesIO(data))


def _busybox_layer() -> bytes:
    """A layer tar with the static busybox as /bin/busybox and /bin/sh, /bin/sleep links."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as layer, open("/bin/busybox", "rb") as binary:
        _add(layer, "bin/busybox", binary.read(), 0o755)
        for applet in ("sh", "sleep"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            layer.addfile(link)
    return buffer.getvalue()


def build_busybox_image(path: str) -> None:
    """Write an OCI image layout tarball of a busybox image named `IMAGE` (no registry is reachable)."""
    layer = _busybox_layer()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh", "-c", "while :; do sleep 3600; done"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }
    with tarfile.open(path, "w") as layout:
        config_desc = _blob(layout, json.dumps(config).encode())
        layer_desc = _blob(layout, layer)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
        }
        manifest_desc = _blob(layout, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    **manifest_desc,
                    "platform": {"architecture": "amd64", "os": "linux"},
                    "annotations": {
                        "io.containerd.image.name": IMAGE,
                        "org.opencontainers.image.ref.name": "1",
                    },
                }
            ],
        }
        _add(layout, "index.json", json.dumps(index).encode())
        _add(layout, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')


def _answers() -> bool:
    """True when CRI on the containerd socket answers Version."""
    if not os.path.exists(SOCKET):
        return False
    client = Cri(timeout=5)
    try:
        return bool(client.version().runtime_name)
    except Exception:
        return False
    finally:
        client.close()


def start_containerd() -> None:
    """Configure and start containerd (idempotent), then make sure the busybox image is imported."""
    os.makedirs(os.path.dirname(CONFIG_PATH), exist_ok=True)
    with open(CONFIG_PATH, "w") as handle:
        handle.write(CONFIG)
    sh("systemctl", "start", "containerd.service", timeout=120)
    wait_for("containerd's CRI to answer", _answers, timeout=120, every=0.5)
    if IMAGE not in sh("ctr", "-n", "k8s.io", "images", "ls", "-q").split():
        path = "/run/lhvm/busybox-oci.tar"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        build_busybox_image(path)
        sh("ctr", "-n", "k8s.io", "images", "import", path, timeout=120)


def stop_containerd() -> None:
    """Stop containerd (its shims and containers keep running, as on a real node)."""
    sh("systemctl", "stop", "containerd.service", timeout=120)


def _pod_config(node: str, name: str, uid: str, data_engine: str) -> Any:
    """The sandbox config kubelet would send for a Longhorn instance-manager pod."""
    labels = {
        "longhorn.io/component": "instance-manager",
        "longhorn.io/data-engine": data_engine,
        "longhorn.io/node": node,
        "longhorn.io/managed-by": "longhorn-manager",
        "io.kubernetes.pod.name": name,
        "io.kubernetes.pod.namespace": NAMESPACE,
        "io.kubernetes.pod.uid": uid,
    }
    host = pb.NamespaceOption(network=pb.NODE)
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=NAMESPACE, attempt=0),
        hostname="",  # must be empty with the node's UTS namespace
        log_directory=f"/var/log/pods/{NAMESPACE}_{name}_{uid}",
        labels=labels,
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=host)
        ),
    )


def _container_config(sandbox: Any) -> Any:
    """The instance-manager container: busybox sleeping, host network, kubelet's labels."""
    meta = sandbox.metadata
    labels = {
        "io.kubernetes.container.name": "instance-manager",
        "io.kubernetes.pod.name": meta.name,
        "io.kubernetes.pod.namespace": meta.namespace,
        "io.kubernetes.pod.uid": meta.uid,
    }
    host = pb.NamespaceOption(network=pb.NODE)
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name="instance-manager", attempt=0),
        image=pb.ImageSpec(image=IMAGE),
        command=["/bin/sleep", "1000000"],
        labels=labels,
        log_path="instance-manager/0.log",
        linux=pb.LinuxContainerConfig(
            security_context=pb.LinuxContainerSecurityContext(namespace_options=host)
        ),
    )


def run_instance_manager(node: Optional[str] = None, data_engine: str = "v2") -> InstanceManager:
    """Run an instance-manager pod as kubelet would, with its kubelet pod directory; returns it running."""
    node = node or socket.gethostname()
    uid = str(uuid.uuid4())
    name = f"instance-manager-{uuid.uuid4().hex}"
    sandbox = _pod_config(node, name, uid, data_engine)
    client = Cri()
    try:
        sandbox_id = client.run_pod_sandbox(sandbox)
        container_id = client.create_container(sandbox_id, _container_config(sandbox), sandbox)
        client.start_container(container_id)
        status = client.container_status(container_id, verbose=True)
    finally:
        client.close()
    os.makedirs(f"{KUBELET_PODS}/{uid}/containers/instance-manager", exist_ok=True)
    pid = int(json.loads(status.info["info"])["pid"])
    return InstanceManager(name, uid, sandbox_id, container_id, pid)


def container_state(container_id: str) -> str:
    """The container's state as CRI reports it now (created/running/exited/unknown)."""
    client = Cri()
    try:
        return state_name(client.container_status(container_id).status.state)
    finally:
        client.close()


def kill_instance_manager(manager: InstanceManager, timeout: float = 60.0) -> None:
    """SIGKILL the container's process (a crash: no PreStop, no clean exit); wait for CRI to say exited."""
    os.kill(manager.pid, signal.SIGKILL)
    wait_for(
        "CRI to report the instance-manager exited",
        lambda: container_state(manager.container_id) == "exited",
        timeout=timeout,
        every=0.5,
    )


def delete_instance_manager(manager: InstanceManager) -> None:
    """Remove the pod from the runtime and its kubelet directory, as a pod deletion does."""
    client = Cri()
    try:
        client.stop_pod_sandbox(manager.sandbox_id)
        client.remove_pod_sandbox(manager.sandbox_id)
    finally:
        client.close()
    shutil.rmtree(f"{KUBELET_PODS}/{manager.pod_uid}", ignore_errors=True)


def reset_runtime() -> None:
    """Remove every pod sandbox and kubelet pod directory (only when containerd answers)."""
    if _answers():
        client = Cri()
        try:
            for sandbox in client.list_pod_sandbox():
                client.stop_pod_sandbox(sandbox.id)
                client.remove_pod_sandbox(sandbox.id)
        finally:
            client.close()
    shutil.rmtree(KUBELET_PODS, ignore_errors=True)
