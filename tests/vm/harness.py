"""Boots the guest under qemu with a payload disk of scenarios and collects what the guest wrote back.

One boot runs several scenarios (each boot costs ~30 s under software emulation). Results come
back twice: streamed as `LHVM-*` lines on the second serial port, and as files the guest wrote on
the payload disk (read with debugfs, without mounting). A guest that dies, hangs or never reports
raises GuestError carrying the tail of its console and of its result stream.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tests.vm.image import GuestImage, ensure_image

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GUEST_DIR = HERE / "guest"
SCENARIO_DIR = HERE / "scenarios"
BOOT_ALLOWANCE_S = 120.0
PAYLOAD_SIZE = "256M"
RUN_SCRIPT = "#!/bin/sh\ncd /payload && exec python3 /payload/guest/driver.py\n"


class GuestError(RuntimeError):
    """The guest did not deliver results (boot failure, hang, crash); carries the guest's own output."""


@dataclass(frozen=True)
class Scenario:
    """A guest-side script (tests/vm/scenarios/<name>.py) and how long it may run."""

    name: str
    timeout_s: float = 300.0

    @property
    def script(self) -> Path:
        """The scenario's guest script on the host."""
        return SCENARIO_DIR / f"{self.name}.py"


@dataclass(frozen=True)
class ScenarioResult:
    """What one scenario left: exit status, output tail, facts, its journal slice, its files."""

    name: str
    returncode: int
    timed_out: bool
    duration_s: float
    output: str
    directory: Path
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when the scenario script exited 0 in time."""
        return self.returncode == 0 and not self.timed_out

    def journal(self, unit: Optional[str] = None) -> list[dict[str, Any]]:
        """The guest journal entries written while the scenario ran (optionally of one unit)."""
        path = self.directory / "journal.json"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        entries = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in entries if unit is None or e.get("_SYSTEMD_UNIT") == unit]

    def describe(self) -> str:
        """A failure text: how it ended and the guest's own output."""
        how = "timed out" if self.timed_out else f"exit {self.returncode}"
        return f"guest scenario {self.name}: {how} after {self.duration_s:.1f} s\n{self.output}"


@dataclass(frozen=True)
class GuestRun:
    """One boot: per-scenario results, the console and result-stream logs, timings."""

    results: dict[str, ScenarioResult]
    out_dir: Path
    boot_s: float
    total_s: float
    install: Optional[dict[str, Any]] = None


def find_deb() -> Optional[Path]:
    """$LHSWEEP_VM_DEB, else the newest dist/lhsweep_*_all.deb (built by `make deb`), if any."""
    if os.environ.get("LHSWEEP_VM_DEB"):
        return Path(os.environ["LHSWEEP_VM_DEB"])
    debs = sorted((REPO / "dist").glob("lhsweep_*_all.deb"), key=lambda p: p.stat().st_mtime)
    return debs[-1] if debs else None


def _generate_cri_messages(target: Path) -> None:
    """Generate the test CRI messages with Debian's protoc (loads on the guest's python3-protobuf)."""
    subprocess.run(
        ["protoc", f"--proto_path={GUEST_DIR}", f"--python_out={target}", str(GUEST_DIR / "cri_admin.proto")],
        check=True,
        capture_output=True,
    )


def build_payload(directory: Path, scenarios: list[Scenario], deb: Optional[Path],
                  extra: Sequence[Path] = ()) -> Path:
    """Lay out the payload tree and pack it into an ext4 image without a journal; returns the image.

    Every scenario script comes along (one may run another's main); `extra` files go to the top.
    """
    tree = directory / "payload"
    shutil.copytree(GUEST_DIR, tree / "guest", ignore=shutil.ignore_patterns("__pycache__", "*.proto"))
    _generate_cri_messages(tree / "guest" / "lhvm")
    shutil.copytree(SCENARIO_DIR, tree / "scenarios", ignore=shutil.ignore_patterns("__pycache__"))
    for scenario in scenarios:  # one kept elsewhere (bench/guest) comes along too
        if scenario.script.parent != SCENARIO_DIR:
            shutil.copyfile(scenario.script, tree / "scenarios" / scenario.script.name)
    for path in ([deb] if deb is not None else []) + list(extra):
        shutil.copyfile(path, tree / path.name)
    plan = {
        "deb": deb.name if deb else None,
        # LHSWEEP_VM_DRY_RUN=1: lhsweep is configured with sweep.dry_run (the "does nothing" check).
        "lhsweep_dry_run": os.environ.get("LHSWEEP_VM_DRY_RUN") == "1",
        "scenarios": [
            {"name": s.name, "script": f"scenarios/{s.script.name}", "timeout": s.timeout_s}
            for s in scenarios
        ],
    }
    (tree / "plan.json").write_text(json.dumps(plan, indent=1))
    (tree / "run").write_text(RUN_SCRIPT)
    (tree / "out").mkdir()
    image = directory / "payload.img"
    subprocess.run(
        [
            "mkfs.ext4",
            "-q",
            "-F",
            "-O",
            "^has_journal",
            "-L",
            "lhvm-payload",
            "-d",
            str(tree),
            str(image),
            PAYLOAD_SIZE,
        ],
        check=True,
        capture_output=True,
    )
    return image


