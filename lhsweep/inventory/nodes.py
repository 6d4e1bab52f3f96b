"""Entries of /dev/longhorn from lstat: what each entry is, never what a link points at."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from typing import Optional

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.model import DevNum, LonghornNode, NodeType

LONGHORN_DEV = "/dev/longhorn"


def read_nodes(host: HostRoot) -> tuple[LonghornNode, ...]:
    """Every entry of /dev/longhorn, listed through a directory fd opened without following links."""
    try:
        fd = host.open_dir_fd(LONGHORN_DEV)
    except FileNotFoundError:
        return ()
    except OSError as exc:
        raise HostReadError(f"{LONGHORN_DEV}: cannot open: {exc.strerror or exc}") from None
    try:
        with os.scandir(fd) as entries:
            return tuple(sorted(_entries(entries), key=lambda n: n.name))
    except OSError as exc:
        raise HostReadError(f"{LONGHORN_DEV}: cannot list: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def _entries(entries: Iterator[os.DirEntry[str]]) -> Iterator[LonghornNode]:
    for entry in entries:
        try:
            yield _node(entry.name, entry.stat(follow_symlinks=False))
        except FileNotFoundError:
            continue  # removed while listing


def read_node(host: HostRoot, name: str) -> Optional[LonghornNode]:
    """The entry /dev/longhorn/<name> (lstat), None when there is none."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a /dev/longhorn entry name: {name!r}")
    st = host.lstat(f"{LONGHORN_DEV}/{name}")
    return None if st is None else _node(name, st)


def _node(name: str, st: os.stat_result) -> LonghornNode:
    node_type = _type(st.st_mode)
    rdev = None
    if node_type in (NodeType.BLOCK, NodeType.CHAR):
        rdev = DevNum(os.major(st.st_rdev), os.minor(st.st_rdev))
    return LonghornNode(name, node_type, rdev, st.st_ino, st.st_ctime_ns)


def _type(mode: int) -> NodeType:
    if stat.S_ISBLK(mode):
        return NodeType.BLOCK
    if stat.S_ISCHR(mode):
        return NodeType.CHAR
    if stat.S_ISLNK(mode):
        return NodeType.SYMLINK
    if stat.S_ISREG(mode):
        return NodeType.REGULAR
    if stat.S_ISDIR(mode):
        return NodeType.DIRECTORY
    return NodeType.OTHER
