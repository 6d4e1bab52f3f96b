"""Longhorn V2 naming facts: volume names, NQNs, lock files, engine-frontend records."""

from __future__ import annotations

import re

from lhsweep.host import HostRoot
from lhsweep.model import LONGHORN_NQN_PREFIX

# Longhorn names (volumes, lvols, engines): lowercase letters, digits, '.', '_' and '-'.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
_ENGINE = re.compile(r"(?P<vol>.+)-e-[0-9a-f]{8}")
ENCRYPTED_SUFFIX = "-encrypted"
LEGACY_LOCK = "/var/run/longhorn-spdk.lock"
LOCK_DIR = "/var/run/longhorn"


def fits_name(name: str) -> bool:
    """True when `name` is shaped like a Longhorn volume or lvol name."""
    return _NAME.fullmatch(name) is not None


def volume_of_nqn(nqn: str) -> str:
    """The volume an engine-frontend NQN belongs to ('' when the NQN is not Longhorn's)."""
    if not nqn.startswith(LONGHORN_NQN_PREFIX):
        return ""
    suffix = nqn[len(LONGHORN_NQN_PREFIX) :]
    if suffix.startswith("volume-"):
        return suffix[len("volume-") :]
    match = _ENGINE.fullmatch(suffix)
    return match.group("vol") if match else suffix


def volume_lock_path(name: str) -> str:
    """go-spdk-helper's per-volume flock file (2026+)."""
    return f"{LOCK_DIR}/spdk-{name}.lock"


def frontend_records(host: HostRoot, data_path: str) -> frozenset[str]:
    """Volumes with a persisted engine-frontend record (v1.12+ re-adopts their devices)."""
    base = f"{data_path.rstrip('/')}/metadata/enginefrontends"
    return frozenset(
        name
        for name in host.listdir(base)
        if fits_name(name) and host.exists(f"{base}/{name}/enginefrontend.json")
    )
