"""The daemon's state file (last-sweep.json): counts, summary line, atomic write, and `lhsweep status`."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections import Counter
from typing import Any, Optional

from lhsweep.errors import LhsweepError
from lhsweep.model import ActionResult, RuntimeState, SweepReport, Verdict
from lhsweep.render import report_to_dict
from lhsweep.tools import StuckProcess

STATE_FILE = "last-sweep.json"
STATE_VERSION = 1


def count_report(report: SweepReport) -> dict[str, int]:
    """Entries per verdict and outcomes per result (every key present, zero when none)."""
    verdicts = Counter(e.verdict.value for e in report.plan.entries)
    results = Counter(o.result.value for o in report.outcomes)
    counts = {"entries": len(report.plan.entries)}
    counts.update({v.value: verdicts[v.value] for v in Verdict})
    counts.update({r.value: results[r.value] for r in ActionResult})
    counts["stuck"] = sum(1 for o in report.outcomes if o.stuck)
    return counts


def runtime_phrase(report: SweepReport) -> str:
    """How the runtime looked, in a few words."""
    view = report.runtime
    if view.state is RuntimeState.UNKNOWN:
        return f"runtime unknown ({view.reason})"
    live = len(view.live_instance_managers)
    name = f"{view.runtime_name} {view.runtime_version}".strip() or "runtime"
    return f"{name}: {live} live instance-manager{'' if live == 1 else 's'}"


def summary_line(report: SweepReport, sweep_number: int, stuck_now: int = 0) -> str:
    """One line for STATUS= and the journal summary."""
    c = count_report(report)
    head = f"sweep {sweep_number}{' (dry run)' if report.dry_run else ''}: "
    parts = [f"{c['removed']} removed", f"{c['failed']} failed", f"{c['busy']} busy",
             f"{c['stale'] - c['removed']} stale left", f"{c['unknown']} unknown",
             f"{c['live']} live", f"{c['foreign']} foreign"]
    tail = f"; {runtime_phrase(report)}"
    if stuck_now:
        tail += f"; {stuck_now} stuck action{'' if stuck_now == 1 else 's'}"
    return head + ", ".join(parts) + tail


def build_state(report: SweepReport, *, sweep_number: int, triggers: tuple[str, ...],
                status: str, stuck: tuple[StuckProcess, ...]) -> dict[str, Any]:
    """The state file's content for one finished sweep."""
    return {
        "version": STATE_VERSION,
        "pid": os.getpid(),
        "written_at": time.time(),
        "sweep_number": sweep_number,
        "triggers": list(triggers),
        "status": status,
        "counts": count_report(report),
        "stuck": [{"argv": list(s.argv), "pid": s.pid, "since": s.since} for s in stuck],
        "report": report_to_dict(report),
    }


def state_path(state_dir: str) -> str:
    """Where the state file lives below `state_dir`."""
    return os.path.join(state_dir, STATE_FILE)


def write_state(state_dir: str, state: dict[str, Any]) -> str:
    """Replace the state file atomically (creating `state_dir`); return its path."""
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    target = state_path(state_dir)
    fd, tmp = tempfile.mkstemp(prefix=f".{STATE_FILE}.", dir=state_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=1, sort_keys=True)
            handle.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise
    return target


def read_state(state_dir: str) -> Optional[dict[str, Any]]:
    """The last state the daemon wrote, None when there is none; LhsweepError when unreadable."""
    try:
        with open(state_path(state_dir), encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LhsweepError(f"{state_path(state_dir)}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise LhsweepError(f"{state_path(state_dir)}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise LhsweepError(f"{state_path(state_dir)}: not a version {STATE_VERSION} state file")
    return data


def render_status(state: dict[str, Any], as_json: bool) -> str:
    """The state for people (or as JSON): when, what was found, what was done, what needs a human."""
    if as_json:
        return json.dumps(state, indent=2, sort_keys=True) + "\n"
    report = state.get("report", {})
    written = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(state.get("written_at", 0)))
    lines = [
        f"last sweep: #{state.get('sweep_number')} at {written}, took "
        f"{report.get('duration_s', 0):.2f}s (daemon pid {state.get('pid')}, "
        f"triggered by {', '.join(state.get('triggers', [])) or 'nothing recorded'})",
        f"status: {state.get('status', '')}",
    ]
    runtime = report.get("runtime", {})
    lines.append(f"runtime: {runtime.get('state', '?')} ({runtime.get('reason', '')})")
    for verdict in (Verdict.BUSY, Verdict.UNKNOWN, Verdict.STALE):
        lines += _entries_of(report, verdict.value)
    for action in report.get("actions", []):
        if action.get("result") != ActionResult.SKIPPED.value:
            lines.append(f"  {action.get('result')}: {action.get('kind')} {action.get('name')}"
                         f" ({action.get('detail')})")
    for stuck in state.get("stuck", []):
        since = time.strftime("%H:%M:%S", time.localtime(stuck.get("since", 0)))
        lines.append(f"  stuck: {' '.join(stuck.get('argv', []))} (pid {stuck.get('pid')}, "
                     f"since {since})")
    lines += [f"  problem: {p}" for p in report.get("problems", [])]
    return "\n".join(lines) + "\n"


def _entries_of(report: dict[str, Any], verdict: str) -> list[str]:
    """One line per entry of `verdict`."""
    return [f"  {verdict}: {e.get('kind')} {e.get('name')} ({e.get('reason')})"
            for e in report.get("entries", []) if e.get("verdict") == verdict]
