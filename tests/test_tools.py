"""The bounded tool runner: exit codes, output, timeouts, missing programs."""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lhsweep import opshelper
from lhsweep.tools import ToolRunner

pytestmark = pytest.mark.process


def test_exit_code_and_output_are_kept() -> None:
    result = ToolRunner(5).run([sys.executable, "-c", "import sys; print('out'); sys.exit('bad thing')"])
    assert result.returncode == 1 and not result.ok
    assert result.stdout.strip() == "out"
    assert result.summary().endswith("exited 1: bad thing")


def test_output_that_is_no_utf8_is_replaced_not_raised() -> None:
    """A tool printing a non-UTF-8 name (dmsetup, a foreign dm device) whatever the locale."""
    code = "import os; os.write(1, b'caf\\xe9: 0 8 linear 7:0 0\\n'); os.write(2, b'\\xff')"
    result = ToolRunner(5).run([sys.executable, "-c", code])
    assert result.ok and result.stdout == "caf\ufffd: 0 8 linear 7:0 0\n" and result.stderr == "\ufffd"


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


def write(path: Path, **expect: str) -> dict[str, object]:
    """A helper request writing "1" to `path`, once the attributes `expect` beside it read so."""
    return {"op": "write", "dir": str(path.parent), "file": path.name, "data": "1", "expect": expect}


def test_the_helper_writes_an_attribute_and_reports_kernel_errors(tmp_path) -> None:
    runner = ToolRunner(5)
    attribute = tmp_path / "delete_controller"
    attribute.write_text("")
    try:
        done = runner.call_helper(("nvme-delete", "nvme0"), write(attribute))
        ioctl = {"op": "ioctl", "path": str(attribute), "request": 0xC138FD04, "buf": "00"}
        refused = runner.call_helper(("dm-remove", "pvc-1"), ioctl)
        missing = runner.call_helper(("nvme-delete", "nvme9"), write(tmp_path / "gone"))
    finally:
        runner.close_helper()
    assert done.ok and attribute.read_text() == "1"
    # A regular file has no ioctls: the kernel's answer comes back as the call's failure.
    assert not refused.ok and refused.summary() == "dm-remove exited 1: Inappropriate ioctl for device"
    assert not missing.ok and "No such file" in missing.summary()


def test_the_helper_writes_only_while_the_directory_is_still_the_device_expected(tmp_path) -> None:
    """The write is refused (ESTALE) when an attribute beside it says another device has the name."""
    attribute = tmp_path / "nvme0" / "delete_controller"
    attribute.parent.mkdir()
    attribute.write_text("")
    (tmp_path / "nvme0" / "subsysnqn").write_text("nqn.2014-08.org.nvmexpress:uuid:other\n")
    runner = ToolRunner(5)
    try:
        refused = runner.call_helper(("nvme-delete", "nvme0"), write(attribute, subsysnqn="nqn.longhorn"))
        escape = dict(write(attribute), file="../nvme0/delete_controller")
        bad = runner.call_helper(("nvme-delete", "nvme0"), escape)
        done = runner.call_helper(("nvme-delete", "nvme0"),
                                  write(attribute, subsysnqn="nqn.2014-08.org.nvmexpress:uuid:other"))
    finally:
        runner.close_helper()
    assert not refused.ok and "subsysnqn is 'nqn.2014-08.org.nvmexpress:uuid:other', not 'nqn.longhorn'" \
        in refused.summary()
    assert not bad.ok and "file must be a name in dir" in bad.summary()
    assert done.ok and attribute.read_text() == "1"


def test_one_helper_serves_a_whole_sweep(tmp_path) -> None:
    runner = ToolRunner(5)
    attribute = tmp_path / "attr"
    attribute.write_text("")
    request = write(attribute)
    try:
        runner.call_helper(("a",), request)
        first = runner._helper
        runner.call_helper(("b",), request)
        assert runner._helper is first and first is not None and first.poll() is None
    finally:
        runner.close_helper()
    assert first.poll() == 0 and runner._helper is None


def test_a_helper_call_past_its_timeout_is_killed_and_the_next_call_gets_a_new_helper(tmp_path) -> None:
    fifo = tmp_path / "never-read"
    os.mkfifo(fifo)
    attribute = tmp_path / "attr"
    attribute.write_text("")
    runner = ToolRunner(0.5)
    try:
        # Opening a FIFO with no reader blocks, as a removal stuck in the kernel would.
        hung = runner.call_helper(("dm-remove", "pvc-1"), write(fifo))
        after = runner.call_helper(("dm-remove", "pvc-2"), write(attribute))
    finally:
        runner.close_helper()
    assert hung.timed_out and not hung.ok and "dm-remove timed out" in hung.summary()
    assert runner.stuck() == ()  # SIGKILL ended it: nothing left behind
    assert after.ok and attribute.read_text() == "1"


def test_a_bad_request_is_an_error_answer_not_a_dead_helper() -> None:
    runner = ToolRunner(5)
    try:
        bad = runner.call_helper(("x",), {"op": "format-disk"})
        assert not bad.ok and "bad request" in bad.stderr
        assert runner._helper is not None and runner._helper.poll() is None
    finally:
        runner.close_helper()


@given(st.dictionaries(st.text().filter(lambda k: not k.startswith("expect")), st.text()),
       st.dictionaries(st.text(), st.text()))
def test_every_request_reaches_the_helper_as_sent(fields: dict[str, str], expect: dict[str, str]) -> None:
    """Any text (spaces, newlines, empty, non-ASCII) survives the wire, key for key."""
    line = opshelper.request_line({**fields, "expect": expect}).decode()
    assert line.endswith("\n") and line.count("\n") == 1
    assert opshelper.decode(line) == {**fields, **{f"expect.{k}": v for k, v in expect.items()}}


@given(st.integers(min_value=0, max_value=4095), st.text())
def test_every_answer_reaches_the_parent_as_sent(code: int, error: str) -> None:
    line = opshelper.reply_line(code, error).encode("ascii")
    assert opshelper.parse_reply(line) == (code, error)


@pytest.mark.parametrize("line", ["", "\n", "6f70\n", "6f70 zz\n", "6f70  7772697465\n"])
def test_a_torn_or_garbled_request_line_is_refused(line: str) -> None:
    code, error = opshelper.answer(line)
    assert code == errno.EINVAL and error.startswith("bad request")


def test_a_check_given_twice_is_refused_not_narrowed_to_the_last(tmp_path: Path) -> None:
    """Two "expect.subsysnqn" words ("other", then what the attribute reads): no write."""
    (tmp_path / "subsysnqn").write_text("nqn.longhorn\n")
    attribute = tmp_path / "delete_controller"
    attribute.write_text("")
    words = ("op", "write", "dir", str(tmp_path), "file", attribute.name, "data", "1",
             "expect.subsysnqn", "nqn.other", "expect.subsysnqn", "nqn.longhorn")
    code, error = opshelper.answer(" ".join(w.encode().hex() for w in words) + "\n")
    assert code == errno.EINVAL and "a key given twice" in error
    assert attribute.read_text() == ""
