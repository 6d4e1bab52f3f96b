"""Write a root directory as a one-layer OCI image archive, deterministically; print its digest."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
import time

# Directories whose content the runtime provides; the image keeps them empty.
EMPTY_DIRS = ("dev", "proc", "sys", "run", "tmp")
IMAGE_NAME = "localhost/lhsweep"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def walk_sorted(root: str) -> list[str]:
    """Every path below `root` relative to it, parents first, names sorted bytewise."""
    found: list[str] = []

    def visit(rel: str) -> None:
        for name in sorted(os.listdir(os.path.join(root, rel) if rel else root)):
            path = os.path.join(rel, name) if rel else name
            found.append(path)
            full = os.path.join(root, path)
            if stat.S_ISDIR(os.lstat(full).st_mode) and path not in EMPTY_DIRS:
                visit(path)

    visit("")
    return found


def layer_tar(root: str, epoch: int) -> bytes:
    """The uncompressed layer: sorted entries, numeric owners, mtimes clamped to `epoch`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel in walk_sorted(root):
            info = tar.gettarinfo(os.path.join(root, rel), arcname=rel)
            info.mtime = min(int(info.mtime), epoch)
            info.uname = info.gname = ""
            if info.isreg():
                with open(os.path.join(root, rel), "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    return buffer.getvalue()


def gzipped(data: bytes) -> bytes:
    """`data` gzip-compressed with no name and no timestamp in the header."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=9) as handle:
        handle.write(data)
    return out.getvalue()


def blob(data: bytes) -> tuple[str, bytes]:
    """The sha256 digest of `data` and the data."""
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def canonical(value: object) -> bytes:
    """JSON with sorted keys and no spaces: the same object gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def image_config(diff_id: str, version: str, epoch: int) -> dict:
    """The OCI image config: how the container runs lhsweep, and the layer it has."""
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    return {
        "architecture": "amd64", "os": "linux", "created": created,
        "config": {
            "Entrypoint": ["/usr/bin/lhsweep"],
            "Cmd": ["--host-root", "/host", "daemon"],
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "PYTHONDONTWRITEBYTECODE=1", "LHSWEEP_CONTAINER=1"],
            "Labels": {"org.opencontainers.image.title": "lhsweep",
                       "org.opencontainers.image.version": version},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": "packaging/build-image"}],
    }


def write_archive(root: str, version: str, epoch: int, output: str) -> str:
    """Write the OCI layout of `root` as a tar archive at `output`; return the manifest digest."""
    layer = layer_tar(root, epoch)
    diff_id = blob(layer)[0]
    layer_digest, layer_gz = blob(gzipped(layer))
    config_digest, config = blob(canonical(image_config(diff_id, version, epoch)))
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_MANIFEST,
                "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)},
                "layers": [{"mediaType": MEDIA_LAYER, "digest": layer_digest,
                            "size": len(layer_gz)}]}
    manifest_digest, manifest_bytes = blob(canonical(manifest))
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": MEDIA_MANIFEST, "digest": manifest_digest, "size": len(manifest_bytes),
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"io.containerd.image.name": f"{IMAGE_NAME}:{version}",
                        "org.opencontainers.image.ref.name": version}}]}
    files = {"oci-layout": canonical({"imageLayoutVersion": "1.0.0"}),
             "index.json": canonical(index)}
    for digest, data in ((layer_digest, layer_gz), (config_digest, config),
                         (manifest_digest, manifest_bytes)):
        files["blobs/sha256/" + digest.split(":", 1)[1]] = data
    tmp = output + ".tmp"
    with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for directory in ("blobs", "blobs/sha256"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, epoch
            tar.addfile(info)
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(files[name]), 0o644, epoch
            tar.addfile(info, io.BytesIO(files[name]))
    os.replace(tmp, output)
    return manifest_digest


def main() -> None:
    """Command line of packaging/build-image's last step."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()
    digest = write_archive(args.root, args.version, args.epoch, args.output)
    size = os.path.getsize(args.output)
    print(f"{args.output}: {IMAGE_NAME}:{args.version} {digest} ({size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
