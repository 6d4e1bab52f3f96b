"""lhsweep.sweep without processes: the scan's collector pause."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

import lhsweep.sweep
from lhsweep.config import Config
from lhsweep.host import HostRoot
from lhsweep.model import Inventory
from lhsweep.sweep import collector_paused, scan
from tests.inventories import runtime_with


def test_the_collector_is_off_inside_and_back_on_after_even_on_error() -> None:
    inside = []
    with collector_paused():
        inside.append(gc.isenabled())
    assert inside == [False] and gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("the scan failed")
    assert gc.isenabled()


def test_what_was_allocated_while_paused_is_in_the_oldest_generation_after() -> None:
    """No young collection walks the scan's records again once the collector is back on."""
    with collector_paused():
        made = [[] for _ in range(3)]
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert all(id(m) in oldest for m in made) and gc.isenabled()


def test_a_collector_turned_off_by_someone_else_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_scan_reads_the_host_and_plans_with_the_collector_off(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    read = lhsweep.sweep.read_inventory

    def recording(*args: object, **kwargs: object) -> Inventory:
        seen.append(gc.isenabled())
        return read(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(lhsweep.sweep, "read_inventory", recording)
    report = scan(Config(), HostRoot(str(tmp_path)), query=lambda _c, _h: runtime_with())
    assert seen == [False] and gc.isenabled()
    assert report.plan.entries == ()
