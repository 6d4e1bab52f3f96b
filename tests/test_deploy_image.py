"""make image: an OCI archive ctr/containerd accept, with the .deb's lhsweep in it, and the same
file list and package versions from two builds of one commit (minutes: marker `image`)."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from lhsweep import __version__

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.image


def build(out: Path) -> str:
    """Run packaging/build-image into `out`; its digest line."""
    done = subprocess.run(["bash", str(REPO / "packaging" / "build-image"), str(out)],
                          capture_output=True, text=True, check=True, timeout=1800)
    return done.stdout.strip().splitlines()[-1]


def layout(archive: Path) -> tuple[dict, dict, list[str], str]:
    """(index, config, the layer's file list, the image's package list) of an image archive."""
    with tarfile.open(archive) as outer:
        def blob(digest: str) -> bytes:
            member = outer.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
            assert member is not None
            return member.read()

        index = json.loads(outer.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        layer = gzip.decompress(blob(manifest["layers"][0]["digest"]))
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        names = inner.getnames()
        packages = inner.extractfile("usr/share/lhsweep-image-packages").read().decode()  # type: ignore[union-attr]
    return index, config, names, packages


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[tuple[str, Path], tuple[str, Path]]:
    first, second = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    return (build(first), first / "lhsweep-image.tar"), (build(second), second / "lhsweep-image.tar")


def test_the_image_runs_lhsweep_in_container_mode(two_builds: tuple) -> None:
    (line, archive), _ = two_builds
    index, config, names, packages = layout(archive)
    assert line.startswith(f"{archive}: localhost/lhsweep:{__version__} sha256:")
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == \
        f"localhost/lhsweep:{__version__}"
    assert config["config"]["Entrypoint"] == ["/usr/bin/lhsweep"]
    assert "LHSWEEP_CONTAINER=1" in config["config"]["Env"]
    assert f"lhsweep {__version__}" in packages.splitlines()
    assert {"usr/sbin/dmsetup", "usr/sbin/nvme", "usr/bin/lhsweep"} <= set(names)
    # small: no compilers, no apt, no documentation beyond copyright files
    assert not [n for n in names if n.startswith(("usr/bin/gcc", "usr/bin/apt", "usr/share/man/"))]
    assert not [n for n in names if n.startswith("usr/share/doc/") and n.count("/") > 3
                and not n.endswith("/copyright")]


def test_two_builds_give_the_same_files_and_package_versions(two_builds: tuple) -> None:
    (_, first), (_, second) = two_builds
    _, _, names_a, packages_a = layout(first)
    _, _, names_b, packages_b = layout(second)
    assert names_a == names_b
    assert packages_a == packages_b
