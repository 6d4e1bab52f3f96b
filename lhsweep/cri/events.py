"""GetContainerEvents as an iterator that another thread can cancel."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, NamedTuple, Optional

import grpc

from lhsweep.cri import runtime_pb2
from lhsweep.cri.client import (
    SERVICE,
    CriCallError,
    Failure,
    decode,
    open_channel,
    rpc_failure,
    serialize,
)

CALL = "GetContainerEvents"


class ContainerEvent(NamedTuple):
    """One container event: the container's id and 'created'/'started'/'stopped'/'deleted'."""

    container_id: str
    event_type: str


class ContainerEventStream:
    """Iterate container events until cancel(); errors are CriCallError.

    A runtime without the call raises CriUnimplementedError (failure UNIMPLEMENTED) on the
    first next(): fall back to polling. The stream ending for any reason other than cancel()
    raises CriCallError, so the caller knows to poll and subscribe again.
    """

    def __init__(self, endpoint: str, timeout: float) -> None:
        self.endpoint = endpoint
        self.timeout = timeout
        self._lock = threading.Lock()
        self._cancelled = False
        self._call: Optional[Any] = None
        self._channel: Optional[grpc.Channel] = None

    def cancel(self) -> None:
        """Stop the iteration from any thread; the iterator then ends without an error."""
        with self._lock:
            self._cancelled = True
            if self._call is not None:
                self._call.cancel()

    @property
    def cancelled(self) -> bool:
        """True once cancel() was called."""
        return self._cancelled

    def __iter__(self) -> Iterator[ContainerEvent]:
        try:
            yield from self._events()
        finally:
            self._close()

    def _events(self) -> Iterator[ContainerEvent]:
        call = self._subscribe()
        if call is None:
            return
        try:
            for data in call:
                yield _event(decode(self.endpoint, CALL, runtime_pb2.ContainerEventResponse, data))
        except grpc.RpcError as exc:
            if self._cancelled:
                return
            raise rpc_failure(self.endpoint, CALL, exc, self.timeout) from None
        if not self._cancelled:
            raise CriCallError(self.endpoint, CALL, Failure.UNAVAILABLE, "event stream ended")

    def _subscribe(self) -> Optional[Any]:
        """Connect within the timeout and start the call; None when already cancelled."""
        if self._cancelled:
            return None
        channel = open_channel(self.endpoint, CALL)
        with self._lock:
            self._channel = channel
        try:
            grpc.channel_ready_future(channel).result(timeout=self.timeout)
        except grpc.FutureTimeoutError:
            raise CriCallError(self.endpoint, CALL, Failure.TIMEOUT,
                               f"not connected within {self.timeout:g}s") from None
        method = channel.unary_stream(SERVICE + CALL, request_serializer=serialize,
                                      response_deserializer=None)
        with self._lock:
            if self._cancelled:
                return None
            self._call = method(runtime_pb2.GetEventsRequest())
            return self._call

    def _close(self) -> None:
        with self._lock:
            channel, self._channel, self._call = self._channel, None, None
        if channel is not None:
            channel.close()


def _event(message: runtime_pb2.ContainerEventResponse) -> ContainerEvent:
    try:
        name = runtime_pb2.ContainerEventType.Name(message.container_event_type)
    except ValueError:
        name = "CONTAINER_UNKNOWN_EVENT"
    return ContainerEvent(message.container_id, name.split("_")[1].lower())
