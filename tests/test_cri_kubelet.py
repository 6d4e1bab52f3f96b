"""Finding kubelet's runtime on host trees (lhsweep.cri.kubelet), and asking only it (real gRPC)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import pytest

from lhsweep.config import WELL_KNOWN_CRI_SOCKETS, Config
from lhsweep.cri.kubelet import Candidates, pod_uids, runtime_candidates, yaml_scalar
from lhsweep.cri.view import query_runtime
from lhsweep.errors import RuntimeQueryError
from lhsweep.host import HostRoot
from lhsweep.model import RuntimeState, RuntimeView
from tests.crifake import FakeCri, im_pod

TIMEOUT = 5.0
# For the call the fake never answers (it waits 30 s); healthy calls answer well within it.
SHORT = 2.0
CONTAINERD = "/run/containerd/containerd.sock"
K3S = "/run/k3s/containerd/containerd.sock"
CRIO = "/run/crio/crio.sock"


class Host:
    """A host tree in a short /tmp directory (unix socket paths are limited to 108 bytes)."""

    def __init__(self) -> None:
        self.root = tempfile.mkdtemp(prefix="kh", dir="/tmp")
        self.host = HostRoot(self.root)

    def p(self, host_path: str) -> str:
        """The real path of a host path."""
        return self.root + host_path

    def write(self, host_path: str, text: str) -> None:
        """Create a file (and its directories) on the host."""
        os.makedirs(os.path.dirname(self.p(host_path)), exist_ok=True)
        Path(self.p(host_path)).write_text(text)

    def mkdir(self, host_path: str) -> None:
        """Create a directory on the host."""
        os.makedirs(self.p(host_path), exist_ok=True)

    def pod_dirs(self, *uids: str) -> None:
        """kubelet's pod directories for `uids` (the pods directory even when there are none)."""
        self.mkdir("/var/lib/kubelet/pods")
        for uid in uids:
            self.mkdir(f"/var/lib/kubelet/pods/{uid}")

    def runtime(self, stack: ExitStack, socket: str) -> FakeCri:
        """A real CRI server listening on the host socket path `socket`."""
        self.mkdir(os.path.dirname(socket))
        return stack.enter_context(FakeCri(socket_path=self.p(socket)))

    def candidates(self, config: Optional[Config] = None) -> Candidates:
        """runtime_candidates on this host (lhsweep's defaults unless `config`)."""
        return runtime_candidates(config or Config(), self.host)

    def query(self, timeout: float = TIMEOUT) -> RuntimeView:
        """query_runtime on this host with lhsweep's defaults (cri.endpoints not set)."""
        return query_runtime(Config(cri_timeout=timeout), self.host)

    def dial(self, socket: str) -> str:
        """The address lhsweep dials for a host socket."""
        return "unix://" + self.p(socket)


@pytest.fixture
def host() -> Iterator[Host]:
    made = Host()
    yield made
    shutil.rmtree(made.root, ignore_errors=True)


def uid_of(pod: tuple[dict[str, object], object]) -> str:
    metadata = pod[0]["metadata"]
    assert isinstance(metadata, dict)
    return str(metadata["uid"])


# ---------------------------------------------------------------- where the runtime is named


def test_lhsweep_config_wins_and_is_used_as_given(host: Host) -> None:
    host.write("/var/lib/kubelet/config.yaml", "containerRuntimeEndpoint: unix:///run/crio/crio.sock\n")
    found = host.candidates(Config(cri_endpoints=("/srv/cri.sock",)))
    assert found == Candidates(("/srv/cri.sock",), "set in lhsweep's config (cri.endpoints)", True)


def test_without_any_setting_the_well_known_sockets_are_asked_below_the_root(host: Host) -> None:
    found = host.candidates()
    assert found.endpoints == tuple(host.dial(s) for s in WELL_KNOWN_CRI_SOCKETS)
    assert not found.explicit and "no kubelet setting found" in found.why


