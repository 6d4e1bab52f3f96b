"""lhsweep's CRI wire codec against the installed protobuf: same values, never looser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lhsweep.cri import wire
from tests import cri_pb2

REPO = Path(__file__).resolve().parent.parent
SCALARS: dict[str, st.SearchStrategy[Any]] = {
    "string": st.text(max_size=8),
    "int64": st.integers(-(1 << 63), (1 << 63) - 1),
    "uint32": st.integers(0, (1 << 32) - 1),
    "bool": st.booleans(),
}
# Open (proto3) enums: numbers the schema does not name arrive as they are.
ENUM_NUMBERS = st.integers(-(1 << 31), (1 << 31) - 1) | st.integers(-2, 6)


def _spec(message: str, field: str) -> str:
    return next(kind for name, _, kind in wire.MESSAGES[message] if name == field)


def _values(message: str, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Field values for `message` (each field present or not), nested messages included."""
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for name, _, kind in wire.MESSAGES[message]:
        if kind in SCALARS:
            fields[name] = SCALARS[kind]
        elif kind == "map":
            fields[name] = st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3)
        elif kind in wire.ENUMS:
            fields[name] = ENUM_NUMBERS
        elif depth < 3:
            inner = _values(kind.removeprefix("repeated "), depth + 1)
            fields[name] = st.lists(inner, max_size=3) if kind.startswith("repeated ") else inner
    return st.fixed_dictionaries({}, optional=fields)


def _message_and_values() -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    return st.sampled_from(sorted(wire.MESSAGES)).flatmap(
        lambda name: st.tuples(st.just(name), _values(name)))


def _protobuf(message: str, values: dict[str, Any]) -> Any:
    """The same message built with protobuf's own classes."""
    built = getattr(cri_pb2, message)()
    for name, value in values.items():
        kind = _spec(message, name)
        if kind == "map":
            getattr(built, name).update(value)
        elif kind.startswith("repeated "):
            for item in value:
                getattr(built, name).add().MergeFrom(_protobuf(kind.removeprefix("repeated "), item))
        elif kind in SCALARS or kind in wire.ENUMS:
            setattr(built, name, value)
        else:
            getattr(built, name).SetInParent()
            getattr(built, name).MergeFrom(_protobuf(kind, value))
    return built


def _assert_same(message: str, ours: wire.Message, theirs: Any) -> None:
    """Every field of the schema reads the same from both."""
    for name, _, kind in wire.MESSAGES[message]:
        mine, other = getattr(ours, name), getattr(theirs, name)
        if kind == "map":
            assert mine == dict(other), (message, name)
        elif kind.startswith("repeated "):
            assert len(mine) == len(other), (message, name)
            for a, b in zip(mine, other):
                _assert_same(kind.removeprefix("repeated "), a, b)
        elif kind in SCALARS or kind in wire.ENUMS:
            assert mine == other, (message, name, mine, other)
        else:
            assert ours.has(name) == theirs.HasField(name), (message, name)
            _assert_same(kind, mine, other)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_message_and_values())
def test_decodes_what_protobuf_writes_to_the_same_values(case: tuple[str, dict[str, Any]]) -> None:
    """Every message of the schema, as protobuf serializes it, reads back field for field."""
    message, values = case
    theirs = _protobuf(message, values)
    _assert_same(message, wire.decode(message, theirs.SerializeToString()), theirs)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_message_and_values())
def test_writes_what_protobuf_reads_as_the_same_message(case: tuple[str, dict[str, Any]]) -> None:
    """What lhsweep encodes, protobuf parses into exactly the message built from the same values."""
    message, values = case
    assert getattr(cri_pb2, message).FromString(wire.encode(message, values)) == _protobuf(message, values)


def _mutations(message: str) -> st.SearchStrategy[bytes]:
    """Valid serializations torn, spliced, or with a byte changed, plus plain random bytes."""
    def mutate(data: bytes, at: int, byte: int, how: str) -> bytes:
        at = at % (len(data) + 1)
        if how == "cut":
            return data[:at]
        if how == "insert":
            return data[:at] + bytes([byte]) + data[at:]
        return data[:at] + bytes([byte]) + data[at + 1:]

    valid = _values(message).map(lambda v: _protobuf(message, v).SerializeToString())
    return st.binary(max_size=40) | st.builds(mutate, valid, st.integers(0, 200), st.integers(0, 255),
                                              st.sampled_from(["cut", "insert", "replace"]))


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(wire.MESSAGES)).flatmap(lambda m: st.tuples(st.just(m), _mutations(m))))
@example(("PodSandbox", b"\x0a\x02\xff\xfe"))  # id: not UTF-8
@example(("PodSandbox", b"\x08\x01"))  # id (a string) sent as a varint
@example(("Container", b"\x30" + b"\xff" * 9 + b"\x02"))  # state: a varint over 64 bits
@example(("PodSandbox", b"\x13\x14"))  # a group (wire type 3)
@example(("PodSandbox", b"\x00\x01"))  # field number 0
def test_accepts_nothing_protobuf_refuses(case: tuple[str, bytes]) -> None:
    """Bytes lhsweep decodes, protobuf decodes to the same values; all others raise WireError."""
    message, data = case
    try:
        ours = wire.decode(message, data)
    except wire.WireError:
        return
    try:
        theirs = getattr(cri_pb2, message).FromString(data)
    except DecodeError as exc:
        pytest.fail(f"{message} {data!r}: lhsweep read {ours!r}, protobuf refuses it: {exc}")
    _assert_same(message, ours, theirs)


