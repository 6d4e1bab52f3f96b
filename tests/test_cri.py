"""CriClient and query_runtime against a real gRPC fake runtime on a unix socket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import pytest

from lhsweep.config import Config
from lhsweep.cri import CriCallError, CriClient, CriUnimplementedError, Failure, query_runtime
from lhsweep.host import HostRoot
from lhsweep.model import ALIVE_CONTAINER_STATES, RuntimeState, RuntimeView
from tests.crifake import FakeCri, container_for, im_pod

TIMEOUT = 5.0  # answers that should come; generous so a loaded machine does not flake
# For calls the fake deliberately never answers (it waits 30 s): long enough that every healthy
# call around it answers on a loaded machine, short enough to keep the wait cheap.
SHORT = 2.0
WAITS = pytest.mark.process  # waits SHORT seconds for a real timeout
# A host with no kubelet files at all: the endpoints come from lhsweep's config alone.
NO_KUBELET = HostRoot("/nonexistent-host-root")


@pytest.fixture
def cri() -> Iterator[FakeCri]:
    with FakeCri() as fake:
        yield fake


def config_for(*endpoints: str, namespace: str = "longhorn-system",
               timeout: float = TIMEOUT) -> Config:
    return Config(cri_endpoints=endpoints, cri_timeout=timeout, longhorn_namespace=namespace)


def query(cri: FakeCri, timeout: float = TIMEOUT) -> RuntimeView:
    return query_runtime(config_for(cri.endpoint, timeout=timeout), NO_KUBELET)


def unknown_reason(view: RuntimeView) -> str:
    """The reason of a view that must be unknown, with no instance-manager in it."""
    assert view.state is RuntimeState.UNKNOWN
    assert view.instance_managers == ()
    return view.reason


def client_error(cri: FakeCri, call: str = "ListPodSandbox",
                 timeout: float = TIMEOUT) -> CriCallError:
    with CriClient(cri.endpoint, timeout) as client, pytest.raises(CriCallError) as caught:
        client.version()
        if call == "ListContainers":
            client.list_containers("some-sandbox")
        else:
            client.list_pod_sandboxes({"a": "b"})
    return caught.value


# ---------------------------------------------------------------- client


def test_version_answers_with_a_deadline_on_the_call(cri: FakeCri) -> None:
    with CriClient(cri.endpoint, TIMEOUT) as client:
        version = client.version()
    assert (version.runtime_name, version.runtime_api_version) == ("fakecri", "v1")
    [(call, remaining)] = cri.calls
    assert call == "Version"
    # gRPC's clocks may round the remaining time a few ms past the deadline set; what matters is
    # that there is one and it is the client's (no deadline reads as None here).
    assert remaining is not None and 0 < remaining <= TIMEOUT + 0.1


def test_plain_socket_path_is_accepted(cri: FakeCri) -> None:
    with CriClient(cri.socket_path, TIMEOUT) as client:
        assert client.version().runtime_version == "0.1.0"


def test_list_calls_pass_their_filters_and_return_typed_records(cri: FakeCri) -> None:
    sandbox, containers = im_pod(node="n7")
    other, other_containers = im_pod()
    cri.add_pod(sandbox, containers)
    cri.add_pod(other, other_containers)
    with CriClient(cri.endpoint, TIMEOUT) as client:
        sandboxes = client.list_pod_sandboxes({"longhorn.io/node": "n7"})
        listed = client.list_containers(sandbox["id"])
        everything = client.list_containers()
    assert [s.id for s in sandboxes] == [sandbox["id"]]
    assert sandboxes[0].state == "SANDBOX_READY"
    assert sandboxes[0].namespace == "longhorn-system"
    assert [(c.id, c.name, c.state) for c in listed] == [
        (containers[0]["id"], "instance-manager", "CONTAINER_RUNNING")]
    assert len(everything) == 2


@pytest.mark.parametrize("api", ["v1alpha2", "v2", "", "v1beta"])
def test_wrong_api_version_is_refused(cri: FakeCri, api: str) -> None:
    cri.update(runtime_api_version=api)
    with CriClient(cri.endpoint, TIMEOUT) as client, pytest.raises(CriCallError) as caught:
        client.version()
    assert caught.value.failure is Failure.API_VERSION
    assert repr(api) in str(caught.value)


def test_missing_socket_fails_without_connecting() -> None:
    with CriClient("unix:///nonexistent/cri.sock", 5.0) as client, \
            pytest.raises(CriCallError) as caught:
        client.version()
    assert caught.value.failure is Failure.NO_SOCKET
    assert "/nonexistent/cri.sock" in str(caught.value)


def test_endpoint_that_is_not_a_unix_socket_is_refused() -> None:
    with CriClient("tcp://127.0.0.1:1", TIMEOUT) as client, pytest.raises(CriCallError) as caught:
        client.version()
    assert caught.value.failure is Failure.BAD_ENDPOINT


def test_socket_without_listener_is_unavailable(cri: FakeCri) -> None:
    cri.stop()
    error = client_error(cri)
    assert error.failure in (Failure.UNAVAILABLE, Failure.NO_SOCKET)


@WAITS
def test_slow_answer_times_out(cri: FakeCri) -> None:
    cri.set_behaviour("ListPodSandbox", delay=30)
    error = client_error(cri, timeout=SHORT)
    assert error.failure is Failure.TIMEOUT
    assert f"{SHORT:g}s" in str(error)


def test_unimplemented_is_its_own_error(cri: FakeCri) -> None:
    cri.set_behaviour("ListPodSandbox", abort="UNIMPLEMENTED")
    error = client_error(cri)
    assert isinstance(error, CriUnimplementedError)
    assert error.failure is Failure.UNIMPLEMENTED


def test_other_status_codes_are_named(cri: FakeCri) -> None:
    cri.set_behaviour("ListPodSandbox", abort="PERMISSION_DENIED")
    error = client_error(cri)
    assert error.failure is Failure.RPC_ERROR
    assert "PERMISSION_DENIED" in str(error)


def test_server_dying_mid_call_is_unavailable(cri: FakeCri) -> None:
    cri.set_behaviour("ListPodSandbox", drop=True)
    error = client_error(cri)
    assert error.failure is Failure.UNAVAILABLE


@pytest.mark.parametrize("call", ["ListPodSandbox", "ListContainers"])
def test_garbage_bytes_are_malformed(cri: FakeCri, call: str) -> None:
    cri.set_behaviour(call, garbage=True)
    error = client_error(cri, call)
    assert error.failure is Failure.MALFORMED
    assert "\n" not in str(error)


def test_container_pid_comes_from_the_verbose_info(cri: FakeCri) -> None:
    cri.set_pid("c1", 4242)
    with CriClient(cri.endpoint, TIMEOUT) as client:
        assert client.container_pid("c1") == 4242
    [(call, remaining)] = cri.calls
    assert call == "ContainerStatus" and remaining is not None and remaining <= TIMEOUT + 0.1


def test_container_pid_as_cri_o_answers_it(cri: FakeCri) -> None:
    # CRI-O's info["info"]: sandboxID, pid, runtimeSpec, privileged (server/container_status.go).
    cri.set_info("c1", {"info": '{"sandboxID": "s", "pid": 77, "runtimeSpec": {}, '
                                '"privileged": true}'})
    with CriClient(cri.endpoint, TIMEOUT) as client:
        assert client.container_pid("c1") == 77


@pytest.mark.parametrize("info", [
    {}, {"other": '{"pid": 4242}'}, {"info": ""}, {"info": "not json"}, {"info": "[4242]"},
    {"info": '{"pid": "4242"}'}, {"info": '{"pid": 4242.5}'}, {"info": '{"pid": true}'},
    {"info": '{"pid": 1}'}, {"info": '{"pid": 0}'}, {"info": '{"pid": -5}'},
    {"info": '{"pid": null}'}, {"info": '{"task": {"pid": 4242}}'}, {"info": "[" * 100000},
])
def test_container_pid_from_malformed_info_is_none(cri: FakeCri, info: dict[str, str]) -> None:
    cri.set_info("c1", info)
    with CriClient(cri.endpoint, TIMEOUT) as client:
        assert client.container_pid("c1") is None


def test_container_pid_of_an_unknown_container_is_an_error(cri: FakeCri) -> None:
    with CriClient(cri.endpoint, TIMEOUT) as client, pytest.raises(CriCallError) as caught:
        client.container_pid("gone")
    assert caught.value.failure is Failure.RPC_ERROR and "NOT_FOUND" in str(caught.value)


def test_container_pid_garbage_answer_is_malformed(cri: FakeCri) -> None:
    cri.set_pid("c1", 4242)
    cri.set_behaviour("ContainerStatus", garbage=True)
    with CriClient(cri.endpoint, TIMEOUT) as client, pytest.raises(CriCallError) as caught:
        client.container_pid("c1")
    assert caught.value.failure is Failure.MALFORMED


def test_containers_of_another_sandbox_are_malformed(cri: FakeCri) -> None:
    cri.add_pod(*im_pod())
    cri.set_behaviour("ListContainers", ignore_filter=True)
    error = client_error(cri, "ListContainers")
    assert error.failure is Failure.MALFORMED
    assert "some-sandbox" in str(error)


def test_sandboxes_without_the_asked_labels_are_malformed(cri: FakeCri) -> None:
    cri.add_pod(*im_pod())
    cri.set_behaviour("ListPodSandbox", ignore_filter=True)
    with CriClient(cri.endpoint, TIMEOUT) as client, pytest.raises(CriCallError) as caught:
        client.list_pod_sandboxes({"longhorn.io/data-engine": "v1"})
    assert caught.value.failure is Failure.MALFORMED


# ---------------------------------------------------------------- query_runtime: known


def test_live_instance_manager(cri: FakeCri) -> None:
    sandbox, containers = im_pod(node="worker-3", created_at_ns=1_700_000_000_000_000_000)
    cri.add_pod(sandbox, containers)
    view = query(cri)
    assert view.state is RuntimeState.KNOWN, view.reason
    assert (view.endpoint, view.runtime_name) == (cri.endpoint, "fakecri")
    [im] = view.instance_managers
    assert im.pod_name == sandbox["metadata"]["name"]
    assert im.pod_uid == sandbox["metadata"]["uid"]
    assert (im.namespace, im.node, im.sandbox_id) == ("longhorn-system", "worker-3", sandbox["id"])
    assert (im.sandbox_state, im.container_state) == ("ready", "running")
    assert im.container_id == containers[0]["id"]
    assert im.created_at_ns == containers[0]["created_at"]
    assert view.live_instance_managers == (im,)


def test_exited_instance_manager_is_known_and_not_alive(cri: FakeCri) -> None:
    cri.add_pod(*im_pod(container_state="CONTAINER_EXITED"))
    view = query(cri)
    [im] = view.instance_managers
    assert view.state is RuntimeState.KNOWN
    assert im.container_state == "exited"
    assert view.live_instance_managers == ()


def test_notready_sandbox_without_container_uses_the_sandbox_time(cri: FakeCri) -> None:
    sandbox, _ = im_pod(sandbox_state="SANDBOX_NOTREADY", container_state=None)
    cri.add_pod(sandbox, [])
    [im] = query(cri).instance_managers
    assert (im.sandbox_state, im.container_id, im.container_state) == ("notready", None, None)
    assert im.created_at_ns == sandbox["created_at"]


def test_no_instance_manager_is_known_and_empty(cri: FakeCri) -> None:
    view = query(cri)
    assert view.state is RuntimeState.KNOWN
    assert view.instance_managers == ()


def test_v1_and_other_pods_are_ignored(cri: FakeCri) -> None:
    cri.add_pod(*im_pod(data_engine="v1"))
    unrelated, containers = im_pod()
    unrelated["labels"] = {"app": "web"}
    cri.add_pod(unrelated, containers)
    view = query(cri)
    assert view.state is RuntimeState.KNOWN
    assert view.instance_managers == ()


@pytest.mark.parametrize("engine", [None, "", "all", "V2", "v3"])
def test_instance_manager_without_a_known_data_engine_gives_unknown(cri: FakeCri,
                                                                   engine: Optional[str]) -> None:
    # Longhorn labels an instance-manager pod longhorn.io/data-engine=v1|v2 and leaves the label out
    # for "all"; releases before 1.6 had none, or a backend-store-driver. Any of these may be V2's.
    cri.add_pod(*im_pod())
    sandbox, containers = im_pod()
    if engine is None:
        del sandbox["labels"]["longhorn.io/data-engine"]
        sandbox["labels"]["longhorn.io/backend-store-driver"] = "v2"
    else:
        sandbox["labels"]["longhorn.io/data-engine"] = engine
    cri.add_pod(sandbox, containers)
    reason = unknown_reason(query(cri))
    label = "no longhorn.io/data-engine label" if engine is None else f"longhorn.io/data-engine={engine!r}"
    assert reason == (f"instance-manager pod {sandbox['metadata']['name']} has {label}: cannot "
                           f"tell whether it runs the V2 data engine")


def test_v1_instance_manager_in_another_namespace_is_ignored(cri: FakeCri) -> None:
    cri.add_pod(*im_pod(data_engine="v1", namespace="longhorn"))
    view = query(cri)
    assert (view.state, view.instance_managers) == (RuntimeState.KNOWN, ())


@pytest.mark.parametrize("container_state", ["CONTAINER_RUNNING", None])
def test_instance_manager_in_another_namespace_gives_unknown(
        cri: FakeCri, container_state: Optional[str]) -> None:
    # Longhorn installed in "longhorn" while longhorn.namespace says longhorn-system: its
    # instance-manager still owns this node's devices, so "none in longhorn-system" proves nothing.
    cri.add_pod(*im_pod())
    sandbox, containers = im_pod(namespace="longhorn", container_state=container_state)
    cri.add_pod(sandbox, containers)
    reason = unknown_reason(query(cri))
    assert reason == (f"instance-manager pod {sandbox['metadata']['name']} runs in namespace "
                      f"longhorn, but longhorn.namespace is longhorn-system: "
                           f"set longhorn.namespace")


def test_configured_namespace_is_used(cri: FakeCri) -> None:
    sandbox, containers = im_pod(namespace="storage")
    cri.add_pod(sandbox, containers)
    view = query_runtime(config_for(cri.endpoint, namespace="storage"), NO_KUBELET)
    assert view.state is RuntimeState.KNOWN, view.reason
    assert [im.sandbox_id for im in view.instance_managers] == [sandbox["id"]]
    cri.add_pod(*im_pod())
    view = query_runtime(config_for(cri.endpoint, namespace="storage"), NO_KUBELET)
    assert view.state is RuntimeState.UNKNOWN
    assert "runs in namespace longhorn-system, but longhorn.namespace is storage" in view.reason


def test_container_is_found_by_kubelet_label_and_sidecars_ignored(cri: FakeCri) -> None:
    sandbox, [main] = im_pod()
    main["metadata"]["name"] = "renamed"
    sidecar = container_for(sandbox, "sidecar", "CONTAINER_RUNNING", main["created_at"] + 5)
    cri.add_pod(sandbox, [main, sidecar])
    [im] = query(cri).instance_managers
    assert im.container_id == main["id"]


@pytest.mark.parametrize("sandbox_state", ["SANDBOX_READY", "SANDBOX_NOTREADY"])
def test_alive_container_of_another_name_alone_gives_unknown(cri: FakeCri, sandbox_state: str) -> None:
    # Not "no container listed" (dead once the sandbox is not ready): it may be the
    # instance-manager under another name, still serving its volumes.
    sandbox, _ = im_pod(sandbox_state=sandbox_state, container_state=None)
    renamed = container_for(sandbox, "instance-manager-v2", "CONTAINER_RUNNING",
                            sandbox["created_at"] + 10**9)
    exited = container_for(sandbox, "helper", "CONTAINER_EXITED", sandbox["created_at"] + 5)
    cri.add_pod(sandbox, [renamed, exited])
    assert unknown_reason(query(cri)) == (f"instance-manager pod {sandbox['metadata']['name']} has no "
                                          f"instance-manager container but alive container(s) "
                                          f"'instance-manager-v2': cannot tell whether it is alive")


def test_exited_container_of_another_name_leaves_the_sandbox_state_to_decide(cri: FakeCri) -> None:
    sandbox, _ = im_pod(sandbox_state="SANDBOX_NOTREADY", container_state=None)
    other = container_for(sandbox, "helper", "CONTAINER_EXITED", sandbox["created_at"] + 5)
    cri.add_pod(sandbox, [other])
    view = query(cri)
    [im] = view.instance_managers
    assert (view.state, im.container_id, im.alive) == (RuntimeState.KNOWN, None, False)


def test_newest_alive_container_wins_over_newer_exited_one(cri: FakeCri) -> None:
    sandbox, [first] = im_pod(container_state="CONTAINER_EXITED")
    created = first["created_at"]
    running = container_for(sandbox, "instance-manager", "CONTAINER_RUNNING", created + 10, 1)
    exited = container_for(sandbox, "instance-manager", "CONTAINER_EXITED", created + 20, 2)
    cri.add_pod(sandbox, [first, running, exited])
    [im] = query(cri).instance_managers
    assert (im.container_id, im.container_state) == (running["id"], "running")


@pytest.mark.parametrize("sandbox_state", ["SANDBOX_READY", "SANDBOX_NOTREADY"])
@pytest.mark.parametrize(("container_state", "alive"), [
    ("CONTAINER_CREATED", True), ("CONTAINER_RUNNING", True), ("CONTAINER_UNKNOWN", True),
    ("CONTAINER_EXITED", False),
])
def test_liveness_comes_from_the_container_whatever_the_sandbox(
        cri: FakeCri, sandbox_state: str, container_state: str, alive: bool) -> None:
    cri.add_pod(*im_pod(sandbox_state=sandbox_state, container_state=container_state))
    view = query(cri)
    [im] = view.instance_managers
    assert view.state is RuntimeState.KNOWN
    assert im.alive is alive
    assert (im.container_state in ALIVE_CONTAINER_STATES) is alive


@pytest.mark.parametrize(("sandbox_state", "alive"), [("SANDBOX_READY", True),
                                                      ("SANDBOX_NOTREADY", False)])
def test_sandbox_without_container_is_alive_while_ready(cri: FakeCri, sandbox_state: str,
                                                        alive: bool) -> None:
    cri.add_pod(*im_pod(sandbox_state=sandbox_state, container_state=None))
    [im] = query(cri).instance_managers
    assert (im.container_state, im.alive) == (None, alive)


def test_two_alive_attempts_are_dated_by_the_older_and_named_by_the_newer(cri: FakeCri) -> None:
    # Devices older than the instance-manager's container are leftovers: the older attempt,
    # still alive, may have made some after it started and before the newer one did.
    sandbox, [older] = im_pod(container_state="CONTAINER_UNKNOWN")
    newer = container_for(sandbox, "instance-manager", "CONTAINER_RUNNING", older["created_at"] + 10, 1)
    cri.add_pod(sandbox, [newer, older])
    [im] = query(cri).live_instance_managers
    assert im.created_at_ns == older["created_at"]
    assert (im.container_id, im.container_state) == (newer["id"], "running")


def test_any_alive_container_makes_it_alive(cri: FakeCri) -> None:
    sandbox, [older] = im_pod(sandbox_state="SANDBOX_NOTREADY", container_state="CONTAINER_UNKNOWN")
    newer = container_for(sandbox, "instance-manager", "CONTAINER_EXITED", older["created_at"] + 10, 1)
    cri.add_pod(sandbox, [older, newer])
    [im] = query(cri).live_instance_managers
    assert (im.container_id, im.container_state) == (older["id"], "unknown")


# ---------------------------------------------------------------- query_runtime: unknown


@pytest.mark.parametrize(
    ("call", "behaviour", "expected"),
    [
        pytest.param("ListPodSandbox", {"delay": 30}, "timeout", marks=WAITS),
        pytest.param("ListContainers", {"delay": 30}, "timeout", marks=WAITS),
        ("ListPodSandbox", {"abort": "UNIMPLEMENTED"}, "unimplemented"),
        ("ListContainers", {"drop": True}, "unavailable"),
        ("ListPodSandbox", {"garbage": True}, "malformed"),
        ("ListContainers", {"ignore_filter": True}, "malformed"),
    ],
)
def test_failures_after_version_give_unknown(
    cri: FakeCri, call: str, behaviour: dict[str, object], expected: str
) -> None:
    cri.add_pod(*im_pod())
    cri.add_pod(*im_pod())
    cri.set_behaviour(call, **behaviour)
    view = query(cri, timeout=SHORT if "delay" in behaviour else TIMEOUT)
    assert f"{call}: {expected}" in unknown_reason(view)
    assert view.endpoint == cri.endpoint


@pytest.mark.parametrize(
    ("field", "value"),
    [("state", 7), ("metadata", None), ("created_at", 0), ("id", "")],
)
def test_garbage_sandbox_gives_unknown(cri: FakeCri, field: str, value: object) -> None:
    sandbox, containers = im_pod()
    if value is None:
        del sandbox[field]
    else:
        sandbox[field] = value
    cri.add_pod(sandbox, containers)
    view = query(cri)
    assert view.state is RuntimeState.UNKNOWN
    assert "ListPodSandbox: malformed" in view.reason


@pytest.mark.parametrize(("field", "value"), [
    ("namespace", ""), ("namespace", None), ("name", ""), ("uid", None),
])
def test_instance_manager_sandbox_without_metadata_field_gives_unknown(
        cri: FakeCri, field: str, value: Optional[str]) -> None:
    sandbox, containers = im_pod()
    if value is None:
        del sandbox["metadata"][field]
    else:
        sandbox["metadata"][field] = value
    cri.add_pod(sandbox, containers)
    cri.add_pod(*im_pod())
    assert f"instance-manager sandbox {sandbox['id']} has no metadata.{field}" in unknown_reason(query(cri))


def test_nameless_container_in_an_instance_manager_sandbox_gives_unknown(cri: FakeCri) -> None:
    sandbox, [container] = im_pod(container_state="CONTAINER_EXITED")
    nameless = container_for(sandbox, "", "CONTAINER_RUNNING", container["created_at"] + 5)
    del nameless["labels"]["io.kubernetes.container.name"]
    cri.add_pod(sandbox, [container, nameless])
    view = query(cri)
    assert view.state is RuntimeState.UNKNOWN
    assert f"container {nameless['id']} of instance-manager sandbox {sandbox['id']} has no name" \
        in view.reason


@pytest.mark.parametrize(("field", "value"), [("created_at", 0), ("created_at", None), ("id", ""),
                                              ("metadata", None)])
def test_container_without_a_needed_field_gives_unknown(cri: FakeCri, field: str,
                                                        value: object) -> None:
    sandbox, [container] = im_pod()
    if value is None:
        del container[field]
    else:
        container[field] = value
    cri.add_pod(sandbox, [container])
    view = query(cri)
    assert view.state is RuntimeState.UNKNOWN
    assert "ListContainers: malformed" in view.reason


def test_container_with_unknown_state_gives_unknown(cri: FakeCri) -> None:
    sandbox, [container] = im_pod()
    container["state"] = 9
    cri.add_pod(sandbox, [container])
    view = query(cri)
    assert view.state is RuntimeState.UNKNOWN
    assert "ListContainers: malformed" in view.reason


def test_wrong_api_version_gives_unknown(cri: FakeCri) -> None:
    cri.update(runtime_api_version="v1alpha2")
    view = query(cri)
    assert view.state is RuntimeState.UNKNOWN
    assert "api-version" in view.reason


def test_garbage_version_gives_unknown(cri: FakeCri) -> None:
    cri.set_behaviour("Version", garbage=True)
    assert query(cri).state is RuntimeState.UNKNOWN


def test_no_socket_at_all_gives_unknown() -> None:
    view = query_runtime(config_for("unix:///nonexistent/a.sock", "/nonexistent/b.sock"), NO_KUBELET)
    assert view.state is RuntimeState.UNKNOWN
    assert "no CRI socket found" in view.reason


def test_unexpected_exception_gives_unknown(cri: FakeCri, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: CriClient) -> None:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(CriClient, "version", broken)
    view = query(cri)
    assert view.state is RuntimeState.UNKNOWN
    assert view.reason.endswith("RuntimeError: boom")


# ---------------------------------------------------------------- endpoint choice


def test_several_answering_endpoints_are_unknown_naming_each() -> None:
    with FakeCri() as first, FakeCri() as second:
        second.add_pod(*im_pod())
        view = query_runtime(config_for(first.endpoint, second.endpoint), NO_KUBELET)
        assert view.state is RuntimeState.UNKNOWN
        assert "several CRI runtimes answer" in view.reason
        assert first.endpoint in view.reason and second.endpoint in view.reason
        assert view.instance_managers == ()


def test_a_missing_socket_is_skipped() -> None:
    with FakeCri() as good:
        good.add_pod(*im_pod())
        view = query_runtime(config_for("unix:///nonexistent/cri.sock", good.endpoint), NO_KUBELET)
        assert (view.state, view.endpoint) == (RuntimeState.KNOWN, good.endpoint)
        assert len(view.instance_managers) == 1
        assert view.endpoint_reason.startswith("set in lhsweep's config")


@pytest.mark.parametrize("failing_first", [True, False])
@pytest.mark.parametrize("failure", [pytest.param("slow", marks=WAITS), "old-api", "garbage"])
def test_a_failing_socket_is_unknown_even_when_another_answers(failing_first: bool,
                                                               failure: str) -> None:
    with FakeCri() as failing, FakeCri() as good:
        if failure == "slow":
            failing.set_behaviour("Version", delay=30)
        elif failure == "old-api":
            failing.update(runtime_api_version="v1alpha2")
        else:
            failing.set_behaviour("Version", garbage=True)
        good.add_pod(*im_pod(container_state="CONTAINER_EXITED"))
        order = (failing, good) if failing_first else (good, failing)
        view = query_runtime(config_for(*(c.endpoint for c in order), timeout=SHORT), NO_KUBELET)
        assert view.state is RuntimeState.UNKNOWN
        assert failing.endpoint in view.reason and "never skipped" in view.reason
        assert view.instance_managers == ()
        assert [call for call, _ in good.calls if call != "Version"] == []