def test_kubeadm_config_file_names_the_runtime_var_run_read_as_run(host: Host) -> None:
    host.write("/var/lib/kubelet/config.yaml",
               "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n"
               "# containerRuntimeEndpoint: unix:///old.sock\n"
               "containerRuntimeEndpoint: \"unix:///var/run/containerd/containerd.sock\"  # cri\n")
    found = host.candidates()
    assert found.endpoints == (host.dial(CONTAINERD),) and found.explicit
    assert found.why == "kubelet's runtime: containerRuntimeEndpoint in /var/lib/kubelet/config.yaml"


def test_kubeadm_flags_file_names_the_runtime(host: Host) -> None:
    host.write("/var/lib/kubelet/kubeadm-flags.env",
               'KUBELET_KUBEADM_ARGS="--container-runtime-endpoint=unix:///run/crio/crio.sock '
               '--pod-infra-container-image=registry.k8s.io/pause:3.9"\n')
    found = host.candidates()
    assert found.endpoints == (host.dial(CRIO),)
    assert "--container-runtime-endpoint in /var/lib/kubelet/kubeadm-flags.env" in found.why


def test_config_flag_in_a_flags_file_points_to_the_config_file(host: Host) -> None:
    host.write("/etc/default/kubelet", "# distro defaults\nKUBELET_EXTRA_ARGS='--config /etc/kubelet.yaml'\n")
    host.write("/etc/kubelet.yaml", "containerRuntimeEndpoint: 'unix:///run/k3s/containerd/containerd.sock'\n")
    assert host.candidates().endpoints == (host.dial(K3S),)


def test_a_config_dir_drop_in_naming_another_runtime_is_an_error_naming_it(host: Host) -> None:
    """kubelet --config-dir: a drop-in that names CRI-O over config.yaml's containerd is a conflict."""
    host.write("/var/lib/kubelet/kubeadm-flags.env",
               'KUBELET_KUBEADM_ARGS="--config-dir=/etc/kubernetes/kubelet.conf.d"\n')
    host.write("/var/lib/kubelet/config.yaml", f"containerRuntimeEndpoint: unix://{CONTAINERD}\n")
    host.write("/etc/kubernetes/kubelet.conf.d/10-other.conf", "maxPods: 50\n")
    host.write("/etc/kubernetes/kubelet.conf.d/50-crio.conf", f"containerRuntimeEndpoint: unix://{CRIO}\n")
    host.write("/etc/kubernetes/kubelet.conf.d/README", f"containerRuntimeEndpoint: {K3S} (not read)\n")
    with pytest.raises(RuntimeQueryError, match="named differently") as raised:
        host.candidates()
    assert "containerRuntimeEndpoint in /etc/kubernetes/kubelet.conf.d/50-crio.conf" in str(raised.value)
    host.write("/etc/kubernetes/kubelet.conf.d/50-crio.conf", f"containerRuntimeEndpoint: {CONTAINERD}\n")
    found = host.candidates()
    assert found.endpoints == (host.dial(CONTAINERD),) and "50-crio.conf" in found.why


def test_agreeing_places_are_all_named(host: Host) -> None:
    host.write("/etc/sysconfig/kubelet",
               "KUBELET_EXTRA_ARGS=--container-runtime-endpoint=/run/crio/crio.sock\n")
    host.write("/var/lib/kubelet/config.yaml", "containerRuntimeEndpoint: unix:///run/crio/crio.sock\n")
    found = host.candidates()
    assert found.endpoints == (host.dial(CRIO),)
    assert "/etc/sysconfig/kubelet" in found.why and "/var/lib/kubelet/config.yaml" in found.why


def test_places_naming_different_runtimes_are_an_error_naming_both(host: Host) -> None:
    host.write("/var/lib/kubelet/kubeadm-flags.env",
               "KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint unix:///run/crio/crio.sock\"\n")
    host.write("/var/lib/kubelet/config.yaml", f"containerRuntimeEndpoint: unix://{CONTAINERD}\n")
    with pytest.raises(RuntimeQueryError, match="named differently") as caught:
        host.candidates()
    assert "kubeadm-flags.env" in str(caught.value) and "config.yaml" in str(caught.value)


