"""Ask CRI for this node's Longhorn V2 instance-managers; any failure is an UNKNOWN view."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from lhsweep.config import Config
from lhsweep.cri.client import Container, CriCallError, CriClient, Failure, Sandbox, one_line
from lhsweep.errors import RuntimeQueryError
from lhsweep.model import InstanceManager, RuntimeState, RuntimeView

IM_SELECTOR = {"longhorn.io/component": "instance-manager", "longhorn.io/data-engine": "v2"}
IM_CONTAINER = "instance-manager"
NODE_LABEL = "longhorn.io/node"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
ALIVE_CONTAINER_STATES = ("created", "running")


def query_runtime(config: Config) -> RuntimeView:
    """Query the first CRI endpoint that answers Version; never raises."""
    try:
        return _query(config)
    except Exception as exc:  # rule unknown-runtime-acts-not: a bug is "unknown", not "no pods"
        return _unknown(f"CRI query failed unexpectedly: {type(exc).__name__}: {one_line(str(exc))}")


def _query(config: Config) -> RuntimeView:
    failures: list[str] = []
    for endpoint in config.cri_endpoints:
        client = CriClient(endpoint, config.cri_timeout)
        try:
            version = client.version()
        except CriCallError as exc:
            if exc.failure is not Failure.NO_SOCKET:
                failures.append(str(exc))
            client.close()
            continue
        try:
            managers = instance_managers(client, config.longhorn_namespace)
        except RuntimeQueryError as exc:
            return _unknown(str(exc), endpoint)
        finally:
            client.close()
        alive = sum(1 for im in managers if im.alive)
        return RuntimeView(
            state=RuntimeState.KNOWN,
            reason=f"{version.runtime_name} {version.runtime_version}: {len(managers)} V2 "
            f"instance-manager(s), {alive} alive",
            endpoint=endpoint,
            runtime_name=version.runtime_name,
            runtime_version=version.runtime_version,
            instance_managers=managers,
        )
    if not failures:
        return _unknown("no CRI socket found: " + ", ".join(config.cri_endpoints))
    return _unknown("no CRI endpoint answered: " + "; ".join(failures))


def instance_managers(client: CriClient, namespace: str) -> tuple[InstanceManager, ...]:
    """The V2 instance-manager pods in `namespace`, each with its instance-manager container."""
    managers = []
    for sandbox in client.list_pod_sandboxes(IM_SELECTOR):
        if sandbox.namespace != namespace:
            continue
        containers = [c for c in client.list_containers(sandbox.id) if _is_im_container(c)]
        managers.append(_instance_manager(sandbox, _pick(containers)))
    return tuple(sorted(managers, key=lambda im: (im.namespace, im.pod_name, im.sandbox_id)))


def _is_im_container(container: Container) -> bool:
    return IM_CONTAINER in (container.name, container.labels.get(CONTAINER_NAME_LABEL))


def _pick(containers: Sequence[Container]) -> Optional[Container]:
    """The container that matters: the newest alive one, else the newest one."""
    alive = [c for c in containers if _state_word(c.state) in ALIVE_CONTAINER_STATES]
    candidates = alive or list(containers)
    return max(candidates, key=lambda c: (c.created_at_ns, c.attempt), default=None)


def _instance_manager(sandbox: Sandbox, container: Optional[Container]) -> InstanceManager:
    return InstanceManager(
        pod_name=sandbox.name,
        pod_uid=sandbox.uid,
        namespace=sandbox.namespace,
        node=sandbox.labels.get(NODE_LABEL, ""),
        sandbox_id=sandbox.id,
        sandbox_state=_state_word(sandbox.state),
        container_id=container.id if container else None,
        container_state=_state_word(container.state) if container else None,
        created_at_ns=container.created_at_ns if container else sandbox.created_at_ns,
    )


def _state_word(enum_name: str) -> str:
    """SANDBOX_NOTREADY -> notready, CONTAINER_RUNNING -> running."""
    return enum_name.partition("_")[2].lower()


def _unknown(reason: str, endpoint: str = "") -> RuntimeView:
    return RuntimeView(state=RuntimeState.UNKNOWN, reason=reason, endpoint=endpoint)
