"""Container images built in the tests from random layers, and their on-disk layouts.

There is no Docker engine in the test environment, so every image the registry tests push is
made here: random tar layers, gzip-compressed, an image config listing their ``diff_ids``,
and a manifest (OCI or Docker v2 schema 2). Images are written as an OCI image layout
(``oci:`` for skopeo and podman) or as a skopeo ``dir:`` directory (which keeps a manifest
byte-for-byte, whatever its format), and layouts written by the clients are read back to
compare digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"

EMPTY_JSON = b"{}"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return sha256(self.data)

    @property
    def size(self) -> int:
        return len(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Image:
    """One image manifest with its config and layer blobs (the exact bytes to push)."""

    manifest: bytes
    media_type: str
    config: Blob
    layers: list[Blob]
    platform: dict[str, str] | None = None

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        return {blob.digest: blob.data for blob in (self.config, *self.layers)}

    @property
    def layer_size(self) -> int:
        """ECR's imageSizeInBytes: the sum of the (distinct) layer blob sizes."""
        return sum({layer.digest: layer.size for layer in self.layers}.values())

    def descriptor(self) -> dict[str, Any]:
        descriptor: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.manifest),
        }
        if self.platform is not None:
            descriptor["platform"] = self.platform
        return descriptor

    @property
    def manifest_json(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.manifest)
        return document


@dataclass(frozen=True)
class Index:
    """An OCI image index (or Docker manifest list) and the images it lists."""

    manifest: bytes
    media_type: str
    images: list[Image] = field(default_factory=list)

    @property
    def digest(self) -> str:
        return sha256(self.manifest)

    @property
    def blobs(self) -> dict[str, bytes]:
        blobs: dict[str, bytes] = {}
        for image in self.images:
            blobs.update(image.blobs)
        return blobs

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.manifest)}


def random_tar_gz(size: int, *, name: str = "data.bin") -> tuple[bytes, str]:
    """A gzip-compressed tar holding one file of ``size`` random bytes; (blob, diff_id)."""
    payload = os.urandom(size)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        info.mtime = 1_700_000_000
        archive.addfile(info, io.BytesIO(payload))
    tar = raw.getvalue()
    return gzip.compress(tar, compresslevel=1, mtime=0), sha256(tar)


def build_image(
    *,
    layers: int = 2,
    layer_size: int = 16 * 1024,
    layer_sizes: Sequence[int] | None = None,
    architecture: str = "amd64",
    os_name: str = "linux",
    docker: bool = False,
    with_platform: bool = False,
    annotations: Mapping[str, str] | None = None,
    subject: Mapping[str, Any] | None = None,
) -> Image:
    """A random image: ``layers`` gzip tar layers of about ``layer_size`` bytes each
    (or one layer per entry of ``layer_sizes``).

    ``docker`` makes a Docker v2 schema 2 manifest instead of an OCI one. The manifest
    always carries its ``mediaType`` field (ECR's PutImage requires a type).
    """
    layer_type = DOCKER_LAYER if docker else OCI_LAYER
    config_type = DOCKER_CONFIG if docker else OCI_CONFIG
    manifest_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    blobs: list[Blob] = []
    diff_ids: list[str] = []
    sizes = list(layer_sizes) if layer_sizes is not None else [layer_size] * layers
    for i, size in enumerate(sizes):
        data, diff_id = random_tar_gz(size, name=f"layer{i}/data.bin")
        blobs.append(Blob(layer_type, data))
        diff_ids.append(diff_id)
    config_document = {
        "architecture": architecture,
        "os": os_name,
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "2024-01-01T00:00:00Z", "created_by": f"layer {i}"}
            for i in range(len(sizes))
        ],
    }
    config = Blob(config_type, canonical_json(config_document))
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config.descriptor(),
        "layers": [blob.descriptor() for blob in blobs],
    }
    if subject is not None:
        manifest["subject"] = dict(subject)
    if annotations:
        manifest["annotations"] = dict(annotations)
    platform = {"architecture": architecture, "os": os_name} if with_platform else None
    return Image(canonical_json(manifest), manifest_type, config, blobs, platform)


