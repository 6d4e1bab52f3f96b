"""Mutation step: weaken each safety check listed in mutants.toml, one at a time, and run its tests.

Each mutant replaces one exact snippet of one file of lhsweep/ in a private copy of the tree and
runs the module's fast unit tests there (`pytest -x`); a failing run kills the mutant. The step
fails when a mutant survives that is not listed as reviewed (equivalent, or not safety-relevant,
with the reason), when a reviewed mutant is killed after all (drop its note), and when a mutant
is STALE: its snippet no longer occurs exactly once in its file.

A new safety check gets its mutant here: add a [[mutant]] to mutants.toml naming the rule it
implements (RULES below, the names of docs/design.md), the file, a snippet that occurs exactly
once, the replacement that disables or weakens the check, and a one-line description; then run
`python -m tests.mutants --only <id>` and add the test that kills it.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import tomllib as _toml_reader
except ImportError:  # Python < 3.11
    import toml as _toml_reader  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[2]
TABLE = Path(__file__).resolve().with_name("mutants.toml")
# The safety rules of the design notes a mutant may weaken.
RULES = frozenset({
    "prove-ownership", "never-touch-busy", "unknown-runtime-acts-not",
    "respect-live-instance-manager", "recheck-before-action", "no-links-block-nodes-only",
    "node-name-matches-device", "fail-closed", "kubelets-runtime-only",
})
MUTANT_KEYS = frozenset({"id", "rule", "file", "original", "replacement", "description", "reviewed",
                         "tests"})
COPIED = ("lhsweep", "tests", "pyproject.toml")
TIMEOUT_S = 300


class TableError(Exception):
    """mutants.toml is malformed; the message names the mutant and the key."""


@dataclass(frozen=True)
class Mutant:
    """One weakening of one safety check."""

    id: str
    rule: str
    file: str
    original: str
    replacement: str
    description: str
    tests: tuple[str, ...]
    reviewed: str = ""


@dataclass(frozen=True)
class Result:
    """What running a mutant's tests gave: killed, survived, STALE or BROKEN, with a detail."""

    mutant: Mutant
    status: str
    detail: str
    seconds: float


def load_table(path: Path = TABLE) -> tuple[list[Mutant], dict[str, tuple[str, ...]]]:
    """The mutants and the per-file test selections of mutants.toml; raises TableError."""
    with open(path, "rb") as handle:
        data: dict[str, Any] = (_toml_reader.load(handle) if _toml_reader.__name__ == "tomllib"
                                else _toml_reader.loads(handle.read().decode("utf-8")))
    selections = {file: tuple(spec["tests"]) for file, spec in data.get("tests", {}).items()}
    mutants, seen = [], set()
    for raw in data.get("mutant", []):
        mutant = _mutant(raw, selections)
        if mutant.id in seen:
            raise TableError(f"{path.name}: mutant {mutant.id}: the id is used twice")
        seen.add(mutant.id)
        mutants.append(mutant)
    return mutants, selections


