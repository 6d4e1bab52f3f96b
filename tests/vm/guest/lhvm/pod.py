"""lhsweep as the DaemonSet's pod in the guest's containerd: the pod spec from deploy/kubernetes
(/payload/daemonset.json) turned into the CRI calls kubelet makes, and the same driving functions
as lhvm.service (configure, start, stop, mark, entries, wait_entry, force_sweep, scan, status), so
a service scenario runs unchanged with lhsweep in the pod (`run_scenario`).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime
from typing import Any, ClassVar, Optional

import toml

import lhvm
from lhsweep.journal import Event  # installed by the .deb under test
from lhvm import cri_admin_pb2 as pb
from lhvm import service
from lhvm.cri import Cri, state_name
from lhvm.proc import run, sh, wait_for
from lhvm.runtime import KUBELET_PODS, start_containerd

SPEC_PATH = "/payload/daemonset.json"
IDLE_SETTLE_S = 5.0
IMAGE_TAR = "/payload/lhsweep-image.tar"
# The same helpers as the service's, for the functions that do not differ.
matching, fields_of, last_sweep, sweep_number, wait_sweep = (
    service.matching, service.fields_of, service.last_sweep, service.sweep_number, service.wait_sweep)
PROPAGATION = {None: pb.PROPAGATION_PRIVATE, "None": pb.PROPAGATION_PRIVATE,
               "HostToContainer": pb.PROPAGATION_HOST_TO_CONTAINER,
               "Bidirectional": pb.PROPAGATION_BIDIRECTIONAL}
LEVELS = {"error": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}
_FIELD = re.compile(r' (\w+)=("(?:[^"\\]|\\.)*"|[^ \]]*)')


class _Pod:
    """The pod of this scenario: its spec, uid, ids, and the lhsweep.toml its ConfigMap carries."""

    spec: ClassVar[dict[str, Any]] = {}
    uid = ""
    sandbox_id = ""
    container_id = ""
    config_text = ""
    idle_rss_kib = 0


def spec() -> dict[str, Any]:
    """/payload/daemonset.json: namespace, name, labels, pod spec, ConfigMap."""
    if not _Pod.spec:
        with open(SPEC_PATH) as handle:
            _Pod.spec.update(json.load(handle))
    return _Pod.spec


def container_spec() -> dict[str, Any]:
    """The pod's one container."""
    (container,) = spec()["pod"]["containers"]
    return dict(container)


def configure(**overrides: dict[str, Any]) -> str:
    """The ConfigMap's lhsweep.toml with the service scenarios' test settings merged in."""
    data = toml.loads(spec()["config_map"]["data"]["lhsweep.toml"])
    for name, keys in service.TEST_SETTINGS.items():
        data.setdefault(name, {}).update(keys)
    for name, keys in overrides.items():
        data.setdefault(name, {}).update(keys)
    if os.environ.get("LHVM_DRY_RUN") == "1":
        data["sweep"]["dry_run"] = True
    _Pod.config_text = "".join(
        f"[{name}]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in keys.items())
        for name, keys in data.items())
    return _Pod.config_text


# ------------------------------------------------------------------ kubelet's part

