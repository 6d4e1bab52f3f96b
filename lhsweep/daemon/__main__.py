"""`python -m lhsweep.daemon`: the daemon without the main CLI (development and tests)."""

from __future__ import annotations

import argparse
import sys

from lhsweep.config import DEFAULT_PATH
from lhsweep.daemon import run


def main(argv: list[str]) -> int:
    """Parse the daemon's options and run it."""
    parser = argparse.ArgumentParser(prog="python -m lhsweep.daemon")
    parser.add_argument("--config", default=DEFAULT_PATH)
    parser.add_argument("--host-root", default="/")
    parser.add_argument("--log-target", default="auto", choices=("auto", "journal", "stderr"))
    parser.add_argument("--verbose", action="store_true", help="also log debug entries")
    args = parser.parse_args(argv)
    return run(args.config, args.host_root, args.log_target, args.verbose)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
