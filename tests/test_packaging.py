"""Packaging: the .deb and .rpm build from the tree and lint clean; unit, man pages and config agree."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import tomllib

from lhsweep import __version__
from lhsweep.cli import build_parser
from lhsweep.config import KEYS, Config, parse, toml_value

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "lhsweep.service"
MAN8 = ROOT / "man" / "lhsweep.8"
MAN5 = ROOT / "man" / "lhsweep.toml.5"
DEFAULT_CONFIG = ROOT / "etc" / "lhsweep.toml"
RPMLINT_CONFIG = ROOT / "packaging" / "rpmlint.toml"
MAX_EXPOSURE = 4.0

# Files both packages must ship, beyond the Python package itself.
SHIPPED = (
    "/usr/bin/lhsweep",
    "/etc/lhsweep/lhsweep.toml",
    "/usr/lib/systemd/catalog/lhsweep.catalog",
    "/usr/share/doc/lhsweep/examples/lhsweep.rules.yml",
    "/usr/share/man/man8/lhsweep.8.gz",
    "/usr/share/man/man5/lhsweep.toml.5.gz",
)
MODULES = ("lhsweep/__init__.py", "lhsweep/cli.py", "lhsweep/cri/wire.py",
           "lhsweep/cri/runtime.proto", "lhsweep/daemon/__init__.py")
# The floors: the oldest versions lhsweep is tested on (dev/deps/oldest.pip, .venv-oldest). toml
# only without tomllib: dh-python writes pyproject's `toml; python_version < "3.11"` as an
# alternative that Debian 12's python3 (3.11) meets, so no python3-toml is installed there.
DEB_DEPENDS = ("python3-pyroute2 (>= 0.5.14)", "python3-systemd (>= 234)", "python3-sdnotify (>= 0.3)",
               "python3-toml | python3 (>> 3.11)", "python3-grpcio (>= 1.46)",
               "dmsetup", "nvme-cli")
MATRIX = tomllib.loads((ROOT / "packaging" / "distro-matrix.toml").read_text())["targets"]
# Requires an RPM carries besides the packages of the matrix (rpm's own, the scriptlets' shell).
RPM_INTERNAL = re.compile(r"^(rpmlib\(|/bin/sh$|config\(lhsweep\) )")


def require(*tools: str) -> None:
    """Skip when a tool is missing; in CI (which installs dev/deps/packaging.apt) fail instead."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing and os.environ.get("CI"):
        pytest.fail(f"missing in CI: {' '.join(missing)} (dev/deps/packaging.apt)")
    if missing:
        pytest.skip(f"needs {' '.join(missing)} (dev/deps/packaging.apt)")


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; with check, fail showing its output."""
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def unit_directives(text: str) -> dict[str, list[str]]:
    """`Section.Key` -> values in order, from unit file text (comments skipped)."""
    directives: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        directives.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return directives


def roff_text(text: str) -> str:
    """Man page source with the roff escapes used here undone."""
    return text.replace("\\-", "-").replace("\\(bu", "*")


# ---------------------------------------------------------------- sources agree


def test_every_version_is_the_pyproject_version() -> None:
    """pyproject, the package, debian/changelog, the spec and the man pages name one version."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    changelog = (ROOT / "debian" / "changelog").read_text().splitlines()[0]
    spec = (ROOT / "packaging" / "lhsweep.spec").read_text()
    assert __version__ == version
    assert changelog.startswith(f"lhsweep ({version}) ")
    assert re.search(rf"^Version:\s+{re.escape(version)}$", spec, re.M)
    for page in (MAN8, MAN5):
        assert f'"lhsweep {version}"' in page.read_text().splitlines()[0], page


def test_default_config_is_generated_from_the_defaults() -> None:
    """etc/lhsweep.toml is what packaging/gen-default-config prints from config.KEYS."""
    generated = run(sys.executable, str(ROOT / "packaging" / "gen-default-config")).stdout
    assert DEFAULT_CONFIG.read_text() == generated


