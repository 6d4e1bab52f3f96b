"""Item 8: the container image's size, and the pod's idle RSS from the last VM run of the pod scenarios."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

from bench.report import Section

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO / "dist" / "lhsweep-image.tar"
POD_RECORD = REPO / ".cache" / "vm" / "main" / "guest" / "out" / "pod_seed" / "pod.json"


def image_rows() -> list[list[str]]:
    """Archive size, unpacked layer size, entries and packages of dist/lhsweep-image.tar."""
    with tarfile.open(IMAGE) as outer:
        index = json.loads(member_bytes(outer, "index.json"))
        manifest = json.loads(member_bytes(outer, blob_path(index["manifests"][0]["digest"])))
        layer = gzip.decompress(member_bytes(outer, blob_path(manifest["layers"][0]["digest"])))
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        entries = len(inner.getmembers())
        packages = member_bytes(inner, "usr/share/lhsweep-image-packages").decode().count("\n")
    return [["image archive (gzip layer)", f"{IMAGE.stat().st_size / 2**20:.1f} MiB"],
            ["image unpacked", f"{len(layer) / 2**20:.1f} MiB"],
            ["files and packages", f"{entries} entries, {packages} Debian packages"]]


def blob_path(digest: str) -> str:
    """Where an OCI layout keeps the blob `digest`."""
    return "blobs/sha256/" + digest.split(":", 1)[1]


def member_bytes(archive: tarfile.TarFile, name: str) -> bytes:
    """One member's bytes."""
    member = archive.extractfile(name)
    assert member is not None
    return member.read()


def run() -> Section:
    """The section, with what could not be measured said so."""
    section = Section("8. Container image and the pod's idle footprint", ["measure", "value"])
    if IMAGE.exists():
        section.rows += image_rows()
    else:
        section.notes.append("image: unmeasured, dist/lhsweep-image.tar is missing (`make image`)")
    if POD_RECORD.exists():
        record = json.loads(POD_RECORD.read_text())
        section.rows.append(["pod RSS, idle after the boot sweep (VM)",
                             f"{record['idle_rss_kib'] / 1024:.1f} MiB"])
        section.rows.append(["pod RSS after the seed scenario's sweeps (VM)",
                             f"{record['rss_kib'] / 1024:.1f} MiB"])
        section.notes.append("Pod RSS: VmRSS of the container's lhsweep process in the guest, from the "
                             "last `pytest -m vm tests/vm/test_vm_pod.py` run (pod_seed), 5 s after its "
                             "readiness probe answered; the host service's idle RSS is item 5 (same "
                             "Debian python3 and grpcio).")
    else:
        section.notes.append("pod RSS: unmeasured, no VM run of tests/vm/test_vm_pod.py recorded")
    return section
