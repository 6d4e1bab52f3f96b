"""The CRI v1 messages lhsweep uses, read and written in protobuf's wire format by lhsweep itself.

The schema is plain data: the field numbers are those of docs/design.md "CRI field numbers", and
lhsweep/cri/runtime.proto states the same schema for readers (tests/test_cri_proto.py checks that
protoc reads it into exactly the descriptor this data makes). No protobuf library is loaded at run
time: importing one cost a third of a cold `lhsweep scan`'s imports and 5 MiB of the daemon's RSS.

Decoding is stricter than protobuf's, never looser: bytes it accepts, protobuf accepts with the
same values (tests/test_cri_wire.py checks this against the installed protobuf). It refuses what a
CRI runtime never sends (a known field with another wire type, groups, a varint over 64 bits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

ENUMS: dict[str, tuple[str, ...]] = {
    "PodSandboxState": ("SANDBOX_READY", "SANDBOX_NOTREADY"),
    "ContainerState": ("CONTAINER_CREATED", "CONTAINER_RUNNING", "CONTAINER_EXITED",
                       "CONTAINER_UNKNOWN"),
    "ContainerEventType": ("CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT",
                           "CONTAINER_STOPPED_EVENT", "CONTAINER_DELETED_EVENT"),
}

# Message -> its fields as (name, number, type). A type is a scalar ("string", "int64", "uint32",
# "bool"), "map" (map<string, string>), the name of an enum or message above it, or
# "repeated <message>".
MESSAGES: dict[str, tuple[tuple[str, int, str], ...]] = {
    "VersionRequest": (("version", 1, "string"),),
    "VersionResponse": (("version", 1, "string"), ("runtime_name", 2, "string"),
                        ("runtime_version", 3, "string"), ("runtime_api_version", 4, "string")),
    "PodSandboxStateValue": (("state", 1, "PodSandboxState"),),
    "PodSandboxFilter": (("id", 1, "string"), ("state", 2, "PodSandboxStateValue"),
                         ("label_selector", 3, "map")),
    "ListPodSandboxRequest": (("filter", 1, "PodSandboxFilter"),),
    "PodSandboxMetadata": (("name", 1, "string"), ("uid", 2, "string"),
                           ("namespace", 3, "string"), ("attempt", 4, "uint32")),
    "PodSandbox": (("id", 1, "string"), ("metadata", 2, "PodSandboxMetadata"),
                   ("state", 3, "PodSandboxState"), ("created_at", 4, "int64"),
                   ("labels", 5, "map"), ("annotations", 6, "map"),
                   ("runtime_handler", 7, "string")),
    "ListPodSandboxResponse": (("items", 1, "repeated PodSandbox"),),
    "ContainerStateValue": (("state", 1, "ContainerState"),),
    "ContainerFilter": (("id", 1, "string"), ("state", 2, "ContainerStateValue"),
                        ("pod_sandbox_id", 3, "string"), ("label_selector", 4, "map")),
    "ListContainersRequest": (("filter", 1, "ContainerFilter"),),
    "ContainerMetadata": (("name", 1, "string"), ("attempt", 2, "uint32")),
    "ImageSpec": (("image", 1, "string"),),
    "Container": (("id", 1, "string"), ("pod_sandbox_id", 2, "string"),
                  ("metadata", 3, "ContainerMetadata"), ("image", 4, "ImageSpec"),
                  ("image_ref", 5, "string"), ("state", 6, "ContainerState"),
                  ("created_at", 7, "int64"), ("labels", 8, "map"), ("annotations", 9, "map")),
    "ListContainersResponse": (("containers", 1, "repeated Container"),),
    "ContainerStatusRequest": (("container_id", 1, "string"), ("verbose", 2, "bool")),
    # status = 1 (ContainerStatus) exists; lhsweep reads only the verbose info map.
    "ContainerStatusResponse": (("info", 2, "map"),),
    "GetEventsRequest": (),
    # pod_sandbox_status = 4 and containers_statuses = 5 exist; lhsweep does not read them.
    "ContainerEventResponse": (("container_id", 1, "string"),
                               ("container_event_type", 2, "ContainerEventType"),
                               ("created_at", 3, "int64")),
}

# RuntimeService methods: (name, request, response, server streaming).
METHODS = (
    ("Version", "VersionRequest", "VersionResponse", False),
    ("ListPodSandbox", "ListPodSandboxRequest", "ListPodSandboxResponse", False),
    ("ListContainers", "ListContainersRequest", "ListContainersResponse", False),
    ("ContainerStatus", "ContainerStatusRequest", "ContainerStatusResponse", False),
    ("GetContainerEvents", "GetEventsRequest", "ContainerEventResponse", True),
)

# A map<string, string> field is a repeated message of this shape on the wire.
MAP_ENTRY = "<map entry>"
VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1
_U32 = (1 << 32) - 1
_SCALARS = {"string": LENGTH, "int64": VARINT, "uint32": VARINT, "bool": VARINT}
# The values each varint kind can carry, as [low, high).
_RANGES = {"int64": (-(1 << 63), 1 << 63), "enum": (-(1 << 31), 1 << 31), "uint32": (0, 1 << 32),
           "bool": (0, 2)}


class WireError(ValueError):
    """Bytes that are not a valid message of the schema; str() says where."""


class _Field(NamedTuple):
    name: str
    number: int
    kind: str  # "string", "int64", "uint32", "bool", "enum", "map", "message", "repeated"
    wire: int
    target: str  # the enum or message type of enum, message and repeated fields, else ""


def _field(name: str, number: int, spec: str) -> _Field:
    if spec in _SCALARS:
        return _Field(name, number, spec, _SCALARS[spec], "")
    if spec == "map":
        return _Field(name, number, "map", LENGTH, MAP_ENTRY)
    if spec.startswith("repeated "):
        return _Field(name, number, "repeated", LENGTH, spec[len("repeated "):])
    if spec in ENUMS:
        return _Field(name, number, "enum", VARINT, spec)
    return _Field(name, number, "message", LENGTH, spec)


_FIELDS: dict[str, tuple[_Field, ...]] = {
    message: tuple(_field(*spec) for spec in fields)
    for message, fields in {**MESSAGES, MAP_ENTRY: (("key", 1, "string"), ("value", 2, "string"))}.items()
}
_BY_NUMBER: dict[str, dict[int, _Field]] = {
    message: {f.number: f for f in fields} for message, fields in _FIELDS.items()
}
_BY_NAME: dict[str, dict[str, _Field]] = {
    message: {f.name: f for f in fields} for message, fields in _FIELDS.items()
}


class Message:
    """One decoded message: `message.field` is the field's value, its proto3 default if absent."""

    __slots__ = ("type", "values")

    def __init__(self, type_name: str, values: dict[str, Any]) -> None:
        self.type = type_name
        self.values = values

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            pass
        field = _BY_NAME[self.type].get(name)
        if field is None:
            raise AttributeError(f"{self.type} has no field {name!r}")
        return _default(field)

    def has(self, name: str) -> bool:
        """True when the wire carried the field (for a message field: protobuf's HasField)."""
        return name in self.values

    def __repr__(self) -> str:
        return f"{self.type}({self.values!r})"


