"""docs/architecture.md holds: its import rule and library rule match every import in lhsweep/,
its JSON examples have exactly the keys the code writes, and its timers are the main loop's."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from lhsweep.daemon.loop import TIMERS
from lhsweep.model import SweepReport
from lhsweep.render import report_to_dict
from lhsweep.state import build_state
from lhsweep.tools import StuckProcess
from tests.builders import sample_report
from tests.inventories import instance_manager, runtime_with

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "lhsweep"
ARCHITECTURE = REPO / "docs" / "architecture.md"
# What a pure part (plan, model) may import from outside lhsweep: nothing that does I/O.
PURE_PARTS = frozenset({"plan", "model"})
PURE_STDLIB = frozenset({"__future__", "re", "enum", "dataclasses", "typing", "collections",
                         "functools", "itertools"})
_NAME = re.compile(r"`([^`]+)`")

Rules = dict[str, frozenset[str]]


def _table(marker: str) -> Rules:
    """The two-column table between `<!-- marker: begin -->` and `<!-- marker: end -->`."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker}: begin -->(.*?)<!-- {marker}: end -->", text, re.S)
    assert match, f"{ARCHITECTURE}: no {marker} table"
    rules: Rules = {}
    for line in match.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].startswith("`"):
            rules[_NAME.findall(cells[0])[0]] = frozenset(_NAME.findall(cells[1]))
    assert rules, f"{ARCHITECTURE}: the {marker} table is empty"
    return rules


def part_of(module: str) -> str:
    """The part a dotted module name belongs to: lhsweep.cri.view -> cri, lhsweep -> lhsweep."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else pieces[0]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    """True when `dotted` names a module or package of this repository."""
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every absolute module name `source` imports (at any depth), relative imports resolved."""
    found: set[str] = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from lhsweep import config` imports the part `config`, not the package.
                submodule = f"{base}.{alias.name}"
                found.add(submodule if _is_module(submodule) else base)
    return found


def violations(part: str, imported: set[str], rules: Rules, libraries: Rules) -> list[str]:
    """What `part` imports against the rules: other lhsweep parts, guarded libraries, I/O if pure."""
    bad = []
    for name in sorted(imported):
        top = name.split(".")[0]
        if top == "lhsweep":
            target = part_of(name)
            if target != part and target not in rules.get(part, frozenset()):
                bad.append(f"{part} imports {name}")
        elif top in libraries and part not in libraries[top]:
            bad.append(f"{part} imports {top} (only {', '.join(sorted(libraries[top]))} may)")
        elif part in PURE_PARTS and top not in PURE_STDLIB:
            bad.append(f"{part} is pure but imports {name}")
    return bad


def _sources() -> list[tuple[str, Path]]:
    return [(_module_name(p), p) for p in sorted(PACKAGE.rglob("*.py"))]


def test_every_import_in_lhsweep_follows_the_import_rule() -> None:
    rules, libraries = _table("import-rule"), _table("library-rule")
    bad = []
    for module, path in _sources():
        imported = imports_of(path.read_text(encoding="utf-8"), module, path.name == "__init__.py")
        bad += [f"{path.relative_to(REPO)}: {v}"
                for v in violations(part_of(module), imported, rules, libraries)]
    assert not bad, "imports that docs/architecture.md does not allow:\n" + "\n".join(bad)


def test_the_import_rule_names_every_part_and_only_existing_ones() -> None:
    rules = _table("import-rule")
    parts = {part_of(module) for module, _ in _sources()}
    assert set(rules) == parts, (f"missing from the table: {sorted(parts - set(rules))}; "
                                 f"no longer in lhsweep/: {sorted(set(rules) - parts)}")
    unknown = {t for allowed in rules.values() for t in allowed} - parts
    assert not unknown, f"the table allows imports of parts that do not exist: {sorted(unknown)}"


@pytest.mark.parametrize(("part", "source", "expected"), [
    ("inventory", "from lhsweep.cri.view import query_runtime\n", "inventory imports lhsweep.cri.view"),
    ("plan", "import os\n", "plan is pure but imports os"),
    ("plan", "def f():\n    from lhsweep.act import Actor\n", "plan imports lhsweep.act"),
    ("config", "import grpc\n", "config imports grpc (only cri may)"),
    ("model", "from lhsweep import sweep\n", "model imports lhsweep.sweep"),
])
def test_the_checker_catches_a_forbidden_import(part: str, source: str, expected: str) -> None:
    imported = imports_of(source, f"lhsweep.{part}", is_package=False)
    assert expected in violations(part, imported, _table("import-rule"), _table("library-rule"))


def test_relative_imports_are_resolved() -> None:
    imported = imports_of("from .client import CriClient\nfrom .. import model\n",
                          "lhsweep.cri.view", is_package=False)
    assert {"lhsweep.cri.client", "lhsweep.model"} <= imported


# ---------------------------------------------------------------- schemas


def _documented(name: str) -> dict[str, object]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    match = re.search(rf"<!-- schema: {name} -->\s*```json\n(.*?)```", text, re.S)
    assert match, f"{ARCHITECTURE}: no JSON example for {name}"
    data: dict[str, object] = json.loads(match.group(1))
    return data


def _shape(value: object) -> object:
    """Keys all the way down (list items by their first element), values dropped."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return None


def _sample_report() -> SweepReport:
    return sample_report(runtime_with(instance_manager(1)))


def test_the_documented_report_has_the_keys_the_code_writes() -> None:
    assert _shape(_documented("report")) == _shape(report_to_dict(_sample_report()))


def test_the_documented_state_file_has_the_keys_the_code_writes() -> None:
    state = build_state(_sample_report(), sweep_number=1, triggers=("boot",), status="s",
                        stuck=(StuckProcess(("dmsetup", "remove", "pvc-2"), 4242, 1.0),))
    documented = _documented("state")
    assert _shape({**documented, "report": None}) == _shape({**state, "report": None})


def test_the_documented_timers_are_the_main_loops_timers() -> None:
    """Name and trigger of each row of the timers table, in order, are daemon/loop.TIMERS."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    match = re.search(r"<!-- timers: begin -->(.*?)<!-- timers: end -->", text, re.S)
    assert match, f"{ARCHITECTURE}: no timers table"
    rows = [[c.strip() for c in line.strip("|").split("|")]
            for line in match.group(1).splitlines() if line.startswith("| `")]
    documented = [(_NAME.findall(row[0])[0], (_NAME.findall(row[1]) or [None])[0]) for row in rows]
    assert documented == list(TIMERS.items())
