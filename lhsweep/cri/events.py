"""GetContainerEvents as an iterator that another thread can cancel.

The stream is read through grpc.aio on an asyncio loop private to the iterating thread: grpcio's
synchronous stream iterator wakes every 0.1 s while it waits, an aio read sleeps until an event,
a cancel or the runtime's end. The loop runs only inside next(), so no other code (pyroute2's
sync classes refuse a running loop) ever finds one running, in that thread or any other.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, NamedTuple, Optional, TypeVar, Union

import grpc
import grpc.aio

from lhsweep.cri import wire
from lhsweep.cri.client import (
    CHANNEL_OPTIONS,
    SERVICE,
    CriCallError,
    Failure,
    channel_target,
    decode,
    rpc_failure,
)

CALL = "GetContainerEvents"
_Result = TypeVar("_Result")


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
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._step: Optional[asyncio.Task[Any]] = None
        # Only this object holds the channel and the call (never a local that a traceback could
        # keep): grpc core and its threads stay up until the channel object is freed.
        self._channel: Optional[grpc.aio.Channel] = None
        self._call: Optional[Any] = None

    def cancel(self) -> None:
        """Stop the iteration from any thread; the iterator then ends without an error."""
        with self._lock:
            self._cancelled = True
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._interrupt)

    @property
    def cancelled(self) -> bool:
        """True once cancel() was called."""
        return self._cancelled

    def __iter__(self) -> Iterator[ContainerEvent]:
        target = channel_target(self.endpoint, CALL)
        with self._lock:
            if self._cancelled:
                return
            self._loop = asyncio.new_event_loop()
        try:
            if self._run(self._subscribe(target)):
                yield from self._events()
        finally:
            self._close()

    def _events(self) -> Iterator[ContainerEvent]:
        data = self._run(self._read())
        while data is not None:
            yield _event(decode(self.endpoint, CALL, "ContainerEventResponse", data))
            data = self._run(self._read())

    def _run(self, step: Coroutine[Any, Any, Union[_Result, CriCallError]]) -> Optional[_Result]:
        """Run one step on the private loop: its result, None once cancelled, or its error raised.

        Steps return their CriCallError rather than raise it: an exception leaving
        run_until_complete would sit in a reference cycle (task, traceback, frames) with grpc's
        objects, and keep grpc core's threads alive until the next full garbage collection.
        """
        assert self._loop is not None
        if self._cancelled:
            step.close()
            return None
        task = self._loop.create_task(step)
        self._step = task
        try:
            outcome = self._loop.run_until_complete(task)
        except asyncio.CancelledError:
            if self._cancelled:
                return None
            raise
        finally:
            self._step = None
        if isinstance(outcome, CriCallError):
            raise outcome
        return outcome

    def _interrupt(self) -> None:
        """On the loop: cancel the step in progress (a pending read cancels its call)."""
        if self._step is not None:
            self._step.cancel()

    async def _subscribe(self, target: str) -> Union[bool, CriCallError]:
        """Connect within the timeout and start the call."""
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        try:
            await asyncio.wait_for(self._channel.channel_ready(), self.timeout)
        except asyncio.TimeoutError:
            return CriCallError(self.endpoint, CALL, Failure.TIMEOUT,
                                f"not connected within {self.timeout:g}s")
        self._call = self._channel.unary_stream(
            SERVICE + CALL, request_serializer=None,
            response_deserializer=None)(wire.encode("GetEventsRequest", {}))
        return True

    async def _read(self) -> Union[bytes, CriCallError]:
        """The next message's bytes, or why the stream failed or ended."""
        assert self._call is not None
        try:
            data = await self._call.read()
        except grpc.aio.AioRpcError as exc:
            exc.__traceback__ = None  # grpcio 1.51: its frames and the error form a cycle
            return rpc_failure(self.endpoint, CALL, exc, self.timeout)
        if data is grpc.aio.EOF:
            return CriCallError(self.endpoint, CALL, Failure.UNAVAILABLE, "event stream ended")
        return bytes(data)

    def _close(self) -> None:
        """Close the channel (cancelling its call) and the loop; drop every grpc object."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        channel, self._channel, self._call = self._channel, None, None
        try:
            if channel is not None:
                loop.run_until_complete(channel.close())
        finally:
            loop.close()


def _event(message: wire.Message) -> ContainerEvent:
    name = wire.enum_name("ContainerEventType", message.container_event_type)
    return ContainerEvent(message.container_id, (name or "CONTAINER_UNKNOWN_EVENT").split("_")[1].lower())
