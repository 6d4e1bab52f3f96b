"""`python -m bench`: run the benchmarks, print the tables, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench import idle, image, scan, startup, storm
from bench.report import Section, render_markdown, render_text

REPO = Path(__file__).resolve().parent.parent
PARTS = ("scan", "startup", "idle", "storm", "vm", "image")
INTRO = [
    "Written by `python -m bench` (`make bench`); every figure is measured on the machine below "
    "in the same run, with the 1-minute load average at the time next to it (other jobs, "
    "qemu guests among them, share the 2 cores, so figures taken under load are upper bounds).",
]
# What earlier runs of this bench found and what was changed for it (kept by hand: history).
HISTORY = [
    "Item 1, 10,000 volumes (replayed dmsetup): 16-56 s at commit 804e17a (load 3-5). cProfile: "
    "52 of 59 s in plan._namespace_users, which scanned every /dev/longhorn entry for every "
    "namespace (90 M comparisons), and 1.8 s in plan._follow_dm, which scanned every dm entry for "
    "every stale node. Both became dictionary look-ups (3eaf8aa); the inventory reads fewer files "
    "per device and uses os.read (66d029e, 0e77b0f). After: 1.43 s (load 1.9), of which inventory "
    "~1.0 s and plan ~0.45 s. 1,000 volumes: 330-580 ms before, 123 ms after.",
    "Still missed (item 1): the inventory is system-call bound (per volume ~4 listdir, ~4 open+read, "
    "~2 readlink on tmpfs). The plan's per-entry rebuild of the live instance-manager tuple (~0.2 s at "
    "10,000 with a live instance-manager) became one computation per plan in 6b0e67d, after the table "
    "above was measured.",
    "Item 5: RSS 51 MiB against 40. Import cost measured alone: pyroute2 (only UeventSocket is "
    "used) +11 MiB, prometheus_client (only to write a text file) +3.5 MiB; the daemon's imports "
    "without both: 35 MiB. Wake-ups with the CRI event stream: ~1,100/min, from grpcio's "
    "synchronous stream iterator waiting in 0.1 s slices (grpc/_common.py MAXIMUM_WAIT_TIMEOUT) "
    "and its channel spin thread polling every 0.2 s (seen per thread with strace); the same stream "
    "read through grpc.aio: ~200/min (grpc core's own timer threads). After 0a631d9 (events.py reads "
    "the stream through grpc.aio on a loop private to its thread; the table above predates it): "
    "1,173 -> 149 wake-ups/min on Debian's grpcio 1.51 (what the .deb runs on), polling mode 87 -> 82; "
    "PyPI's grpcio 1.85 still ~1,000/min from grpc core's event_engine worker threads.",
    "Item 3: `lhsweep sweep` spends 90% of its time waiting for `dmsetup remove` (tools.run: "
    "~230 ms a call in the guest, against ~140 ms for dmsetup+rm in the shell loop); the re-checks "
    "(dm ioctl, sysfs, mountinfo, flocks) cost ~17 ms a volume.",
]
REPRODUCE = [
    "```",
    "make bench                                  # everything, writes docs/benchmarks.md",
    ".venv-debian/bin/python -m bench --only scan --sizes 1000 --runs 9",
    ".venv-debian/bin/python -m bench --quick --output /tmp/b.md   # the CI smoke's sizes",
    "```",
    "",
    "Needs root (block nodes in the synthetic trees are made with mknod) and, for the VM items, "
    "`make deb` and the VM harness's host packages (dev/deps/vm.apt).",
]


def parse(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", action="append", choices=PARTS, help="run only these parts")
    parser.add_argument("--skip", action="append", choices=PARTS, default=[], help="skip these parts")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[10, 100, 1000, 10000], help="node sizes in volumes (comma list)")
    parser.add_argument("--runs", type=int, default=5, help="runs per median")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--events", type=int, default=10000, help="pod-directory events in the storm")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and short waits (a smoke run, not a measurement)")
    parser.add_argument("--output", default=str(REPO / "docs" / "benchmarks.md"))
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.runs, args.idle_seconds, args.events = [10, 30], 1, 1.0, 200
        args.skip.append("vm")
    return args


def work_directory() -> str:
    """A scratch directory on tmpfs when there is one (synthetic sysfs trees live in memory too)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="lhsweep-bench-", dir=base)


def run_parts(args: argparse.Namespace, work: str) -> list[Section]:
    """Every selected part, in the issue's order."""
    wanted = [p for p in (args.only or PARTS) if p not in args.skip]
    sections = []
    if "scan" in wanted:
        sections.append(scan.run(work, args.sizes, args.runs))
    if "vm" in wanted:
        from bench import vm  # noqa: PLC0415 (the VM harness only when asked for)

        sections += vm.run(Path(work))
    if "idle" in wanted:
        sections.append(idle.run(work, args.idle_seconds))
    if "startup" in wanted:
        sections.append(startup.run(work, args.runs))
    if "storm" in wanted:
        sections.append(storm.run(work, args.events))
    if "image" in wanted:
        sections.append(image.run())
    return sections


def main(argv: list[str]) -> int:
    """Run, print, write."""
    args = parse(argv)
    if os.geteuid() != 0:
        print("python -m bench: needs root (mknod of block nodes in the synthetic host trees)",
              file=sys.stderr)
        return 2
    work = work_directory()
    try:
        sections = run_parts(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.stdout.write(render_text(sections))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(render_markdown(sections, INTRO, HISTORY, REPRODUCE), encoding="utf-8")
    print(f"\nwritten: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
