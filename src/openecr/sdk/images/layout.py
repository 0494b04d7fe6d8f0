"""Images on disk: what ``push_image`` reads and what ``pull_image`` writes.

Sources (``open_image_source``):

* an OCI image layout directory (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``); the
  image is the ``index.json`` entry named by ``ref`` (its ``org.opencontainers.image.ref.name``
  or ``io.containerd.image.name`` annotation) or the only one. An entry that is an index is
  pushed with every manifest it lists;
* a ``docker save`` archive, or the same files extracted into a directory. Docker 25 and later
  write an OCI image layout inside the tar (``index.json`` + ``blobs/``), which is used as is,
  so the pushed digests are those docker computed. Older archives (``manifest.json``, a config
  file, one ``layer.tar`` per layer) get a Docker v2 schema 2 manifest built here, with the
  layers as they are in the archive (uncompressed ``application/vnd.docker.image.rootfs.diff.tar``;
  gzip-compressed ones, as some tools write, keep their compression). A gzip, bzip2 or xz
  compressed archive is decompressed to a temporary file first.

Destination: ``OCILayoutWriter``, an OCI image layout directory that blobs stream into, each
verified against its digest before it becomes visible.

Blobs are never held in memory whole: sources read them in ranges, the writer takes chunks.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import json
import lzma
import os
import posixpath
import shutil
import tarfile
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, Self

from openecr.errors import OpenECRError
from openecr.sdk.images._files import blob_name, is_digest, write_atomically

__all__ = [
    "CONTAINERD_NAME_ANNOTATION",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "REF_NAME_ANNOTATION",
    "BlobDigestMismatchError",
    "BlobInfo",
    "BlobSink",
    "DockerArchiveSource",
    "ImageSource",
    "ImageSourceError",
    "ManifestInfo",
    "OCILayoutSource",
    "OCILayoutWriter",
    "open_image_source",
    "parse_manifest",
]

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"

INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
IMAGE_MANIFEST_MEDIA_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
MANIFEST_MEDIA_TYPES = INDEX_MEDIA_TYPES | IMAGE_MANIFEST_MEDIA_TYPES
_SCHEMA1_MEDIA_TYPES = frozenset({DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED})
# Layers registries do not hold (Windows base layers): never uploaded, never downloaded.
NON_DISTRIBUTABLE_MEDIA_TYPES = frozenset(
    {
        DOCKER_FOREIGN_LAYER,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    }
)

REF_NAME_ANNOTATION = "org.opencontainers.image.ref.name"
CONTAINERD_NAME_ANNOTATION = "io.containerd.image.name"
OCI_LAYOUT_VERSION = "1.0.0"

_CHUNK = 1024 * 1024
_MAX_SMALL_FILE = 64 * 1024 * 1024  # index.json, manifests, configs: read whole
_MAX_INDEX_DEPTH = 4


class ImageSourceError(OpenECRError):
    """An image source or destination is unreadable, incomplete or inconsistent."""


class BlobDigestMismatchError(OpenECRError):
    """A blob's content does not match its digest (or its size its descriptor)."""

    def __init__(self, message: str, *, expected: str, actual: str | None = None) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


# -- manifests ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A blob a manifest references: its config or one of its layers."""

    digest: str
    size: int
    media_type: str

    @property
    def distributable(self) -> bool:
        """Whether registries hold this blob (foreign layers they do not)."""
        return self.media_type not in NON_DISTRIBUTABLE_MEDIA_TYPES