@pytest.mark.parametrize(("message", "data", "says"), [
    ("PodSandbox", b"\x0a\x05ab", "runs past the end"),
    ("PodSandbox", b"\x20\xff\xff", "runs past the end"),
    ("PodSandbox", b"\x20" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
    ("PodSandbox", b"\x20" + b"\xff" * 9 + b"\x02", "over 64 bits"),
    ("PodSandbox", b"\x08\x01", "PodSandbox.id: wire type 0, expected 2"),
    ("PodSandbox", b"\x22\x00", "PodSandbox.created_at: wire type 2, expected 0"),
    ("PodSandbox", b"\x12\x02\x08\x01", "PodSandboxMetadata.name: wire type 0"),
    ("PodSandbox", b"\x0a\x01\xff", "PodSandbox.id: not UTF-8"),
    ("PodSandbox", b"\x2a\x03\x0a\x01\xc3", "key: not UTF-8"),
    ("PodSandbox", b"\x13\x14", "wire type 3"),
    ("PodSandbox", b"\x00\x00", "field number 0"),
    ("PodSandbox", b"\x80\x80\x80\x80\x10\x00", "out of range"),
    ("Container", b"\x39\x00\x00\x00", "runs past the end"),
])
def test_bytes_that_do_not_fit_are_refused_with_where(message: str, data: bytes, says: str) -> None:
    """Torn, overlong, mistyped and non-UTF-8 fields are refused, naming the field."""
    with pytest.raises(wire.WireError, match=says):
        wire.decode(message, data)


def test_fields_not_in_the_schema_are_skipped_and_defaults_read() -> None:
    """Unknown fields of every wire type are passed over; absent ones read as proto3 defaults."""
    unknown = b"\x78\x05" + b"\x81\x01" + b"\x00" * 8 + b"\x8a\x01\x02hi" + b"\x95\x01" + b"\x00" * 4
    sandbox = wire.decode("PodSandbox", unknown + b"\x0a\x01s")
    assert sandbox.id == "s" and sandbox.created_at == 0 and sandbox.labels == {}
    assert not sandbox.has("metadata") and sandbox.metadata.uid == "" and sandbox.state == 0
    assert wire.decode("ListPodSandboxResponse", b"").items == []
    with pytest.raises(AttributeError, match="PodSandbox has no field 'pid'"):
        _ = sandbox.pid


def test_a_message_field_given_twice_is_merged_as_protobuf_does() -> None:
    """Two metadata fields merge (the later scalar wins, both parts kept), like protobuf's MergeFrom."""
    first = cri_pb2.PodSandboxMetadata(name="a", uid="u").SerializeToString()
    second = cri_pb2.PodSandboxMetadata(name="b", namespace="ns").SerializeToString()
    data = b"\x12" + bytes([len(first)]) + first + b"\x12" + bytes([len(second)]) + second
    meta = wire.decode("PodSandbox", data).metadata
    assert (meta.name, meta.uid, meta.namespace) == ("b", "u", "ns")
    assert cri_pb2.PodSandbox.FromString(data).metadata.name == "b"


def test_no_field_name_hides_a_message_attribute() -> None:
    """`message.type`, `.values` and `.has` are the Message's own: no schema field may be named so."""
    names = {name for fields in wire.MESSAGES.values() for name, _, _ in fields}
    assert not names & {"type", "values", "has"}


def test_encode_refuses_values_the_schema_cannot_carry() -> None:
    """A field the message lacks or a number out of its type's range is a caller's error."""
    with pytest.raises(TypeError, match="VersionRequest has no field pid"):
        wire.encode("VersionRequest", {"pid": 1})
    with pytest.raises(ValueError, match="attempt: -1 out of range for uint32"):
        wire.encode("ContainerMetadata", {"attempt": -1})


def test_enum_names_are_the_schemas_and_unnamed_numbers_none() -> None:
    """Names by number; a number the schema does not name (a newer runtime's state) is None."""
    assert wire.enum_name("ContainerState", 2) == "CONTAINER_EXITED"
    assert wire.enum_name("ContainerState", 4) is None
    assert wire.enum_name("ContainerState", -1) is None


@pytest.mark.process
def test_lhsweep_loads_no_protobuf() -> None:
    """Neither a scan, a sweep nor the daemon imports a protobuf module (a .pth may make `google`)."""
    code = ("import sys, lhsweep.cli, lhsweep.sweep, lhsweep.act, lhsweep.daemon.loop, "
            "lhsweep.daemon.cri_watch, lhsweep.cri.events; "
            "print(sorted(m for m in sys.modules if m.startswith('google.protobuf')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                            check=True)
    assert result.stdout.strip() == "[]"
