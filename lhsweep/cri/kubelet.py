"""Which CRI endpoint(s) may be kubelet's, and why: lhsweep's config, kubelet's own setting, or
the well-known sockets; and the pod UIDs kubelet keeps, to cross-check the runtime that answers.

Every file is read through HostRoot. YAML is read by a strict line parser for one top-level key:
a file that names the key in any other way cannot be understood and raises, never "not set".
"""

from __future__ import annotations

import re
import shlex
import stat
from collections.abc import Iterator
from typing import NamedTuple, Optional

from lhsweep.config import WELL_KNOWN_CRI_SOCKETS, Config
from lhsweep.cri.client import socket_path
from lhsweep.errors import HostReadError, RuntimeQueryError
from lhsweep.host import HostRoot

KUBEADM_CONFIG = "/var/lib/kubelet/config.yaml"
FLAGS_FILES = ("/var/lib/kubelet/kubeadm-flags.env", "/etc/default/kubelet", "/etc/sysconfig/kubelet")
CONFIG_KEY = "containerRuntimeEndpoint"
ENDPOINT_FLAG = "--container-runtime-endpoint"
CONFIG_FLAG = "--config"
# kubelet's drop-in directory (Kubernetes 1.28+): its *.conf files are KubeletConfiguration too.
CONFIG_DIR_FLAG = "--config-dir"
# k3s and RKE2 embed kubelet and run their own containerd on this socket unless told otherwise.
RANCHER = ("k3s", "rke2")
RANCHER_KEY = "container-runtime-endpoint"
RANCHER_SOCKET = "/run/k3s/containerd/containerd.sock"

_PLAIN = r"[^\s'\"#&*!|>{}\[\],%@`][^\s#]*"
_VALUE = rf"(?:\"(?P<dq>[^\"\\]*)\"|'(?P<sq>[^']*)'|(?P<plain>{_PLAIN}))"


class Candidates(NamedTuple):
    """The endpoints that may be kubelet's runtime, as addresses to dial, and why these.

    `explicit` is True when a file names the runtime (lhsweep's config or kubelet's setting);
    False for the well-known sockets, where the pods cross-check is the only proof.
    """

    endpoints: tuple[str, ...]
    why: str
    explicit: bool


class _Setting(NamedTuple):
    """One place that names kubelet's runtime: the host path of the socket and where it was read."""

    socket: str
    where: str


def runtime_candidates(config: Config, host: HostRoot) -> Candidates:
    """Where to ask: lhsweep's config, else kubelet's setting, else the well-known sockets.

    Raises RuntimeQueryError (naming the file) when kubelet's setting cannot be read or
    understood, or when two places name different runtimes.
    """
    if config.cri_endpoints is not None:
        return Candidates(config.cri_endpoints, "set in lhsweep's config (cri.endpoints)", True)
    settings = list(_kubelet_settings(host))
    sockets = sorted({s.socket for s in settings})
    if len(sockets) > 1:
        named = "; ".join(f"{s.socket} ({s.where})" for s in settings)
        raise RuntimeQueryError(f"kubelet's runtime is named differently in different places: {named}")
    if sockets:
        wheres = ", ".join(s.where for s in settings)
        return Candidates((dial_address(host, sockets[0]),), f"kubelet's runtime: {wheres}", True)
    return Candidates(tuple(dial_address(host, s) for s in WELL_KNOWN_CRI_SOCKETS),
                      "the one well-known socket that answers (no kubelet setting found)", False)


def dial_address(host: HostRoot, socket: str) -> str:
    """The unix:// address of a host socket path as seen below the host root."""
    return "unix://" + host.path(socket)


def pod_uids(host: HostRoot, pods: str) -> Optional[frozenset[str]]:
    """The pod UIDs kubelet keeps directories for in `pods` (Config.kubelet_pods_dir); None when
    there is no such directory.

    Raises RuntimeQueryError when it exists but is not a directory (a link is not followed)
    or cannot be listed.
    """
    try:
        found = host.lstat(pods)
        if found is None:
            return None
        if not stat.S_ISDIR(found.st_mode):
            raise RuntimeQueryError(f"kubelet pods directory {pods}: not a directory")
        return frozenset(host.listdir(pods))
    except HostReadError as exc:
        raise RuntimeQueryError(f"kubelet pods directory {exc}") from None