def _default(field: _Field) -> Any:
    if field.kind == "string":
        return ""
    if field.kind == "bool":
        return False
    if field.kind == "map":
        return {}
    if field.kind == "repeated":
        return []
    if field.kind == "message":
        return Message(field.target, {})
    return 0


def enum_name(enum: str, number: int) -> Optional[str]:
    """The name of value `number` of `enum`; None for a number the schema does not name."""
    names = ENUMS[enum]
    return names[number] if 0 <= number < len(names) else None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it; WireError when torn or over 64 bits."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise WireError("a varint runs past the end")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            if result > _U64:
                raise WireError("a varint over 64 bits")
            return result, pos
        shift += 7
        if shift >= 70:
            raise WireError("a varint longer than 10 bytes")


def decode(message: str, data: bytes) -> Message:
    """The message of type `message` in `data`; raises WireError when the bytes do not fit."""
    fields = _BY_NUMBER[message]
    values: dict[str, Any] = {}
    parts: dict[_Field, list[bytes]] = {}  # a singular message given more than once is merged
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0 or key > _U32:
            raise WireError(f"{message}: field number {number} out of range")
        value, pos = _wire_value(f"{message}: field {number}", data, pos, wire)
        field = fields.get(number)
        if field is None:
            continue  # a field lhsweep does not read (a newer CRI's, or one left out)
        if wire != field.wire:
            raise WireError(f"{message}.{field.name}: wire type {wire}, expected {field.wire}")
        if field.kind == "message":
            parts.setdefault(field, []).append(value)
        else:
            _store(message, values, field, value)
    for field, chunks in parts.items():
        values[field.name] = decode(field.target, b"".join(chunks))
    return Message(message, values)


