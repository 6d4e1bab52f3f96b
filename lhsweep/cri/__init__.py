"""The container runtime side: a CRI v1 client and the instance-manager view (events: cri.events)."""

from __future__ import annotations

from lhsweep.cri.client import CriCallError, CriClient, CriUnimplementedError, Failure
from lhsweep.cri.view import query_runtime

__all__ = [
    "CriCallError",
    "CriClient",
    "CriUnimplementedError",
    "Failure",
    "query_runtime",
]
