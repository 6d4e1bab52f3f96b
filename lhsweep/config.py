"""Configuration: /etc/lhsweep/lhsweep.toml, every key validated, unknown keys rejected."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass, fields, replace
from typing import Any, Callable, NamedTuple, Optional

from lhsweep.errors import ConfigError
from lhsweep.longhorn import DATA_PATH
from lhsweep.render import echo, one_line

DEFAULT_PATH = "/etc/lhsweep/lhsweep.toml"

TomlReader = Callable[[str], dict[str, Any]]

# How much of a bad value an error message echoes back.
ECHO_LIMIT = 80
# A config file is a few hundred bytes; anything past this is not one.
MAX_CONFIG_BYTES = 1024 * 1024
# A Kubernetes namespace name: an RFC 1123 (DNS-1123) label.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")

# Asked when neither cri.endpoints nor kubelet names the runtime (host paths; /run, not /var/run,
# whose absolute link would lead out of a host root).
WELL_KNOWN_CRI_SOCKETS = (
    "/run/containerd/containerd.sock",
    "/run/k3s/containerd/containerd.sock",
    "/run/crio/crio.sock",
    "/run/cri-dockerd.sock",
)


@dataclass(frozen=True)
class Config:
    """The effective configuration; field names are the TOML keys as `section.key`."""

    # None: not set, find kubelet's runtime (lhsweep.cri.kubelet).
    cri_endpoints: Optional[tuple[str, ...]] = None
    cri_timeout: float = 2.0
    cri_poll_interval: float = 10.0
    longhorn_namespace: str = "longhorn-system"
    longhorn_data_path: str = DATA_PATH
    kubelet_root: str = "/var/lib/kubelet"
    sweep_grace_period: float = 30.0
    sweep_dry_run: bool = False
    sweep_exclude: tuple[str, ...] = ()
    sweep_action_timeout: float = 30.0
    sweep_removal: str = "kernel"
    daemon_resync_interval: float = 300.0
    daemon_debounce: float = 0.25
    daemon_busy_recheck_interval: float = 10.0
    metrics_file: str = "/var/lib/prometheus/node-exporter/lhsweep.prom"
    metrics_port: int = 9845
    state_dir: str = "/run/lhsweep"

    @property
    def kubelet_pods_dir(self) -> str:
        """The host path of kubelet's pods directory (one directory per pod UID)."""
        return f"{self.kubelet_root.rstrip('/')}/pods"

    def excluded(self, name: str) -> Optional[str]:
        """Return the exclude pattern that matches `name`, or None."""
        for pattern in self.sweep_exclude:
            if fnmatch.fnmatchcase(name, pattern):
                return pattern
        return None


class _Key(NamedTuple):
    """How one TOML key maps onto a Config field and how it is checked."""

    section: str
    key: str
    field_name: str
    expected: str
    convert: Callable[[Any], Any]
    doc: str