@dataclass(frozen=True, slots=True)
class ChildInfo:
    """A manifest an index lists."""

    digest: str
    size: int
    media_type: str


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    blobs: tuple[BlobInfo, ...]
    children: tuple[ChildInfo, ...]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """A manifest with its exact bytes, the blobs it references and (for an index) the
    manifests it lists, loaded the same way."""

    digest: str
    media_type: str
    data: bytes
    blobs: tuple[BlobInfo, ...] = ()
    children: tuple[ManifestInfo, ...] = ()

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES

    def walk(self) -> Iterator[ManifestInfo]:
        """Every manifest once, the listed ones before the index listing them (the order a
        registry accepts them in)."""
        seen: set[str] = set()

        def visit(manifest: ManifestInfo) -> Iterator[ManifestInfo]:
            for child in manifest.children:
                yield from visit(child)
            if manifest.digest not in seen:
                seen.add(manifest.digest)
                yield manifest

        return visit(self)

    def distributable_blobs(self) -> list[BlobInfo]:
        """The blobs of every manifest, once each, without foreign layers."""
        found: dict[str, BlobInfo] = {}
        for manifest in self.walk():
            for blob in manifest.blobs:
                if blob.distributable:
                    found.setdefault(blob.digest, blob)
        return list(found.values())


