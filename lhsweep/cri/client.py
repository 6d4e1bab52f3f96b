"""A small CRI v1 RuntimeService client over a unix socket, with a deadline on every call."""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Mapping
from typing import Callable, NamedTuple, NoReturn, Optional

import grpc

from lhsweep.cri import wire
from lhsweep.errors import RuntimeQueryError
from lhsweep.render import one_line

SERVICE = "/runtime.v1.RuntimeService/"
# kubelet accepts CRI answers up to 16 MiB; gRPC's default of 4 MiB is too small on busy nodes.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    # A private subchannel pool: a fresh client never inherits another channel's backoff.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.enable_retries", 0),
)
# How much of a runtime's error text a one-line reason keeps.
DETAIL_LIMIT = 200


class Failure(str, enum.Enum):
    """Why a CRI call failed, as one word the caller can branch on."""

    NO_SOCKET = "no-socket"
    BAD_ENDPOINT = "bad-endpoint"
    TIMEOUT = "timeout"
    UNIMPLEMENTED = "unimplemented"
    UNAVAILABLE = "unavailable"
    API_VERSION = "api-version"
    MALFORMED = "malformed"
    RPC_ERROR = "rpc-error"


class CriCallError(RuntimeQueryError):
    """A CRI call failed; `failure` says why, str() is one line naming endpoint and call."""

    def __init__(self, endpoint: str, call: str, failure: Failure, detail: str) -> None:
        self.endpoint = endpoint
        self.call = call
        self.failure = failure
        self.detail = one_line(detail, DETAIL_LIMIT)
        super().__init__(f"CRI {endpoint} {call}: {failure.value}: {self.detail}")


class CriUnimplementedError(CriCallError):
    """The runtime does not implement the call (the caller may fall back, e.g. to polling)."""


class RuntimeVersion(NamedTuple):
    """What Version answered."""

    runtime_name: str
    runtime_version: str
    runtime_api_version: str


class Sandbox(NamedTuple):
    """A pod sandbox as ListPodSandbox reported it; `state` is the enum name."""

    id: str
    name: str
    uid: str
    namespace: str
    attempt: int
    state: str
    created_at_ns: int
    labels: Mapping[str, str]


class Container(NamedTuple):
    """A container as ListContainers reported it; `state` is the enum name."""

    id: str
    pod_sandbox_id: str
    name: str
    attempt: int
    state: str
    created_at_ns: int
    labels: Mapping[str, str]


def socket_path(endpoint: str) -> Optional[str]:
    """The socket path of 'unix:///path' or '/path'; None for anything else."""
    path = endpoint[len("unix://") :] if endpoint.startswith("unix://") else endpoint
    return path if path.startswith("/") else None


def channel_target(endpoint: str, call: str) -> str:
    """The gRPC target of the endpoint's socket; raises CriCallError when it names none."""
    path = socket_path(endpoint)
    if path is None:
        raise CriCallError(endpoint, call, Failure.BAD_ENDPOINT, "expected unix:///path or /path")
    if not os.path.exists(path):
        raise CriCallError(endpoint, call, Failure.NO_SOCKET, f"{path}: no such socket")
    return "unix://" + path


def rpc_failure(endpoint: str, call: str, exc: grpc.RpcError, timeout: float) -> CriCallError:
    """Translate a gRPC error (a unary call's, or grpc.aio's AioRpcError) into a CriCallError."""
    # Every error a call raises has code() and details() (grpc.Call, AioRpcError); others do not.
    code = exc.code() if hasattr(exc, "code") else None
    details = (exc.details() if hasattr(exc, "details") else str(exc)) or ""
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return CriCallError(endpoint, call, Failure.TIMEOUT, f"no answer within {timeout:g}s")
    if code is grpc.StatusCode.UNIMPLEMENTED:
        return CriUnimplementedError(endpoint, call, Failure.UNIMPLEMENTED, details)
    if code is grpc.StatusCode.UNAVAILABLE:
        return CriCallError(endpoint, call, Failure.UNAVAILABLE, details or "runtime unavailable")
    name = code.name if code is not None else "UNKNOWN"
    return CriCallError(endpoint, call, Failure.RPC_ERROR, f"{name}: {details}")


def decode(endpoint: str, call: str, message_type: str, data: bytes) -> wire.Message:
    """Parse a raw answer; raises CriCallError(MALFORMED) when it is not a valid message."""
    try:
        return wire.decode(message_type, data)
    except wire.WireError as exc:
        raise CriCallError(endpoint, call, Failure.MALFORMED, f"undecodable answer: {exc}") from None


def carries_labels(sandbox: Sandbox, selector: Mapping[str, str]) -> bool:
    """True when the sandbox has every label of `selector` with its value (CRI's label filter)."""
    return all(sandbox.labels.get(k) == v for k, v in selector.items())


