"""Engine-frontend records: the volumes whose devices Longhorn v1.12+ re-adopts after a restart."""

from __future__ import annotations

from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot
from lhsweep.longhorn import FRONTEND_RECORD, fits_name, frontend_records_dir


def read_frontend_records(host: HostRoot, data_path: str) -> frozenset[str]:
    """Volumes with a persisted engine-frontend record; none when the records directory is absent
    (Longhorn before v1.12) below a data path that exists.

    Raises HostReadError when the data path is absent (lhsweep's longhorn.data_path is not where
    Longhorn keeps its data), or the directory or a volume's record cannot be read: any volume may
    then have a record.
    """
    base = frontend_records_dir(data_path)
    try:
        if host.lstat(data_path) is None:
            raise HostReadError(f"{data_path} does not exist: set longhorn.data_path to Longhorn's data path")
        return frozenset(name for name in host.listdir(base)
                         if fits_name(name) and host.lstat(f"{base}/{name}/{FRONTEND_RECORD}") is not None)
    except HostReadError as exc:
        raise HostReadError(f"engine-frontend records unknown: {exc}") from None