def _descriptor(value: Any, where: str) -> tuple[str, int, str]:
    if not isinstance(value, dict):
        raise ImageSourceError(f"{where}: a descriptor must be an object")
    digest, size, media_type = value.get("digest"), value.get("size"), value.get("mediaType")
    if not isinstance(digest, str) or not is_digest(digest):
        raise ImageSourceError(f"{where}: unsupported or invalid digest {digest!r}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ImageSourceError(f"{where}: invalid size {size!r}")
    if not isinstance(media_type, str) or not media_type:
        raise ImageSourceError(f"{where}: missing mediaType")
    return digest, size, media_type


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ImageSourceError(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise ImageSourceError(f"{what} is not a JSON object")
    return document


def parse_manifest(data: bytes, media_type: str | None = None) -> ParsedManifest:
    """What a manifest references. ``media_type`` is used when the document has no
    ``mediaType`` field (OCI manifests may omit it)."""
    document = _json_object(data, "the manifest")
    declared = document.get("mediaType")
    kind = declared if isinstance(declared, str) and declared else media_type
    if not kind:
        kind = OCI_INDEX if "manifests" in document else OCI_MANIFEST
    if kind in _SCHEMA1_MEDIA_TYPES or document.get("schemaVersion") == 1:
        raise ImageSourceError("Docker v2 schema 1 manifests are not supported")
    if kind in INDEX_MEDIA_TYPES:
        children = []
        for i, entry in enumerate(document.get("manifests") or []):
            digest, size, entry_type = _descriptor(entry, f"manifests[{i}]")
            if entry_type in MANIFEST_MEDIA_TYPES:
                children.append(ChildInfo(digest, size, entry_type))
        return ParsedManifest(kind, (), tuple(children))
    blobs = []
    if document.get("config") is not None:
        blobs.append(BlobInfo(*_descriptor(document["config"], "config")))
    for field in ("layers", "blobs"):  # "blobs": the draft OCI artifact manifest
        for i, entry in enumerate(document.get(field) or []):
            blobs.append(BlobInfo(*_descriptor(entry, f"{field}[{i}]")))
    return ParsedManifest(kind, tuple(blobs), ())


def _digest_of(data: bytes, algorithm: str) -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


# -- file trees: a directory or a tar archive -----------------------------------------------


def _clean_name(name: str) -> str:
    """A member name relative to the tree's root, refusing anything that escapes it."""
    cleaned = posixpath.normpath(name.replace("\\", "/").lstrip("/")) if name else ""
    if cleaned in ("", ".") or cleaned == ".." or cleaned.startswith("../"):
        raise ImageSourceError(f"invalid path in the image source: {name!r}")
    return cleaned


class _Tree(ABC):
    """Read access to named files: a directory or an (uncompressed) tar archive."""

    label: str

    @abstractmethod
    def size(self, name: str) -> int | None:
        """The file's size, or None when there is no such file."""

    @abstractmethod
    def open(self, name: str, offset: int = 0) -> tuple[BinaryIO, int]:
        """A file positioned at ``offset`` within ``name`` and the bytes left to read."""

    def close(self) -> None:
        return None

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        handle, left = self.open(name, offset)
        with handle:
            wanted = left if length is None else min(length, left)
            data = handle.read(wanted)
        if len(data) != wanted:
            raise ImageSourceError(f"{self.label}: {name} is shorter than expected")
        return data

    def read_small(self, name: str) -> bytes:
        size = self.size(name)
        if size is None:
            raise ImageSourceError(f"{self.label}: {name} is missing")
        if size > _MAX_SMALL_FILE:
            raise ImageSourceError(f"{self.label}: {name} is too large ({size} bytes)")
        return self.read(name)

    def hash(self, name: str, algorithm: str = "sha256") -> tuple[str, bytes]:
        """The digest of a file, streamed, and its first bytes (to sniff compression)."""
        hasher = hashlib.new(algorithm)
        head = b""
        handle, left = self.open(name)
        with handle:
            while left > 0:
                chunk = handle.read(min(_CHUNK, left))
                if not chunk:
                    raise ImageSourceError(f"{self.label}: {name} is shorter than expected")
                if not head:
                    head = chunk[:8]
                hasher.update(chunk)
                left -= len(chunk)
        return f"{algorithm}:{hasher.hexdigest()}", head


class _DirectoryTree(_Tree):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def _path(self, name: str) -> Path:
        return self.root / _clean_name(name)

    def size(self, name: str) -> int | None:
        path = self._path(name)
        return path.stat().st_size if path.is_file() else None

    def open(self, name: str, offset: int = 0) -> tuple[BinaryIO, int]:
        path = self._path(name)
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise ImageSourceError(f"{self.label}: {name} is missing") from None
        size = os.fstat(handle.fileno()).st_size
        handle.seek(offset)
        return handle, max(size - offset, 0)


_COMPRESSIONS: tuple[tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
)


def _compression(path: Path) -> str | None:
    with path.open("rb") as handle:
        head = handle.read(8)
    return next((name for magic, name in _COMPRESSIONS if head.startswith(magic)), None)


class _TarTree(_Tree):
    """The regular files of a tar archive, read in place by offset (links resolved)."""

    def __init__(self, path: Path) -> None:
        self.label = str(path)
        self._temporary: Path | None = None
        compression = _compression(path)
        if compression is not None:
            path = self._temporary = self._decompressed(path, compression)
        self._path = path
        self._members: dict[str, tuple[int, int]] = {}
        links: dict[str, str] = {}
        try:
            with tarfile.open(path, "r:") as archive:
                for member in archive:
                    if member.isdir():
                        continue
                    try:
                        name = _clean_name(member.name)
                    except ImageSourceError:
                        continue  # "./" or outside the archive: nothing can refer to it
                    if member.isreg():
                        self._members[name] = (member.offset_data, member.size)
                    elif member.issym():
                        target = posixpath.join(posixpath.dirname(name), member.linkname)
                        links[name] = posixpath.normpath(target)
                    elif member.islnk():
                        links[name] = _clean_name(member.linkname)
        except (tarfile.TarError, OSError) as exc:
            self.close()
            raise ImageSourceError(f"{self.label}: not a readable tar archive: {exc}") from None
        for name, target in links.items():
            for _ in range(16):  # a chain of links; a longer one is a loop
                if target in self._members:
                    self._members[name] = self._members[target]
                    break
                if target not in links:
                    break
                target = links[target]

    def _decompressed(self, path: Path, compression: str) -> Path:
        opener: dict[str, Any] = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}
        if compression not in opener:
            raise ImageSourceError(f"{self.label}: {compression} archives are not supported")
        fd, temporary = tempfile.mkstemp(prefix="openecr-", suffix=".tar")
        try:
            with os.fdopen(fd, "wb") as out, opener[compression](path, "rb") as source:
                shutil.copyfileobj(source, out, _CHUNK)
        except (OSError, EOFError, lzma.LZMAError) as exc:
            os.unlink(temporary)
            raise ImageSourceError(f"{self.label}: cannot decompress: {exc}") from None
        except BaseException:
            os.unlink(temporary)
            raise
        return Path(temporary)

    def size(self, name: str) -> int | None:
        member = self._members.get(_clean_name(name))
        return None if member is None else member[1]

    def open(self, name: str, offset: int = 0) -> tuple[BinaryIO, int]:
        member = self._members.get(_clean_name(name))
        if member is None:
            raise ImageSourceError(f"{self.label}: {name} is missing")
        start, size = member
        handle = self._path.open("rb")
        handle.seek(start + min(offset, size))
        return handle, max(size - offset, 0)

    def close(self) -> None:
        if self._temporary is not None:
            with contextlib.suppress(FileNotFoundError):
                self._temporary.unlink()
            self._temporary = None


def _tree_at(location: str | os.PathLike[str]) -> _Tree:
    path = Path(location)
    if path.is_dir():
        return _DirectoryTree(path)
    if path.is_file():
        return _TarTree(path)
    raise ImageSourceError(f"{path}: no such file or directory")


# -- sources ------------------------------------------------------------------------------


class ImageSource(ABC):
    """An image to push: its manifest (tree) and random access to its blobs.

    ``load`` and ``read_blob`` block (file I/O, hashing); the async push runs them in worker
    threads. ``read_blob`` may be called from several threads at once.
    """

    @abstractmethod
    def load(self) -> ManifestInfo:
        """The image's manifest, loaded and checked (called once per push)."""

    @abstractmethod
    def read_blob(self, digest: str, offset: int, length: int) -> bytes:
        """``length`` bytes of a blob from ``offset`` (fewer only at its end)."""

    def close(self) -> None:
        """Releases what the source holds (temporary files)."""
        return None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _tag_of(name: str) -> str | None:
    """``3.19`` of ``docker.io/library/alpine:3.19``."""
    last = name.rsplit("/", 1)[-1].split("@", 1)[0]
    return last.split(":", 1)[1] if ":" in last else None


def _names(*full_names: object) -> set[str]:
    names: set[str] = set()
    for name in full_names:
        if isinstance(name, str) and name:
            names.add(name)
            tag = _tag_of(name)
            if tag:
                names.add(tag)
    return names


class _TreeSource(ImageSource):
    def __init__(self, location: str | os.PathLike[str] | _Tree, *, ref: str | None) -> None:
        self._tree = location if isinstance(location, _Tree) else _tree_at(location)
        self.ref = ref
        self._lock = threading.Lock()
        self._loaded: ManifestInfo | None = None

    @property
    def label(self) -> str:
        return self._tree.label

    def load(self) -> ManifestInfo:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    @abstractmethod
    def _load(self) -> ManifestInfo: ...

    def _pick(self, candidates: list[tuple[set[str], str]], what: str) -> int:
        """The index of the candidate named ``ref`` (or the only one); each candidate is
        (its names, its digest)."""
        if self.ref is None:
            if len({digest for _, digest in candidates}) == 1:
                return 0
            names = sorted({name for names, _ in candidates for name in names})
            raise ImageSourceError(
                f"{self.label} holds {len(candidates)} {what}s; choose one with ref= "
                f"(names: {', '.join(names) or 'none'})"
            )
        matches = [
            i
            for i, (names, digest) in enumerate(candidates)
            if self.ref in names or self.ref == digest
        ]
        if not matches:
            names = sorted({name for names, _ in candidates for name in names})
            raise ImageSourceError(
                f"{self.label} has no {what} named {self.ref!r} "
                f"(names: {', '.join(names) or 'none'})"
            )
        if len({candidates[i][1] for i in matches}) > 1:
            raise ImageSourceError(f"{self.label}: the name {self.ref!r} is ambiguous")
        return matches[0]

    def close(self) -> None:
        self._tree.close()


class OCILayoutSource(_TreeSource):
    """An OCI image layout: a directory, or a tar of one (``docker save`` since Docker 25)."""

    def __init__(self, location: str | os.PathLike[str] | _Tree, *, ref: str | None = None) -> None:
        super().__init__(location, ref=ref)

    def _load(self) -> ManifestInfo:
        index = _json_object(self._tree.read_small("index.json"), f"{self.label}: index.json")
        entries = [entry for entry in index.get("manifests") or [] if isinstance(entry, dict)]
        if (
            self.ref is not None
            and is_digest(self.ref)
            and all(entry.get("digest") != self.ref for entry in entries)
            and (size := self._tree.size(blob_name(self.ref))) is not None
        ):
            # A manifest index.json does not list, by digest: one platform's image of a
            # multi-platform index, say.
            return self._manifest(self.ref, size, "", depth=0)
        if not entries:
            raise ImageSourceError(f"{self.label}: index.json lists no image")
        candidates = []
        for entry in entries:
            annotations = entry.get("annotations") or {}
            candidates.append(
                (
                    _names(
                        annotations.get(REF_NAME_ANNOTATION),
                        annotations.get(CONTAINERD_NAME_ANNOTATION),
                    ),
                    str(entry.get("digest")),
                )
            )
        chosen = entries[self._pick(candidates, "image")]
        digest, size, media_type = _descriptor(chosen, f"{self.label}: index.json")
        return self._manifest(digest, size, media_type, depth=0)

    def _manifest(self, digest: str, size: int, media_type: str, *, depth: int) -> ManifestInfo:
        if depth > _MAX_INDEX_DEPTH:
            raise ImageSourceError(f"{self.label}: indexes nested too deeply")
        name = blob_name(digest)
        if self._tree.size(name) is None:
            raise ImageSourceError(
                f"{self.label}: the manifest {digest} is not in the layout (a partial save of "
                "a multi-platform image? choose a platform's manifest with ref=<its digest>)"
            )
        data = self._tree.read_small(name)
        actual = _digest_of(data, digest.split(":", 1)[0])
        if actual != digest or len(data) != size:
            raise BlobDigestMismatchError(
                f"{self.label}: the manifest {digest} has digest {actual} ({len(data)} bytes, "
                f"its descriptor says {size})",
                expected=digest,
                actual=actual,
            )
        parsed = parse_manifest(data, media_type or None)
        children = tuple(
            self._manifest(child.digest, child.size, child.media_type, depth=depth + 1)
            for child in parsed.children
        )
        for blob in parsed.blobs:
            if not blob.distributable:
                continue
            stored = self._tree.size(blob_name(blob.digest))
            if stored is None:
                raise ImageSourceError(f"{self.label}: the blob {blob.digest} is missing")
            if stored != blob.size:
                raise ImageSourceError(
                    f"{self.label}: the blob {blob.digest} has {stored} bytes, its descriptor "
                    f"says {blob.size}"
                )
        return ManifestInfo(digest, parsed.media_type, data, parsed.blobs, children)

    def read_blob(self, digest: str, offset: int, length: int) -> bytes:
        return self._tree.read(blob_name(digest), offset, length)


class DockerArchiveSource(_TreeSource):
    """A ``docker save`` archive in the classic format (``manifest.json`` + ``layer.tar``
    files), as a tar or extracted into a directory. The Docker v2 schema 2 manifest is built
    here; layer digests are computed by streaming each layer once in ``load``."""

    def __init__(self, location: str | os.PathLike[str] | _Tree, *, ref: str | None = None) -> None:
        super().__init__(location, ref=ref)
        self._files: dict[str, str] = {}

    def _load(self) -> ManifestInfo:
        label = f"{self.label}: manifest.json"
        try:
            entries = json.loads(self._tree.read_small("manifest.json"))
        except ValueError as exc:
            raise ImageSourceError(f"{label} is not valid JSON: {exc}") from None
        if not isinstance(entries, list) or not entries:
            raise ImageSourceError(f"{label} lists no image")
        if not all(isinstance(entry, dict) for entry in entries):
            raise ImageSourceError(f"{label}: every entry must be an object")
        candidates = [
            (_names(*(entry.get("RepoTags") or [])), str(entry.get("Config"))) for entry in entries
        ]
        entry: dict[str, Any] = entries[self._pick(candidates, "image")]
        config_name, layer_names = entry.get("Config"), entry.get("Layers")
        if not isinstance(config_name, str) or not isinstance(layer_names, list):
            raise ImageSourceError(f"{label}: an entry needs Config and Layers")

        config = self._tree.read_small(config_name)
        config_digest = _digest_of(config, "sha256")
        rootfs = _json_object(config, f"{self.label}: {config_name}").get("rootfs")
        diff_ids = (rootfs.get("diff_ids") if isinstance(rootfs, dict) else None) or []
        layer_sources: Mapping[str, Any] = entry.get("LayerSources") or {}
        self._files[config_digest] = config_name

        layers: list[dict[str, Any]] = []
        blobs: list[BlobInfo] = [BlobInfo(config_digest, len(config), DOCKER_CONFIG)]
        for i, name in enumerate(layer_names):
            if not isinstance(name, str):
                raise ImageSourceError(f"{label}: Layers[{i}] is not a path")
            size = self._tree.size(name)
            if size is None:
                raise ImageSourceError(f"{self.label}: the layer {name} is missing")
            digest, head = self._tree.hash(name)
            compressed = head.startswith(b"\x1f\x8b")
            diff_id = diff_ids[i] if i < len(diff_ids) else None
            foreign = layer_sources.get(diff_id) if isinstance(diff_id, str) else None
            if isinstance(foreign, dict):  # a Windows base layer: referenced, not pushed
                layers.append(dict(foreign))
                blobs.append(BlobInfo(*_descriptor(foreign, f"{label}: LayerSources")))
                continue
            if not compressed and diff_id is not None and diff_id != digest:
                raise BlobDigestMismatchError(
                    f"{self.label}: the layer {name} has digest {digest}, the config says "
                    f"{diff_id}",
                    expected=str(diff_id),
                    actual=digest,
                )
            media_type = DOCKER_LAYER_GZIP if compressed else DOCKER_LAYER
            layers.append({"mediaType": media_type, "size": size, "digest": digest})
            blobs.append(BlobInfo(digest, size, media_type))
            self._files[digest] = name
        manifest = {
            "schemaVersion": 2,
            "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": DOCKER_CONFIG, "size": len(config), "digest": config_digest},
            "layers": layers,
        }
        data = json.dumps(manifest, indent=3).encode()
        return ManifestInfo(_digest_of(data, "sha256"), DOCKER_MANIFEST, data, tuple(blobs))

    def read_blob(self, digest: str, offset: int, length: int) -> bytes:
        self.load()
        name = self._files.get(digest)
        if name is None:
            raise ImageSourceError(f"{self.label}: no blob {digest}")
        return self._tree.read(name, offset, length)


