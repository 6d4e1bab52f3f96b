"""Builds (or reuses) the cached Debian 12 guest image the VM tests boot.

The image is keyed by a hash of its recipe (this file, the host kernel version and the apt
mirror): `/var/cache/lhsweep-vm/<hash>/` holds `root.img`, `vmlinuz`, `initrd.img` and
`recipe.json`. Run as a script to build it ahead of the tests: `python3 tests/vm/image.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CACHE_ROOT = Path(os.environ.get("LHSWEEP_VM_CACHE", "/var/cache/lhsweep-vm"))
SUITE = "bookworm"
ROOT_SIZE = "3G"
HOSTNAME = "lhvm"

# Guest packages: the base of docs/vm.md, the tools the scenarios drive, lhsweep's Debian deps.
PACKAGES = (
    *("systemd", "systemd-sysv", "udev", "dbus", "dmsetup", "kmod", "python3", "util-linux", "iproute2"),
    *("procps", "nvme-cli", "containerd", "runc", "busybox-static", "cryptsetup-bin", "lvm2", "e2fsprogs"),
    *("python3-pyroute2", "python3-systemd", "python3-sdnotify", "python3-toml", "python3-grpcio"),
    "python3-protobuf",
)

# Units that only slow a throw-away guest down, or fight the test runner for the serial ports.
MASKED_UNITS = (
    "serial-getty@ttyS0.service",
    "serial-getty@ttyS1.service",
    "getty.target",
    "lvm2-monitor.service",
    "e2scrub_reap.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
)

# The in-image runner stays tiny and stable: everything else comes in on the payload disk.
RUNNER_SCRIPT = """#!/bin/sh
# lhsweep VM test runner: mount the payload disk, run its entry point, power off.
systemctl is-system-running --wait >/dev/null 2>&1
mkdir -p /payload
if mount -t ext4 /dev/vdb /payload; then
    /bin/sh /payload/run >/dev/ttyS1 2>&1
    echo "LHVM-EXIT $?" >/dev/ttyS1
    sync
    umount /payload
else
    echo "LHVM-EXIT no payload disk" >/dev/ttyS1
fi
systemctl poweroff --no-block
"""

RUNNER_UNIT = """[Unit]
Description=lhsweep VM test runner
After=multi-user.target

[Service]
Type=simple
ExecStart=/usr/local/sbin/lhvm-runner
StandardOutput=journal+console

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True)
class GuestImage:
    """A built guest: kernel, initrd and root filesystem image."""

    directory: Path
    kernel: Path
    initrd: Path
    root: Path


def kernel_version() -> str:
    """The newest cloud kernel installed on the host (linux-image-cloud-amd64)."""
    versions = sorted(
        (p.name[len("vmlinuz-") :] for p in Path("/boot").glob("vmlinuz-*-cloud-amd64")),
        key=lambda v: [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)],
    )
    if not versions:
        raise RuntimeError("/boot: no vmlinuz-*-cloud-amd64; install linux-image-cloud-amd64")
    return versions[-1]


def _deb822_mirror(text: str) -> str:
    """The URI of a deb822 stanza serving `SUITE` main ('' if none)."""
    for stanza in re.split(r"\n\s*\n", text):
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition(":") for line in stanza.splitlines() if ":" in line)
            if not k.startswith("#")
        )
        if SUITE in fields.get("suites", "").split() and "main" in fields.get("components", "").split():
            return fields.get("uris", "").split()[0] if fields.get("uris") else ""
    return ""


def _list_mirror(text: str) -> str:
    """The URI of a one-line sources entry serving `SUITE` main ('' if none)."""
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(words) >= 4 and words[0] == "deb" and words[2] == SUITE and "main" in words[3:]:
            return words[1]
    return ""


