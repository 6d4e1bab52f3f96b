"""Between scenarios: stop lhsweep, remove pods, devices and targets (run as `python3 -m lhvm.reset`)."""

from __future__ import annotations

import sys

from lhvm.proc import run
from lhvm.runtime import reset_runtime
from lhvm.volumes import reset_devices


def main() -> int:
    """Reset the guest to its baseline; print what could not be undone."""
    run("systemctl", "stop", "lhsweep.service", timeout=120)
    reset_runtime()
    problems = reset_devices()
    for problem in problems:
        print(f"reset: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
