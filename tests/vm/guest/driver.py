"""Guest entry point: install the .deb if one came in, run each scenario with a timeout, collect results.

Reads /payload/plan.json, writes /payload/out/<scenario>/{result.json,output.log,journal.json,facts.json}
and /payload/out/journal.json, and streams one `LHVM-RESULT <json>` line per scenario to stdout
(the second serial port) so the host sees progress even if the guest dies.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

from lhvm.observe import cursor as journal_cursor  # driver.py runs from guest/, beside lhvm/

PAYLOAD = "/payload"
OUT = f"{PAYLOAD}/out"
GUEST_LIB = f"{PAYLOAD}/guest"
LONGHORN_DATA_PATH = "/var/lib/longhorn"


def emit(tag: str, value: Any) -> None:
    """One progress line on the result channel."""
    print(f"{tag} {json.dumps(value, sort_keys=True)}", flush=True)


def uptime() -> float:
    """Seconds since the guest booted."""
    with open("/proc/uptime") as handle:
        return float(handle.read().split()[0])


def run_logged(argv: list[str], log_path: str, timeout: float, env: dict[str, str]) -> tuple[int, bool]:
    """Run `argv` in its own process group, output to `log_path`; kill the group on timeout."""
    with open(log_path, "ab") as log:
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        try:
            return child.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return -9, True


def tail(path: str, lines: int = 60) -> str:
    """The last lines of a text file."""
    try:
        with open(path, errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return ""


def install_deb(deb: str) -> dict[str, Any]:
    """dpkg -i the package that came on the payload disk (its Debian deps are in the image)."""
    log = f"{OUT}/install.log"
    started = time.monotonic()
    code, timed_out = run_logged(["dpkg", "-i", f"{PAYLOAD}/{deb}"], log, 300, dict(os.environ))
    return {
        "returncode": code,
        "timed_out": timed_out,
        "duration_s": round(time.monotonic() - started, 2),
        "output": tail(log),
    }


def run_scenario(spec: dict[str, Any], blocked: str, dry_run: bool) -> dict[str, Any]:
    """Run one scenario script; then reset the guest for the next one."""
    name = spec["name"]
    out = f"{OUT}/{name}"
    os.makedirs(out, exist_ok=True)
    log = f"{out}/output.log"
    env = dict(
        os.environ,
        PYTHONPATH=GUEST_LIB,
        LHVM_OUT=out,
        LHVM_SCENARIO=name,
        PYTHONUNBUFFERED="1",
        LHVM_DRY_RUN="1" if dry_run else "0",
    )
    start_cursor = journal_cursor()
    started = time.monotonic()
    if blocked:
        with open(log, "w") as handle:
            handle.write(blocked + "\n")
        code, timed_out = -1, False
    else:
        code, timed_out = run_logged(["python3", f"{PAYLOAD}/{spec['script']}"], log, spec["timeout"], env)
    duration = round(time.monotonic() - started, 2)
    with open(f"{out}/journal.json", "w") as handle:
        argv = ["journalctl", "-o", "json", "--no-pager"] + (
            [f"--after-cursor={start_cursor}"] if start_cursor else []
        )
        subprocess.run(argv, stdout=handle, check=False)
    reset_code, _ = run_logged(["python3", "-m", "lhvm.reset"], f"{out}/reset.log", 300, env)
    result = {
        "name": name,
        "returncode": code,
        "timed_out": timed_out,
        "duration_s": duration,
        "reset_returncode": reset_code,
        "output": tail(log),
    }
    with open(f"{out}/result.json", "w") as handle:
        json.dump(result, handle, indent=1)
    os.sync()
    return result


def main() -> int:
    """Run the plan; exit 0 when the driver itself worked (scenario verdicts are in the results)."""
    with open(f"{PAYLOAD}/plan.json") as handle:
        plan = json.load(handle)
    os.makedirs(OUT, exist_ok=True)
    # Every Longhorn node has Longhorn's data path (engine binaries, replicas); without it
    # lhsweep cannot tell whether engine-frontend records exist.
    os.makedirs(LONGHORN_DATA_PATH, exist_ok=True)
    emit("LHVM-BOOTED", {"uptime_s": uptime(), "kernel": os.uname().release})
    blocked = ""
    if plan.get("deb"):
        installed = install_deb(plan["deb"])
        emit("LHVM-INSTALL", installed)
        if installed["returncode"] != 0:
            blocked = f"dpkg -i {plan['deb']} failed:\n{installed['output']}"
    for spec in plan["scenarios"]:
        emit("LHVM-START", {"name": spec["name"]})
        emit("LHVM-RESULT", run_scenario(spec, blocked, bool(plan.get("lhsweep_dry_run"))))
    with open(f"{OUT}/journal.json", "w") as handle:
        subprocess.run(["journalctl", "-o", "json", "--no-pager"], stdout=handle, check=False)
    os.sync()
    emit("LHVM-DONE", {"uptime_s": uptime()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