def _quantity(text: str) -> int:
    """A Kubernetes memory quantity (Mi, Gi, plain bytes) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return int(text[:-2]) * units[text[-2:]] if text[-2:] in units else int(text)


def _cpu_shares(text: str) -> int:
    """kubelet's cpu.shares for a CPU request (millicores * 1024 / 1000, at least 2)."""
    milli = int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)
    return max(2, milli * 1024 // 1000)


def _volume_source(volume: dict[str, Any]) -> str:
    """The host path behind one pod volume, made ready as kubelet does (hostPath types, ConfigMap files)."""
    if "hostPath" in volume:
        path, kind = volume["hostPath"]["path"], volume["hostPath"].get("type", "")
        if kind == "DirectoryOrCreate":
            os.makedirs(path, mode=0o755, exist_ok=True)
        elif kind == "FileOrCreate" and not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            open(path, "a").close()
        elif kind == "Directory" and not os.path.isdir(path):
            raise RuntimeError(f"hostPath {path} is not a directory (type Directory)")
        return str(path)
    if "configMap" in volume:
        directory = f"{KUBELET_PODS}/{_Pod.uid}/volumes/kubernetes.io~configmap/{volume['name']}"
        os.makedirs(directory, exist_ok=True)
        for name, text in spec()["config_map"]["data"].items():
            with open(f"{directory}/{name}", "w") as handle:
                handle.write(_Pod.config_text if name == "lhsweep.toml" and _Pod.config_text else text)
        return directory
    raise RuntimeError(f"volume {volume['name']}: only hostPath and configMap are translated")


def _mounts() -> list[Any]:
    """The container's CRI mounts from its volumeMounts."""
    volumes = {v["name"]: v for v in spec()["pod"]["volumes"]}
    return [pb.Mount(container_path=m["mountPath"], host_path=_volume_source(volumes[m["name"]]),
                     readonly=bool(m.get("readOnly", False)),
                     propagation=PROPAGATION[m.get("mountPropagation")])
            for m in container_spec()["volumeMounts"]]


def _namespaces() -> Any:
    return pb.NamespaceOption(network=pb.NODE if spec()["pod"].get("hostNetwork") else pb.POD,
                              pid=pb.NODE if spec()["pod"].get("hostPID") else pb.CONTAINER,
                              ipc=pb.NODE if spec()["pod"].get("hostIPC") else pb.POD)


def _sandbox_config(name: str) -> Any:
    """The sandbox kubelet asks for: labels, host namespaces, privileged when a container is."""
    s = spec()
    labels = {**s["labels"], "io.kubernetes.pod.name": name,
              "io.kubernetes.pod.namespace": s["namespace"], "io.kubernetes.pod.uid": _Pod.uid}
    privileged = bool(container_spec().get("securityContext", {}).get("privileged"))
    return pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=_Pod.uid, namespace=s["namespace"]),
        hostname="", log_directory=f"/var/log/pods/{s['namespace']}_{name}_{_Pod.uid}",
        labels=labels,
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=_namespaces(), privileged=privileged)))


def _container_config(sandbox: Any) -> Any:
    """The container kubelet creates: image, args, mounts, privileges, resources, kubelet's labels."""
    c = container_spec()
    security = c.get("securityContext", {})
    limits, requests = c["resources"].get("limits", {}), c["resources"].get("requests", {})
    meta = sandbox.metadata
    labels = {"io.kubernetes.container.name": c["name"], "io.kubernetes.pod.name": meta.name,
              "io.kubernetes.pod.namespace": meta.namespace, "io.kubernetes.pod.uid": meta.uid}
    return pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=c["name"]), image=pb.ImageSpec(image=c["image"]),
        command=c.get("command", []), args=c.get("args", []),
        envs=[pb.KeyValue(key=e["name"], value=e["value"]) for e in c.get("env", [])],
        mounts=_mounts(), labels=labels, log_path=f"{c['name']}/0.log",
        linux=pb.LinuxContainerConfig(
            resources=pb.LinuxContainerResources(
                memory_limit_in_bytes=_quantity(limits["memory"]) if "memory" in limits else 0,
                cpu_shares=_cpu_shares(requests.get("cpu", "2m"))),
            security_context=pb.LinuxContainerSecurityContext(
                privileged=bool(security.get("privileged")), namespace_options=_namespaces(),
                readonly_rootfs=bool(security.get("readOnlyRootFilesystem")))))


def import_image() -> None:
    """`ctr images import` the image archive, as a node that pulled it would have it."""
    image = container_spec()["image"]
    if image not in sh("ctr", "-n", "k8s.io", "images", "ls", "-q").split():
        sh("ctr", "-n", "k8s.io", "images", "import", IMAGE_TAR, timeout=600)


