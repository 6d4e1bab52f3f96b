"""The bounded tool runner: exit codes, output, timeouts, missing programs."""

from __future__ import annotations

import sys

from lhsweep.tools import ToolRunner


def test_exit_code_and_output_are_kept() -> None:
    result = ToolRunner(5).run([sys.executable, "-c", "import sys; print('out'); sys.exit('bad thing')"])
    assert result.returncode == 1 and not result.ok
    assert result.stdout.strip() == "out"
    assert result.summary().endswith("exited 1: bad thing")


def test_a_child_past_its_timeout_is_killed_and_reported() -> None:
    runner = ToolRunner(0.3)
    result = runner.run([sys.executable, "-c", "import time; time.sleep(30)"])
    assert result.timed_out and not result.ok and not result.stuck
    assert result.duration_s < 10
    assert "timed out" in result.summary()
    assert runner.stuck() == ()


def test_a_missing_program_is_a_failed_result_not_an_exception() -> None:
    result = ToolRunner(1).run(["/nonexistent/dmsetup", "remove", "x"])
    assert result.returncode is None and not result.ok
    assert result.summary().startswith("cannot run /nonexistent/dmsetup")
