"""What the fake dmsetup and nvme share: find the tree, log the call, hang or fail on request."""

from __future__ import annotations

import json
import os
import sys
import time

from kerneltree import KernelTree


def open_tree(tool: str, argv: list[str]) -> KernelTree:
    """The tree named by LHSWEEP_FAKE_ROOT, with this call appended to .fake/calls.log."""
    root = os.environ.get("LHSWEEP_FAKE_ROOT")
    if not root:
        sys.stderr.write(f"fake {tool}: LHSWEEP_FAKE_ROOT is not set\n")
        sys.exit(2)
    tree = KernelTree(root)
    with open(tree.p("/.fake/calls.log"), "a", encoding="utf-8") as handle:
        handle.write(json.dumps([tool, *argv]) + "\n")
    return tree


def behave(behaviour: dict[str, object], failure: str) -> None:
    """Sleep `hang_seconds` when asked to; exit 1 with `failure` when 'fail' is set."""
    hang = float(behaviour.get("hang_seconds") or 0)  # type: ignore[arg-type]
    if hang > 0:
        time.sleep(hang)
    if behaviour.get("fail"):
        sys.stderr.write(failure.format(fail=behaviour["fail"]))
        sys.exit(1)