@pytest.mark.parametrize("product", ["k3s", "rke2"])
def test_k3s_and_rke2_use_their_own_containerd_unless_set(host: Host, product: str) -> None:
    host.mkdir(f"/etc/rancher/{product}")
    found = host.candidates()
    assert found.endpoints == (host.dial(K3S),) and found.explicit
    assert f"{product} is installed" in found.why
    host.write(f"/etc/rancher/{product}/config.yaml.d/10-cri.yaml",
               "container-runtime-endpoint: unix:///run/crio/crio.sock\n")
    assert host.candidates().endpoints == (host.dial(CRIO),)


def test_k3s_data_dir_alone_means_k3s_is_installed(host: Host) -> None:
    host.mkdir("/var/lib/rancher/k3s")
    assert host.candidates().endpoints == (host.dial(K3S),)


# ---------------------------------------------------------------- files not understood


@pytest.mark.parametrize("text", [
    '{"containerRuntimeEndpoint": "unix:///run/crio/crio.sock"}\n',
    "nested:\n  containerRuntimeEndpoint: unix:///run/crio/crio.sock\n",
    '"containerRuntimeEndpoint": unix:///run/crio/crio.sock\n',
    "containerRuntimeEndpoint: |\n  unix:///run/crio/crio.sock\n",
    "containerRuntimeEndpoint:\n",
    "containerRuntimeEndpoint: &ep unix:///run/crio/crio.sock\n",
    "containerRuntimeEndpoint: !!str unix:///run/crio/crio.sock\n",
    'containerRuntimeEndpoint: "unix:///run/crio/crio\\x2esock"\n',
    "containerRuntimeEndpoint: a\ncontainerRuntimeEndpoint: b\n",
    "containerRuntimeEndpoint: unix:///run/crio/crio.sock extra\n",
    "containerRuntimeEndpoint: run/crio/crio.sock\n",
    "containerRuntimeEndpoint: unix:///run/../tmp/crio.sock\n",
])
def test_a_config_file_not_understood_is_an_error_naming_it(host: Host, text: str) -> None:
    host.write("/var/lib/kubelet/config.yaml", text)
    with pytest.raises(RuntimeQueryError, match=re.escape("/var/lib/kubelet/config.yaml")):
        host.candidates()


@pytest.mark.parametrize("text", [
    "--container-runtime-endpoint=/run/crio/crio.sock\n",
    'KUBELET_EXTRA_ARGS="--container-runtime-endpoint\n',
    "KUBELET_EXTRA_ARGS=--container-runtime-endpoint\n",
    "KUBELET_EXTRA_ARGS=--config=relative.yaml\n",
])
def test_a_flags_file_not_understood_is_an_error_naming_it(host: Host, text: str) -> None:
    host.write("/etc/default/kubelet", text)
    with pytest.raises(RuntimeQueryError, match="/etc/default/kubelet"):
        host.candidates()


def test_an_unreadable_config_file_is_an_error_naming_it(host: Host) -> None:
    host.mkdir("/var/lib/kubelet/config.yaml")  # read() fails: EISDIR
    with pytest.raises(RuntimeQueryError, match=re.escape("/var/lib/kubelet/config.yaml: cannot read")):
        host.candidates()


def test_yaml_scalar_reads_only_the_top_level_key() -> None:
    text = "a: 1\nkey: 'v w'\n# key: old\n"
    assert yaml_scalar(text, "key", "f") == "v w"
    assert yaml_scalar("other: 1\n", "key", "f") is None
    assert yaml_scalar(None, "key", "f") is None


# ---------------------------------------------------------------- kubelet's pods


