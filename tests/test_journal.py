"""Journal entries: the fields handed to journal.send, the stderr form, spam control, the catalog."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lhsweep.journal import (
    DEBUG,
    ERR,
    INFO,
    NOTICE,
    WARNING,
    DecisionLog,
    Event,
    Journal,
    is_busy_leftover,
    open_journal,
    stderr_line,
)
from lhsweep.model import (
    LONGHORN_NQN_PREFIX,
    ActionResult,
    Kind,
    SweepReport,
    Verdict,
)
from tests.builders import STALE_REASON, entry, outcome, report
from tests.inventories import runtime_unknown

LONGHORN_NQN = LONGHORN_NQN_PREFIX + "pvc-n"
CATALOG = Path(__file__).resolve().parent.parent / "systemd" / "lhsweep.catalog"


class Recorder:
    """Stands in for systemd.journal.send and keeps every call."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    def __call__(self, message: str, **fields: Any) -> None:
        self.entries.append({"MESSAGE": message, **fields})

    def by_id(self, event: Event) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("MESSAGE_ID") == event.value]


def log_sweep(log: DecisionLog, whole: SweepReport, n: int, summary: str) -> None:
    """Log a sweep as the daemon does: plan, each outcome, summary."""
    log.log_plan(whole)
    entries = {(e.kind, e.name): e for e in whole.plan.entries}
    for ended in whole.outcomes:
        planned = entries.get((ended.kind, ended.name))
        log.log_outcome(planned or entry(ended.name, Verdict.STALE, kind=ended.kind), ended,
                        whole.dry_run)
    log.log_summary(whole, n, summary)


def test_send_gets_message_id_priority_and_lhsweep_fields() -> None:
    sent = Recorder()
    log = DecisionLog(Journal(sent))
    removed = outcome("pvc-1", ActionResult.REMOVED, "dmsetup exited 0", duration_s=0.25)
    log_sweep(log, report(entry("pvc-1", Verdict.STALE), outcomes=(removed,)), 1, "summary")
    (got,) = sent.by_id(Event.REMOVED)
    assert got == {"MESSAGE": f"removed stale dm pvc-1 ({STALE_REASON}; dmsetup exited 0)",
                   "MESSAGE_ID": Event.REMOVED.value,
                   "PRIORITY": str(NOTICE), "SYSLOG_IDENTIFIER": "lhsweep",
                   "LHSWEEP_DEVICE": "pvc-1", "LHSWEEP_KIND": "dm", "LHSWEEP_RESULT": "removed",
                   "LHSWEEP_REASON": "dmsetup exited 0", "LHSWEEP_VOLUME": "pvc-1",
                   "LHSWEEP_DURATION": "0.250", "LHSWEEP_VERDICT_REASON": STALE_REASON}
    (summary,) = sent.by_id(Event.SWEEP_SUMMARY)
    assert summary["MESSAGE"] == "summary" and summary["PRIORITY"] == str(INFO)


def test_summary_carries_the_sweeps_duration_and_triggers() -> None:
    sent = Recorder()
    timed = report(entry("pvc-1", Verdict.STALE))._replace(duration_s=1.5)
    DecisionLog(Journal(sent)).log_summary(timed, 4, "summary", ("pod-dir", "uevent"))
    (summary,) = sent.by_id(Event.SWEEP_SUMMARY)
    assert (summary["LHSWEEP_SWEEP"], summary["LHSWEEP_DURATION"], summary["LHSWEEP_TRIGGERS"]) == (
        "4", "1.500", "pod-dir uevent")


def test_busy_failed_stuck_and_unknown_runtime_are_loud_every_sweep() -> None:
    sent = Recorder()
    log = DecisionLog(Journal(sent))
    busy = entry("pvc-b", Verdict.BUSY, "pvc-b is mounted on /mnt/x (linear over ...)",
                 holders=("pvc-b is mounted on /mnt/x",))
    failed = outcome("nvme-subsys3", ActionResult.FAILED, "nvme exited 1", kind=Kind.NVME)
    stuck = outcome("pvc-s", ActionResult.FAILED, "abandoned", stuck=True)
    for n in (1, 2):
        log_sweep(log, report(busy, outcomes=(failed, stuck)), n, f"sweep {n}")
    assert [e["LHSWEEP_HOLDER"] for e in sent.by_id(Event.BUSY)] == ["pvc-b is mounted on /mnt/x"] * 2
    assert all(e["PRIORITY"] == str(WARNING) for e in sent.by_id(Event.BUSY))
    assert [e["LHSWEEP_DEVICE"] for e in sent.by_id(Event.FAILED)] == ["nvme-subsys3"] * 2
    assert [e["PRIORITY"] for e in sent.by_id(Event.STUCK)] == [str(ERR)] * 2

    unknown = runtime_unknown("no CRI socket")
    log_sweep(log, report(entry("pvc-u", Verdict.UNKNOWN), runtime=unknown), 3, "s")
    log_sweep(log, report(entry("pvc-u", Verdict.UNKNOWN), runtime=unknown), 4, "s")
    assert [e["LHSWEEP_REASON"] for e in sent.by_id(Event.RUNTIME_UNKNOWN)] == ["no CRI socket"] * 2


