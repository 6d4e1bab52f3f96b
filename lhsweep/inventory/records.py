"""Engine-frontend records: the volumes whose devices Longhorn v1.12+ re-adopts after a restart."""

from __future__ import annotations

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.longhorn import FRONTEND_RECORD, fits_name, frontend_records_dir


def read_frontend_records(host: HostRoot, data_path: str) -> frozenset[str]:
    """Volumes with a persisted engine-frontend record; none when the records directory is absent.

    Raises HostReadError when the directory, or a volume's record, cannot be read: any volume may
    then have a record.
    """
    base = frontend_records_dir(data_path)
    try:
        return frozenset(name for name in host.listdir(base)
                         if fits_name(name) and host.lstat(f"{base}/{name}/{FRONTEND_RECORD}") is not None)
    except HostReadError as exc:
        raise HostReadError(f"engine-frontend records unknown: {exc}") from None
