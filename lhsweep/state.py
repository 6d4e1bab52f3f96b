"""The daemon's state file (last-sweep.json): counts, summary line, atomic write, and `lhsweep status`."""

from __future__ import annotations

import json
import math
import os
import time
from collections import Counter
from typing import Any, Optional

from lhsweep.errors import StateError
from lhsweep.files import replace_file
from lhsweep.model import ActionResult, RuntimeState, SweepReport, Verdict
from lhsweep.render import printable, report_to_dict
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
    replace_file(target, json.dumps(state, indent=1, sort_keys=True) + "\n")
    return target


def read_state(state_dir: str) -> Optional[dict[str, Any]]:
    """The last state the daemon wrote, None when there is none; StateError when unreadable or malformed."""
    path = state_path(state_dir)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise StateError(f"{path}: cannot read: {exc}") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        raise StateError(f"{path}: not valid JSON ({getattr(exc, 'msg', exc)})") from None
    if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
        raise StateError(f"{path}: not a version {STATE_VERSION} state file")
    wrong = _mismatch(data, _STATE_SHAPE, "")
    if wrong:
        raise StateError(f"{path}: not a valid state file: {wrong}")
    return data


class _Time:
    """Shape marker: a Unix time that time.localtime() takes (finite, from 1970 to year 5000)."""


class _MapOf:
    """Shape marker: an object whose every value has `shape`."""

    def __init__(self, shape: Any) -> None:
        self.shape = shape


_ENTRY_SHAPE = {"kind": str, "name": str, "verdict": str, "reason": str}
_ACTION_SHAPE = {"kind": str, "name": str, "result": str, "detail": str}
_STATE_SHAPE = {
    "version": int, "pid": int, "written_at": _Time, "sweep_number": int, "triggers": [str],
    "status": str, "counts": _MapOf(int),
    "stuck": [{"argv": [str], "pid": int, "since": _Time}],
    "report": {"runtime": {"state": str, "reason": str}, "entries": [_ENTRY_SHAPE],
               "actions": [_ACTION_SHAPE], "duration_s": float, "problems": [str]},
}
_LAST_TIME = 95617584000.0  # 5000-01-01


def _mismatch(value: Any, shape: Any, where: str) -> str:
    """Where `value` departs from `shape` ('' when it fits); extra object keys are allowed."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where or 'the file'} is not an object"
        for key, inner in shape.items():
            name = f"{where}.{key}" if where else key
            if key not in value:
                return f"{name} is missing"
            wrong = _mismatch(value[key], inner, name)
            if wrong:
                return wrong
        return ""
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where} is not a list"
        return next((w for i, v in enumerate(value) if (w := _mismatch(v, shape[0], f"{where}[{i}]"))), "")
    if isinstance(shape, _MapOf):
        if not isinstance(value, dict):
            return f"{where} is not an object"
        return next((w for k, v in value.items() if (w := _mismatch(v, shape.shape, f"{where}.{k}"))), "")
    return "" if _scalar_fits(value, shape) else f"{where} is not {_SCALAR_NAMES[shape]}"


_SCALAR_NAMES = {int: "an integer", float: "a number", str: "a string", _Time: "a Unix time"}


def _scalar_fits(value: Any, shape: Any) -> bool:
    if isinstance(value, bool):
        return False
    if shape is int:
        return isinstance(value, int)
    if shape is str:
        return isinstance(value, str)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return shape is float or 0 <= value < _LAST_TIME


def render_status(state: dict[str, Any], as_json: bool) -> str:
    """A state read_state() accepted, for people (escaped) or as JSON: what needs a human."""
    if as_json:
        return json.dumps(state, indent=2, sort_keys=True) + "\n"
    report = state["report"]
    written = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(state["written_at"]))
    lines = [
        f"last sweep: #{state['sweep_number']} at {written}, took "
        f"{report['duration_s']:.2f}s (daemon pid {state['pid']}, "
        f"triggered by {', '.join(state['triggers']) or 'nothing recorded'})",
        f"status: {state['status']}",
        f"runtime: {report['runtime']['state']} ({report['runtime']['reason']})",
    ]
    for verdict in (Verdict.BUSY, Verdict.UNKNOWN, Verdict.STALE):
        lines += [f"  {verdict.value}: {e['kind']} {e['name']} ({e['reason']})"
                  for e in report["entries"] if e["verdict"] == verdict.value]
    lines += [f"  {a['result']}: {a['kind']} {a['name']} ({a['detail']})"
              for a in report["actions"] if a["result"] != ActionResult.SKIPPED.value]
    for stuck in state["stuck"]:
        since = time.strftime("%H:%M:%S", time.localtime(stuck["since"]))
        lines.append(f"  stuck: {' '.join(stuck['argv'])} (pid {stuck['pid']}, since {since})")
    lines += [f"  problem: {p}" for p in report["problems"]]
    return "\n".join(printable(line) for line in lines) + "\n"