def _positive_seconds(upper: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        if not 0 < float(value) <= upper:
            raise ValueError
        return float(value)

    return convert


def _non_negative_seconds(upper: float) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError
        if not 0 <= float(value) <= upper:
            raise ValueError
        return float(value)

    return convert


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _text(value: Any) -> str:
    """A non-empty string of printable characters (no control, format or NUL characters)."""
    if not isinstance(value, str):
        raise TypeError
    if not value or not value.isprintable():
        raise ValueError
    return value


def _absolute_path(value: Any) -> str:
    path = _text(value)
    if not path.startswith("/"):
        raise ValueError
    return os.path.normpath(path)


def _optional_absolute_path(value: Any) -> str:
    if value == "":
        return ""
    return _absolute_path(value)


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError
    if not 1 <= value <= 65535:
        raise ValueError
    return value


def _dns_label(value: Any) -> str:
    name = _text(value)
    if not _DNS_LABEL.fullmatch(name):
        raise ValueError
    return name


def _string_list(check: Callable[[str], bool]) -> Callable[[Any], tuple[str, ...]]:
    def convert(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise TypeError
        if not all(v and v.isprintable() and check(v) for v in value):
            raise ValueError
        return tuple(value)

    return convert


def _choice(*allowed: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError
        if value not in allowed:
            raise ValueError
        return value

    return convert


def _is_endpoint(value: str) -> bool:
    path = value[len("unix://") :] if value.startswith("unix://") else value
    return path.startswith("/")


def _endpoints(value: Any) -> tuple[str, ...]:
    endpoints = _string_list(_is_endpoint)(value)
    if not endpoints:
        raise ValueError
    return endpoints


def _is_pattern(value: str) -> bool:
    return "/" not in value


KEYS = (
    _Key("cri", "endpoints", "cri_endpoints",
         "a non-empty list of unix socket paths or unix:// URLs", _endpoints,
         "kubelet's CRI socket(s), exactly one of those that exist must answer; not set: "
         "kubelet's own setting, else the one well-known socket that answers"),
    _Key("cri", "timeout", "cri_timeout", "seconds, more than 0 and at most 60",
         _positive_seconds(60), "deadline of every CRI call"),
    _Key("cri", "poll_interval", "cri_poll_interval", "seconds, more than 0 and at most 3600",
         _positive_seconds(3600),
         "how often the daemon asks CRI when the runtime has no event stream"),
    _Key("longhorn", "namespace", "longhorn_namespace", "a Kubernetes namespace name",
         _dns_label, "namespace of the instance-manager pods"),
    _Key("longhorn", "data_path", "longhorn_data_path", "an absolute path",
         _absolute_path, "Longhorn's data path (engine-frontend records live below it)"),
    _Key("kubelet", "root", "kubelet_root", "an absolute path",
         _absolute_path, "kubelet's root directory; pods/ below it is watched"),
    _Key("sweep", "grace_period", "sweep_grace_period", "seconds, from 0 to 86400",
         _non_negative_seconds(86400), "a device younger than this is never stale"),
    _Key("sweep", "dry_run", "sweep_dry_run", "true or false",
         _boolean, "plan and report, never remove"),
    _Key("sweep", "exclude", "sweep_exclude", "a list of shell patterns without '/'",
         _string_list(_is_pattern),
         "names (dm, /dev/longhorn, NQN; a volume's name keeps its NQN too) matching these stay untouched"),
    _Key("sweep", "action_timeout", "sweep_action_timeout", "seconds, more than 0 and at most 600",
         _positive_seconds(600), "a removal call running longer is cut off and reported"),
    _Key("sweep", "removal", "sweep_removal", '"kernel" or "tools"', _choice("kernel", "tools"),
         'how removals are made: "kernel" in-process (dm ioctl, sysfs delete_controller, in one '
         'helper process per sweep), "tools" through dmsetup and nvme-cli'),
    _Key("daemon", "resync_interval", "daemon_resync_interval",
         "seconds, at least 1 and at most 86400", _positive_seconds(86400),
         "the periodic full sweep when nothing else triggers one"),
    _Key("daemon", "debounce", "daemon_debounce", "seconds, from 0 to 60",
         _non_negative_seconds(60), "triggers within this window make one sweep"),
    _Key("daemon", "busy_recheck_interval", "daemon_busy_recheck_interval",
         "seconds, more than 0 and at most 3600", _positive_seconds(3600),
         "while busy Longhorn leftovers remain, they are looked at again this often "
         "(a reader closing one makes no uevent)"),
    _Key("metrics", "file", "metrics_file", "an absolute path, or \"\" to disable",
         _optional_absolute_path, "Prometheus text file for node_exporter's textfile collector"),
    _Key("metrics", "port", "metrics_port", "a TCP port from 1 to 65535",
         _port, "in a container: HTTP port of /metrics, /healthz and /readyz (read at start)"),
    _Key("state", "dir", "state_dir", "an absolute path",
         _absolute_path, "where last-sweep.json and the sweep lock live"),
)


# What TOML 1.0 allows nowhere in a document (tab, LF and CRLF aside), which the toml library
# lets pass in comments: refused up front, so the fallback reads no file that tomllib refuses.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\r(?!\n)")


# A multi-line string opened after "=" whose line holds its quote but not its closing delimiter
# (`a = """x"]`): the toml library drops the key without a word; tomllib reads on past the line,
# into a value no key of lhsweep's takes (a line break), or to an unterminated string.
_UNCLOSED = re.compile(r'^[^#\n]*=[ \t]*(?P<quotes>"""|\'\'\')(?P<rest>[^\n]*)$', re.M)


def toml_library_loads(text: str) -> dict[str, Any]:
    """Read TOML with the toml library (Python < 3.11), refusing what it reads but tomllib does
    not: control characters (in comments too), and a multi-line string it would drop."""
    import toml  # noqa: PLC0415 - installed only where the interpreter lacks tomllib

    bad = _CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise ValueError(f"invalid character {bad.group()!r} (at line {line})")
    for match in _UNCLOSED.finditer(text):
        quotes, rest = match.group("quotes"), match.group("rest")
        if quotes[0] in rest and quotes not in rest and not rest.endswith("\\"):
            line = text.count("\n", 0, match.start()) + 1
            raise ValueError(f"a multi-line string not closed on its line (at line {line})")
    return toml.loads(text)


def toml_reader() -> TomlReader:
    """The standard library's tomllib where the interpreter has it (3.11+), else the toml library."""
    try:
        import tomllib  # noqa: PLC0415  # novermin - Python 3.11+, else the fallback below
    except ImportError:  # Python 3.9 and 3.10 (EL9): the toml package, a dependency only there
        return toml_library_loads
    return tomllib.loads


# Chosen once; tests/test_config.py runs every config test with each reader in turn.
_read_toml: TomlReader = toml_reader()


def parse(text: str, path: str) -> Config:
    """Parse TOML text into a Config; raises ConfigError naming `path` and the key."""
    try:
        data = _read_toml(text)
    except Exception as exc:  # the toml library raises odd types (AttributeError...) on odd input
        raise ConfigError(path, "", f"not valid TOML: {_first_line(exc)}") from None
    known = {(k.section, k.key): k for k in KEYS}
    sections = {k.section for k in KEYS}
    changes: dict[str, Any] = {}
    for section, table in data.items():
        if section not in sections:
            raise ConfigError(path, _echo(section),
                              f"unknown section (known: {', '.join(sorted(sections))})")
        if not isinstance(table, dict):
            raise ConfigError(path, _echo(section), "expected a [section] table")
        for key, value in table.items():
            spec = known.get((section, key))
            if spec is None:
                raise ConfigError(path, _echo(f"{section}.{key}"), "unknown key")
            changes[spec.field_name] = _convert(spec, value, path)
    config = replace(Config(), **changes)
    if config.daemon_resync_interval < 1:
        raise ConfigError(path, "daemon.resync_interval", "expected at least 1 second")
    return config


def _convert(spec: _Key, value: Any, path: str) -> Any:
    try:
        return spec.convert(value)
    except (TypeError, ValueError):
        raise ConfigError(
            path, f"{spec.section}.{spec.key}", f"expected {spec.expected}, got {_echo(repr(value))}"
        ) from None


def _echo(text: str) -> str:
    return echo(text, ECHO_LIMIT)


def _first_line(exc: Exception) -> str:
    return one_line(exc, ECHO_LIMIT) or type(exc).__name__


def load(path: str = DEFAULT_PATH, *, required: bool = False) -> Config:
    """Load the config file at `path`; a missing file means defaults unless `required`."""
    try:
        text = _read_config_file(path)
    except FileNotFoundError:
        if required:
            raise ConfigError(path, "", "no such file") from None
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "", f"cannot read: {exc}") from None
    return parse(text, path)


def _read_config_file(path: str) -> str:
    """The text of a regular file of at most MAX_CONFIG_BYTES; ConfigError for anything else.

    Opened without blocking and checked before reading: a FIFO would block the reader (the
    daemon's main loop on SIGHUP, and with it the watchdog), /dev/zero would never end.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise ConfigError(path, "", f"cannot read: {kind}")
        data = os.read(fd, MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(path, "", f"cannot read: larger than {MAX_CONFIG_BYTES} bytes")
    return data.decode("utf-8")


def render(config: Config) -> str:
    """Render the effective config as TOML, every key present, with its description."""
    values = {f.name: getattr(config, f.name) for f in fields(config)}
    lines: list[str] = []
    section = ""
    for spec in KEYS:
        if spec.section != section:
            section = spec.section
            lines.append(f"\n[{section}]" if lines else f"[{section}]")
        lines.append(f"# {spec.doc} ({spec.expected})")
        value = values[spec.field_name]
        if value is None:
            lines.append(f"# {spec.key}: not set")
        else:
            lines.append(f"{spec.key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """One config value as TOML: a string, int, float, bool or list (tuple) of strings."""
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # repr's inf, -inf, nan, 1e+20 and 0.25 are TOML floats as written
    raise TypeError(f"no TOML form for {type(value).__name__}")


# TOML basic strings: a backslash and every ASCII control character are escaped; so are a double
# quote and a comma, as \u escapes, which the toml library misreads in an array otherwise.
_SHORT_ESCAPES = {"\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_ESCAPES: dict[int, str] = {**{c: f"\\u{c:04x}" for c in [*range(0x20), 0x7F, ord('"'), ord(",")]},
                            **{ord(c): escaped for c, escaped in _SHORT_ESCAPES.items()}}


def _toml_string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'
