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
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"  # kubeadm's kubelet config file
# A second containerd with no pods on another well-known CRI socket (a k3s/RKE2 leftover, say).
OTHER_UNIT = "lhvm-other-containerd"
OTHER_SOCKET = "/run/k3s/containerd/containerd.sock"
OTHER_CONFIG_PATH = "/etc/lhvm/other-containerd.toml"
CONFIG_PATH = "/etc/containerd/config.toml"
# docs/vm.md: restrict_oom_score_adj (no CAP_SYS_RESOURCE); the pause image is our local busybox.
CONFIG = f"""version = 2
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{IMAGE}"
  restrict_oom_score_adj = true
"""


OTHER_CONFIG = f"""version = 2
root = "/var/lib/{OTHER_UNIT}"
state = "/run/{OTHER_UNIT}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "{OTHER_SOCKET}"
[ttrpc]
  address = "{OTHER_SOCKET}.ttrpc"
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


def _answers(path: str = SOCKET) -> bool:
    """True when CRI on the containerd socket `path` answers Version."""
    if not os.path.exists(path):
        return False
    client = Cri(path, timeout=5)
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


def _pod_config(node: str, name: str, uid: str, data_engine: str, pid_mode: int) -> Any:
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
    host = pb.NamespaceOption(network=pb.NODE, pid=pid_mode)
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=NAMESPACE, attempt=0),
        hostname="",  # must be empty with the node's UTS namespace
        log_directory=f"/var/log/pods/{NAMESPACE}_{name}_{uid}",
        labels=labels,
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(namespace_options=host)
        ),
    )


def _container_config(sandbox: Any, pid_mode: int) -> Any:
    """The instance-manager container: busybox sleeping, host network, kubelet's labels."""
    meta = sandbox.metadata
    labels = {
        "io.kubernetes.container.name": "instance-manager",
        "io.kubernetes.pod.name": meta.name,
        "io.kubernetes.pod.namespace": meta.namespace,
        "io.kubernetes.pod.uid": meta.uid,
    }
    host = pb.NamespaceOption(network=pb.NODE, pid=pid_mode)
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


def run_instance_manager(node: Optional[str] = None, data_engine: str = "v2",
                         own_pid_namespace: bool = False) -> InstanceManager:
    """Run an instance-manager pod as kubelet would, with its kubelet pod directory; returns it running.

    `own_pid_namespace`: the container does not share the pause process's PID namespace
    (kubelet's default), so it outlives a dead pause process.
    """
    node = node or socket.gethostname()
    uid = str(uuid.uuid4())
    name = f"instance-manager-{uuid.uuid4().hex}"
    pid_mode = pb.CONTAINER if own_pid_namespace else pb.POD
    sandbox = _pod_config(node, name, uid, data_engine, pid_mode)
    client = Cri()
    try:
        sandbox_id = client.run_pod_sandbox(sandbox)
        container_id = client.create_container(sandbox_id, _container_config(sandbox, pid_mode), sandbox)
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


def sandbox_state(sandbox_id: str) -> str:
    """The sandbox's state as CRI reports it now (ready/notready)."""
    client = Cri()
    try:
        state = client.pod_sandbox_status(sandbox_id).status.state
    finally:
        client.close()
    return str(pb.PodSandboxState.Name(state)).removeprefix("SANDBOX_").lower()


def kill_sandbox(manager: InstanceManager, timeout: float = 60.0) -> None:
    """SIGKILL the pod's pause process (the sandbox dies, its containers may not); wait for NOTREADY."""
    client = Cri()
    try:
        info = client.pod_sandbox_status(manager.sandbox_id, verbose=True).info["info"]
    finally:
        client.close()
    os.kill(int(json.loads(info)["pid"]), signal.SIGKILL)
    wait_for("CRI to report the sandbox not ready",
             lambda: sandbox_state(manager.sandbox_id) == "notready", timeout=timeout, every=0.5)


def _signal_containerd(signum: int) -> None:
    """Send `signum` to containerd.service's main process, if it runs."""
    pid = int(sh("systemctl", "show", "-P", "MainPID", "containerd.service").strip() or 0)
    if pid > 0:
        os.kill(pid, signum)


def freeze_containerd() -> None:
    """SIGSTOP containerd: its socket stays and accepts connections, but no call is answered."""
    _signal_containerd(signal.SIGSTOP)


def thaw_containerd() -> None:
    """SIGCONT containerd after freeze_containerd()."""
    _signal_containerd(signal.SIGCONT)


def start_other_containerd() -> None:
    """A second containerd (no pods) on OTHER_SOCKET, as a transient unit; waits until CRI answers."""
    os.makedirs(os.path.dirname(OTHER_CONFIG_PATH), exist_ok=True)
    with open(OTHER_CONFIG_PATH, "w") as handle:
        handle.write(OTHER_CONFIG)
    sh("systemd-run", f"--unit={OTHER_UNIT}", "--property=Delegate=yes", "--property=KillMode=mixed",
       "/usr/bin/containerd", "--config", OTHER_CONFIG_PATH, timeout=60)
    wait_for("the second containerd's CRI to answer", lambda: _answers(OTHER_SOCKET), timeout=120,
             every=0.5)


def stop_other_containerd() -> None:
    """Stop the second containerd, if it runs."""
    sh("systemctl", "stop", f"{OTHER_UNIT}.service", check=False, timeout=120)
    sh("systemctl", "reset-failed", f"{OTHER_UNIT}.service", check=False)


def write_kubelet_config(endpoint: str) -> None:
    """kubeadm's kubelet config file naming kubelet's runtime (containerRuntimeEndpoint)."""
    os.makedirs(os.path.dirname(KUBELET_CONFIG), exist_ok=True)
    with open(KUBELET_CONFIG, "w") as handle:
        handle.write("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
                     f"containerRuntimeEndpoint: {endpoint}\n")


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
    """Remove every pod sandbox (only when containerd answers), the kubelet pod directories and
    config file, and the second containerd."""
    thaw_containerd()
    if _answers():
        client = Cri()
        try:
            for sandbox in client.list_pod_sandbox():
                client.stop_pod_sandbox(sandbox.id)
                client.remove_pod_sandbox(sandbox.id)
        finally:
            client.close()
    shutil.rmtree(KUBELET_PODS, ignore_errors=True)
    stop_other_containerd()
    if os.path.exists(KUBELET_CONFIG):
        os.unlink(KUBELET_CONFIG)
