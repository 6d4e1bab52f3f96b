"""The state file: atomic write, read back, and `lhsweep status` for people and machines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from lhsweep.errors import LhsweepError, StateError
from lhsweep.model import Kind, Verdict
from lhsweep.state import (
    STATE_FILE,
    build_state,
    count_report,
    read_state,
    render_status,
    summary_line,
    write_state,
)
from lhsweep.tools import StuckProcess
from tests.builders import entry, report, sample_report
from tests.inventories import runtime_unknown


def test_counts_and_summary_line() -> None:
    counts = count_report(sample_report())
    assert counts == {"entries": 5, "live": 0, "stale": 3, "busy": 1, "foreign": 1, "unknown": 0,
                      "removed": 2, "skipped": 0, "failed": 1, "stuck": 1}
    assert summary_line(sample_report(), 7, stuck_now=1) == (
        "sweep 7: 2 removed, 1 failed, 1 busy, 1 stale left, 0 unknown, 0 live, 1 foreign; "
        "containerd 1.6: 0 live instance-managers; 1 stuck action")
    unknown = sample_report(runtime_unknown("no CRI socket"))
    assert summary_line(unknown, 1).endswith("; runtime unknown (no CRI socket)")


def test_write_is_atomic_creates_the_directory_and_reads_back(tmp_path: Path) -> None:
    state_dir = tmp_path / "run" / "lhsweep"
    assert read_state(str(state_dir)) is None
    stuck = (StuckProcess(("dmsetup", "remove", "pvc-3"), 4242, 1700000000.0),)
    state = build_state(sample_report(), sweep_number=3, triggers=("pod-dir",), status="s", stuck=stuck)
    path = write_state(str(state_dir), state)
    assert path == str(state_dir / STATE_FILE)
    assert os.listdir(state_dir) == [STATE_FILE]
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    back = read_state(str(state_dir))
    assert back == json.loads(json.dumps(state))
    assert back is not None and back["report"]["entries"][1]["verdict"] == "busy"
    write_state(str(state_dir), {**state, "sweep_number": 4})
    assert read_state(str(state_dir))["sweep_number"] == 4  # type: ignore[index]


def test_garbage_state_file_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("{not json")
    with pytest.raises(LhsweepError, match="not valid JSON"):
        read_state(str(tmp_path))
    (tmp_path / STATE_FILE).write_text('{"version": 99}')
    with pytest.raises(LhsweepError, match="version 1"):
        read_state(str(tmp_path))


def test_status_for_people_names_what_needs_attention() -> None:
    stuck = (StuckProcess(("dmsetup", "remove", "pvc-3"), 4242, 1700000000.0),)
    state = build_state(sample_report(), sweep_number=3, triggers=("pod-dir", "uevent"),
                        status="sweep 3: ...", stuck=stuck)
    text = render_status(state, as_json=False)
    assert text.startswith("last sweep: #3 at ")
    assert "triggered by pod-dir, uevent" in text
    assert "runtime: known (ok)" in text
    assert "  busy: dm pvc-2 (pvc-2 is mounted on /mnt/x)" in text
    assert "  removed: dm pvc-1 (dmsetup exited 0)" in text
    assert "  removed: node pvc-1 (unlinked)" in text
    assert "  failed: dm pvc-3 (dmsetup timed out)" in text
    assert "  stuck: dmsetup remove pvc-3 (pid 4242, since " in text
    assert "vg0-data" not in text  # foreign devices need nobody's attention


def test_status_as_json_is_the_state() -> None:
    state = build_state(sample_report(), sweep_number=1, triggers=("boot",), status="s", stuck=())
    assert json.loads(render_status(state, as_json=True)) == json.loads(json.dumps(state))


@pytest.mark.parametrize(("change", "where"), [
    (lambda s: s.update(written_at=1e300), "written_at is not a Unix time"),
    (lambda s: s.update(written_at="yesterday"), "written_at is not a Unix time"),
    (lambda s: s.update(sweep_number=None), "sweep_number is not an integer"),
    (lambda s: s.update(triggers="boot"), "triggers is not a list"),
    (lambda s: s.update(triggers=[1]), "triggers[0] is not a string"),
    (lambda s: s["report"].update(duration_s="fast"), "report.duration_s is not a number"),
    (lambda s: s["report"].update(entries=[{"kind": "dm"}]), "report.entries[0].name is missing"),
    (lambda s: s["report"]["actions"][0].update(detail=None), "report.actions[0].detail is not a string"),
    (lambda s: s["report"].update(runtime=[]), "report.runtime is not an object"),
    (lambda s: s["stuck"].append({"argv": ["x"], "pid": 1, "since": float("inf")}), "stuck[0].since"),
    (lambda s: s["stuck"].append({"argv": ["x"], "pid": True, "since": 0}), "stuck[0].pid"),
    (lambda s: s.update(counts={"removed": "2"}), "counts.removed is not an integer"),
    (lambda s: s.pop("report"), "report is missing"),
])
def test_wrongly_typed_state_fields_are_one_line_errors(tmp_path: Path, change: Any,
                                                        where: str) -> None:
    state = json.loads(json.dumps(build_state(sample_report(), sweep_number=1, triggers=("boot",),
                                              status="s", stuck=())))
    change(state)
    (tmp_path / STATE_FILE).write_text(json.dumps(state))
    with pytest.raises(StateError) as err:
        read_state(str(tmp_path))
    assert str(err.value).startswith(f"{tmp_path / STATE_FILE}: not a valid state file: {where}")


def test_status_escapes_what_it_prints() -> None:
    forged = entry("pvc-\nbusy: dm forged", Verdict.BUSY, "\x1b[2Jmounted\u202e", kind=Kind.NODE)
    state = build_state(report(forged), sweep_number=1,
                        triggers=("boot\r",), status="s\x07", stuck=())
    text = render_status(state, as_json=False)
    assert all(line.isprintable() for line in text.splitlines())
    assert "  busy: node pvc-\\nbusy: dm forged (\\x1b[2Jmounted\\u202e)" in text
