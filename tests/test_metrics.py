"""Metrics: the text file node_exporter reads, and the shipped alert rules checked by promtool."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lhsweep.metrics import Family, Metrics
from tests.builders import sample_report
from tests.inventories import runtime_unknown

MONITORING = Path(__file__).resolve().parent.parent / "monitoring"


def _samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for s in family.samples:
            found[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return found


def test_metrics_file_counts_entries_removals_and_ages(tmp_path: Path) -> None:
    metrics = Metrics()
    path = tmp_path / "lhsweep.prom"
    for now, stuck in ((1000.0, 0), (1060.0, 2)):
        moved = [metrics.count_outcome(o) for o in sample_report().outcomes]  # as each one happens
        metrics.observe(sample_report(), stuck_now=stuck, now=now)
    assert moved == [o.result.value != "skipped" for o in sample_report().outcomes]
    assert metrics.write(str(path))
    # Replaced whole, readable by node_exporter's own user, no temporary file left beside it.
    assert os.listdir(tmp_path) == ["lhsweep.prom"] and path.stat().st_mode & 0o777 == 0o644
    got = _samples(path)
    assert got[("lhsweep_entries", (("kind", "dm"), ("verdict", "stale")))] == 2
    assert got[("lhsweep_entries", (("kind", "node"), ("verdict", "stale")))] == 1
    assert got[("lhsweep_entries", (("kind", "dm"), ("verdict", "busy")))] == 1
    assert got[("lhsweep_entries", (("kind", "nvme"), ("verdict", "live")))] == 0
    assert got[("lhsweep_removals_total", (("kind", "dm"),))] == 2
    assert got[("lhsweep_removals_total", (("kind", "node"),))] == 2
    assert got[("lhsweep_removal_failures_total", (("kind", "dm"),))] == 2
    assert got[("lhsweep_removal_failures_total", (("kind", "node"),))] == 0
    assert got[("lhsweep_removals_total", (("kind", "nvme"),))] == 0
    assert got[("lhsweep_sweeps_total", (("result", "ok"),))] == 2
    assert got[("lhsweep_last_sweep_timestamp_seconds", ())] == 1060.0
    assert got[("lhsweep_last_sweep_duration_seconds", ())] == 0.25
    assert got[("lhsweep_runtime_reachable", ())] == 1
    assert got[("lhsweep_stuck_actions", ())] == 2
    assert got[("lhsweep_oldest_entry_age_seconds", (("verdict", "busy"),))] == 60.0
    assert got[("lhsweep_oldest_entry_age_seconds", (("verdict", "live"),))] == 0.0
    assert [p.name for p in tmp_path.iterdir()] == ["lhsweep.prom"]  # no temporary file left


def test_unreachable_runtime_errors_and_missing_directory(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.observe(sample_report(runtime_unknown()), stuck_now=0, now=1.0)
    metrics.observe_error(stuck_now=1)
    assert not metrics.write(str(tmp_path / "absent" / "lhsweep.prom"))
    assert not metrics.write("")
    path = tmp_path / "m.prom"
    metrics.write(str(path))
    got = _samples(path)
    assert got[("lhsweep_runtime_reachable", ())] == 0
    assert got[("lhsweep_sweeps_total", (("result", "error"),))] == 1


def test_alert_rules_use_only_metrics_the_daemon_exports(tmp_path: Path) -> None:
    metrics = Metrics()
    metrics.observe(sample_report(), stuck_now=0, now=1.0)
    path = tmp_path / "m.prom"
    metrics.write(str(path))
    exported = {name for name, _ in _samples(path)}
    rules = (MONITORING / "lhsweep.rules.yml").read_text()
    used = set(re.findall(r"\blhsweep_[a-z_]+\b", rules))
    assert used and used <= exported, used - exported


def test_promtool_checks_and_unit_tests_the_rules() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool missing (Debian package prometheus, dev/deps/daemon.apt)")
    subprocess.run(["promtool", "check", "rules", "lhsweep.rules.yml"], cwd=MONITORING,
                   check=True, capture_output=True)
    tested = subprocess.run(["promtool", "test", "rules", "lhsweep.rules.test.yml"],
                            cwd=MONITORING, capture_output=True, text=True, check=False)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_label_values_and_help_are_escaped_for_the_parser() -> None:
    family = Family("lhsweep_test", 'help with \\ and\nnewline', "counter", ("name",))
    family.inc('a "quoted" \\ value\nwith newline')
    (parsed,) = text_string_to_metric_families(family.render())
    assert (parsed.name, parsed.type, parsed.documentation) == ("lhsweep_test", "counter",
                                                                "help with \\ and\nnewline")
    assert [(s.name, s.labels, s.value) for s in parsed.samples] == [
        ("lhsweep_test_total", {"name": 'a "quoted" \\ value\nwith newline'}, 1.0)]
