"""protobuf's own classes for lhsweep's CRI schema (lhsweep/cri/wire.py), for the tests' side only.

The fake runtime (tests/crifake.py) answers with them, so lhsweep's own decoder is tested against
another implementation of the format. Code that protoc generates is tied to one protobuf
generation (3.20+ builder calls, 5.26+ runtime version checks); here the schema is turned into a
FileDescriptorProto, added to a private descriptor pool and given message classes by the installed
protobuf itself, so the same file loads on protobuf 3.14 to 7.x (pure-python, cpp and upb).
tests/test_cri_proto.py checks that protoc reads lhsweep/cri/runtime.proto into exactly this
descriptor.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

from lhsweep.cri.wire import ENUMS, MESSAGES, METHODS

PACKAGE = "runtime.v1"
FILE_NAME = "lhsweep/cri/runtime.proto"

_Field = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _Field.TYPE_STRING, "int64": _Field.TYPE_INT64, "uint32": _Field.TYPE_UINT32,
            "bool": _Field.TYPE_BOOL}


def _map_entry_name(field: str) -> str:
    """protoc's name for a map field's entry message: label_selector -> LabelSelectorEntry."""
    return "".join(part.capitalize() for part in field.split("_")) + "Entry"


def _add_field(message: descriptor_pb2.DescriptorProto, name: str, number: int, kind: str) -> None:
    field = message.field.add(name=name, number=number, label=_Field.LABEL_OPTIONAL)
    if kind.startswith("repeated "):
        field.label = _Field.LABEL_REPEATED
        kind = kind[len("repeated "):]
    if kind in _SCALARS:
        field.type = _SCALARS[kind]
    elif kind == "map":
        entry = message.nested_type.add(name=_map_entry_name(name))
        entry.options.map_entry = True
        _add_field(entry, "key", 1, "string")
        _add_field(entry, "value", 2, "string")
        field.label = _Field.LABEL_REPEATED
        field.type = _Field.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{message.name}.{entry.name}"
    else:
        field.type = _Field.TYPE_ENUM if kind in ENUMS else _Field.TYPE_MESSAGE
        field.type_name = f".{PACKAGE}.{kind}"


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """The schema above as the FileDescriptorProto protoc would make of runtime.proto."""
    proto = descriptor_pb2.FileDescriptorProto(name=FILE_NAME, package=PACKAGE, syntax="proto3")
    for enum_name, values in ENUMS.items():
        enum = proto.enum_type.add(name=enum_name)
        for number, value in enumerate(values):
            enum.value.add(name=value, number=number)
    for message_name, fields in MESSAGES.items():
        message = proto.message_type.add(name=message_name)
        for name, number, kind in fields:
            _add_field(message, name, number, kind)
    service = proto.service.add(name="RuntimeService")
    for name, request, response, streaming in METHODS:
        method = service.method.add(name=name, input_type=f".{PACKAGE}.{request}",
                                    output_type=f".{PACKAGE}.{response}")
        if streaming:
            method.server_streaming = True
    return proto


def _message_class(descriptor: Descriptor) -> type[Any]:
    """The class for a descriptor: GetMessageClass (protobuf 4.22+), else MessageFactory (older)."""
    get_class = getattr(message_factory, "GetMessageClass", None)
    if get_class is not None:
        return get_class(descriptor)  # type: ignore[no-any-return]
    factory: Any = message_factory.MessageFactory(descriptor.file.pool)
    return factory.GetPrototype(descriptor)  # type: ignore[no-any-return]


# A private pool: another library's runtime.v1 in the default pool cannot clash with this one.
_POOL = descriptor_pool.DescriptorPool()
_POOL.AddSerializedFile(file_descriptor_proto().SerializeToString())
DESCRIPTOR = _POOL.FindFileByName(FILE_NAME)


def _message(name: str) -> type[Any]:
    return _message_class(DESCRIPTOR.message_types_by_name[name])


def _enum(name: str) -> EnumTypeWrapper:
    return EnumTypeWrapper(DESCRIPTOR.enum_types_by_name[name])


PodSandboxState = _enum("PodSandboxState")
ContainerState = _enum("ContainerState")
ContainerEventType = _enum("ContainerEventType")
SANDBOX_READY = PodSandboxState.Value("SANDBOX_READY")
SANDBOX_NOTREADY = PodSandboxState.Value("SANDBOX_NOTREADY")
CONTAINER_CREATED = ContainerState.Value("CONTAINER_CREATED")
CONTAINER_RUNNING = ContainerState.Value("CONTAINER_RUNNING")
CONTAINER_EXITED = ContainerState.Value("CONTAINER_EXITED")
CONTAINER_UNKNOWN = ContainerState.Value("CONTAINER_UNKNOWN")

VersionRequest = _message("VersionRequest")
VersionResponse = _message("VersionResponse")
PodSandboxStateValue = _message("PodSandboxStateValue")
PodSandboxFilter = _message("PodSandboxFilter")
ListPodSandboxRequest = _message("ListPodSandboxRequest")
PodSandboxMetadata = _message("PodSandboxMetadata")
PodSandbox = _message("PodSandbox")
ListPodSandboxResponse = _message("ListPodSandboxResponse")
ContainerStateValue = _message("ContainerStateValue")
ContainerFilter = _message("ContainerFilter")
ListContainersRequest = _message("ListContainersRequest")
ContainerMetadata = _message("ContainerMetadata")
ImageSpec = _message("ImageSpec")
Container = _message("Container")
ListContainersResponse = _message("ListContainersResponse")
ContainerStatusRequest = _message("ContainerStatusRequest")
ContainerStatusResponse = _message("ContainerStatusResponse")
GetEventsRequest = _message("GetEventsRequest")
ContainerEventResponse = _message("ContainerEventResponse")
