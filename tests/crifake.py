"""A real CRI v1 RuntimeService gRPC server on a unix socket whose answers tests change at run time.

In-process:  with FakeCri() as cri: cri.add_pod(*im_pod()); ... cri.endpoint
Subprocess:  python tests/crifake.py --socket PATH --state FILE.json
             (prints "ready" once serving; reloads FILE.json whenever it is replaced; SIGTERM stops it)

State (a JSON-friendly dict; sandboxes and containers are protobuf JSON of PodSandbox/Container):
  runtime_name, runtime_version, runtime_api_version, sandboxes, containers,
  behaviour: {call: {"delay": s, "abort": "UNIMPLEMENTED", "garbage": true, "drop": true,
                     "ignore_filter": true, "none_by_label": true (ListPodSandbox only)}},
             call = Version|ListPodSandbox|ListContainers|ContainerStatus|GetContainerEvents
  container_info: {container id: info map}  ContainerStatus's verbose info (set_pid() writes one
                  the way containerd does); a container not listed is NOT_FOUND
  events: [{"container_id": ..., "type": "CONTAINER_STOPPED_EVENT"}]  (file mode: appended ones are sent)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import queue
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from concurrent import futures
from typing import Any, Callable, Optional

import grpc
from google.protobuf import json_format

from tests import cri_pb2

SERVICE = "runtime.v1.RuntimeService"
# Length-delimited field 1 announcing 255 bytes, then only 2: no protobuf parser accepts it.
GARBAGE = b"\x0a\xff\x01xx"
LONGHORN_NAMESPACE = "longhorn-system"
CALLS = ("Version", "ListPodSandbox", "ListContainers", "ContainerStatus", "GetContainerEvents")


def empty_state() -> dict[str, Any]:
    """A runtime with no pods that speaks CRI v1."""
    return {
        "runtime_name": "fakecri",
        "runtime_version": "0.1.0",
        "runtime_api_version": "v1",
        "sandboxes": [],
        "containers": [],
        "behaviour": {},
        "events": [],
        "container_info": {},
    }


def new_id() -> str:
    """A 64-hex id like containerd's."""
    return secrets.token_hex(32)


