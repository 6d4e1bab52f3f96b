"""The curated mutant list itself: well-formed, applicable to this tree, and precise when stale."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.mutants.__main__ import (
    RULES,
    Result,
    TableError,
    load_table,
    mutant_status,
    stale_reason,
    verdict,
)


def test_every_mutant_applies_to_this_tree_and_names_a_rule() -> None:
    mutants, selections = load_table()
    assert mutants and {m.rule for m in mutants} <= RULES
    assert [m.id for m in mutants if stale_reason(m)] == []
    # Every safety-critical module has mutants and a fast selection.
    for module in ("lhsweep/plan.py", "lhsweep/act.py", "lhsweep/cri/view.py",
                   "lhsweep/inventory/__init__.py"):
        assert module in selections and any(m.file == module for m in mutants)
    for tests in {m.tests for m in mutants}:
        assert all(Path(t).name.startswith("test_") for t in tests)


def test_a_stale_mutant_names_its_id_file_and_snippet() -> None:
    mutant = load_table()[0][0]
    gone = dataclasses.replace(mutant, original="    if this_line_is_not_there:\n")
    reason = stale_reason(gone)
    assert reason == f"snippet not found in {mutant.file}: 'if this_line_is_not_there:'"
    twice = dataclasses.replace(mutant, original="\n")
    assert "found" in stale_reason(twice) and "times" in stale_reason(twice)
    result = Result(gone, "STALE", reason, 0.0)
    assert verdict(result) == f"STALE {mutant.id}: {reason}"


def test_survivors_fail_the_step_unless_reviewed_and_reviewed_kills_too() -> None:
    mutant = load_table()[0][0]
    assert verdict(Result(mutant, "survived", "", 1.0)).startswith(f"SURVIVED {mutant.id} ({mutant.rule}")
    reviewed = dataclasses.replace(mutant, reviewed="equivalent: because")
    assert verdict(Result(reviewed, "survived", "", 1.0)) == "ok"
    assert verdict(Result(reviewed, "killed", "", 1.0)).startswith("KILLED-BUT-REVIEWED")


def test_only_failing_tests_kill_a_mutant_that_breaks_its_file_is_broken() -> None:
    """Failed tests or a hang kill; a collection error or a selection naming no test does not."""
    assert [mutant_status(code) for code in (0, 1, -1, 2, 4, 5)] == \
        ["survived", "killed", "killed", "BROKEN", "BROKEN", "BROKEN"]
    mutant = load_table()[0][0]
    assert verdict(Result(mutant, "BROKEN", "ERROR collecting", 1.0)) == \
        f"BROKEN {mutant.id}: its tests did not run (ERROR collecting)"


def test_a_malformed_table_is_a_one_line_error(tmp_path: Path) -> None:
    table = tmp_path / "mutants.toml"
    table.write_text('[[mutant]]\nid = "x"\nrule = "be-nice"\nfile = "f"\noriginal = "a"\n'
                     'replacement = "b"\ndescription = "d"\ntests = ["tests/test_plan.py"]\n')
    with pytest.raises(TableError, match="mutant x: rule 'be-nice' is not one of"):
        load_table(table)
    table.write_text('[[mutant]]\nid = "x"\nrule = "fail-closed"\nfile = "f"\n')
    with pytest.raises(TableError, match="mutant x: 'original' must be a non-empty string"):
        load_table(table)
