"""The generated runtime_pb2 is current and loads with every protobuf implementation present."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROUND_TRIP = """
from google.protobuf.internal import api_implementation
from lhsweep.cri import runtime_pb2 as pb
sandbox = pb.PodSandbox(id="s", state=pb.SANDBOX_NOTREADY, created_at=7, labels={"a": "b"},
                        metadata=pb.PodSandboxMetadata(name="n", namespace="ns"))
back = pb.PodSandbox.FromString(sandbox.SerializeToString())
assert back == sandbox and back.metadata.namespace == "ns", back
print(api_implementation.Type())
"""


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc (protobuf-compiler) not installed")
def test_generated_module_matches_the_proto() -> None:
    result = subprocess.run([os.path.join(REPO, "dev", "gen-proto"), "--check"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("implementation", ["python", "upb", "cpp"])
def test_generated_module_loads_with_each_protobuf_implementation(implementation: str) -> None:
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": implementation}
    result = subprocess.run([sys.executable, "-W", "error", "-c", ROUND_TRIP], env=env,
                            capture_output=True, text=True, check=False)
    if "is not available" in result.stderr:
        pytest.skip(f"protobuf implementation {implementation} not in this environment")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == implementation