def start(timeout: float = 240.0) -> None:
    """Run the pod as kubelet would, then wait for its readiness probe (the boot sweep is done)."""
    start_containerd()
    import_image()
    if not _Pod.config_text:
        configure()
    _Pod.uid = str(uuid.uuid4())
    name = f"{spec()['name']}-{uuid.uuid4().hex[:5]}"
    os.makedirs(f"{KUBELET_PODS}/{_Pod.uid}/containers/{container_spec()['name']}", exist_ok=True)
    sandbox = _sandbox_config(name)
    client = Cri()
    try:
        _Pod.sandbox_id = client.run_pod_sandbox(sandbox)
        _Pod.container_id = client.create_container(_Pod.sandbox_id, _container_config(sandbox),
                                                    sandbox)
        client.start_container(_Pod.container_id)
    finally:
        client.close()
    wait_for("the pod's readiness probe", lambda: probe("readinessProbe")[0] == 200,
             timeout=timeout, every=1.0)
    time.sleep(IDLE_SETTLE_S)
    _Pod.idle_rss_kib = rss_kib()  # after the boot sweep, before the scenario does anything


def stop() -> None:
    """Stop the host service the .deb enabled (one or the other, never both), and remove the pod."""
    service.stop()
    if not _Pod.sandbox_id:
        return
    client = Cri()
    try:
        client.stop_pod_sandbox(_Pod.sandbox_id)
        client.remove_pod_sandbox(_Pod.sandbox_id)
    finally:
        client.close()
    _Pod.sandbox_id = _Pod.container_id = ""


def pid() -> int:
    """The container's main process (lhsweep) as the host sees it."""
    client = Cri()
    try:
        status = client.container_status(_Pod.container_id, verbose=True)
    finally:
        client.close()
    return int(json.loads(status.info["info"])["pid"])


def active_state() -> str:
    """`active` while the container runs (the service's ActiveState, for the same checks)."""
    client = Cri()
    try:
        state = state_name(client.container_status(_Pod.container_id).status.state)
    finally:
        client.close()
    return "active" if state == "running" else state


# ------------------------------------------------------------------ probes and metrics

def http_get(path: str) -> tuple[int, str]:
    """(status, body) of GET <path> on the pod's port (host network: the node's address)."""
    port = container_spec()["ports"][0]["containerPort"]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError as error:
        return 0, str(error)


def probe(kind: str) -> tuple[int, str]:
    """Ask what the container's livenessProbe or readinessProbe asks."""
    return http_get(container_spec()[kind]["httpGet"]["path"])


def rss_kib() -> int:
    """The container's lhsweep process's resident set (VmRSS, KiB)."""
    with open(f"/proc/{pid()}/status") as handle:
        line = next(line for line in handle if line.startswith("VmRSS:"))
    return int(line.split()[1])


# ------------------------------------------------------------------ the log, as kubectl logs shows it

def log_path() -> str:
    """The container's CRI log file."""
    (directory,) = [d for d in os.listdir("/var/log/pods") if _Pod.uid in d]
    return f"/var/log/pods/{directory}/{container_spec()['name']}/0.log"


def parse_line(line: str) -> Optional[dict[str, Any]]:
    """One CRI log line (`<time> stdout F lhsweep: <level>: <message> [k=v ...]`) as a journal-like entry."""
    stamp, _, rest = line.partition(" ")
    content = rest.split(" ", 2)[-1] if rest.count(" ") >= 2 else ""
    match = re.fullmatch(r"lhsweep: (\w+): (.*)", content)
    if match is None:
        return None
    level, text = match.groups()
    message, fields = text, {}
    for start in [m.start() for m in re.finditer(r" \[", text)]:
        tail = text[start + 1:]
        if tail.endswith("]") and "".join(_FIELD.sub("", " " + tail[1:-1])) == "":
            message = text[:start]
            for key, value in _FIELD.findall(" " + tail[1:-1]):
                fields[key] = json.loads(value) if value.startswith('"') else value
            break
    seconds, _, fraction = stamp.rstrip("Z").partition(".")
    when = datetime.fromisoformat(seconds + "+00:00").timestamp() + float(f"0.{fraction or 0}")
    entry = {f"LHSWEEP_{k.upper()}": v for k, v in fields.items() if k != "event"}
    if "event" in fields:
        entry["MESSAGE_ID"] = Event[fields["event"].upper()].value
    entry.update(MESSAGE=message, PRIORITY=str(LEVELS.get(level, 6)),
                 __REALTIME_TIMESTAMP=str(int(when * 1_000_000)))
    return entry