def test_pod_uids(host: Host) -> None:
    assert pod_uids(host.host, "/var/lib/kubelet/pods") is None
    host.pod_dirs("u1", "u2")
    assert pod_uids(host.host, Config(kubelet_root="/var/lib/kubelet/").kubelet_pods_dir) == {"u1", "u2"}


def test_a_pods_path_that_is_not_a_directory_is_an_error(host: Host) -> None:
    host.write("/var/lib/kubelet/pods", "")
    with pytest.raises(RuntimeQueryError, match="not a directory"):
        pod_uids(host.host, "/var/lib/kubelet/pods")


# ---------------------------------------------------------------- asking only kubelet's runtime


def test_two_runtimes_kubelet_setting_picks_its_own_and_the_other_is_never_asked(host: Host) -> None:
    with ExitStack() as stack:
        distro = host.runtime(stack, CONTAINERD)
        k3s = host.runtime(stack, K3S)
        pod = im_pod()
        k3s.add_pod(*pod)
        host.pod_dirs(uid_of(pod))
        host.mkdir("/etc/rancher/k3s")
        view = host.query()
        assert view.state is RuntimeState.KNOWN, view.reason
        assert view.endpoint == host.dial(K3S)
        assert "k3s is installed" in view.endpoint_reason
        assert "knows 1 of 1 pod UID(s) in /var/lib/kubelet/pods" in view.endpoint_reason
        assert [im.alive for im in view.instance_managers] == [True]
        assert distro.calls == []


def test_instance_managers_come_from_the_listing_the_cross_check_read(host: Host) -> None:
    """One answer decides: a runtime whose label-filtered listing would lose the alive
    instance-manager is not asked it; the whole listing, already read, names it."""
    with ExitStack() as stack:
        cri = host.runtime(stack, CONTAINERD)
        pod = im_pod()
        cri.add_pod(*pod)
        cri.set_behaviour("ListPodSandbox", none_by_label=True)
        host.pod_dirs(uid_of(pod))
        view = host.query()
        assert view.state is RuntimeState.KNOWN, view.reason
        assert [im.alive for im in view.live_instance_managers] == [True]
        assert [call for call, _ in cri.calls].count("ListPodSandbox") == 1


@pytest.mark.parametrize("failure", ["down", pytest.param("slow", marks=pytest.mark.process), "unavailable"])
def test_kubelet_runtime_failing_is_unknown_though_another_answers(host: Host, failure: str) -> None:
    with ExitStack() as stack:
        distro = host.runtime(stack, CONTAINERD)
        host.write("/var/lib/kubelet/config.yaml", f"containerRuntimeEndpoint: unix://{K3S}\n")
        host.pod_dirs("some-pod")
        if failure == "slow":
            host.runtime(stack, K3S).set_behaviour("Version", delay=30)
        elif failure == "unavailable":
            host.mkdir(os.path.dirname(K3S))
            with socket.socket(socket.AF_UNIX) as dead:  # the socket file stays, nobody listens
                dead.bind(host.p(K3S))
        view = host.query(timeout=SHORT)
        assert view.state is RuntimeState.UNKNOWN
        expected = {"down": "no CRI socket found", "slow": "Version: timeout",
                    "unavailable": "Version: unavailable"}[failure]
        assert expected in view.reason and host.p(K3S) in view.reason
        assert "containerRuntimeEndpoint in /var/lib/kubelet/config.yaml" in view.endpoint_reason
        assert distro.calls == []


def test_several_well_known_sockets_answering_is_unknown_naming_them(host: Host) -> None:
    with ExitStack() as stack:
        host.runtime(stack, CONTAINERD).add_pod(*im_pod())
        host.runtime(stack, CRIO)
        host.pod_dirs()
        view = host.query()
        assert view.state is RuntimeState.UNKNOWN
        assert host.dial(CONTAINERD) in view.reason and host.dial(CRIO) in view.reason
        assert view.instance_managers == ()