def open_image_source(location: str | os.PathLike[str], *, ref: str | None = None) -> ImageSource:
    """The image at ``location``: an OCI image layout directory, a ``docker save`` tar (any
    Docker version; gzip/bzip2/xz compressed or not) or such a tar extracted. ``ref`` names
    the image when there are several. Close the source when done (or use ``with``)."""
    tree = _tree_at(location)
    try:
        if tree.size("index.json") is not None:
            return OCILayoutSource(tree, ref=ref)
        if tree.size("manifest.json") is not None:
            return DockerArchiveSource(tree, ref=ref)
    except BaseException:
        tree.close()
        raise
    tree.close()
    raise ImageSourceError(
        f"{location}: neither an OCI image layout (index.json) nor a docker save archive "
        "(manifest.json)"
    )


# -- destination ----------------------------------------------------------------------------


class BlobSink:
    """One blob being written: chunks are hashed as they are written to a temporary file,
    which becomes ``blobs/<alg>/<hex>`` only if digest and size match."""

    def __init__(self, final: Path, digest: str, size: int) -> None:
        self.digest = digest
        self.size = size
        self.written = 0
        self._final = final
        self._hash = hashlib.new(digest.split(":", 1)[0])
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=f".{final.name[:16]}.", dir=final.parent)
        self._temporary = Path(temporary)
        self._file: IO[bytes] | None = os.fdopen(fd, "wb")

    def write(self, chunk: bytes) -> None:
        if self._file is None:
            raise ValueError("the blob sink is closed")
        self.written += len(chunk)
        if self.written > self.size:
            self.abort()
            raise BlobDigestMismatchError(
                f"the blob {self.digest} is longer than its {self.size} bytes",
                expected=self.digest,
            )
        self._hash.update(chunk)
        self._file.write(chunk)

    def commit(self) -> None:
        """Verifies and publishes the blob; on a mismatch deletes it and raises."""
        if self._file is None:
            raise ValueError("the blob sink is closed")
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        if actual != self.digest or self.written != self.size:
            self.abort()
            raise BlobDigestMismatchError(
                f"the downloaded blob {self.digest} has digest {actual} ({self.written} bytes, "
                f"expected {self.size})",
                expected=self.digest,
                actual=actual,
            )
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._file = None
        os.chmod(self._temporary, 0o644)
        os.replace(self._temporary, self._final)

    def abort(self) -> None:
        """Drops the partial blob (safe to call more than once)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._temporary.unlink()


class OCILayoutWriter:
    """An OCI image layout directory to pull into (created if missing; an existing layout
    keeps its other images and blobs)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ImageSourceError(f"{self.root} exists and is not a directory")
        self.root.mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if marker.exists():
            version = _json_object(marker.read_bytes(), f"{marker}").get("imageLayoutVersion")
            if not isinstance(version, str) or not version.startswith("1."):
                raise ImageSourceError(f"{marker}: unsupported layout version {version!r}")
        else:
            write_atomically(
                marker, json.dumps({"imageLayoutVersion": OCI_LAYOUT_VERSION}).encode()
            )
        self._index_lock = threading.Lock()

    def blob_path(self, digest: str) -> Path:
        return self.root / blob_name(digest)

    def has_blob(self, digest: str, size: int) -> bool:
        """Whether the layout holds the blob (written by a verified commit, so the size is
        checked, not the content)."""
        path = self.blob_path(digest)
        return path.is_file() and path.stat().st_size == size

    def open_blob(self, digest: str, size: int) -> BlobSink:
        return BlobSink(self.blob_path(digest), digest, size)

    def write_blob(self, data: bytes, digest: str) -> None:
        """Stores a small blob held in memory (a manifest), verified against ``digest``."""
        actual = _digest_of(data, digest.split(":", 1)[0])
        if actual != digest:
            raise BlobDigestMismatchError(
                f"the manifest {digest} has digest {actual}", expected=digest, actual=actual
            )
        if not self.has_blob(digest, len(data)):
            write_atomically(self.blob_path(digest), data)

    def add_reference(
        self, digest: str, size: int, media_type: str, ref_name: str | None = None
    ) -> None:
        """Lists the manifest in ``index.json``, named ``ref_name`` (which then names no other
        entry). Other entries are kept."""
        path = self.root / "index.json"
        with self._index_lock:
            index: dict[str, Any] = (
                _json_object(path.read_bytes(), str(path))
                if path.exists()
                else {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
            )
            entries = [e for e in index.get("manifests") or [] if isinstance(e, dict)]

            def replaced(entry: dict[str, Any]) -> bool:
                name = (entry.get("annotations") or {}).get(REF_NAME_ANNOTATION)
                if ref_name is not None:
                    return bool(name == ref_name)
                return name is None and entry.get("digest") == digest

            descriptor: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": size}
            if ref_name is not None:
                descriptor["annotations"] = {REF_NAME_ANNOTATION: ref_name}
            index["manifests"] = [e for e in entries if not replaced(e)] + [descriptor]
            index.setdefault("schemaVersion", 2)
            write_atomically(path, json.dumps(index, indent=2).encode() + b"\n")