def test_default_config_lists_every_key_at_its_default_commented_out() -> None:
    """As shipped it means the defaults; uncommenting every key still means the defaults.

    A key whose default is "not set" (None) is listed as such, with nothing to uncomment.
    """
    text = DEFAULT_CONFIG.read_text()
    assert parse(text, str(DEFAULT_CONFIG)) == Config()
    uncommented = re.sub(r"^#(\w+ = )", r"\1", text, flags=re.M)
    data = tomllib.loads(uncommented)
    valued = [k for k in KEYS if getattr(Config(), k.field_name) is not None]
    assert {(s, k) for s, table in data.items() for k in table} == {(k.section, k.key) for k in valued}
    assert parse(uncommented, str(DEFAULT_CONFIG)) == Config()
    for spec in KEYS:
        unset = getattr(Config(), spec.field_name) is None
        key_line = f"# {spec.key}: not set\n" if unset else f"#{spec.key} = "
        assert f"# {spec.doc} ({spec.expected})\n{key_line}" in text, spec.key


def _man5_entry(text: str, section: str, key: str) -> str:
    """The text of one key's entry in lhsweep.toml(5), from `.B key` to the next entry."""
    part = text.split(f'.SH "[{section}]"\n', 1)[1].split("\n.SH ", 1)[0]
    match = re.search(rf"^\.B {re.escape(key)}\n(.*?)(?=^\.TP|\Z)", part, re.M | re.S)
    assert match, f"lhsweep.toml(5) has no entry for {section}.{key}"
    return re.sub(r"\s+", "", roff_text(match.group(1)))


@pytest.mark.parametrize("spec", KEYS, ids=lambda k: f"{k.section}.{k.key}")
def test_man5_documents_each_key_with_its_default(spec: Any) -> None:
    """Every key has an entry in its section, and the entry states the built-in default."""
    entry = _man5_entry(MAN5.read_text(), spec.section, spec.key)
    default = getattr(Config(), spec.field_name)
    values = list(default) if isinstance(default, tuple) else [] if default is None else [default]
    if default is None:
        assert "Default:notset" in entry
    elif not values:
        assert "Default:[]" in entry
    for value in values:
        rendered = toml_value(value)
        assert rendered.replace(" ", "") in entry, (spec.key, rendered)


def test_man5_example_is_a_valid_config() -> None:
    """The EXAMPLE section of lhsweep.toml(5) parses and changes what it claims to."""
    text = MAN5.read_text().split(".SH EXAMPLE\n", 1)[1]
    example = roff_text(text.split(".nf\n", 1)[1].split("\n.fi", 1)[0])
    config = parse(example, "lhsweep.toml(5) EXAMPLE")
    assert config.sweep_grace_period == 120
    assert config.metrics_file == ""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse has no public accessor
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_man8_covers_every_command_and_option() -> None:
    """Each subcommand and each long option of the CLI appears in lhsweep(8)."""
    text = roff_text(MAN8.read_text())
    parser = build_parser()
    parsers = [parser, *_subcommands(parser).values()]
    assert set(_subcommands(parser)) == {"scan", "sweep", "status", "check-config", "daemon"}
    for name in _subcommands(parser):
        assert f"\n.B {name}\n" in text, name
    options = {o for p in parsers for a in p._actions for o in a.option_strings}
    for option in sorted(o for o in options if o.startswith("--")):
        assert option in text, option
    for status in ("0", "1", "2", "78"):
        assert f".TP\n.B {status}\n" in text, status


@pytest.mark.parametrize("page", [MAN8, MAN5], ids=lambda p: p.name)
def test_man_pages_format_without_warnings(page: Path) -> None:
    """groff reports nothing (the same check lintian runs)."""
    require("man")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "MANROFFSEQ": "", "MANWIDTH": "80"}
    proc = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)],
                          capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


# ---------------------------------------------------------------- the unit