def info_pid(text: Optional[str]) -> Optional[int]:
    """The top-level "pid" of ContainerStatus's verbose info["info"] JSON; None unless an int > 1."""
    if text is None:
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    pid = document.get("pid") if isinstance(document, dict) else None
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 1:
        return None
    return pid


class CriClient:
    """Calls Version, ListPodSandbox, ListContainers and ContainerStatus on one CRI endpoint."""

    def __init__(self, endpoint: str, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._channel: Optional[grpc.Channel] = None

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel (idempotent)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def version(self) -> RuntimeVersion:
        """Ask Version; raises CriCallError unless the runtime speaks CRI v1."""
        answer = self._call("Version", wire.encode("VersionRequest", {"version": "v1"}),
                            "VersionResponse")
        api = str(answer.runtime_api_version)
        if api != "v1" and not api.startswith("v1."):
            raise CriCallError(self.endpoint, "Version", Failure.API_VERSION,
                               f"runtime_api_version {api!r}, expected 'v1'")
        return RuntimeVersion(str(answer.runtime_name), str(answer.runtime_version), api)

    def list_pod_sandboxes(self, label_selector: Mapping[str, str]) -> tuple[Sandbox, ...]:
        """Sandboxes in every state carrying all the given labels."""
        request = wire.encode("ListPodSandboxRequest",
                              {"filter": {"label_selector": dict(label_selector)}})
        answer = self._call("ListPodSandbox", request, "ListPodSandboxResponse")
        sandboxes = tuple(self._sandbox(item) for item in answer.items)
        for sandbox in sandboxes:
            if not carries_labels(sandbox, label_selector):
                self._malformed("ListPodSandbox", f"sandbox {sandbox.id} lacks the labels asked for")
        self._check_unique("ListPodSandbox", [s.id for s in sandboxes])
        return sandboxes

    def list_containers(self, pod_sandbox_id: Optional[str] = None) -> tuple[Container, ...]:
        """Containers in every state, only those of `pod_sandbox_id` when given."""
        request = wire.encode("ListContainersRequest",
                              {"filter": {"pod_sandbox_id": pod_sandbox_id or ""}})
        answer = self._call("ListContainers", request, "ListContainersResponse")
        containers = tuple(self._container(item) for item in answer.containers)
        for container in containers:
            if pod_sandbox_id is not None and container.pod_sandbox_id != pod_sandbox_id:
                self._malformed("ListContainers", f"container {container.id} belongs to sandbox "
                                f"{container.pod_sandbox_id!r}, asked for {pod_sandbox_id!r}")
        self._check_unique("ListContainers", [c.id for c in containers])
        return containers

    def container_pid(self, container_id: str) -> Optional[int]:
        """The host pid of the container's main process (verbose ContainerStatus), None if unnamed."""
        request = wire.encode("ContainerStatusRequest", {"container_id": container_id, "verbose": True})
        answer = self._call("ContainerStatus", request, "ContainerStatusResponse")
        return info_pid(answer.info.get("info"))

    def _call(self, call: str, request: bytes, answer_type: str) -> wire.Message:
        if self._channel is None:
            self._channel = grpc.insecure_channel(channel_target(self.endpoint, call),
                                                  options=CHANNEL_OPTIONS)
        method: Callable[..., bytes] = self._channel.unary_unary(
            SERVICE + call, request_serializer=None, response_deserializer=None)
        try:
            data = method(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            raise rpc_failure(self.endpoint, call, exc, self.timeout) from None
        return decode(self.endpoint, call, answer_type, data)

    def _sandbox(self, item: wire.Message) -> Sandbox:
        state = self._valid_state("ListPodSandbox", item, "PodSandboxState")
        meta = item.metadata
        return Sandbox(id=item.id, name=meta.name, uid=meta.uid, namespace=meta.namespace,
                       attempt=meta.attempt, state=state, created_at_ns=item.created_at,
                       labels=dict(item.labels))

    def _container(self, item: wire.Message) -> Container:
        state = self._valid_state("ListContainers", item, "ContainerState")
        meta = item.metadata
        return Container(id=item.id, pod_sandbox_id=item.pod_sandbox_id, name=meta.name,
                         attempt=meta.attempt, state=state, created_at_ns=item.created_at,
                         labels=dict(item.labels))

    def _valid_state(self, call: str, item: wire.Message, state_type: str) -> str:
        """The item's state name; MALFORMED unless it has an id, metadata, a time, a known state."""
        state = wire.enum_name(state_type, item.state)
        if not item.id or not item.has("metadata") or state is None or item.created_at <= 0:
            self._malformed(call, f"item {item.id!r} without id, metadata, creation time or a "
                            f"known state ({item.state})")
        return state

    def _check_unique(self, call: str, ids: list[str]) -> None:
        if len(set(ids)) != len(ids):
            self._malformed(call, "the same id listed twice")

    def _malformed(self, call: str, detail: str) -> NoReturn:
        raise CriCallError(self.endpoint, call, Failure.MALFORMED, detail)