def test_a_well_known_socket_that_fails_is_unknown_never_skipped(host: Host) -> None:
    with ExitStack() as stack:
        host.runtime(stack, CONTAINERD).update(runtime_api_version="v1alpha2")
        good = host.runtime(stack, CRIO)
        host.pod_dirs()
        view = host.query()
        assert view.state is RuntimeState.UNKNOWN and "api-version" in view.reason
        assert good.calls == []


def test_the_one_well_known_socket_answering_is_used(host: Host) -> None:
    with ExitStack() as stack:
        cri = host.runtime(stack, CRIO)
        pod = im_pod(container_state="CONTAINER_EXITED")
        cri.add_pod(*pod)
        host.pod_dirs(uid_of(pod), "a-pod-of-another-runtime")
        view = host.query()
        assert (view.state, view.endpoint) == (RuntimeState.KNOWN, host.dial(CRIO))
        assert "the one well-known socket that answers" in view.endpoint_reason
        assert "knows 1 of 2 pod UID(s)" in view.endpoint_reason


def test_a_runtime_that_knows_none_of_kubelets_pods_is_not_kubelets(host: Host) -> None:
    with ExitStack() as stack:
        host.runtime(stack, CONTAINERD).add_pod(*im_pod(container_state="CONTAINER_EXITED"))
        host.pod_dirs("11111111-2222-3333-4444-555555555555")
        view = host.query()
        assert view.state is RuntimeState.UNKNOWN
        assert "knows none of the 1 pod UID(s) in /var/lib/kubelet/pods: not kubelet's runtime" \
            in view.reason
        assert view.instance_managers == ()


def test_no_pods_directory_is_unknown_when_the_socket_was_only_guessed(host: Host) -> None:
    with ExitStack() as stack:
        host.runtime(stack, CONTAINERD)
        view = host.query()
        assert view.state is RuntimeState.UNKNOWN
        assert "/var/lib/kubelet/pods does not exist" in view.reason


def test_no_pods_directory_is_accepted_when_a_file_names_the_runtime(host: Host) -> None:
    with ExitStack() as stack:
        host.runtime(stack, CONTAINERD)
        host.write("/var/lib/kubelet/config.yaml", f"containerRuntimeEndpoint: {CONTAINERD}\n")
        view = host.query()
        assert view.state is RuntimeState.KNOWN, view.reason
        assert "not cross-checked: /var/lib/kubelet/pods does not exist" in view.endpoint_reason


def test_an_empty_pods_directory_is_unknown_when_the_socket_was_only_guessed(host: Host) -> None:
    # A leftover, empty /var/lib/kubelet/pods beside a second runtime that is not kubelet's (kubelet
    # runs with its own root and socket): nothing proves that runtime is kubelet's.
    with ExitStack() as stack:
        host.runtime(stack, CONTAINERD)
        host.pod_dirs()
        view = host.query()
        assert view.state is RuntimeState.UNKNOWN
        assert "/var/lib/kubelet/pods is empty: cannot check that" in view.reason
        assert view.instance_managers == ()


def test_an_empty_pods_directory_is_accepted_when_a_file_names_the_runtime(host: Host) -> None:
    with ExitStack() as stack:
        host.runtime(stack, CONTAINERD)
        host.pod_dirs()
        host.write("/var/lib/kubelet/config.yaml", f"containerRuntimeEndpoint: {CONTAINERD}\n")
        view = host.query()
        assert view.state is RuntimeState.KNOWN, view.reason
        assert "not cross-checked: /var/lib/kubelet/pods is empty" in view.endpoint_reason


def test_a_kubelet_file_not_understood_makes_the_runtime_unknown(host: Host) -> None:
    with ExitStack() as stack:
        host.runtime(stack, CONTAINERD)
        host.pod_dirs()
        host.write("/var/lib/kubelet/config.yaml", "containerRuntimeEndpoint:\n  - a\n")
        view = host.query()
        assert view.state is RuntimeState.UNKNOWN
        assert view.reason.startswith("cannot tell kubelet's runtime: /var/lib/kubelet/config.yaml:1")
