"""An NVMe/TCP target that stops answering: the kernel's reconnect attempt to it blocks in the kernel.

The kernel nvmet target cannot be told to stall, so this stands in for a hung SPDK target on the
same loopback address and port: it accepts the host's TCP connection, answers the ICReq with a
valid ICResp (the host waits at most 10 s for it, sk_rcvtimeo), then reads the admin queue's
fabrics Connect command and holds it unanswered. The host's reconnect work (nvme-wq, in
nvme_tcp_setup_ctrl) then waits for that command for the whole admin timeout, and so does anything
that must first stop that work, such as a write to the controller's delete_controller attribute
(nvme_tcp_stop_ctrl waits for connect_work, uninterruptibly). `release()` answers every held
Connect with an error status (DNR set), which ends the attempt at once, and stops listening.

Wire format, NVMe/TCP 1.0 (include/linux/nvme-tcp.h): an 8-byte common header (type, flags,
hlen, pdo, plen little-endian u32); ICReq/ICResp are 128 bytes, a command capsule is the header
plus the 64-byte SQE (command id at bytes 2-3) plus in-capsule data, a response is the header plus
the 16-byte CQE.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

ICREQ, ICRESP, CMD, RSP = 0x00, 0x01, 0x04, 0x05
IC_LEN = 128
HEADER = struct.Struct("<BBBBI")  # type, flags, hlen, pdo, plen
MAXH2CDATA = 131072
# NVME_SC_INTERNAL with Do Not Retry, shifted left by one above the phase bit as the CQE carries it.
STATUS = (0x4000 | 0x0006) << 1


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def _icresp() -> bytes:
    """An ICResp without digests: PDU format version 0, cpda 0, maxh2cdata 128 KiB."""
    body = struct.pack("<HBBI", 0, 0, 0, MAXH2CDATA)
    return HEADER.pack(ICRESP, 0, IC_LEN, 0, IC_LEN) + body + bytes(IC_LEN - HEADER.size - len(body))


def _response(command_id: bytes) -> bytes:
    """A response capsule completing `command_id` (its two bytes as sent) with STATUS."""
    cqe = struct.pack("<QHH", 0, 0, 0) + command_id + struct.pack("<H", STATUS)
    return HEADER.pack(RSP, 0, HEADER.size + len(cqe), 0, HEADER.size + len(cqe)) + cqe


class StalledTarget:
    """Listens on `address`:`service`; holds every Connect command until release()."""

    def __init__(self, address: str, service: str) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((address, int(service)))
        self.listener.listen(8)
        self.lock = threading.Lock()
        self.released = False
        self.held: list[tuple[socket.socket, bytes, float]] = []
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # the listener was closed by release()
                return
            try:
                self._hold(conn)
            except (OSError, ValueError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                conn.close()

    def _hold(self, conn: socket.socket) -> None:
        """The ICReq/ICResp exchange, then read one command capsule and keep it unanswered."""
        kind, _, _, _, plen = HEADER.unpack(_recv_exactly(conn, IC_LEN)[: HEADER.size])
        if kind != ICREQ or plen != IC_LEN:
            raise ValueError(f"expected an ICReq, got type {kind} plen {plen}")
        conn.sendall(_icresp())
        kind, _, _, _, plen = HEADER.unpack(_recv_exactly(conn, HEADER.size))
        if kind != CMD:
            raise ValueError(f"expected a command capsule, got type {kind}")
        capsule = _recv_exactly(conn, plen - HEADER.size)
        with self.lock:
            if self.released:
                conn.sendall(_response(capsule[2:4]))
                conn.close()
            else:
                self.held.append((conn, capsule[2:4], time.monotonic()))

    def holding(self) -> int:
        """How many Connect commands are held now."""
        with self.lock:
            return len(self.held)

    def held_for(self) -> float:
        """Seconds the oldest held command has been waiting (0 when none is)."""
        with self.lock:
            return time.monotonic() - self.held[0][2] if self.held else 0.0

    def release(self) -> int:
        """Answer every held command with an error, close them and stop listening; how many there were."""
        with self.lock:
            self.released = True
            held, self.held = self.held, []
        self.listener.close()
        for conn, command_id, _ in held:
            try:
                conn.sendall(_response(command_id))
            except OSError as exc:
                self.errors.append(f"answering a held command: {exc}")
            conn.close()
        return len(held)