def mark() -> int:
    """Now, in microseconds of wall-clock time (the CRI log's timestamps)."""
    return int(time.time() * 1_000_000)


def entries(after: int = 0, event: Optional[Event] = None) -> list[dict[str, Any]]:
    """The pod's log lines after `after` (a mark()) as entries, optionally of one kind."""
    try:
        with open(log_path(), errors="replace") as handle:
            found = [parse_line(line.rstrip("\n")) for line in handle]
    except (OSError, ValueError):
        return []
    return [e for e in found if e is not None and int(e["__REALTIME_TIMESTAMP"]) > after
            and (event is None or e.get("MESSAGE_ID") == event.value)]


def wait_entry(event: Event, after: int = 0, timeout: float = 120.0, **fields: str) -> dict[str, Any]:
    """Wait for a log entry of kind `event` whose fields include `fields`."""

    def probe_log() -> Optional[dict[str, Any]]:
        found = matching(entries(after, event), **fields)
        return found[0] if found else None

    return wait_for(f"lhsweep pod log {event.name} {fields}", probe_log, timeout=timeout, every=1.0)


def force_sweep(how: str = "reload") -> dict[str, Any]:
    """Make the daemon sweep now: SIGHUP to its process (`reload`) or a new kubelet pod directory."""
    before = sweep_number()
    if how == "reload":
        os.kill(pid(), signal.SIGHUP)
        return wait_sweep(before, "reload")
    os.mkdir(f"{KUBELET_PODS}/{uuid.uuid4()}")
    return wait_sweep(before, "pod-dir")


def exec_lhsweep(*argv: str) -> str:
    """Run `lhsweep <argv>` in the container as `kubectl exec` does, with the pod's own arguments."""
    args = container_spec()["args"]
    config = args[args.index("--config") + 1]
    host_root = args[args.index("--host-root") + 1]
    try:
        done = run("ctr", "-n", "k8s.io", "tasks", "exec", "--exec-id", f"x{uuid.uuid4().hex[:8]}",
                   _Pod.container_id, "lhsweep", "--config", config, "--host-root", host_root,
                   *argv, timeout=180)
    except subprocess.TimeoutExpired:
        return f"lhsweep {' '.join(argv)} in the pod: no answer in 180 s"
    return done.stdout + done.stderr


def scan() -> str:
    """`lhsweep scan` in the pod."""
    return exec_lhsweep("scan")


def status() -> str:
    """`lhsweep status` in the pod."""
    return exec_lhsweep("status")


# ------------------------------------------------------------------ a service scenario in the pod

def run_scenario(name: str) -> None:
    """Run tests/vm/scenarios/<name>.py with this module standing in for lhvm.service; then
    write what the pod showed (its log as entries, probes, /metrics, RSS) to pod.json."""
    sys.modules["lhvm.service"] = sys.modules[__name__]
    lhvm.service = sys.modules[__name__]  # type: ignore[attr-defined]
    try:
        runpy.run_path(f"{os.path.dirname(os.path.abspath(sys.argv[0]))}/{name}.py",
                       run_name="__main__")
    finally:
        _record()


def _record() -> None:
    if not _Pod.container_id:
        return
    shown: dict[str, Any] = {"entries": entries(), "image": container_spec()["image"],
                             "idle_rss_kib": _Pod.idle_rss_kib}
    try:
        shown["state"] = active_state()
        shown["healthz"] = probe("livenessProbe")
        shown["readyz"] = probe("readinessProbe")
        shown["metrics"] = http_get("/metrics")
        shown["rss_kib"] = rss_kib()
        shown["lock_dir"] = sorted(os.listdir("/run/longhorn")) if os.path.isdir("/run/longhorn") else []
    except Exception as exc:  # what could be read is kept; the failure is the record's last word
        shown["record_error"] = f"{type(exc).__name__}: {exc}"
    with open(f"{os.environ.get('LHVM_OUT', '/tmp')}/pod.json", "w") as handle:
        json.dump(shown, handle, indent=1)
