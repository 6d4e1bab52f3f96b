"""The repository stands on its own: every rule the code cites is defined in docs/design.md, and no
file points outside the repository (no notes of the build machines, no links that leave the tree)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DESIGN = REPO / "docs" / "design.md"
RULE_NAME = r"[a-z0-9]+(?:-[a-z0-9]+)+"
# "rule prove-ownership", "Rules a-b and c-d", "rules a-b, c-d", "[rule: a-b]", `rule = "a-b"`.
RULE_CITATION = re.compile(
    rf"\brules?(?::|\s*=)?\s+\"?({RULE_NAME}(?:\"?(?:,\s*|\s+and\s+)\"?{RULE_NAME})*)", re.I)
NUMBERED_RULE = re.compile(r"\brules?\s+\d+\b", re.I)
# Where rules are cited: the code, its tests, benchmarks, development scripts and the docs.
CITING = ("lhsweep", "tests", "bench", "dev", "docs")
# Pointers outside the tree; spelt in pieces so that this file does not match them itself.
OUTSIDE = (
    re.compile("shared" + "/"),
    re.compile("DESIGN" + r"\.md"),
    re.compile("TEST" + "-HOSTS"),
    re.compile("/" + r"(?:work|home|root)/\S"),
)
_MD_LINK = re.compile(r"\]\(([^)\s]+)\)")


def tracked_files() -> list[Path]:
    """The repository's tracked text files (git ls-files)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout
    return [REPO / name for name in out.decode().split("\0") if name]


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, IsADirectoryError, FileNotFoundError):
        return ""


def design_rules() -> set[str]:
    """The rule names docs/design.md defines: headings that are exactly one kebab-case name."""
    return set(re.findall(rf"^#{{2,4}} ({RULE_NAME})\s*$", DESIGN.read_text(encoding="utf-8"), re.M))


def cited_rules(text: str) -> set[str]:
    """Every rule name `text` cites."""
    return {name for match in RULE_CITATION.finditer(text) for name in re.findall(RULE_NAME, match.group(1))}


def _citing_files() -> list[Path]:
    """Files whose rule citations must resolve (this file's examples are not citations)."""
    here = Path(__file__).resolve()
    return [p for p in tracked_files() if p.relative_to(REPO).parts[0] in CITING and p != here]


def test_design_defines_the_safety_rules() -> None:
    assert {"prove-ownership", "never-touch-busy", "unknown-runtime-acts-not", "fail-closed",
            "recheck-before-action", "node-name-matches-device"} <= design_rules()


def test_every_rule_the_code_cites_is_defined_in_design() -> None:
    defined = design_rules()
    undefined = [f"{p.relative_to(REPO)}: rule {name}" for p in _citing_files()
                 for name in sorted(cited_rules(_text(p)) - defined)]
    assert not undefined, "rules cited but not headings of docs/design.md:\n" + "\n".join(undefined)


def test_the_code_cites_rules_by_name_not_number() -> None:
    numbered = [f"{p.relative_to(REPO)}: {m.group(0)}" for p in _citing_files()
                for m in NUMBERED_RULE.finditer(_text(p))]
    assert not numbered, "cite rules by their name in docs/design.md:\n" + "\n".join(numbered)


def test_the_code_does_cite_rules() -> None:
    cited = set().union(*(cited_rules(_text(p)) for p in _citing_files()))
    assert {"prove-ownership", "never-touch-busy", "recheck-before-action"} <= cited


@pytest.mark.parametrize(("text", "names"), [
    ("Rule prove-ownership: ...", {"prove-ownership"}),
    ("Rules unknown-runtime-acts-not and respect-live-instance-manager: x",
     {"unknown-runtime-acts-not", "respect-live-instance-manager"}),
    ("(rules a-b, c-d)", {"a-b", "c-d"}),
    ("[rule: never-touch-busy]", {"never-touch-busy"}),
    ('rule = "fail-closed"', {"fail-closed"}),
    ("alerting rules in monitoring/lhsweep.rules.yml", set()),
    ("the rule is simple", set()),
])
def test_citations_are_recognised(text: str, names: set[str]) -> None:
    assert cited_rules(text) == names


def test_no_file_points_outside_the_repository() -> None:
    found = [f"{p.relative_to(REPO)}:{n}: {line.strip()}"
             for p in tracked_files()
             for n, line in enumerate(_text(p).splitlines(), 1)
             if any(pattern.search(line) for pattern in OUTSIDE)]
    assert not found, "pointers outside the repository:\n" + "\n".join(found)


def test_markdown_links_stay_inside_the_repository_and_resolve() -> None:
    bad = []
    for path in (p for p in tracked_files() if p.suffix == ".md"):
        for target in _MD_LINK.findall(_text(path)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue  # a URL, or an anchor in the same page
            resolved = (path.parent / target.split("#")[0]).resolve()
            if REPO not in resolved.parents or not resolved.exists():
                bad.append(f"{path.relative_to(REPO)}: {target}")
    assert not bad, "links that leave the repository or lead nowhere:\n" + "\n".join(bad)


# ---------------------------------------------------------------- the journal, documented


def _journal_fields() -> set[str]:
    """Every LHSWEEP_* field name the code sends."""
    return {name for p in (REPO / "lhsweep").rglob("*.py")
            for name in re.findall(r"\bLHSWEEP_[A-Z]+\b", _text(p))}


@pytest.mark.parametrize("doc", ["man/lhsweep.8", "docs/operating.md"])
def test_every_message_id_and_field_is_documented(doc: str) -> None:
    from lhsweep.journal import Event  # noqa: PLC0415 - only this test needs the code

    text = _text(REPO / doc)
    missing = [f"{e.name} {e.value}" for e in Event if e.value not in text or e.name not in text]
    missing += sorted(f for f in _journal_fields() if f not in text)
    assert _journal_fields(), "no LHSWEEP_* fields found in lhsweep/"
    assert not missing, f"{doc} does not mention: {', '.join(missing)}"


def test_every_message_id_has_a_catalog_entry() -> None:
    from lhsweep.journal import Event  # noqa: PLC0415

    catalog = set(re.findall(r"^-- ([0-9a-f]{32})$", _text(REPO / "systemd" / "lhsweep.catalog"), re.M))
    assert catalog == {e.value for e in Event}