def _kubelet_settings(host: HostRoot) -> Iterator[_Setting]:
    """Every place that names kubelet's runtime: flags files, kubelet config files, k3s/RKE2."""
    config_files = [KUBEADM_CONFIG]
    for path in FLAGS_FILES:
        words = _flag_words(host, path)
        for value in _flag_values(words, CONFIG_FLAG, path):
            config_files.append(_absolute(value, path, CONFIG_FLAG))
        for value in _flag_values(words, CONFIG_DIR_FLAG, path):
            directory = _absolute(value, path, CONFIG_DIR_FLAG)
            config_files += [f"{directory}/{name}" for name in _listdir(host, directory)
                             if name.endswith(".conf")]
        for value in _flag_values(words, ENDPOINT_FLAG, path):
            yield _Setting(_socket(value, path, ENDPOINT_FLAG), f"{ENDPOINT_FLAG} in {path}")
    for path in dict.fromkeys(config_files):
        setting = yaml_scalar(_read(host, path), CONFIG_KEY, path)
        if setting is not None:
            yield _Setting(_socket(setting, path, CONFIG_KEY), f"{CONFIG_KEY} in {path}")
    yield from _rancher_settings(host)


def _rancher_settings(host: HostRoot) -> Iterator[_Setting]:
    """k3s/RKE2: container-runtime-endpoint in their config files, else their own containerd."""
    for product in RANCHER:
        base = f"/etc/rancher/{product}"
        if not _exists(host, base) and not _exists(host, f"/var/lib/rancher/{product}"):
            continue
        files = [f"{base}/config.yaml"]
        files += [f"{base}/config.yaml.d/{name}" for name in _listdir(host, f"{base}/config.yaml.d")
                  if name.endswith((".yaml", ".yml"))]
        found = False
        for path in files:
            value = yaml_scalar(_read(host, path), RANCHER_KEY, path)
            if value is not None:
                found = True
                yield _Setting(_socket(value, path, RANCHER_KEY), f"{RANCHER_KEY} in {path}")
        if not found:
            yield _Setting(RANCHER_SOCKET, f"{product} is installed ({base} or "
                           f"/var/lib/rancher/{product}) and sets no {RANCHER_KEY}")


def yaml_scalar(text: Optional[str], key: str, path: str) -> Optional[str]:
    """The plain or quoted scalar of top-level `key: value`; None when the key is not there.

    Raises RuntimeQueryError when the key's name shows up in any way this does not understand
    (indented, quoted, JSON, a block or flow value, anchors, tags, escapes, twice, ...).
    """
    if text is None or key not in text:
        return None
    line_re = re.compile(rf"{re.escape(key)}:[ \t]+{_VALUE}[ \t]*(?:[ \t]#.*)?")
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        if key not in line or line.lstrip().startswith("#"):
            continue
        match = line_re.fullmatch(line.rstrip("\r"))
        if match is None:
            raise RuntimeQueryError(f"{path}:{number}: cannot understand the line naming {key}")
        values.append(next(v for v in match.group("dq", "sq", "plain") if v is not None))
    if len(values) > 1:
        raise RuntimeQueryError(f"{path}: {key} is set {len(values)} times")
    return values[0] if values else None


def _flag_words(host: HostRoot, path: str) -> list[str]:
    """The words of every VAR=value line of an environment file (shell quoting)."""
    text = _read(host, path)
    words: list[str] = []
    for number, raw in enumerate((text or "").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not equals or not re.fullmatch(r"(?:export\s+)?[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise RuntimeQueryError(f"{path}:{number}: not a VAR=value line")
        try:
            [value] = shlex.split(value) or [""]
            words += shlex.split(value)
        except ValueError as exc:
            raise RuntimeQueryError(f"{path}:{number}: cannot split the value: {exc}") from None
    return words


def _flag_values(words: list[str], flag: str, path: str) -> list[str]:
    """The values of `--flag=value` and `--flag value` among `words`."""
    values = []
    for index, word in enumerate(words):
        if word.startswith(flag + "="):
            values.append(word[len(flag) + 1:])
        elif word == flag:
            if index + 1 >= len(words):
                raise RuntimeQueryError(f"{path}: {flag} without a value")
            values.append(words[index + 1])
    return values


def _socket(value: str, path: str, key: str) -> str:
    """The host socket path of a `unix:///path` (or bare `/path`) endpoint setting."""
    return _absolute(socket_path(value) or value, path, key)


def _absolute(value: str, path: str, key: str) -> str:
    """An absolute, normalised host path; /var/run/... as /run/..."""
    if not value.startswith("/") or "\0" in value or "/../" in value + "/":
        raise RuntimeQueryError(f"{path}: {key} {value!r} is not an absolute unix socket path")
    if value == "/var/run" or value.startswith("/var/run/"):
        value = value[len("/var"):]
    return re.sub("/+", "/", value)


def _read(host: HostRoot, path: str) -> Optional[str]:
    try:
        return host.read_text(path)
    except HostReadError as exc:
        raise RuntimeQueryError(f"kubelet setting {exc}") from None


def _exists(host: HostRoot, path: str) -> bool:
    try:
        return host.lstat(path) is not None
    except HostReadError as exc:
        raise RuntimeQueryError(f"kubelet setting {exc}") from None


def _listdir(host: HostRoot, path: str) -> list[str]:
    try:
        return host.listdir(path)
    except HostReadError as exc:
        raise RuntimeQueryError(f"kubelet setting {exc}") from None