def test_unit_runs_the_daemon_as_a_notify_service_with_a_watchdog() -> None:
    """Type, watchdog, restart policy, reload and ordering are what the issue asks for."""
    unit = unit_directives(UNIT.read_text())
    assert unit["Service.Type"] == ["notify"]
    assert unit["Service.ExecStart"] == ["/usr/bin/lhsweep daemon"]
    assert unit["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert re.fullmatch(r"\d+s", unit["Service.WatchdogSec"][0])
    assert unit["Service.Restart"] == ["on-failure"]
    assert unit["Service.RestartPreventExitStatus"] == ["77 78"]
    after = " ".join(unit["Unit.After"]).split()
    assert {"local-fs.target", "systemd-udevd.service"} <= set(after)
    assert unit["Unit.Before"] == ["kubelet.service"]
    pulls = " ".join(unit.get("Unit.Requires", []) + unit.get("Unit.Wants", [])
                     + unit.get("Unit.BindsTo", []) + unit.get("Unit.Requisite", []))
    assert "kubelet" not in pulls
    assert unit["Install.WantedBy"] == ["multi-user.target"]


def test_unit_sandbox_fits_the_default_config() -> None:
    """The writable paths are the default state and metrics directories; the rest is locked."""
    unit = unit_directives(UNIT.read_text())
    defaults = Config()
    runtime_dirs = unit["Service.RuntimeDirectory"][0].split()
    assert defaults.state_dir == "/run/" + runtime_dirs[0]
    # Longhorn's lock directory exists before the sandbox is built, and outlives the service.
    assert "longhorn" in runtime_dirs and unit["Service.RuntimeDirectoryPreserve"] == ["yes"]
    assert f"-{os.path.dirname(defaults.metrics_file)}" in unit["Service.ReadWritePaths"]
    expected = {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "CAP_SYS_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH",
        "DevicePolicy": "closed", "RestrictAddressFamilies": "AF_UNIX AF_NETLINK",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectClock": "yes",
        "ProtectHostname": "yes", "LockPersonality": "yes", "RestrictRealtime": "yes",
        "RestrictSUIDSGID": "yes", "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native", "ProtectProc": "default",
    }
    for key, value in expected.items():
        assert unit[f"Service.{key}"] == [value], key
    assert "@system-service" in unit["Service.SystemCallFilter"]
    assert "/dev/mapper/control rw" in unit["Service.DeviceAllow"]
    assert "PrivateDevices" not in " ".join(unit)  # it would hide /dev/longhorn


def test_unit_passes_systemd_analyze_verify() -> None:
    """No unknown or unparsable directive (a missing /usr/bin/lhsweep is all it may report)."""
    require("systemd-analyze")
    proc = run("systemd-analyze", "verify", "--man=no", str(UNIT), check=False)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    allowed = "lhsweep.service: Command /usr/bin/lhsweep is not executable"
    if os.access("/usr/bin/lhsweep", os.X_OK):
        assert lines == []
    assert all(line.startswith(allowed) for line in lines), lines


def _exposure() -> tuple[float, list[str]]:
    proc = run("systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT))
    out = proc.stdout + proc.stderr
    match = re.search(r"Overall exposure level for lhsweep\.service: (\d+\.\d+)", out)
    assert match, out
    weaker = [name.rstrip("=") for name in re.findall(r"^✗ (\S+?)(?:=|\s)", out, re.M)]
    return float(match.group(1)), weaker


def test_unit_exposure_score_is_within_target_and_every_gap_is_explained(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """systemd-analyze security --offline=true scores at most 4.0; each ✗ has a comment."""
    require("systemd-analyze")
    score, weaker = _exposure()
    with capsys.disabled():  # CI's log shows the score
        print(f"\nsystemd-analyze security exposure of lhsweep.service: {score} "
              f"(target <= {MAX_EXPOSURE})")
    assert score <= MAX_EXPOSURE
    block = UNIT.read_text().split("# Left weaker on purpose", 1)[1]
    explained = re.findall(r"^#  (\w+)=", block.split("\n[", 1)[0], re.M)
    assert weaker, "systemd-analyze listed nothing: its output format changed?"
    for directive in weaker:
        assert set(directive.split("/")) & set(explained), directive


# ---------------------------------------------------------------- packages


def _build(script: str, out: Path) -> Path:
    built = run("bash", str(ROOT / "packaging" / script), str(out)).stdout.strip().splitlines()
    return Path(built[-1])


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/lhsweep_<version>_all.deb built by packaging/build-deb into a temporary directory."""
    require("dpkg-buildpackage", "dh", "git")
    return _build("build-deb", tmp_path_factory.mktemp("deb"))


@pytest.fixture(scope="module")
def rpms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every target's lhsweep-<version>-1<dist>.noarch.rpm, built by packaging/build-rpm."""
    require("rpmbuild", "git")
    out = tmp_path_factory.mktemp("rpm")
    built = run("bash", str(ROOT / "packaging" / "build-rpm"), str(out)).stdout.split()
    by_dist = {Path(path).name: Path(path) for path in built}
    return {name: by_dist[f"lhsweep-{__version__}-1{t['dist']}.noarch.rpm"] for name, t in MATRIX.items()}

def _deb_field(deb: Path, name: str) -> str:
    return run("dpkg-deb", "-f", str(deb), name).stdout.strip()


@pytest.mark.packaging
def test_deb_metadata(deb: Path) -> None:
    """Architecture all, the version, Depends only on the Debian packages named by the issue."""
    assert deb.name == f"lhsweep_{__version__}_all.deb"
    assert _deb_field(deb, "Architecture") == "all"
    assert _deb_field(deb, "Version") == __version__
    depends = [d.strip() for d in _deb_field(deb, "Depends").split(",")]
    for needed in DEB_DEPENDS:
        assert needed in depends, needed
    extra = set(depends) - set(DEB_DEPENDS) - {"python3:any"}
    assert not extra, extra


@pytest.mark.packaging
def test_deb_contents(deb: Path, tmp_path: Path) -> None:
    """The unit, config (a conffile), catalog, man pages, examples and the package are in it."""
    listing = run("dpkg-deb", "-c", str(deb)).stdout
    paths = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for path in (*SHIPPED, "/lib/systemd/system/lhsweep.service"):
        assert path in paths, path
    for module in MODULES:
        assert f"/usr/lib/python3/dist-packages/{module}" in paths, module
    control = tmp_path / "control"
    run("dpkg-deb", "-e", str(deb), str(control))
    assert (control / "conffiles").read_text().split() == ["/etc/lhsweep/lhsweep.toml"]
    postinst = (control / "postinst").read_text()
    # Upgrades restart it, through deb-systemd-invoke, which starts no disabled unit.
    assert "_dh_action=restart" in postinst
    assert "deb-systemd-invoke $_dh_action 'lhsweep.service'" in postinst
    tree = tmp_path / "tree"
    run("dpkg-deb", "-x", str(deb), str(tree))
    assert (tree / "lib/systemd/system/lhsweep.service").read_text() == UNIT.read_text()
    assert (tree / "etc/lhsweep/lhsweep.toml").read_text() == DEFAULT_CONFIG.read_text()


@pytest.mark.packaging
def test_deb_postinst_leaves_a_new_install_disabled(deb: Path, tmp_path: Path) -> None:
    """A first configure enables nothing (like the RPM's preset); an enabled unit is kept enabled."""
    run("dpkg-deb", "-e", str(deb), str(tmp_path / "control"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls"
    # deb-systemd-helper as on a fresh system: lhsweep not installed before; was-enabled says yes
    # (its default for units it has never seen, which is what makes plain dh_installsystemd enable).
    fakes = {"deb-systemd-helper": 'case "$1 $2" in "debian-installed "*) exit "${INSTALLED:-1}";; esac',
             "deb-systemd-invoke": "", "systemctl": "", "py3compile": "", "pypy3compile": ""}
    for name, body in fakes.items():
        (bin_dir / name).write_text(f'#!/bin/sh\necho "{name} $*" >> "{log}"\n{body}\nexit 0\n')
        (bin_dir / name).chmod(0o755)

    def configure(installed: int) -> list[str]:
        log.write_text("")
        env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "INSTALLED": str(installed)}
        subprocess.run(["sh", str(tmp_path / "control" / "postinst"), "configure", ""], env=env,
                       check=True)
        return log.read_text().splitlines()

    assert not any(" enable " in call for call in configure(installed=1)), log.read_text()
    assert "deb-systemd-helper enable lhsweep.service" in configure(installed=0)


@pytest.mark.packaging
def test_deb_command_runs_from_the_package(deb: Path, tmp_path: Path) -> None:
    """The packaged /usr/bin/lhsweep, on Debian's python3, prints its version and reads the config."""
    if not os.access("/usr/bin/python3", os.X_OK):
        pytest.skip("needs /usr/bin/python3")
    run("dpkg-deb", "-x", str(deb), str(tmp_path))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "usr/lib/python3/dist-packages")}
    command = [str(tmp_path / "usr/bin/lhsweep")]
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, check=False)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"lhsweep {__version__}"
    shipped = str(tmp_path / "etc/lhsweep/lhsweep.toml")
    check = subprocess.run([*command, "--config", shipped, "check-config"], capture_output=True,
                           text=True, env=env, check=False)
    assert check.returncode == 0, check.stderr
    assert parse(check.stdout, "check-config output") == Config()


@pytest.mark.packaging
def test_deb_catalog_compiles_where_journald_looks(deb: Path, tmp_path: Path) -> None:
    """journalctl --update-catalog takes the packaged catalog and lists each of its entries."""
    require("journalctl")
    run("dpkg-deb", "-x", str(deb), str(tmp_path))
    (tmp_path / "var/lib/systemd/catalog").mkdir(parents=True)
    run("journalctl", f"--root={tmp_path}", "--update-catalog")
    listed = run("journalctl", f"--root={tmp_path}", "--list-catalog").stdout.splitlines()
    source = (tmp_path / "usr/lib/systemd/catalog/lhsweep.catalog").read_text()
    ids = re.findall(r"^-- ([0-9a-f]{32})$", source, re.M)
    assert ids
    assert sorted(line.split()[0] for line in listed) == sorted(ids)


@pytest.mark.packaging
def test_deb_is_lintian_clean(deb: Path) -> None:
    """lintian reports no error and no warning (overrides, if any, say why)."""
    require("lintian")
    proc = run("lintian", "--fail-on", "error,warning", "--display-info", str(deb), check=False)
    problems = [line for line in proc.stdout.splitlines() if line.startswith(("E:", "W:"))]
    print(proc.stdout)
    assert proc.returncode == 0 and problems == [], proc.stdout + proc.stderr


def _rpm_query(rpm: Path, *args: str) -> list[str]:
    return run("rpm", "-qp", *args, str(rpm)).stdout.splitlines()


def _sitelib(target: str) -> str:
    return f"/usr/lib/python{MATRIX[target]['python']}/site-packages"


def _interpreter(target: str) -> str:
    """Fedora and EL run lhsweep with /usr/bin/python3; openSUSE with the versioned python3.X."""
    python = MATRIX[target]["python"]
    return f"/usr/bin/python{python}" if "suse_version" in MATRIX[target]["macros"] else "/usr/bin/python3"


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


@pytest.mark.packaging
@pytest.mark.parametrize("target", MATRIX)
def test_rpm_layout_is_the_targets(rpms: dict[str, Path], target: str) -> None:
    """The package under the target's site-packages, /usr/bin/lhsweep on its interpreter, %config."""
    rpm = rpms[target]
    assert _rpm_query(rpm, "--qf", "%{ARCH} %{VERSION} %{RELEASE}") == [
        f"noarch {__version__} 1{MATRIX[target]['dist']}"]
    files = set(_rpm_query(rpm, "-l"))
    for path in (*SHIPPED, "/usr/lib/systemd/system/lhsweep.service",
                 "/usr/share/licenses/lhsweep/LICENSE"):
        assert path in files, path
    for module in (*MODULES, f"lhsweep-{__version__}.dist-info/METADATA"):
        assert f"{_sitelib(target)}/{module}" in files, module
    python_files = [f for f in files if "/python" in f]
    assert all(f.startswith(_sitelib(target)) for f in python_files), python_files
    flags = dict(line.split(" ", 1)[::-1] for line in
                 _rpm_query(rpm, "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]"))
    assert set(flags["/etc/lhsweep/lhsweep.toml"]) >= {"c", "n"}  # %config(noreplace)
    assert "l" in flags["/usr/share/licenses/lhsweep/LICENSE"]  # %license
    script = run("sh", "-c", f"rpm2cpio '{rpm}' | cpio -i --quiet --to-stdout ./usr/bin/lhsweep")
    assert script.stdout.splitlines()[0] == f"#!{_interpreter(target)}"


@pytest.mark.packaging
@pytest.mark.parametrize("target", MATRIX)
def test_rpm_requires_resolve_against_the_matrix(rpms: dict[str, Path], target: str) -> None:
    """Each Requires names a package the matrix lists for the target, at a version it has."""
    provides = MATRIX[target]["provides"]
    python = MATRIX[target]["python"]
    requires = [r for r in _rpm_query(rpms[target], "--requires") if not RPM_INTERNAL.match(r)]
    assert f"python(abi) = {python}" in requires
    assert _interpreter(target) in requires
    named = [r for r in requires if not r.startswith(("python(abi)", "/usr/bin/python", "python3."))]
    assert {r.split()[0] for r in named} == set(provides), named
    for requirement in named:
        name, _, floor = requirement.partition(" >= ")
        available = provides[name]["version"]
        if floor and available != "unverified":
            assert _version(available) >= _version(floor), (requirement, available)


@pytest.mark.packaging
@pytest.mark.parametrize("target", MATRIX)
def test_rpm_requires_toml_only_without_tomllib(rpms: dict[str, Path], target: str) -> None:
    """The toml package is required exactly where the target's Python (< 3.11) lacks tomllib."""
    requires = _rpm_query(rpms[target], "--requires")
    lacks_tomllib = _version(MATRIX[target]["python"]) < (3, 11)
    assert any(r.split()[0].endswith("-toml") for r in requires) == lacks_tomllib, requires


@pytest.mark.packaging
@pytest.mark.parametrize("target", MATRIX)
def test_rpm_floors_are_the_package_metadata_ones(rpms: dict[str, Path], target: str) -> None:
    """Where rpm's generator read pyproject's floors (pythonX.Ydist), the named Requires agree."""
    requires = _rpm_query(rpms[target], "--requires")
    prefix = "python311" if target == "lp156" else "python3"
    generated = [r for r in requires if re.match(r"python3\.\d+dist\(", r)]
    if not generated:
        pytest.skip("this rpm has no Python dependency generator")
    for requirement in generated:
        module, floor = re.fullmatch(r"python3\.\d+dist\((.+)\) >= (.+)", requirement).groups()
        assert requirement.startswith(f"python{MATRIX[target]['python']}dist(")
        assert f"{prefix}-{module.replace('-', '_')} >= {floor}" in requires, requirement


def test_tested_floors_are_the_requires_floors() -> None:
    """.venv-oldest tests pyroute2 at its floor; grpcio at the oldest cp311 wheel."""
    pins = dict(re.findall(r"^([\w-]+)==(\S+)", (ROOT / "dev/deps/oldest.pip").read_text(), re.M))
    spec = (ROOT / "packaging" / "lhsweep.spec").read_text()
    floors = dict(re.findall(r"^Requires:\s+%\{lh_pyprefix\}-(\w+) >= (\S+)$", spec, re.M))
    deb = dict(re.findall(r"python3-([\w-]+) \(>= ([^)]+)\)", " ".join(DEB_DEPENDS)))

    def same(a: str, b: str) -> bool:
        return _version(a) + (0,) * 3 >= _version(b) and _version(b) + (0,) * 3 >= _version(a)

    assert same(floors["pyroute2"], pins["pyroute2"]) and same(deb["pyroute2"], pins["pyroute2"])
    assert _version(pins["grpcio"]) >= _version(floors["grpcio"]) == _version(deb["grpcio"])


@pytest.mark.packaging
@pytest.mark.parametrize("target", MATRIX)
def test_rpm_scriptlets_leave_the_service_off_until_enabled(rpms: dict[str, Path], target: str) -> None:
    """Install applies the preset (off), upgrade restarts a running unit, removal stops it."""
    scripts = "\n".join(_rpm_query(rpms[target], "--scripts"))
    for snippet in ("preset lhsweep.service", "disable --now lhsweep.service",
                    "try-restart lhsweep.service"):
        assert snippet in scripts, snippet
    assert not re.search(r"systemctl[^\n]* (enable|start|restart) ", scripts), scripts


@pytest.mark.packaging
def test_rpm_installs_into_a_scratch_root_and_imports_from_there(rpms: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    """rpm -i --root puts a working package in place: imported from that root's site-packages."""
    require("rpm")
    target = "fc41"
    root = tmp_path / "root"
    run("rpm", "--root", str(root), "--initdb")
    run("rpm", "--root", str(root), "-i", "--nodeps", "--noscripts", str(rpms[target]))
    installed = run("rpm", "--root", str(root), "-q", "lhsweep").stdout.strip()
    assert installed == f"lhsweep-{__version__}-1{MATRIX[target]['dist']}.noarch"
    # Outside the work tree (python -c would import its lhsweep first), only the root's sitelib.
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{root}{_sitelib(target)}"}
    code = ("import lhsweep, lhsweep.cri.wire as w, lhsweep.daemon; print(lhsweep.__file__); "
            "print(w.decode('PodSandbox', w.encode('PodSandbox', {'id': 'x'})).id)")
    imported = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True,
                              env=env, cwd=tmp_path, check=False)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.split() == [f"{root}{_sitelib(target)}/lhsweep/__init__.py", "x"]
    command = ["/usr/bin/python3", str(root / "usr/bin/lhsweep")]
    version = subprocess.run([*command, "--version"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, check=False)
    assert version.stdout.strip() == f"lhsweep {__version__}", version.stderr
    config = str(root / "etc/lhsweep/lhsweep.toml")
    check = subprocess.run([*command, "--config", config, "check-config"], capture_output=True,
                           text=True, env=env, cwd=tmp_path, check=False)
    assert check.returncode == 0, check.stderr
    assert parse(check.stdout, "check-config output") == Config()


@pytest.mark.packaging
def test_rpms_and_spec_are_rpmlint_clean(rpms: dict[str, Path]) -> None:
    """rpmlint finds nothing; packaging/rpmlint.toml filters only tags it justifies one by one."""
    require("rpmlint")
    spec = ROOT / "packaging" / "lhsweep.spec"
    proc = run("rpmlint", "-c", str(RPMLINT_CONFIG), *map(str, rpms.values()), str(spec),
               check=False)
    print(proc.stdout)
    summary = f"{len(rpms)} packages and 1 specfiles checked; 0 errors, 0 warnings"
    assert summary in proc.stdout, proc.stdout
    assert proc.returncode == 0, proc.stderr
    filters = re.findall(r"^\s+'([^']+)',$", RPMLINT_CONFIG.read_text(), re.M)
    config_lines = RPMLINT_CONFIG.read_text().splitlines()
    for pattern in filters:
        line = next(i for i, text in enumerate(config_lines) if f"'{pattern}'" in text)
        assert config_lines[line - 1].strip().startswith("#"), f"filter {pattern} has no reason"

def matrix_tables(targets: dict[str, Any]) -> str:
    """docs/packaging.md's matrix section, rendered from packaging/distro-matrix.toml."""
    parts = []
    for name, target in targets.items():
        parts.append(f"### {target['name']} (`{name}`, Python {target['python']})\n\n"
                     "| Requires | version there | source |\n|---|---|---|\n"
                     + "".join(f"| `{package}` | {info['version']} | {info['source']} |\n"
                               for package, info in target["provides"].items()))
    return "\n".join(parts)


def test_docs_matrix_is_the_data() -> None:
    """docs/packaging.md ends with the matrix of packaging/distro-matrix.toml, rendered."""
    docs = (ROOT / "docs" / "packaging.md").read_text()
    assert docs.endswith(matrix_tables(MATRIX)), matrix_tables(MATRIX)


def test_config_fields_and_keys_agree() -> None:
    """Every Config field has exactly one TOML key, so the shipped file can list them all."""
    assert sorted(k.field_name for k in KEYS) == sorted(f.name for f in fields(Config))
