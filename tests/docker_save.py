"""``docker save`` archives written the way Docker writes them (there is no Docker engine in
the test environment): the classic format (``manifest.json``, ``<config>.json``,
``<layer id>/layer.tar``) and the Docker 25+ format (an OCI image layout in the tar, plus
``manifest.json``). Layers are uncompressed tars of random files, as Docker saves them."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_layer_tar(size: int, name: str = "data.bin") -> bytes:
    """An uncompressed layer: a tar holding one file of ``size`` random bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        info.mtime = 1_700_000_000
        archive.addfile(info, io.BytesIO(os.urandom(size)))
    return raw.getvalue()


@dataclass(frozen=True)
class SavedImage:
    repo_tag: str
    config: bytes
    layers: list[bytes]

    @property
    def config_digest(self) -> str:
        return sha256(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [sha256(layer) for layer in self.layers]

    @property
    def blobs(self) -> dict[str, bytes]:
        blobs = {sha256(layer): layer for layer in self.layers}
        blobs[self.config_digest] = self.config
        return blobs


def saved_image(repo_tag: str, layer_sizes: list[int]) -> SavedImage:
    layers = [random_layer_tar(size, f"layer{i}/data.bin") for i, size in enumerate(layer_sizes)]
    return image_of(repo_tag, layers)


def image_of(repo_tag: str, layers: list[bytes]) -> SavedImage:
    """An image of these layers, with a config listing them."""
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [sha256(layer) for layer in layers]},
        "history": [{"created": "2024-01-01T00:00:00Z"} for _ in layers],
    }
    return SavedImage(repo_tag, json.dumps(config).encode(), layers)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = 1_700_000_000
    archive.addfile(info, io.BytesIO(data))


def _add_dir(archive: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    archive.addfile(info)


def _add_symlink(archive: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    archive.addfile(info)


def write_classic_save(path: Path, images: list[SavedImage], *, compress: bool = False) -> Path:
    """The pre-25 format. A layer saved once already is a symlink to the first copy."""
    raw = io.BytesIO()
    manifest: list[dict[str, Any]] = []
    repositories: dict[str, dict[str, str]] = {}
    written: dict[str, str] = {}
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for image in images:
            layer_paths = []
            parent = ""
            for layer in image.layers:
                layer_id = hashlib.sha256(f"{parent}{sha256(layer)}".encode()).hexdigest()
                _add_dir(archive, f"{layer_id}/")
                _add(archive, f"{layer_id}/VERSION", b"1.0")
                v1 = {"id": layer_id, "created": "2024-01-01T00:00:00Z"}
                if parent:
                    v1["parent"] = parent
                _add(archive, f"{layer_id}/json", json.dumps(v1).encode())
                if sha256(layer) in written:
                    _add_symlink(archive, f"{layer_id}/layer.tar", f"../{written[sha256(layer)]}")
                else:
                    _add(archive, f"{layer_id}/layer.tar", layer)
                    written[sha256(layer)] = f"{layer_id}/layer.tar"
                layer_paths.append(f"{layer_id}/layer.tar")
                parent = layer_id
            config_name = image.config_digest.split(":")[1] + ".json"
            _add(archive, config_name, image.config)
            manifest.append(
                {"Config": config_name, "RepoTags": [image.repo_tag], "Layers": layer_paths}
            )
            name, tag = image.repo_tag.rsplit(":", 1)
            repositories.setdefault(name, {})[tag] = parent
        _add(archive, "manifest.json", json.dumps(manifest).encode())
        _add(archive, "repositories", json.dumps(repositories).encode())
    data = raw.getvalue()
    path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
    return path


def oci_manifest(image: SavedImage) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": OCI_CONFIG,
                "digest": image.config_digest,
                "size": len(image.config),
            },
            "layers": [
                {"mediaType": OCI_LAYER_TAR, "digest": sha256(layer), "size": len(layer)}
                for layer in image.layers
            ],
        }
    ).encode()


def write_oci_save(path: Path, images: list[SavedImage]) -> Path:
    """The Docker 25+ format: an OCI image layout (+ the legacy manifest.json) in a tar."""
    manifest: list[dict[str, Any]] = []
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    blobs: dict[str, bytes] = {}
    for image in images:
        data = oci_manifest(image)
        blobs.update(image.blobs)
        blobs[sha256(data)] = data
        tag = image.repo_tag.rsplit(":", 1)[1]
        index["manifests"].append(
            {
                "mediaType": OCI_MANIFEST,
                "digest": sha256(data),
                "size": len(data),
                "annotations": {
                    "io.containerd.image.name": f"docker.io/library/{image.repo_tag}",
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        )
        manifest.append(
            {
                "Config": "blobs/sha256/" + image.config_digest.split(":")[1],
                "RepoTags": [image.repo_tag],
                "Layers": ["blobs/sha256/" + d.split(":")[1] for d in image.layer_digests],
            }
        )
    with tarfile.open(path, mode="w") as archive:
        _add_dir(archive, "blobs/")
        _add_dir(archive, "blobs/sha256/")
        for digest, data in blobs.items():
            _add(archive, "blobs/sha256/" + digest.split(":")[1], data)
        _add(archive, "index.json", json.dumps(index).encode())
        _add(archive, "manifest.json", json.dumps(manifest).encode())
        _add(archive, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    return path