def qemu_argv(image: GuestImage, payload: Path, out_dir: Path) -> list[str]:
    """The qemu command line docs/vm.md records as working here (TCG, two serial files)."""
    return [
        "qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-m", "1024", "-smp", "2",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", "root=/dev/vda rw console=ttyS0 panic=-1 fsck.mode=skip",
        "-drive", f"file={image.root},format=raw,if=virtio,snapshot=on",
        "-drive", f"file={payload},format=raw,if=virtio",
        "-display", "none", "-no-reboot", "-nic", "none", "-monitor", "none",
        "-serial", f"file:{out_dir / 'console.log'}", "-serial", f"file:{out_dir / 'result.log'}",
    ]  # fmt: skip


def _tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file ('' when missing)."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _stream(out_dir: Path, tag: str) -> list[dict[str, Any]]:
    """The JSON values of the result-stream lines starting with `tag`."""
    path = out_dir / "result.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [json.loads(line[len(tag) + 1 :]) for line in lines if line.startswith(tag + " ")]


def _failure(out_dir: Path, why: str) -> GuestError:
    """A GuestError with the guest's own words."""
    return GuestError(
        f"{why}\n--- console (tail of {out_dir / 'console.log'}) ---\n{_tail(out_dir / 'console.log')}"
        f"\n--- result stream ({out_dir / 'result.log'}) ---\n{_tail(out_dir / 'result.log')}"
    )


def _read_back(payload: Path, out_dir: Path) -> Path:
    """Copy the guest's /out from the payload image with debugfs (no mount needed)."""
    target = out_dir / "guest"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    subprocess.run(["debugfs", "-R", f"rdump /out {target}", str(payload)], check=True, capture_output=True)
    return target / "out"


def _result(entry: dict[str, Any], guest_out: Path) -> ScenarioResult:
    """A ScenarioResult from a streamed LHVM-RESULT value and the files read back."""
    directory = guest_out / entry["name"]
    facts_path = directory / "facts.json"
    facts = json.loads(facts_path.read_text()) if facts_path.exists() else {}
    return ScenarioResult(
        name=entry["name"],
        returncode=int(entry["returncode"]),
        timed_out=bool(entry["timed_out"]),
        duration_s=float(entry["duration_s"]),
        output=entry.get("output", ""),
        directory=directory,
        facts=facts,
    )


def run_guest(
    scenarios: list[Scenario],
    out_dir: Path,
    deb: Optional[Path] = None,
    image: Optional[GuestImage] = None,
    timeout_s: Optional[float] = None,
    extra: Sequence[Path] = (),
) -> GuestRun:
    """Boot once, run `scenarios` in order, return their results; raise GuestError if the guest fails us."""
    image = image or ensure_image()
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    payload = build_payload(out_dir, scenarios, deb, extra)
    limit = timeout_s or BOOT_ALLOWANCE_S + sum(s.timeout_s + 60 for s in scenarios)
    started = time.monotonic()
    with (out_dir / "qemu.log").open("wb") as qemu_log:
        qemu = subprocess.Popen(qemu_argv(image, payload, out_dir), stdout=qemu_log, stderr=subprocess.STDOUT)
        try:
            qemu.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            qemu.kill()
            qemu.wait()
            raise _failure(out_dir, f"guest still running after {limit:.0f} s; killed") from None
    total = time.monotonic() - started
    booted = _stream(out_dir, "LHVM-BOOTED")
    if not _stream(out_dir, "LHVM-DONE"):
        raise _failure(
            out_dir, f"guest stopped after {total:.0f} s without finishing (qemu exit {qemu.returncode})"
        )
    guest_out = _read_back(payload, out_dir)
    results = {e["name"]: _result(e, guest_out) for e in _stream(out_dir, "LHVM-RESULT")}
    installs = _stream(out_dir, "LHVM-INSTALL")
    return GuestRun(
        results=results,
        out_dir=out_dir,
        boot_s=float(booted[0]["uptime_s"]) if booted else 0.0,
        total_s=total,
        install=installs[0] if installs else None,
    )
