"""Configuration: defaults, every key validated, errors that name the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from lhsweep.config import KEYS, Config, load, parse, render
from lhsweep.errors import ConfigError


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load(str(tmp_path / "absent.toml")) == Config()


def test_values_are_read_and_normalised(tmp_path: Path) -> None:
    path = tmp_path / "lhsweep.toml"
    path.write_text(
        '[cri]\nendpoints = ["/run/k3s/containerd/containerd.sock"]\ntimeout = 5\n'
        '[sweep]\nexclude = ["keep-*"]\ndry_run = true\n[kubelet]\nroot = "/data/kubelet/"\n'
    )
    config = load(str(path))
    assert config.cri_endpoints == ("/run/k3s/containerd/containerd.sock",)
    assert config.cri_timeout == 5.0 and config.sweep_dry_run is True
    assert config.kubelet_root == "/data/kubelet"
    assert config.excluded("keep-me") == "keep-*" and config.excluded("pvc-1") is None


@pytest.mark.parametrize(("text", "message"), [
    ("[cri]\ntimeout = 0\n", "f.toml: cri.timeout: expected seconds, more than 0 and at most 60, got 0"),
    ("[cri]\ntimeout = true\n", "f.toml: cri.timeout: expected seconds"),
    ("[cri]\nendpoints = \"/run/x.sock\"\n", "f.toml: cri.endpoints: expected a non-empty list"),
    ("[cri]\nendpoints = [\"relative.sock\"]\n", "f.toml: cri.endpoints: expected a non-empty list"),
    ("[cri]\nendpoints = []\n", "f.toml: cri.endpoints: expected a non-empty list of unix socket"),
    ("[sweep]\ndry_run = \"yes\"\n", "f.toml: sweep.dry_run: expected true or false, got 'yes'"),
    ("[sweep]\nexclude = [\"a/b\"]\n", "f.toml: sweep.exclude: expected a list of shell patterns"),
    ("[sweep]\ncolour = 1\n", "f.toml: sweep.colour: unknown key"),
    ("[sweeper]\nx = 1\n", "f.toml: sweeper: unknown section"),
    ("sweep = 1\n", "f.toml: sweep: expected a [section] table"),
    ("[kubelet]\nroot = \"var/lib/kubelet\"\n", "f.toml: kubelet.root: expected an absolute path"),
    ("[metrics]\nfile = 3\n", "f.toml: metrics.file: expected an absolute path"),
    ("[daemon]\nresync_interval = 0.5\n", "f.toml: daemon.resync_interval: expected at least 1 second"),
    ("[cri\n", "f.toml: not valid TOML"),
])
def test_bad_values_name_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(text, "f.toml")
    assert str(err.value).startswith(message)
    assert "\n" not in str(err.value)


def test_unreadable_or_required_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load(str(tmp_path / "absent.toml"), required=True)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "bin.toml"))


def test_render_round_trips_and_lists_every_key() -> None:
    custom = Config(cri_endpoints=("/a.sock",), sweep_exclude=("x*",), metrics_file="", cri_timeout=3.5)
    text = render(custom)
    assert parse(text, "rendered") == custom
    for spec in KEYS:
        assert f"\n{spec.key} = " in text
    defaults = render(Config())
    assert "\n# endpoints: not set\n" in defaults
    assert parse(defaults, "defaults") == Config()
    assert Config().cri_endpoints is None
