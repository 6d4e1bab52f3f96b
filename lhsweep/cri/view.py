"""Ask kubelet's CRI runtime, and only it, for this node's V2 instance-managers.

Any failure, any doubt about which runtime is kubelet's, and any instance-manager record that
lacks a field needed to judge it make the whole view UNKNOWN, never "no instance-manager".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

from lhsweep.config import Config
from lhsweep.cri.client import (
    DETAIL_LIMIT,
    Container,
    CriCallError,
    CriClient,
    Failure,
    RuntimeVersion,
    Sandbox,
    carries_labels,
)
from lhsweep.cri.kubelet import Candidates, pod_uids, runtime_candidates
from lhsweep.errors import RuntimeQueryError
from lhsweep.host import HostRoot
from lhsweep.model import ALIVE_CONTAINER_STATES, InstanceManager, RuntimeState, RuntimeView
from lhsweep.render import one_line

# Every instance-manager, whatever its data engine: a selector on the data-engine label would
# leave out, unseen, one that lacks the label or spells it otherwise.
IM_SELECTOR = {"longhorn.io/component": "instance-manager"}
DATA_ENGINE_LABEL = "longhorn.io/data-engine"
IM_CONTAINER = "instance-manager"
NODE_LABEL = "longhorn.io/node"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
POD_UID_LABEL = "io.kubernetes.pod.uid"


def query_runtime(config: Config, host: HostRoot) -> RuntimeView:
    """Ask kubelet's runtime for the V2 instance-managers; never raises (failures are UNKNOWN)."""
    try:
        return _query(config, host)
    except Exception as exc:  # rule unknown-runtime-acts-not: a bug is "unknown", not "no pods"
        return _unknown(f"CRI query failed unexpectedly: {type(exc).__name__}: {one_line(exc, DETAIL_LIMIT)}")


def _query(config: Config, host: HostRoot) -> RuntimeView:
    try:
        candidates = runtime_candidates(config, host)
    except RuntimeQueryError as exc:
        return _unknown(f"cannot tell kubelet's runtime: {exc}")
    try:
        client, version = _the_one_answering(candidates, config.cri_timeout)
    except RuntimeQueryError as exc:
        return _unknown(str(exc), why=candidates.why)
    why = candidates.why
    try:
        checked, every = _cross_check(client, host, config.kubelet_pods_dir, candidates.explicit)
        why += "; " + checked
        managers = instance_managers(client, config.longhorn_namespace, every)
    except RuntimeQueryError as exc:
        return _unknown(str(exc), client.endpoint, why)
    finally:
        client.close()
    alive = sum(1 for im in managers if im.alive)
    return RuntimeView(
        state=RuntimeState.KNOWN,
        reason=f"{version.runtime_name} {version.runtime_version}: {len(managers)} V2 "
        f"instance-manager(s), {alive} alive",
        endpoint=client.endpoint,
        runtime_name=version.runtime_name,
        runtime_version=version.runtime_version,
        instance_managers=managers,
        endpoint_reason=why,
    )


def _the_one_answering(candidates: Candidates, timeout: float) -> tuple[CriClient, RuntimeVersion]:
    """The client of the one candidate socket that answers Version.

    A socket that exists but fails ends the search (never fall through to another runtime);
    several answering, or none existing, is RuntimeQueryError.
    """
    answering: list[tuple[CriClient, RuntimeVersion]] = []
    try:
        for endpoint in candidates.endpoints:
            client = CriClient(endpoint, timeout)
            try:
                answering.append((client, client.version()))
            except CriCallError as exc:
                client.close()
                if exc.failure is not Failure.NO_SOCKET:
                    raise RuntimeQueryError(f"{exc} (a socket that fails is never skipped)") from None
    except RuntimeQueryError:
        _close(answering)
        raise
    if len(answering) == 1:
        return answering[0]
    _close(answering)
    if answering:
        named = ", ".join(f"{c.endpoint} ({v.runtime_name})" for c, v in answering)
        raise RuntimeQueryError(f"several CRI runtimes answer and none is known to be kubelet's: "
                                f"{named}; set cri.endpoints")
    raise RuntimeQueryError("no CRI socket found: " + ", ".join(candidates.endpoints))


def _close(answering: Sequence[tuple[CriClient, RuntimeVersion]]) -> None:
    for client, _version in answering:
        client.close()


def _cross_check(client: CriClient, host: HostRoot, pods: str,
                 explicit: bool) -> tuple[str, Optional[tuple[Sandbox, ...]]]:
    """Check that the runtime knows one of kubelet's pod UIDs: what was checked, and every sandbox
    the runtime listed for it (None when nothing was to check).

    A missing or empty pods directory leaves nothing to check: acceptable only when a file names
    the runtime (lhsweep's config or kubelet's setting), UNKNOWN when a well-known socket was guessed.
    """
    uids = pod_uids(host, pods)
    if not uids:
        found = "does not exist" if uids is None else "is empty"
        if not explicit:
            raise RuntimeQueryError(f"{pods} {found}: cannot check that {client.endpoint} "
                                    f"is kubelet's runtime (set kubelet.root or cri.endpoints)")
        return f"not cross-checked: {pods} {found}", None
    every = client.list_pod_sandboxes({})
    known = {s.labels.get(POD_UID_LABEL) for s in every}
    if uids.isdisjoint(known):
        raise RuntimeQueryError(f"{client.endpoint} knows none of the {len(uids)} pod UID(s) in "
                                f"{pods}: not kubelet's runtime")
    return f"knows {len(uids & known)} of {len(uids)} pod UID(s) in {pods}", every


