"""A tiny run of the benchmark entry point, so `python -m bench` cannot rot (not a measurement)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.process,
              pytest.mark.skipif(os.geteuid() != 0, reason="synthetic host trees need mknod (root)")]


def test_quick_bench_writes_every_host_section(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    # The timeout only stops a hung run: about 25 s here, over 60 s on a loaded two-core machine.
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--output", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text(encoding="utf-8")
    for title in ("## 1. Scan and plan cost", "## 5. Idle footprint", "## 6. Start-up",
                  "## 7. Event storm", "## Machine", "## Reproduce"):
        assert title in text
    assert "| 30 | " in text  # the 30-volume node was measured
    assert "| final state right | yes |" in text, text
    assert "replayed-dmsetup" in done.stdout
