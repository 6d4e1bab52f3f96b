"""HostRoot: host paths below a root, and readers that say "absent" rather than fail."""

from __future__ import annotations

import ctypes
import errno
import os
from types import SimpleNamespace

import pytest

from lhsweep import host as host_module
from lhsweep.errors import HostReadError
from lhsweep.host import HostRoot


def test_paths_map_below_the_root(tmp_path) -> None:
    assert HostRoot("/").path("/sys/block") == "/sys/block"
    assert HostRoot(f"{tmp_path}/").path("/sys/block") == f"{tmp_path}/sys/block"
    with pytest.raises(ValueError, match="absolute"):
        HostRoot(str(tmp_path)).path("sys/block")


def test_readers_report_absence_as_none_or_empty(tmp_path) -> None:
    host = HostRoot(str(tmp_path))
    (tmp_path / "file").write_text("x")
    assert host.read_text("/missing") is None
    assert host.read_text("/file/below-a-file") is None
    assert host.listdir("/missing") == [] and host.listdir("/file/x") == []
    assert host.readlink("/file") is None and host.readlink("/missing") is None
    assert host.lstat("/missing") is None
    assert not host.exists("/missing")


@pytest.mark.parametrize("root", ["/", "tree"])
def test_a_link_or_path_that_cannot_be_resolved_is_no_answer_not_absent(tmp_path, root: str) -> None:
    """Fail closed: a refusal other than "no such file" (here a loop of links) is not "absent"."""
    os.symlink("loop", tmp_path / "loop")
    host, base = (HostRoot("/"), str(tmp_path)) if root == "/" else (HostRoot(str(tmp_path)), "")
    with pytest.raises(HostReadError, match="loop/dev: cannot read the link"):
        host.readlink(f"{base}/loop/dev")
    with pytest.raises(HostReadError, match="loop/dev: cannot tell if it exists"):
        host.exists(f"{base}/loop/dev")


def test_read_text_reads_big_files_whole_and_replaces_bad_bytes(tmp_path) -> None:
    big = "line of mountinfo text\n" * 20000
    (tmp_path / "big").write_text(big)
    (tmp_path / "bad").write_bytes(b"ok\xffok")
    host = HostRoot(str(tmp_path))
    assert host.read_text("/big") == big
    assert host.read_text("/bad") == "ok\ufffdok"


def test_read_errors_other_than_absence_name_the_path(tmp_path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(HostReadError, match=r"^/dir: cannot read: Is a directory$"):
        HostRoot(str(tmp_path)).read_text("/dir")


def test_links_are_read_not_followed_and_relative_links_resolve_below_the_root(tmp_path) -> None:
    (tmp_path / "sys" / "devices" / "dm-0").mkdir(parents=True)
    (tmp_path / "sys" / "block").mkdir()
    os.symlink("../devices/dm-0", tmp_path / "sys" / "block" / "dm-0")
    os.symlink("../devices/gone", tmp_path / "sys" / "block" / "dm-1")
    host = HostRoot(str(tmp_path))
    assert host.readlink("/sys/block/dm-0") == "../devices/dm-0"
    assert host.exists("/sys/block/dm-0") and not host.exists("/sys/block/dm-1")
    assert host.listdir("/sys/block") == ["dm-0", "dm-1"]
    st = host.lstat("/sys/block/dm-1")
    assert st is not None and os.path.islink(host.path("/sys/block/dm-1"))
    (tmp_path / "sys" / "block" / "plain").write_text("")
    assert host.read_links("/sys/block") == {"dm-0": "../devices/dm-0", "dm-1": "../devices/gone",
                                             "plain": None}
    assert host.read_links("/missing") == {}


def test_read_links_opens_its_directory_inside_the_root(tmp_path) -> None:
    """/sys/dev -> /real/dev is the root's /real/dev, never the machine's own."""
    (tmp_path / "real" / "dev" / "block").mkdir(parents=True)
    os.symlink("../../devices/dm-0", tmp_path / "real" / "dev" / "block" / "253:0")
    (tmp_path / "sys").mkdir()
    os.symlink("/real/dev", tmp_path / "sys" / "dev")
    assert HostRoot(str(tmp_path)).read_links("/sys/dev/block") == {"253:0": "../../devices/dm-0"}


def test_open_dir_fd_refuses_a_symlinked_directory(tmp_path) -> None:
    (tmp_path / "dev" / "real").mkdir(parents=True)
    os.symlink("real", tmp_path / "dev" / "longhorn")
    host = HostRoot(str(tmp_path))
    with pytest.raises(OSError) as raised:
        host.open_dir_fd("/dev/longhorn")
    assert raised.value.errno in (errno.ENOTDIR, errno.ELOOP)  # O_DIRECTORY|O_NOFOLLOW on a link
    fd = host.open_dir_fd("/dev/real")
    try:
        assert os.listdir(fd) == []
    finally:
        os.close(fd)


def test_absolute_links_and_dotdot_stay_inside_the_root(tmp_path) -> None:
    """The host's `/var/run -> /run` leads to <root>/run, never to lhsweep's own /run."""
    (tmp_path / "run" / "longhorn").mkdir(parents=True)
    (tmp_path / "run" / "longhorn" / "mine").write_text("in the root")
    (tmp_path / "var").mkdir()
    os.symlink("/run", tmp_path / "var" / "run")
    os.symlink("/../../../../etc", tmp_path / "escape")
    host = HostRoot(str(tmp_path))
    assert host.read_text("/var/run/longhorn/mine") == "in the root"
    assert host.listdir("/var/run/longhorn") == ["mine"]
    assert host.path("/var/run/longhorn/x.lock") == f"{tmp_path}/run/longhorn/x.lock"
    assert host.read_text("/escape/hostname") is None  # <root>/etc/hostname: absent
    assert host.read_text("/../../etc/hostname") is None


def test_openat2_tries_again_on_eagain_then_raises(tmp_path, monkeypatch) -> None:
    """A rename racing a ".." step makes openat2 fail EAGAIN: asked again, a bounded number of times."""
    (tmp_path / "f").write_text("x")
    real = host_module._libc.syscall
    failures = {"left": host_module._OPENAT2_TRIES - 1}

    def syscall(*args: object) -> int:
        if failures["left"]:
            failures["left"] -= 1
            ctypes.set_errno(errno.EAGAIN)
            return -1
        return int(real(*args))

    monkeypatch.setattr(host_module, "_libc", SimpleNamespace(syscall=syscall))
    host = HostRoot(str(tmp_path))
    assert host.read_text("/f") == "x"
    failures["left"] = host_module._OPENAT2_TRIES
    with pytest.raises(HostReadError, match="temporarily unavailable"):
        host.read_text("/f")


def test_makedirs_and_created_files_stay_inside_the_root(tmp_path) -> None:
    (tmp_path / "var").mkdir()
    os.symlink("/run", tmp_path / "var" / "run")
    host = HostRoot(str(tmp_path))
    host.makedirs("/var/run/longhorn-test-dir")
    os.close(host.open("/var/run/longhorn-test-dir/a.lock", os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW))
    assert (tmp_path / "run" / "longhorn-test-dir" / "a.lock").is_file()
    assert not os.path.exists("/run/longhorn-test-dir")
