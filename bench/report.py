"""Results as tables: the terminal print-out and docs/benchmarks.md (machine, load, reproduction)."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, TypeVar

T = TypeVar("T")


@dataclass
class Section:
    """One benchmark item: a table, and notes on how it was measured or why a target was missed."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def load_now() -> str:
    """The 1-minute load average now (other jobs share this machine)."""
    return f"{os.getloadavg()[0]:.2f}"


def verdict(value: float, limit: float) -> str:
    """'met' when `value` is under `limit`, else 'MISSED'."""
    return "met" if value < limit else "MISSED"


def ms(seconds: float) -> str:
    """Seconds as milliseconds text."""
    return f"{seconds * 1000:.1f} ms"


def median_of(runs: int, measure: Callable[[], T], key: Callable[[T], float]) -> tuple[T, list[T]]:
    """Run `measure` `runs` times; the run with the median `key`, and all of them."""
    results = [measure() for _ in range(runs)]
    middle = statistics.median_low([key(r) for r in results])
    return next(r for r in results if key(r) == middle), results


def machine() -> list[str]:
    """What the numbers were measured on."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip() or "unknown"
    return [
        f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB RAM",
        f"Linux {platform.release()}, {platform.python_implementation()} {platform.python_version()}",
        f"lhsweep commit {commit}, measured {time.strftime('%Y-%m-%d %H:%M %Z')}",
    ]


def _widths(section: Section) -> list[int]:
    cells = [section.headers, *section.rows]
    return [max(len(row[i]) for row in cells) for i in range(len(section.headers))]


def render_text(sections: list[Section]) -> str:
    """Aligned plain-text tables for the terminal."""
    out: list[str] = []
    for section in sections:
        widths = _widths(section)
        out.append(f"\n== {section.title}")
        for row in [section.headers, *section.rows]:
            out.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        out += [f"   * {note}" for note in section.notes]
    return "\n".join(out) + "\n"


def render_markdown(sections: list[Section], intro: list[str], history: list[str],
                    reproduce: list[str]) -> str:
    """docs/benchmarks.md: intro, machine, a table per item with notes, what changed, how to reproduce."""
    lines = ["# Benchmarks", "", *intro, "", "## Machine", ""]
    lines += [f"- {item}" for item in machine()]
    for section in sections:
        lines += ["", f"## {section.title}", ""]
        lines.append("| " + " | ".join(section.headers) + " |")
        lines.append("|" + "|".join("---" for _ in section.headers) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in section.rows]
        if section.notes:
            lines.append("")
            lines += [f"- {note}" for note in section.notes]
    lines += ["", "## Before and after", "", *[f"- {item}" for item in history]]
    lines += ["", "## Reproduce", "", *reproduce, ""]
    return "\n".join(lines)
