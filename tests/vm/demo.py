"""`make demo`: boot the guest, reproduce a crashed instance-manager, print what an operator sees.

Run through dev/demo, which sets the machine up and builds the .deb first; by hand:
`.venv-debian/bin/python -m tests.vm.demo` (root, after `make deb`).
"""

from __future__ import annotations

import sys
import time

from tests.vm.harness import REPO, GuestError, Scenario, find_deb, run_guest

OUT_DIR = REPO / ".cache" / "vm" / "demo"
SECTIONS = (
    ("1-leftovers.txt", "What the crashed instance-manager left behind (lhsweep stopped)"),
    ("2-scan-before.txt", "lhsweep scan  (read-only: every device with its verdict)"),
    ("3-journal.txt", "systemctl start lhsweep; journalctl -u lhsweep  (the sweep)"),
    ("4-scan-after.txt", "lhsweep scan  (after)"),
    ("5-left.txt", "What is left (the V1 encrypted volume is not lhsweep's)"),
)


def main() -> int:
    """Run the demo scenario in one guest boot and print its texts; 1 when it did not work."""
    deb = find_deb()
    if deb is None:
        print("demo: dist/lhsweep_*_all.deb is missing: run `make deb` (dev/demo does)", file=sys.stderr)
        return 1
    print(f"demo: booting a Debian 12 guest (qemu, software emulation) with {deb.name}; ~2 minutes")
    started = time.monotonic()
    try:
        guest = run_guest([Scenario("demo", 300)], OUT_DIR, deb=deb)
    except GuestError as error:
        print(f"demo: the guest failed: {error}", file=sys.stderr)
        return 1
    result = guest.results.get("demo")
    if result is None:
        print(f"demo: the guest left no result; see {OUT_DIR}", file=sys.stderr)
        return 1
    for name, title in SECTIONS:
        path = result.directory / name
        print(f"\n=== {title}\n")
        print(path.read_text(errors="replace").rstrip() if path.exists() else "(not reached)")
    print(f"\ndemo: {time.monotonic() - started:.0f} s in all; guest files in {result.directory}")
    if not result.passed:
        print(result.describe(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
