"""The CRI schema lhsweep encodes and decodes: the one runtime.proto states, the CRI v1 numbers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from tests import cri_pb2

REPO = Path(__file__).resolve().parent.parent
ROUND_TRIP = """
from google.protobuf import json_format
from google.protobuf.internal import api_implementation
from tests import cri_pb2 as pb
sandbox = pb.PodSandbox(id="s", state=pb.SANDBOX_NOTREADY, created_at=7, labels={"a": "b"},
                        metadata=pb.PodSandboxMetadata(name="n", namespace="ns"))
back = pb.PodSandbox.FromString(sandbox.SerializeToString())
assert back == sandbox and back.metadata.namespace == "ns" and dict(back.labels) == {"a": "b"}, back
container = json_format.ParseDict({"id": "c", "state": "CONTAINER_EXITED"}, pb.Container())
assert container.state == pb.CONTAINER_EXITED == 2, container
assert pb.ContainerEventType.Name(3) == "CONTAINER_DELETED_EVENT"
print(api_implementation.Type())
"""


def _without_json_names(proto: descriptor_pb2.DescriptorProto) -> None:
    """protoc fills in json_name; a descriptor pool derives the same names itself."""
    for field in proto.field:
        field.ClearField("json_name")
    for nested in proto.nested_type:
        _without_json_names(nested)


def _protoc_descriptor(tmp_path: Path) -> descriptor_pb2.FileDescriptorProto:
    out = tmp_path / "runtime.pb"
    subprocess.run(["protoc", f"--proto_path={REPO}", f"--descriptor_set_out={out}",
                    "lhsweep/cri/runtime.proto"], check=True, capture_output=True, text=True)
    proto = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    for message in proto.message_type:
        _without_json_names(message)
    return proto


def test_runtime_proto_states_the_schema_the_code_builds(tmp_path: Path) -> None:
    """protoc reads lhsweep/cri/runtime.proto into exactly the descriptor lhsweep's schema makes."""
    if shutil.which("protoc") is None:
        if os.environ.get("CI"):
            pytest.fail("missing in CI: protoc (dev/deps/cri.apt)")
        pytest.skip("needs protoc (protobuf-compiler)")
    assert _protoc_descriptor(tmp_path) == cri_pb2.file_descriptor_proto()


def test_field_numbers_are_the_cri_v1_ones() -> None:
    """Spot checks against docs/design.md "CRI field numbers": the numbers lhsweep's decisions rest on."""
    def number(message: str, field: str) -> int:
        return int(cri_pb2.DESCRIPTOR.message_types_by_name[message].fields_by_name[field].number)

    assert number("PodSandbox", "created_at") == 4 and number("PodSandbox", "labels") == 5
    assert number("Container", "state") == 6 and number("Container", "created_at") == 7
    assert number("Container", "labels") == 8 and number("ContainerFilter", "pod_sandbox_id") == 3
    assert number("PodSandboxFilter", "label_selector") == 3
    assert number("ContainerEventResponse", "container_event_type") == 2
    assert number("ContainerStatusRequest", "verbose") == 2
    assert number("ContainerStatusResponse", "info") == 2
    assert cri_pb2.ContainerState.Value("CONTAINER_RUNNING") == 1
    assert cri_pb2.PodSandboxState.Value("SANDBOX_NOTREADY") == 1
    method = cri_pb2.DESCRIPTOR.services_by_name["RuntimeService"].methods_by_name
    assert method["GetContainerEvents"].output_type.name == "ContainerEventResponse"
    assert method["ContainerStatus"].output_type.name == "ContainerStatusResponse"


def _python(code: str, implementation: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": implementation}
    return subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, cwd=REPO,
                          capture_output=True, text=True, check=False)


@pytest.mark.process  # one interpreter per implementation
@pytest.mark.parametrize("implementation", ["python", "upb", "cpp"])
def test_messages_load_with_each_protobuf_implementation(implementation: str) -> None:
    """A round trip through bytes and JSON, with warnings as errors, on each implementation here."""
    # protobuf 3.x reports the requested implementation even when it cannot load it: import one too.
    probe = _python("from google.protobuf import descriptor_pb2\n"
                    "from google.protobuf.internal import api_implementation as a; print(a.Type())",
                    implementation)
    if probe.returncode != 0 or probe.stdout.strip() != implementation:
        pytest.skip(f"protobuf implementation {implementation} not in this environment")
    result = _python(ROUND_TRIP, implementation)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == implementation
