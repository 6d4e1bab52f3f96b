"""Longhorn V2 naming facts: volume names, NQNs, lock files, where engine-frontend records are."""

from __future__ import annotations

import re

from lhsweep.model import LONGHORN_NQN_PREFIX

# Longhorn names (volumes, lvols, engines): lowercase letters, digits, '.', '_' and '-'.
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
# An engine's name: `<volume>-e-<8 hex>` (a random id), or `<volume>-e-<ordinal>` (0, 1, ...) in the
# releases whose longhorn-manager counts its engines.
_ENGINE = re.compile(r"(?P<vol>.+)-e-(?:[0-9a-f]{8}|0|[1-9][0-9]{0,8})")
ENCRYPTED_SUFFIX = "-encrypted"
# go-spdk-helper names them below /var/run, inside the host's mount namespace, where /var/run is
# a link to /run: lhsweep names the real directory.
LEGACY_LOCK = "/run/longhorn-spdk.lock"
LOCK_DIR = "/run/longhorn"
# Longhorn's default data path (longhorn.data_path); v1.12+ keeps engine-frontend records below it.
DATA_PATH = "/var/lib/longhorn"
FRONTEND_RECORD = "enginefrontend.json"


def fits_name(name: str) -> bool:
    """True when `name` is shaped like a Longhorn volume or lvol name."""
    return _NAME.fullmatch(name) is not None


def volume_of_nqn(nqn: str) -> str:
    """The volume an engine-frontend NQN belongs to ('' when the NQN or the name is not Longhorn's).

    A suffix of neither known shape names no volume: its volume's lock and exclusions cannot be
    told, so it is never read as a volume name of its own.
    """
    if not nqn.startswith(LONGHORN_NQN_PREFIX):
        return ""
    suffix = nqn[len(LONGHORN_NQN_PREFIX) :]
    match = _ENGINE.fullmatch(suffix)
    if suffix.startswith("volume-"):
        # volume-data-e-0 is 1.12's volume data-e-0, or engine 0 of a volume named volume-data.
        volume = "" if match else suffix[len("volume-") :]
    else:
        volume = match.group("vol") if match else ""
    return volume if fits_name(volume) else ""


def volume_lock_path(name: str) -> str:
    """go-spdk-helper's per-volume flock file (2026+); raises ValueError for a name not Longhorn's."""
    if not fits_name(name):
        raise ValueError(f"not a Longhorn volume name: {name!r}")
    return f"{LOCK_DIR}/spdk-{name}.lock"


def frontend_records_dir(data_path: str) -> str:
    """The directory of per-volume engine-frontend records (<dir>/<volume>/enginefrontend.json)."""
    return f"{data_path.rstrip('/')}/metadata/enginefrontends"
