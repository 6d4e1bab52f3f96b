"""Container mode: how lhsweep runs as a DaemonSet pod (logs to stdout, HTTP for metrics and probes).

The image sets LHSWEEP_CONTAINER=1 in its environment (packaging/oci_archive.py), so a pod
is detected without a flag; on a host the variable is unset and nothing changes. The host is
read below --host-root (/host) in either case, exactly as the host service reads it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Optional, TextIO

from lhsweep.journal import Event, Journal

ENV_FLAG = "LHSWEEP_CONTAINER"


def container_mode(env: Mapping[str, str] = os.environ) -> bool:
    """True when the environment says lhsweep runs in a container (LHSWEEP_CONTAINER=1)."""
    return env.get(ENV_FLAG, "") == "1"


class StdoutJournal(Journal):
    """One line per decision on stdout, as `kubectl logs` shows it (no journald in a pod).

    Each line names its kind first (`event=removed`), what MESSAGE_ID says in the journal.
    """

    def __init__(self, verbose: bool = False, stream: Optional[TextIO] = None) -> None:
        super().__init__(None, stream or sys.stdout, verbose)

    def emit(self, priority: int, message: str, event: Optional[Event] = None,
             **fields: str) -> None:
        """Log one line, its kind first."""
        kind = {"LHSWEEP_EVENT": event.name.lower()} if event is not None else {}
        super().emit(priority, message, event, **kind, **fields)