def apt_mirror() -> str:
    """The Debian mirror the host's apt uses for bookworm main (never a hard-coded host)."""
    sources = [*sorted(Path("/etc/apt/sources.list.d").glob("*")), Path("/etc/apt/sources.list")]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        uri = _deb822_mirror(text) if path.suffix == ".sources" else _list_mirror(text)
        if uri:
            return uri
    raise RuntimeError(f"/etc/apt: no source serves '{SUITE} main'")


def recipe() -> dict[str, str]:
    """Everything the image depends on; its hash names the cache directory."""
    return {
        "builder": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        "kernel": kernel_version(),
        "mirror": apt_mirror(),
    }


def recipe_hash(spec: dict[str, str]) -> str:
    """A short stable hash of a recipe."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def _image_at(directory: Path) -> GuestImage:
    """The GuestImage paths inside a cache directory."""
    return GuestImage(directory, directory / "vmlinuz", directory / "initrd.img", directory / "root.img")


def _run(argv: list[str], log: Path) -> None:
    """Run one build step, appending its output to `log`; raise with the log's tail on failure."""
    with log.open("ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}); see {log}:\n" + "\n".join(tail))


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    """Write a file into the guest root, making its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _configure_root(root: Path, kver: str, log: Path) -> None:
    """Kernel modules, masked units, the runner unit, hostname; containerd off until a test starts it."""
    shutil.copytree(f"/lib/modules/{kver}", root / "lib/modules" / kver, symlinks=True, dirs_exist_ok=True)
    _write(root / "etc/hostname", HOSTNAME + "\n")
    _write(root / "etc/hosts", f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n")
    _write(root / "etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 0\n")
    _write(root / "usr/local/sbin/lhvm-runner", RUNNER_SCRIPT, 0o755)
    _write(root / "etc/systemd/system/lhvm-runner.service", RUNNER_UNIT)
    _run(["chroot", str(root), "systemctl", "mask", *MASKED_UNITS], log)
    _run(["chroot", str(root), "systemctl", "enable", "lhvm-runner.service"], log)
    _run(["chroot", str(root), "systemctl", "disable", "containerd.service"], log)
    _run(["chroot", str(root), "apt-get", "clean"], log)


def build(directory: Path, spec: dict[str, str]) -> None:
    """Build a guest image into `directory` (which must not exist yet)."""
    work = Path(tempfile.mkdtemp(prefix="build-", dir=directory.parent))
    log = work / "build.log"
    root = work / "root"
    try:
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                spec["mirror"],
            ],
            log,
        )
        _configure_root(root, spec["kernel"], log)
        _run(
            ["mkfs.ext4", "-q", "-F", "-L", "lhvm-root", "-d", str(root), str(work / "root.img"), ROOT_SIZE],
            log,
        )
        shutil.copyfile(f"/boot/vmlinuz-{spec['kernel']}", work / "vmlinuz")
        shutil.copyfile(f"/boot/initrd.img-{spec['kernel']}", work / "initrd.img")
        (work / "recipe.json").write_text(json.dumps(spec, indent=2, sort_keys=True) + "\n")
        shutil.rmtree(root)
        work.chmod(0o755)
        work.rename(directory)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def prune(keep: Path) -> None:
    """Remove cached images of other recipes and abandoned build directories (each is ~600 MB)."""
    for entry in CACHE_ROOT.iterdir() if CACHE_ROOT.is_dir() else ():
        if entry != keep and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def ensure_image(rebuild: bool = False) -> GuestImage:
    """The cached guest image for the current recipe, built first when missing."""
    spec = recipe()
    directory = CACHE_ROOT / recipe_hash(spec)
    if rebuild and directory.exists():
        shutil.rmtree(directory)
    if not (directory / "root.img").exists():
        CACHE_ROOT.mkdir(parents=True, exist_ok=True)
        prune(keep=directory)
        started = time.monotonic()
        build(directory, spec)
        print(f"lhsweep-vm: built {directory} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return _image_at(directory)


if __name__ == "__main__":
    image = ensure_image(rebuild="--rebuild" in sys.argv[1:])
    print(image.directory)
