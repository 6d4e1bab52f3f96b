"""The kernel-call helper: a child process that does lhsweep's removal system calls one at a time.

It runs as `python3 -I -S opshelper.py`, imports nothing of lhsweep, and reads one request a
line on stdin, answering each with one line on stdout. A request is words separated by spaces,
each the hex of a UTF-8 string, in key/value pairs; an "expect.A" key is an attribute that must
read as its value first. A reply is the errno (0 when the call worked) and the hex of the error:

    op ioctl  path P  request N  buf HEX                  -> "E ERROR"
    op write  dir D  file F  data TEXT  expect.A V ...     -> "E ERROR"

(the ioctl's reply buffer is not sent back: removals need only whether they worked). Hex words
rather than JSON: the json module (and the re and enum it imports) more than doubled the
helper's start, which every sweep that removes something waits for.

A call the kernel never returns from (a dm removal or an NVMe controller deletion stuck in D
state) blocks only this process: the parent stops waiting, abandons it, and starts another
(lhsweep.tools.ToolRunner.call_helper). Paths come from the parent, already inside the host root.
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys

EXPECT = "expect."


def _ioctl(request: dict[str, str]) -> tuple[int, str]:
    """Issue one read-write ioctl on a freshly opened `path`."""
    buf = bytearray(bytes.fromhex(request["buf"]))
    fd = os.open(request["path"], os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        fcntl.ioctl(fd, int(request["request"]), buf, True)
    finally:
        os.close(fd)
    return 0, ""


def _write(request: dict[str, str]) -> tuple[int, str]:
    """Write `data` in one write() to the attribute `file` of the directory `dir`, once every
    attribute named in `expect` there reads as given (ESTALE when one does not).

    The directory is opened once and everything is opened relative to it: its fd stays with the
    kernel object it was opened for, so a name the kernel hands to another device meanwhile (a
    controller's nvmeN) cannot redirect the write.
    """
    if "/" in request["file"]:
        raise ValueError(f"file must be a name in dir: {request['file']!r}")
    dir_fd = os.open(request["dir"], os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for key, value in request.items():
            if not key.startswith(EXPECT):
                continue
            name = key[len(EXPECT):]
            found = _read_at(dir_fd, name)
            if found != value:
                why = f"{name} is {found!r}, not {value!r}: another device now"
                return errno.ESTALE, f"{request['dir']}: {why}"
        fd = os.open(request["file"], os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
        try:
            os.write(fd, request["data"].encode())
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    return 0, ""


def _read_at(dir_fd: int, name: str) -> str:
    """The attribute `name` of the directory `dir_fd`, whitespace stripped."""
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        return os.read(fd, 4096).decode("utf-8", "replace").strip()
    finally:
        os.close(fd)


_OPS = {"ioctl": _ioctl, "write": _write}


def request_line(request: dict[str, object]) -> bytes:
    """One request as this helper reads it: hex words in key/value pairs, "expect" flattened."""
    pairs: list[tuple[str, str]] = []
    for key, value in request.items():
        if key != "expect":
            pairs.append((key, str(value)))
        elif isinstance(value, dict):
            pairs += [(f"{EXPECT}{name}", str(wanted)) for name, wanted in value.items()]
        else:
            raise TypeError(f"expect must map attribute names to values, not {value!r}")
    return " ".join(word.encode().hex() for pair in pairs for word in pair).encode() + b"\n"


def decode(line: str) -> dict[str, str]:
    """A request line's key/value pairs; ValueError when it is no whole set of hex pairs or names
    a key twice (a second "expect.A" must not replace the first: both checks or neither)."""
    text = line.rstrip("\n")
    words = [bytes.fromhex(word).decode() for word in text.split(" ")] if text else []
    if len(words) % 2:
        raise ValueError("a key without a value")
    request = dict(zip(words[::2], words[1::2]))
    if len(request) * 2 != len(words):
        raise ValueError("a key given twice")
    return request


def answer(line: str) -> tuple[int, str]:
    """The reply to one request line; a failed call is an errno, a bad request errno EINVAL."""
    try:
        request = decode(line)
        return _OPS[request["op"]](request)
    except OSError as exc:
        return exc.errno or 0, exc.strerror or str(exc)
    except (ValueError, KeyError, TypeError) as exc:
        return errno.EINVAL, f"bad request: {type(exc).__name__}: {exc}"


def reply_line(code: int, error: str) -> str:
    """One answer as the parent reads it: the errno, a space, the hex of the error."""
    return f"{code} {error.encode('utf-8', 'backslashreplace').hex()}\n"


def parse_reply(line: bytes) -> tuple[int, str]:
    """The errno and the error of one answer line; ValueError when it is not one."""
    code, error = line.decode("ascii").rstrip("\n").split(" ")
    return int(code), bytes.fromhex(error).decode("utf-8", "replace")


def main() -> None:
    """Serve requests until stdin closes."""
    for line in sys.stdin:
        sys.stdout.write(reply_line(*answer(line)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
