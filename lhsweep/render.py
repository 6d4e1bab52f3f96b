"""Renders a sweep report: the JSON shape machines read, and an aligned table for people."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lhsweep.model import ActionOutcome, Entry, InstanceManager, RuntimeView, SweepReport


def printable(text: object) -> str:
    """`text` with every non-printable character (controls, line breaks, bidi overrides) escaped.

    The one escaping rule of every text output: tables, status, the journal, STATUS= lines.
    """
    line = str(text)
    if line.isprintable():  # nearly always: one C call instead of a look at each character
        return line
    return "".join(c if c.isprintable() else _escape(c) for c in line)


_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def echo(text: str, limit: int) -> str:
    """`text` as an error message may quote it: escaped, and cut after `limit` characters."""
    return printable(text[:limit]) + ("\u2026" if len(text) > limit else "")


def one_line(text: object, limit: int) -> str:
    """The first line of `text`, escaped and cut like `echo`, for one-line error messages."""
    lines = str(text).strip().splitlines()
    return echo(lines[0] if lines else "", limit)


def runtime_to_dict(view: RuntimeView) -> dict[str, Any]:
    """The `runtime` object of the JSON report."""
    return {
        "state": view.state.value,
        "reason": view.reason,
        "endpoint": view.endpoint,
        "endpoint_reason": view.endpoint_reason,
        "runtime": f"{view.runtime_name} {view.runtime_version}".strip(),
        "instance_managers": [_im_to_dict(im) for im in view.instance_managers],
    }


def _im_to_dict(im: InstanceManager) -> dict[str, Any]:
    return {
        "pod": im.pod_name,
        "namespace": im.namespace,
        "uid": im.pod_uid,
        "node": im.node,
        "sandbox_state": im.sandbox_state,
        "container_id": im.container_id,
        "container_state": im.container_state,
        "created_at_ns": im.created_at_ns,
        "alive": im.alive,
    }


def entry_to_dict(entry: Entry) -> dict[str, Any]:
    """One planned entry as JSON."""
    return {
        "kind": entry.kind.value,
        "name": entry.name,
        "volume": entry.volume,
        "verdict": entry.verdict.value,
        "reason": entry.reason,
        "holders": list(entry.holders),
    }


def outcome_to_dict(outcome: ActionOutcome) -> dict[str, Any]:
    """One action result as JSON."""
    return {
        "kind": outcome.kind.value,
        "name": outcome.name,
        "volume": outcome.volume,
        "result": outcome.result.value,
        "detail": outcome.detail,
        "duration_s": round(outcome.duration_s, 3),
        "stuck": outcome.stuck,
    }


def report_to_dict(report: SweepReport) -> dict[str, Any]:
    """The whole report in the documented JSON shape."""
    return {
        "runtime": runtime_to_dict(report.runtime),
        "entries": [entry_to_dict(e) for e in report.plan.entries],
        "actions": [outcome_to_dict(o) for o in report.outcomes],
        "dry_run": report.dry_run,
        "started_at": report.started_at,
        "duration_s": round(report.duration_s, 3),
        "problems": list(report.problems),
    }


def _table(rows: Sequence[tuple[str, ...]]) -> list[str]:
    """Align columns (every cell escaped); the last column is left ragged."""
    cells = [[printable(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]) - 1)]
    return ["  ".join([c.ljust(w) for c, w in zip(r, widths)] + [r[-1]]).rstrip() for r in cells]


def _endpoint_text(view: RuntimeView) -> str:
    """' via ENDPOINT (why)' for the runtime line, ' (endpoint: why)' before one was chosen."""
    if view.endpoint:
        return f" via {view.endpoint} ({view.endpoint_reason or 'no reason recorded'})"
    return f" (endpoint: {view.endpoint_reason})" if view.endpoint_reason else ""


def render_text(report: SweepReport) -> str:
    """The report for people: runtime line, entries table, actions table, problems."""
    view = report.runtime
    lines = [f"runtime: {view.state.value} ({printable(view.reason)})" + printable(_endpoint_text(view))]
    for im in view.instance_managers:
        lines.append(f"  instance-manager {printable(im.pod_name)}: sandbox "
                     f"{printable(im.sandbox_state)}, container {printable(im.container_state or 'none')}")
    if report.plan.entries:
        rows = [("KIND", "NAME", "VERDICT", "REASON")]
        rows += [(e.kind.value, e.name, e.verdict.value, e.reason) for e in report.plan.entries]
        lines += ["", *_table(rows)]
    else:
        lines.append("no dm devices, /dev/longhorn entries or NVMe-oF subsystems found")
    if report.outcomes:
        rows = [("KIND", "NAME", "RESULT", "DETAIL")]
        rows += [(o.kind.value, o.name, o.result.value, o.detail) for o in report.outcomes]
        lines += ["", *_table(rows)]
    lines += [f"problem: {printable(p)}" for p in report.problems]
    return "\n".join(lines) + "\n"
