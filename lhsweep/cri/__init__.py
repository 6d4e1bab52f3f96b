"""The container runtime side: a CRI v1 client, the instance-manager view and container events."""

from __future__ import annotations

from lhsweep.cri.client import CriCallError, CriClient, CriUnimplementedError, Failure
from lhsweep.cri.events import ContainerEvent, ContainerEventStream
from lhsweep.cri.view import query_runtime

__all__ = [
    "ContainerEvent",
    "ContainerEventStream",
    "CriCallError",
    "CriClient",
    "CriUnimplementedError",
    "Failure",
    "query_runtime",
]