def _wire_value(where: str, data: bytes, pos: int, wire: int) -> tuple[Any, int]:
    """A field's value after its key: an int, bytes, or None for a fixed-size one (never read)."""
    if wire == VARINT:
        return _varint(data, pos)
    if wire == LENGTH:
        size, pos = _varint(data, pos)
        if size > len(data) - pos:
            raise WireError(f"{where} runs past the end")
        return data[pos:pos + size], pos + size
    if wire in (FIXED64, FIXED32):
        pos += 8 if wire == FIXED64 else 4
        if pos > len(data):
            raise WireError(f"{where} runs past the end")
        return None, pos
    raise WireError(f"{where} has wire type {wire} (groups are not CRI's)")


def _store(message: str, values: dict[str, Any], field: _Field, value: Any) -> None:
    """Set (or, for map and repeated fields, add to) the field from its wire value."""
    kind = field.kind
    if kind == "string":
        try:
            values[field.name] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise WireError(f"{message}.{field.name}: not UTF-8") from None
    elif kind == "int64":
        values[field.name] = value - (1 << 64) if value >> 63 else value
    elif kind == "enum":  # an int32 on the wire, sign-extended to 64 bits when negative
        low = value & _U32
        values[field.name] = low - (1 << 32) if low >> 31 else low
    elif kind == "uint32":
        values[field.name] = value & _U32
    elif kind == "bool":
        values[field.name] = value != 0
    elif kind == "map":
        entry = decode(MAP_ENTRY, value)
        values.setdefault(field.name, {})[entry.key] = entry.value
    else:  # repeated
        values.setdefault(field.name, []).append(decode(field.target, value))


def _put_varint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)


def _put_length(out: bytearray, number: int, payload: bytes) -> None:
    _put_varint(out, number << 3 | LENGTH)
    _put_varint(out, len(payload))
    out += payload


def encode(message: str, values: Mapping[str, Any]) -> bytes:
    """The wire bytes of a `message` with these field values (proto3: defaults are left out)."""
    unknown = set(values) - set(_BY_NAME[message])
    if unknown:
        raise TypeError(f"{message} has no field {', '.join(sorted(unknown))}")
    out = bytearray()
    for field in _FIELDS[message]:
        if field.name in values:
            _put_field(out, field, values[field.name])
    return bytes(out)


def _put_field(out: bytearray, field: _Field, value: Any) -> None:
    if field.kind == "string":
        if value:
            _put_length(out, field.number, value.encode("utf-8"))
    elif field.kind == "message":  # a message field set, even if empty, is sent
        _put_length(out, field.number, encode(field.target, value))
    elif field.kind == "map":
        for key, item in value.items():
            _put_length(out, field.number, encode(MAP_ENTRY, {"key": key, "value": item}))
    elif field.kind == "repeated":
        for item in value:
            _put_length(out, field.number, encode(field.target, item))
    elif value:
        _put_varint(out, field.number << 3 | VARINT)
        _put_varint(out, _scalar_bits(field, value))


def _scalar_bits(field: _Field, value: Any) -> int:
    """An int64, uint32, enum or bool value as the varint's 64 bits; ValueError out of range."""
    limits = _RANGES[field.kind]
    number = int(value)
    if not limits[0] <= number < limits[1]:
        raise ValueError(f"{field.name}: {value!r} out of range for {field.kind}")
    return number & _U64
