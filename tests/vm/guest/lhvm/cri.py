"""A tiny test-only CRI admin client (crictl is not in Debian 12): run, list, stop and remove pods."""

from __future__ import annotations

from typing import Any

import grpc

from lhvm import cri_admin_pb2 as pb

SOCKET = "/run/containerd/containerd.sock"
SERVICE = "/runtime.v1.RuntimeService/"


class Cri:
    """Calls runtime.v1.RuntimeService methods over a unix socket."""

    def __init__(self, socket: str = SOCKET, timeout: float = 30.0) -> None:
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.timeout = timeout

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def call(self, method: str, request: Any, response_type: Any) -> Any:
        """One unary call: `method` with `request`, decoded as `response_type`."""
        stub = self.channel.unary_unary(
            SERVICE + method,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        return stub(request, timeout=self.timeout)

    def version(self) -> Any:
        """The runtime's VersionResponse."""
        return self.call("Version", pb.VersionRequest(version="v1"), pb.VersionResponse)

    def run_pod_sandbox(self, config: Any) -> str:
        """RunPodSandbox; returns the sandbox id."""
        request = pb.RunPodSandboxRequest(config=config)
        return str(self.call("RunPodSandbox", request, pb.RunPodSandboxResponse).pod_sandbox_id)

    def create_container(self, sandbox_id: str, config: Any, sandbox_config: Any) -> str:
        """CreateContainer; returns the container id."""
        request = pb.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config
        )
        return str(self.call("CreateContainer", request, pb.CreateContainerResponse).container_id)

    def start_container(self, container_id: str) -> None:
        """StartContainer."""
        self.call(
            "StartContainer", pb.StartContainerRequest(container_id=container_id), pb.StartContainerResponse
        )

    def stop_container(self, container_id: str, timeout: int = 0) -> None:
        """StopContainer (0: kill at once)."""
        request = pb.StopContainerRequest(container_id=container_id, timeout=timeout)
        self.call("StopContainer", request, pb.StopContainerResponse)

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        """StopPodSandbox."""
        self.call(
            "StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=sandbox_id), pb.StopPodSandboxResponse
        )

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        """RemovePodSandbox (stops and removes its containers too)."""
        request = pb.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)
        self.call("RemovePodSandbox", request, pb.RemovePodSandboxResponse)

    def list_pod_sandbox(self, labels: dict[str, str] | None = None) -> list[Any]:
        """ListPodSandbox, filtered by labels."""
        request = pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(label_selector=labels or {}))
        return list(self.call("ListPodSandbox", request, pb.ListPodSandboxResponse).items)

    def list_containers(self, sandbox_id: str = "") -> list[Any]:
        """ListContainers, optionally of one sandbox."""
        request = pb.ListContainersRequest(filter=pb.ContainerFilter(pod_sandbox_id=sandbox_id))
        return list(self.call("ListContainers", request, pb.ListContainersResponse).containers)

    def pod_sandbox_status(self, sandbox_id: str, verbose: bool = False) -> Any:
        """PodSandboxStatus (verbose adds runtime info such as the pause process's pid)."""
        request = pb.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=verbose)
        return self.call("PodSandboxStatus", request, pb.PodSandboxStatusResponse)

    def container_status(self, container_id: str, verbose: bool = False) -> Any:
        """ContainerStatus (verbose adds runtime info such as the pid)."""
        request = pb.ContainerStatusRequest(container_id=container_id, verbose=verbose)
        return self.call("ContainerStatus", request, pb.ContainerStatusResponse)


def state_name(value: int) -> str:
    """A ContainerState number as lhsweep's model spells it (created/running/exited/unknown)."""
    return str(pb.ContainerState.Name(value)).removeprefix("CONTAINER_").lower()