def build_index(images: Iterable[Image], *, docker: bool = False) -> Index:
    listed = list(images)
    media_type = DOCKER_LIST if docker else OCI_INDEX
    document = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [image.descriptor() for image in listed],
    }
    return Index(canonical_json(document), media_type, listed)


# -- OCI image layouts -------------------------------------------------------------------


def _write_blob(root: Path, data: bytes) -> None:
    algorithm, hex_digest = sha256(data).split(":")
    path = root / "blobs" / algorithm / hex_digest
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_bytes(data)


def write_oci_layout(root: Path, entries: Mapping[str, Image | Index]) -> Path:
    """An OCI image layout at ``root`` with one ``index.json`` entry per tag (ref name)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    descriptors = []
    for ref_name, item in entries.items():
        for digest_data in item.blobs.values():
            _write_blob(root, digest_data)
        if isinstance(item, Index):
            for image in item.images:
                _write_blob(root, image.manifest)
        _write_blob(root, item.manifest)
        descriptor = item.descriptor()
        descriptor.pop("platform", None)
        descriptor["annotations"] = {REF_NAME: ref_name}
        descriptors.append(descriptor)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
    (root / "index.json").write_text(json.dumps(index))
    return root


@dataclass(frozen=True)
class Layout:
    """An OCI image layout on disk, as a client wrote it."""

    root: Path

    @property
    def index(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.root / "index.json").read_text())
        return document

    def blob(self, digest: str) -> bytes:
        algorithm, hex_digest = digest.split(":")
        return (self.root / "blobs" / algorithm / hex_digest).read_bytes()

    def descriptor(self, ref_name: str | None = None) -> dict[str, Any]:
        """The ``index.json`` entry for ``ref_name`` (or the only one)."""
        entries = self.index["manifests"]
        if ref_name is None:
            assert len(entries) == 1, entries
            found: dict[str, Any] = entries[0]
            return found
        for entry in entries:
            if entry.get("annotations", {}).get(REF_NAME) == ref_name:
                return dict(entry)
        raise KeyError(ref_name)

    def manifest(self, ref_name: str | None = None) -> bytes:
        return self.blob(self.descriptor(ref_name)["digest"])

    def all_digests(self) -> set[str]:
        """Every blob digest stored in the layout, each verified against its content."""
        digests = set()
        for path in (self.root / "blobs").glob("*/*"):
            digest = f"{path.parent.name}:{path.name}"
            assert sha256(path.read_bytes()) == digest, f"corrupt blob {digest}"
            digests.add(digest)
        return digests


def image_digests(image: Image | Index) -> set[str]:
    """The digests of every manifest and blob of an image (or index and its images)."""
    digests = {image.digest, *image.blobs}
    if isinstance(image, Index):
        digests |= {child.digest for child in image.images}
    return digests


# -- skopeo dir: directories -------------------------------------------------------------

DIR_VERSION = "Directory Transport Version: 1.1\n"


def write_dir_layout(root: Path, image: Image) -> Path:
    """A skopeo ``dir:`` directory: ``manifest.json`` kept verbatim, blobs by hex digest."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "version").write_text(DIR_VERSION)
    (root / "manifest.json").write_bytes(image.manifest)
    for digest, data in image.blobs.items():
        (root / digest.split(":", 1)[1]).write_bytes(data)
    return root


def read_dir_layout(root: Path) -> tuple[bytes, dict[str, bytes]]:
    """The manifest bytes and the blobs (by digest) of a ``dir:`` directory."""
    manifest = (root / "manifest.json").read_bytes()
    blobs = {}
    for path in root.iterdir():
        if path.name not in ("manifest.json", "version"):
            data = path.read_bytes()
            assert sha256(data) == "sha256:" + path.name, f"corrupt blob {path.name}"
            blobs["sha256:" + path.name] = data
    return manifest, blobs