def im_pod(
    *,
    node: str = "node-1",
    namespace: str = LONGHORN_NAMESPACE,
    data_engine: str = "v2",
    sandbox_state: str = "SANDBOX_READY",
    container_state: Optional[str] = "CONTAINER_RUNNING",
    created_at_ns: Optional[int] = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A Longhorn instance-manager sandbox (with kubelet's labels) and its container, if any."""
    created = created_at_ns if created_at_ns is not None else time.time_ns()
    name = "instance-manager-" + secrets.token_hex(16)
    uid = secrets.token_hex(16)
    labels = {
        "longhorn.io/component": "instance-manager",
        "longhorn.io/data-engine": data_engine,
        "longhorn.io/node": node,
        "longhorn.io/managed-by": "longhorn-manager",
        "io.kubernetes.pod.name": name,
        "io.kubernetes.pod.namespace": namespace,
        "io.kubernetes.pod.uid": uid,
    }
    sandbox = {
        "id": new_id(),
        "metadata": {"name": name, "uid": uid, "namespace": namespace, "attempt": 0},
        "state": sandbox_state,
        "created_at": created,
        "labels": labels,
    }
    if container_state is None:
        return sandbox, []
    return sandbox, [container_for(sandbox, "instance-manager", container_state, created + 10**9)]


def container_for(sandbox: dict[str, Any], name: str, state: str, created_at_ns: int,
                  attempt: int = 0) -> dict[str, Any]:
    """A container of `sandbox` carrying kubelet's labels."""
    pod_labels = sandbox["labels"]
    return {
        "id": new_id(),
        "pod_sandbox_id": sandbox["id"],
        "metadata": {"name": name, "attempt": attempt},
        "image": {"image": "docker.io/longhornio/longhorn-instance-manager:v1.9.0"},
        "state": state,
        "created_at": created_at_ns,
        "labels": {
            "io.kubernetes.container.name": name,
            "io.kubernetes.pod.name": pod_labels.get("io.kubernetes.pod.name", ""),
            "io.kubernetes.pod.namespace": pod_labels.get("io.kubernetes.pod.namespace", ""),
            "io.kubernetes.pod.uid": pod_labels.get("io.kubernetes.pod.uid", ""),
        },
    }


def write_state(path: str, state: dict[str, Any]) -> None:
    """Replace the state file atomically (a new inode, so the server always notices)."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(state, handle)
    os.replace(tmp, path)


def _labels_match(labels: Any, selector: Any) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _sandbox_matches(item: Any, flt: Any) -> bool:
    return ((not flt.id or item.id == flt.id)
            and (not flt.HasField("state") or item.state == flt.state.state)
            and _labels_match(item.labels, flt.label_selector))


def _container_matches(item: Any, flt: Any) -> bool:
    return ((not flt.id or item.id == flt.id)
            and (not flt.HasField("state") or item.state == flt.state.state)
            and (not flt.pod_sandbox_id or item.pod_sandbox_id == flt.pod_sandbox_id)
            and _labels_match(item.labels, flt.label_selector))


class FakeCri:
    """The fake runtime: a grpc.server with generic handlers over the lhsweep proto."""

    def __init__(self, socket_path: Optional[str] = None,
                 state: Optional[dict[str, Any]] = None) -> None:
        self._own_dir = None if socket_path else tempfile.mkdtemp(prefix="cri", dir="/tmp")
        self.socket_path = socket_path or os.path.join(str(self._own_dir), "cri.sock")
        self._lock = threading.Condition()
        self._state = copy.deepcopy(state) if state is not None else empty_state()
        self._subscribers: list[queue.Queue[Optional[bytes]]] = []
        self._server: Optional[grpc.Server] = None
        self.calls: list[tuple[str, Optional[float]]] = []

    @property
    def endpoint(self) -> str:
        """The unix:// URL of the socket."""
        return "unix://" + self.socket_path

    def __enter__(self) -> FakeCri:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def start(self) -> None:
        """Listen on the socket (again, after stop())."""
        handlers = {
            "Version": grpc.unary_unary_rpc_method_handler(
                self._version, request_deserializer=cri_pb2.VersionRequest.FromString),
            "ListPodSandbox": grpc.unary_unary_rpc_method_handler(
                self._list_sandboxes,
                request_deserializer=cri_pb2.ListPodSandboxRequest.FromString),
            "ListContainers": grpc.unary_unary_rpc_method_handler(
                self._list_containers,
                request_deserializer=cri_pb2.ListContainersRequest.FromString),
            "ContainerStatus": grpc.unary_unary_rpc_method_handler(
                self._container_status,
                request_deserializer=cri_pb2.ContainerStatusRequest.FromString),
            "GetContainerEvents": grpc.unary_stream_rpc_method_handler(
                self._events, request_deserializer=cri_pb2.GetEventsRequest.FromString),
        }
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        server.add_insecure_port("unix:" + self.socket_path)
        server.start()
        self._server = server

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop listening now, cancelling calls in flight (waiting for them at most `timeout` s)."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(0).wait(timeout)

    # ------------------------------------------------------------ state, changed by tests

    def state(self) -> dict[str, Any]:
        """A deep copy of the current state."""
        with self._lock:
            return copy.deepcopy(self._state)

    def set_state(self, state: dict[str, Any]) -> None:
        """Replace the whole state."""
        with self._lock:
            self._state = copy.deepcopy(state)

    def update(self, **changes: Any) -> None:
        """Change top-level state keys (e.g. runtime_api_version="v1alpha2")."""
        with self._lock:
            self._state.update(copy.deepcopy(changes))

    def add_pod(self, sandbox: dict[str, Any], containers: list[dict[str, Any]]) -> None:
        """Add a sandbox and its containers."""
        with self._lock:
            self._state["sandboxes"].append(copy.deepcopy(sandbox))
            self._state["containers"].extend(copy.deepcopy(containers))

    def set_info(self, container_id: str, info: dict[str, str]) -> None:
        """ContainerStatus's verbose info map for `container_id` (any text, malformed or not)."""
        with self._lock:
            self._state["container_info"][container_id] = dict(info)

    def set_pid(self, container_id: str, pid: object) -> None:
        """Answer ContainerStatus verbose as containerd does: info["info"] JSON with "pid"."""
        document = {"sandboxID": new_id(), "pid": pid, "removing": False, "runtimeType":
                    "io.containerd.runc.v2"}
        self.set_info(container_id, {"info": json.dumps(document)})

    def set_behaviour(self, call: str, **behaviour: Any) -> None:
        """Make `call` misbehave: delay=s, abort="CODE", garbage=True, drop=True, ignore_filter=True,
        none_by_label=True (ListPodSandbox)."""
        assert call in CALLS, call
        with self._lock:
            self._state["behaviour"][call] = behaviour

    def clear_behaviour(self) -> None:
        """Every call behaves again."""
        with self._lock:
            self._state["behaviour"] = {}

    def push_event(self, container_id: str, event_type: str) -> None:
        """Send a container event to every open GetContainerEvents stream."""
        message = cri_pb2.ContainerEventResponse(
            container_id=container_id, container_event_type=event_type, created_at=time.time_ns())
        with self._lock:
            for subscriber in self._subscribers:
                subscriber.put(message.SerializeToString())

    def wait_for_subscribers(self, count: int, timeout: float = 5.0) -> bool:
        """Wait until `count` event streams are open (events are not replayed to late streams)."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._subscribers) >= count, timeout)

    # ------------------------------------------------------------ handlers

    def _snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._state)

    def _begin(self, call: str, context: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Record the call, apply delay/drop/abort; return the state and the call's behaviour."""
        with self._lock:
            self.calls.append((call, context.time_remaining()))
        state = self._snapshot()
        behaviour = state["behaviour"].get(call, {})
        done = threading.Event()
        context.add_callback(done.set)
        if behaviour.get("delay"):
            done.wait(float(behaviour["delay"]))
        if behaviour.get("drop"):
            self._drop()
            done.wait()
        if behaviour.get("abort"):
            context.abort(grpc.StatusCode[behaviour["abort"]], f"fakecri: {behaviour['abort']}")
        return state, behaviour

    def _drop(self) -> None:
        """Die mid-call: in-process, stop the server from another thread."""
        threading.Thread(target=self.stop, daemon=True).start()

    def _answer(self, call: str, context: Any, build: Callable[[dict[str, Any], bool], Any]) -> bytes:
        """Run the call's behaviour, then build the answer from (state, ignore_filter)."""
        state, behaviour = self._begin(call, context)
        if behaviour.get("garbage"):
            return GARBAGE
        return bytes(build(state, bool(behaviour.get("ignore_filter"))).SerializeToString())

    def _version(self, request: Any, context: Any) -> bytes:
        return self._answer("Version", context, lambda state, _: cri_pb2.VersionResponse(
            version="0.1.0", runtime_name=state["runtime_name"],
            runtime_version=state["runtime_version"],
            runtime_api_version=state["runtime_api_version"]))

    def _list_sandboxes(self, request: Any, context: Any) -> bytes:
        def build(state: dict[str, Any], ignore_filter: bool) -> Any:
            items = [json_format.ParseDict(s, cri_pb2.PodSandbox()) for s in state["sandboxes"]]
            if request.filter.label_selector and state["behaviour"].get("ListPodSandbox", {}).get(
                    "none_by_label"):
                items = []  # a runtime whose label filter loses every sandbox
            return cri_pb2.ListPodSandboxResponse(items=[
                i for i in items if ignore_filter or _sandbox_matches(i, request.filter)])

        return self._answer("ListPodSandbox", context, build)

    def _list_containers(self, request: Any, context: Any) -> bytes:
        def build(state: dict[str, Any], ignore_filter: bool) -> Any:
            items = [json_format.ParseDict(c, cri_pb2.Container()) for c in state["containers"]]
            return cri_pb2.ListContainersResponse(containers=[
                i for i in items if ignore_filter or _container_matches(i, request.filter)])

        return self._answer("ListContainers", context, build)

    def _container_status(self, request: Any, context: Any) -> bytes:
        def build(state: dict[str, Any], _: bool) -> Any:
            info = state.get("container_info", {}).get(request.container_id)
            if info is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"fakecri: no container {request.container_id}")
            # As containerd and CRI-O: the info map only when verbose is asked for.
            return cri_pb2.ContainerStatusResponse(info=info if request.verbose else {})

        return self._answer("ContainerStatus", context, build)

    def _events(self, request: Any, context: Any) -> Any:
        _, behaviour = self._begin("GetContainerEvents", context)
        if behaviour.get("garbage"):
            yield GARBAGE
        mailbox: queue.Queue[Optional[bytes]] = queue.Queue()
        context.add_callback(lambda: mailbox.put(None))
        with self._lock:
            self._subscribers.append(mailbox)
            self._lock.notify_all()
        try:
            while (event := mailbox.get()) is not None:
                yield event
        finally:
            with self._lock:
                self._subscribers.remove(mailbox)


class FileBackedFakeCri(FakeCri):
    """A FakeCri whose state is a JSON file, re-read whenever the file is replaced."""

    def __init__(self, socket_path: str, state_path: str, on_drop: Callable[[], None]) -> None:
        super().__init__(socket_path)
        self.state_path = state_path
        self._on_drop = on_drop
        self._seen: Optional[tuple[int, int, int]] = None
        self._events_sent = 0
        self.reload()

    def reload(self) -> None:
        """Re-read the state file if it changed; send events appended since the last read."""
        try:
            info = os.stat(self.state_path)
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
            if key == self._seen:
                return
            with open(self.state_path, encoding="utf-8") as handle:
                state = {**empty_state(), **json.load(handle)}
        except (OSError, ValueError) as exc:
            print(f"crifake: {self.state_path}: {exc}", file=sys.stderr, flush=True)
            return
        self._seen = key
        self.set_state(state)
        for event in state["events"][self._events_sent:]:
            self.push_event(event["container_id"], event["type"])
        self._events_sent = len(state["events"])

    def watch(self, stop: threading.Event, interval: float = 0.02) -> None:
        """Reload on change until `stop` is set (so events flow without calls)."""
        while not stop.wait(interval):
            self.reload()

    def _snapshot(self) -> dict[str, Any]:
        self.reload()
        return super()._snapshot()

    def _drop(self) -> None:
        self._on_drop()


def main(argv: Optional[list[str]] = None) -> int:
    """Serve the state file's runtime until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--socket", required=True)
    parser.add_argument("--state", required=True)
    args = parser.parse_args(argv)
    stop = threading.Event()
    fake = FileBackedFakeCri(args.socket, args.state, on_drop=lambda: os._exit(3))
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    fake.start()
    print("ready", flush=True)
    fake.watch(stop)
    # Bounded, then no interpreter shutdown: once (in 2 clean-clone runs) the oldest grpcio left
    # this process running past the fixture's 10 s after SIGTERM; a server thread must not keep
    # a stopped fake alive.
    fake.stop(timeout=5.0)
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