def instance_managers(client: CriClient, namespace: str,
                      every: Optional[Sequence[Sandbox]] = None) -> tuple[InstanceManager, ...]:
    """The V2 instance-manager pods in `namespace`, each with its instance-manager container.

    Picked from `every` sandbox when the runtime already listed them (one answer: a filtered
    listing could leave out one the whole listing has), else asked for by label.

    V1 instance-managers are skipped. Raises RuntimeQueryError for one whose data-engine label
    is missing or neither v1 nor v2, for a record that lacks a field needed to judge it (an
    absent state cannot be told from the enum's zero value:
    CONTAINER_CREATED, which counts as alive, or SANDBOX_READY, which does for a pod whose
    container is not listed; see InstanceManager.alive), and for one in another namespace:
    Longhorn installed elsewhere than `namespace` still owns this node's devices.
    """
    managers = []
    sandboxes = client.list_pod_sandboxes(IM_SELECTOR) if every is None else \
        [s for s in every if carries_labels(s, IM_SELECTOR)]
    for sandbox in sandboxes:
        _check_sandbox(sandbox)
        if not _is_v2(sandbox):
            continue
        if sandbox.namespace != namespace:
            raise RuntimeQueryError(f"instance-manager pod {sandbox.name} runs in namespace "
                                    f"{sandbox.namespace}, but longhorn.namespace is {namespace}: "
                                    f"set longhorn.namespace")
        containers = _im_containers(sandbox, client.list_containers(sandbox.id))
        managers.append(_instance_manager(sandbox, containers))
    return tuple(sorted(managers, key=lambda im: (im.namespace, im.pod_name, im.sandbox_id)))


def _check_sandbox(sandbox: Sandbox) -> None:
    missing = [name for name, value in (("metadata.namespace", sandbox.namespace),
                                        ("metadata.name", sandbox.name),
                                        ("metadata.uid", sandbox.uid)) if not value]
    if missing:
        raise RuntimeQueryError(f"instance-manager sandbox {sandbox.id} has no {', '.join(missing)}")


def _is_v2(sandbox: Sandbox) -> bool:
    """True for a V2 instance-manager, False for a V1 one; raises for any other data-engine label."""
    engine = sandbox.labels.get(DATA_ENGINE_LABEL)
    if engine not in ("v1", "v2"):
        label = f"no {DATA_ENGINE_LABEL} label" if engine is None else f"{DATA_ENGINE_LABEL}={engine!r}"
        raise RuntimeQueryError(f"instance-manager pod {sandbox.name} has {label}: cannot tell "
                                f"whether it runs the V2 data engine")
    return engine == "v2"


def _im_containers(sandbox: Sandbox, listed: Sequence[Container]) -> list[Container]:
    """The sandbox's instance-manager containers; raises when there is none but another is alive.

    An alive container of another name may be the instance-manager renamed: never read as dead.
    """
    mine = [c for c in listed if _is_im_container(sandbox, c)]
    others = [repr(c.name or c.labels[CONTAINER_NAME_LABEL]) for c in listed if _alive(c)]
    if not mine and others:
        raise RuntimeQueryError(f"instance-manager pod {sandbox.name} has no {IM_CONTAINER} "
                                f"container but alive container(s) {', '.join(others)}: cannot "
                                f"tell whether it is alive")
    return mine


def _is_im_container(sandbox: Sandbox, container: Container) -> bool:
    """True for the instance-manager container; raises for a container without any name."""
    label = container.labels.get(CONTAINER_NAME_LABEL)
    if not container.name and not label:
        raise RuntimeQueryError(f"container {container.id} of instance-manager sandbox {sandbox.id} "
                                f"has no name and no {CONTAINER_NAME_LABEL} label")
    return IM_CONTAINER in (container.name, label)


def _alive(container: Container) -> bool:
    return _state_word(container.state) in ALIVE_CONTAINER_STATES


def _created(container: Container) -> tuple[int, int]:
    return container.created_at_ns, container.attempt


def _instance_manager(sandbox: Sandbox, containers: Sequence[Container]) -> InstanceManager:
    """One sandbox's record: its newest alive container (else its newest) names it and its state.

    It is dated by its oldest alive container: devices older than that are the plan's leftovers,
    and an older attempt still alive may have made the ones a newer attempt's time would call so.
    The newest stays the one named, so that a new attempt shows as a change (sweep, CRI watcher).
    """
    alive = [c for c in containers if _alive(c)]
    container = max(alive or containers, key=_created, default=None)
    dated = min(alive, key=_created, default=container)
    return InstanceManager(
        pod_name=sandbox.name,
        pod_uid=sandbox.uid,
        namespace=sandbox.namespace,
        node=sandbox.labels.get(NODE_LABEL, ""),
        sandbox_id=sandbox.id,
        sandbox_state=_state_word(sandbox.state),
        container_id=container.id if container else None,
        container_state=_state_word(container.state) if container else None,
        created_at_ns=dated.created_at_ns if dated else sandbox.created_at_ns,
    )


def _state_word(enum_name: str) -> str:
    """SANDBOX_NOTREADY -> notready, CONTAINER_RUNNING -> running."""
    return enum_name.partition("_")[2].lower()


def _unknown(reason: str, endpoint: str = "", why: str = "") -> RuntimeView:
    return RuntimeView(state=RuntimeState.UNKNOWN, reason=reason, endpoint=endpoint,
                       endpoint_reason=why)