def test_quiet_verdicts_are_logged_only_when_they_change() -> None:
    sent = Recorder()
    log = DecisionLog(Journal(sent, verbose=False))
    live = entry("pvc-l", Verdict.LIVE)
    foreign = entry("vg0-data", Verdict.FOREIGN)
    for n in (1, 2, 3):
        log_sweep(log, report(live, foreign), n, f"sweep {n}")
    decisions = sent.by_id(Event.DECISION)
    assert [e["LHSWEEP_DEVICE"] for e in decisions] == ["pvc-l", "vg0-data"]
    summaries = sent.by_id(Event.SWEEP_SUMMARY)
    assert [s["MESSAGE"] for s in summaries] == ["sweep 1"]  # quiet sweeps summarise at debug
    log_sweep(log, report(entry("pvc-l", Verdict.STALE)), 4, "sweep 4")
    log_sweep(log, report(live), 5, "sweep 5")
    assert [e["LHSWEEP_VERDICT"] for e in sent.by_id(Event.DECISION)][2:] == ["live"]


def test_verbose_journal_also_sends_debug_entries() -> None:
    sent = Recorder()
    log = DecisionLog(Journal(sent, verbose=True))
    for n in (1, 2):
        log_sweep(log, report(entry("pvc-l", Verdict.LIVE)), n, f"sweep {n}")
    assert [e["PRIORITY"] for e in sent.by_id(Event.DECISION)] == [str(INFO), str(DEBUG)]


def test_stderr_form_is_one_readable_line_without_control_characters() -> None:
    stream = io.StringIO()
    journal = Journal(None, stream)
    journal.emit(WARNING, "dm pvc-1 is busy\nsecond", Event.BUSY, LHSWEEP_DEVICE="pvc-1",
                 LHSWEEP_REASON="mounted on /mnt/a b", LHSWEEP_VOLUME="")
    journal.emit(DEBUG, "not shown")
    assert stream.getvalue() == ('lhsweep: warning: dm pvc-1 is busy\\nsecond '
                                 '[device=pvc-1 reason="mounted on /mnt/a b"]\n')
    assert stderr_line(ERR, "x", {}) == "lhsweep: error: x"


def test_log_target_selection(tmp_path: Path) -> None:
    assert not open_journal("stderr").to_journal
    assert not open_journal("auto", socket_path=str(tmp_path / "absent")).to_journal
    socket_file = tmp_path / "socket"
    socket_file.touch()
    assert open_journal("auto", socket_path=str(socket_file)).to_journal
    assert open_journal("journal").to_journal
    with pytest.raises(ValueError, match="syslog"):
        open_journal("syslog")


def test_catalog_explains_every_message_id(tmp_path: Path) -> None:
    text = CATALOG.read_text(encoding="utf-8")
    ids = re.findall(r"^-- ([0-9a-f]{32})$", text, flags=re.MULTILINE)
    assert sorted(ids) == sorted(e.value for e in Event)
    assert len(set(ids)) == len(ids)
    if shutil.which("journalctl") is None:
        pytest.skip("journalctl missing: catalog syntax not checked by systemd")
    catalog_dir = tmp_path / "usr" / "lib" / "systemd" / "catalog"
    catalog_dir.mkdir(parents=True)
    shutil.copy(CATALOG, catalog_dir)
    subprocess.run(["journalctl", f"--root={tmp_path}", "--update-catalog"], check=True)
    listed = subprocess.run(["journalctl", f"--root={tmp_path}", "--list-catalog"], check=True,
                            capture_output=True, text=True).stdout
    assert sorted(line.split()[0] for line in listed.splitlines()) == sorted(ids)
    busy = subprocess.run(["journalctl", f"--root={tmp_path}", "--dump-catalog", Event.BUSY.value],
                          check=True, capture_output=True, text=True).stdout
    assert "@LHSWEEP_HOLDER@" in busy and "findmnt" in busy


def test_a_controller_used_only_by_foreign_devices_is_said_once_quietly() -> None:
    sent = Recorder()
    log = DecisionLog(Journal(sent, verbose=True))
    used = entry(LONGHORN_NQN, Verdict.BUSY, "nvme1n1 is held by dm-4 (foreign)", kind=Kind.NVME,
                 holders=("nvme1n1 is held by dm-4 (foreign)",))
    leftover = entry("pvc-b", Verdict.BUSY, "open 1 time(s)", holders=("open 1 time(s)",))
    for n in (1, 2, 3):
        log_sweep(log, report(used, leftover), n, f"sweep {n}")
    assert [e["LHSWEEP_DEVICE"] for e in sent.by_id(Event.BUSY)] == ["pvc-b"] * 3
    said = [e for e in sent.by_id(Event.DECISION) if e["LHSWEEP_DEVICE"] == LONGHORN_NQN]
    assert [e["PRIORITY"] for e in said] == [str(INFO), str(DEBUG), str(DEBUG)]
    assert "not leftovers" in said[0]["MESSAGE"]
    assert not is_busy_leftover(used) and is_busy_leftover(leftover)
    mounted = entry(LONGHORN_NQN, Verdict.BUSY, "x", kind=Kind.NVME,
                    holders=("nvme1n1 is mounted on /mnt", "nvme1n1 is held by dm-4 (foreign)"))
    assert is_busy_leftover(mounted)