def _mutant(raw: dict[str, Any], selections: dict[str, tuple[str, ...]]) -> Mutant:
    name = raw.get("id", "?")
    unknown = set(raw) - MUTANT_KEYS
    if unknown:
        raise TableError(f"mutants.toml: mutant {name}: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("id", "rule", "file", "original", "replacement", "description"):
        if not isinstance(raw.get(key), str) or (key != "replacement" and not raw[key]):
            raise TableError(f"mutants.toml: mutant {name}: {key!r} must be a non-empty string")
    if raw["rule"] not in RULES:
        raise TableError(f"mutants.toml: mutant {name}: rule {raw['rule']!r} is not one of "
                         f"{', '.join(sorted(RULES))}")
    tests = tuple(raw.get("tests") or selections.get(raw["file"], ()))
    if not tests:
        raise TableError(f"mutants.toml: mutant {name}: no tests for {raw['file']} ([tests] table)")
    return Mutant(raw["id"], raw["rule"], raw["file"], raw["original"], raw["replacement"],
                  raw["description"], tests, raw.get("reviewed", ""))


def stale_reason(mutant: Mutant, root: Path = REPO) -> str:
    """Why the mutant cannot be applied to the tree at `root` ('' when its snippet occurs once)."""
    path = root / mutant.file
    if not path.is_file():
        return f"file {mutant.file} does not exist"
    count = path.read_text(encoding="utf-8").count(mutant.original)
    if count == 1:
        return ""
    where = "not found" if count == 0 else f"found {count} times"
    first_line = (mutant.original.strip().splitlines() or [mutant.original])[0]
    return f"snippet {where} in {mutant.file}: {first_line!r}"


def copy_tree(into: Path) -> Path:
    """A private copy of the code and tests (no bytecode caches) that mutants may edit."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, into / name, ignore=ignore, symlinks=True)
        else:
            shutil.copy2(source, into / name)
    return into


def pytest_argv(tests: tuple[str, ...]) -> list[str]:
    """The fast unit tier for one selection: stop at the first failure, no cache, no bytecode."""
    return [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--no-header",
            "-m", "not vm", *tests]


def run_tests(copy: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """Run `tests` in the copy with the copy's lhsweep first on the path: (exit code, last line)."""
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(pytest_argv(tests), cwd=copy, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {TIMEOUT_S} s"
    lines = (done.stdout + done.stderr).strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED", "ERROR"))]
    return done.returncode, (failed or lines or ["(no output)"])[-1][:160]


def check_imports_copy(copy: Path) -> None:
    """Refuse to run when the tests in the copy would import another lhsweep (an installed one)."""
    env = {**os.environ, "PYTHONPATH": str(copy)}
    found = subprocess.run([sys.executable, "-c", "import lhsweep; print(lhsweep.__file__)"], cwd=copy,
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    if not found.startswith(str(copy)):
        sys.exit(f"mutate: the copy imports lhsweep from {found}, not from {copy}")


@contextmanager
def mutated(copy: Path, mutant: Mutant) -> Iterator[None]:
    """The mutant applied to its file in the copy, restored afterwards."""
    path = copy / mutant.file
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace(mutant.original, mutant.replacement, 1), encoding="utf-8")
    try:
        yield
    finally:
        path.write_text(original, encoding="utf-8")


def run_mutant(copies: queue.Queue[Path], mutant: Mutant) -> Result:
    """Apply the mutant in a free copy and run its tests; killed when they fail."""
    why = stale_reason(mutant)
    if why:
        return Result(mutant, "STALE", why, 0.0)
    copy = copies.get()
    started = time.monotonic()
    try:
        with mutated(copy, mutant):
            code, last = run_tests(copy, mutant.tests)
    finally:
        copies.put(copy)
    return Result(mutant, mutant_status(code), last if code != 0 else "all selected tests passed",
                  time.monotonic() - started)


def mutant_status(code: int) -> str:
    """pytest's exit code as a mutant's status: only failed tests (1) or a hang (-1) kill it.

    Any other code (2: a collection error, 4: no such test, 5: none selected) means the tests did
    not run against the mutant: a replacement that breaks the file would otherwise count as killed.
    """
    if code == 0:
        return "survived"
    return "killed" if code in (1, -1) else "BROKEN"


def verdict(result: Result) -> str:
    """'ok', or what is wrong with this result for the step's exit status."""
    reviewed = result.mutant.reviewed
    if result.status == "STALE":
        return f"STALE {result.mutant.id}: {result.detail}"
    if result.status == "BROKEN":
        return f"BROKEN {result.mutant.id}: its tests did not run ({result.detail})"
    if result.status == "survived" and not reviewed:
        return f"SURVIVED {result.mutant.id} ({result.mutant.rule}, {result.mutant.file}): " \
               f"{result.mutant.description}"
    if result.status == "killed" and reviewed:
        return f"KILLED-BUT-REVIEWED {result.mutant.id}: now killed; drop its 'reviewed' note"
    return "ok"


def score_table(results: list[Result]) -> list[str]:
    """Markdown table of the mutation score per module."""
    rows = ["| module | mutants | killed | reviewed survivors | unreviewed survivors | stale | score |",
            "|---|---|---|---|---|---|---|"]
    for file in sorted({r.mutant.file for r in results}):
        mine = [r for r in results if r.mutant.file == file]
        killed = sum(r.status == "killed" for r in mine)
        reviewed = sum(r.status == "survived" and bool(r.mutant.reviewed) for r in mine)
        unreviewed = sum(r.status == "survived" and not r.mutant.reviewed for r in mine)
        stale = sum(r.status == "STALE" for r in mine)
        rows.append(f"| {file} | {len(mine)} | {killed} | {reviewed} | {unreviewed} | {stale} | "
                    f"{100 * killed / len(mine):.0f}% |")
    return rows


def run_baseline(copies: queue.Queue[Path], tests: tuple[str, ...]) -> str:
    """'' when the selection passes unmutated, else what failed."""
    copy = copies.get()
    try:
        code, last = run_tests(copy, tests)
        if code != 0:  # once more: a loaded machine can time out a fake tool; twice is a real failure
            print(f"mutate: baseline failed once, re-running ({last})", file=sys.stderr, flush=True)
            code, last = run_tests(copy, tests)
    finally:
        copies.put(copy)
    return "" if code == 0 else f"the unmutated tests fail ({' '.join(tests)}): {last}"


def main(argv: list[str] | None = None) -> int:
    """Run the mutants (all, or --only ids) with --jobs parallel copies; non-zero on a problem."""
    parser = argparse.ArgumentParser(prog="python -m tests.mutants", description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="parallel copies (default 2)")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run only these mutants")
    parser.add_argument("--list", action="store_true", help="list the mutants and their rules")
    args = parser.parse_args(argv)
    try:
        mutants, _ = load_table()
    except TableError as exc:
        print(f"mutate: {exc}", file=sys.stderr)
        return 2
    if args.only:
        missing = set(args.only) - {m.id for m in mutants}
        if missing:
            print(f"mutate: no mutant called {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
        mutants = [m for m in mutants if m.id in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.id:34} {m.rule:26} {m.file}: {m.description}")
        return 0
    return run_all(mutants, max(1, args.jobs))


def print_result(result: Result) -> None:
    """One line per mutant as soon as it is done."""
    reviewed = result.mutant.reviewed if result.status == "survived" else ""
    note = f"  [reviewed: {reviewed.split(':')[0]}]" if reviewed else ""
    line = f"{result.status:8} {result.mutant.id:34} {result.seconds:5.1f}s  {result.detail}{note}"
    print(line, flush=True)


def run_all(mutants: list[Mutant], jobs: int) -> int:
    """Copy the tree `jobs` times, check the baseline, run every mutant, print the report."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lhsweep-mutants-") as tmp:
        copies: queue.Queue[Path] = queue.Queue()
        for n in range(jobs):
            copies.put(copy_tree(Path(tmp) / f"copy{n}"))
        check_imports_copy(Path(tmp) / "copy0")
        with ThreadPoolExecutor(jobs) as pool:
            # Every selection must pass unmutated, or no mutant's death means anything.
            selections = sorted({m.tests for m in mutants})
            failing = [f for f in pool.map(lambda t: run_baseline(copies, t), selections) if f]
            if failing:
                print("mutate: " + "\n".join(failing), file=sys.stderr)
                return 1
            futures = [pool.submit(run_mutant, copies, m) for m in mutants]
            for future in as_completed(futures):
                print_result(future.result())
            results = [f.result() for f in futures]
    print("\n" + "\n".join(score_table(results)))
    problems = [v for v in map(verdict, results) if v != "ok"]
    print(f"\n{len(results)} mutants in {time.monotonic() - started:.0f} s with {jobs} job(s)")
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
