"""The CRI v1 messages lhsweep uses, made at import time from a schema written here (no protoc output).

Code that protoc generates is tied to one protobuf generation: 3.20+ builder calls, 5.26+ runtime
version checks. Here the schema is plain data turned into a FileDescriptorProto, added to a private
descriptor pool and given message classes by the installed protobuf itself, so the same file loads
on protobuf 3.14 to 7.x (pure-python, cpp and upb). The field numbers are those of docs/design.md
"CRI field numbers"; lhsweep/cri/runtime.proto states the same schema for readers and
tests/test_cri_proto.py checks that protoc reads it into exactly this descriptor.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper

PACKAGE = "runtime.v1"
FILE_NAME = "lhsweep/cri/runtime.proto"

ENUMS: dict[str, tuple[str, ...]] = {
    "PodSandboxState": ("SANDBOX_READY", "SANDBOX_NOTREADY"),
    "ContainerState": ("CONTAINER_CREATED", "CONTAINER_RUNNING", "CONTAINER_EXITED",
                       "CONTAINER_UNKNOWN"),
    "ContainerEventType": ("CONTAINER_CREATED_EVENT", "CONTAINER_STARTED_EVENT",
                           "CONTAINER_STOPPED_EVENT", "CONTAINER_DELETED_EVENT"),
}

# Message -> its fields as (name, number, type). A type is a scalar ("string", "int64", "uint32",
# "bool"),
# "map" (map<string, string>), the name of an enum or message above it, or "repeated <message>".
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
