"""Blob uploads: one service behind both ECR's layer operations and OCI's upload routes.

``InitiateLayerUpload``/``UploadLayerPart``/``CompleteLayerUpload`` and
``POST``/``PATCH``/``PUT /v2/<name>/blobs/uploads/`` are the same state machine: an upload
belongs to one repository, grows by appends at its current end, and completes by digest.
Bytes stream into the blob store; the upload row in the database records the size the
store confirmed, so any replica can continue an upload another one started.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from openecr.errors import (
    EmptyUploadError,
    InvalidLayerError,
    InvalidLayerPartError,
    InvalidParameterError,
    LayerAlreadyExistsError,
    LayerPartTooSmallError,
    LimitExceededError,
    UploadNotFoundError,
)
from openecr.services.repositories import require_repository
from openecr.storage.blobs import (
    BlobStore,
    DigestMismatch,
    InvalidDigest,
    UploadOffsetMismatch,
    parse_digest,
)
from openecr.storage.metadata.records import LayerRecord, UploadRecord
from openecr.storage.metadata.store import MetadataStore

__all__ = [
    "ECR_PART_SIZE",
    "MAX_LAYER_BYTES",
    "MAX_PARTS",
    "MIN_PART_BYTES",
    "UploadService",
    "UploadedBlob",
    "blob_lock_name",
]

ECR_PART_SIZE = 10 * 1024 * 1024  # what InitiateLayerUpload advertises, as AWS does
MIN_PART_BYTES = 5 * 1024 * 1024  # every ECR part but the last
MAX_PARTS = 4200
MAX_LAYER_BYTES = 52_000 * 1024 * 1024


def blob_lock_name(digest: str) -> str:
    """The named lock that publishing, linking and collecting ``digest`` all take."""
    return f"blob:{digest}"


@dataclass(frozen=True, slots=True)
class UploadedBlob:
    digest: str
    size: int


async def _single_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _upload_not_found(upload_id: str, registry_id: str, repository: str) -> UploadNotFoundError:
    return UploadNotFoundError(
        f"Upload with id '{upload_id}' is not found in repository '{repository}' in registry "
        f"with id '{registry_id}'"
    )


class UploadService:
    def __init__(
        self, store: MetadataStore, blobs: BlobStore, *, renew_links_after: float = 1800.0
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._renew_links_after = renew_links_after

    async def start(self, registry_id: str, repository: str) -> UploadRecord:
        now = time.time()
        upload = UploadRecord(
            upload_id=str(uuid.uuid4()),
            registry_id=registry_id,
            repository_name=repository,
            size_bytes=0,
            part_count=0,
            last_part_size=None,
            has_small_inner_part=False,
            created_at=now,
            updated_at=now,
        )
        async with self._store.read() as session:
            await require_repository(session, registry_id, repository)
        await self._blobs.create_upload(upload.upload_id)
        async with self._store.write() as session:
            await session.insert_upload(upload)
        return upload

    async def get(self, registry_id: str, repository: str, upload_id: str) -> UploadRecord:
        """The upload, which must belong to this repository (as in ECR)."""
        async with self._store.read() as session:
            upload = await session.get_upload(upload_id)
        if (
            upload is None
            or upload.registry_id != registry_id
            or upload.repository_name != repository
        ):
            raise _upload_not_found(upload_id, registry_id, repository)
        return upload

    async def append(
        self,
        registry_id: str,
        repository: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        offset: int | None = None,
    ) -> UploadRecord:
        """Appends a stream at ``offset`` (default: the current end).

        Raises ``UploadOffsetMismatch`` when ``offset`` is not the current end; the caller
        turns it into its API's error (OCI 416, ECR ``InvalidLayerPartException``).
        """
        upload = await self.get(registry_id, repository, upload_id)
        expected = upload.size_bytes if offset is None else offset
        if expected != upload.size_bytes:
            raise UploadOffsetMismatch(upload.size_bytes)
        if upload.part_count >= MAX_PARTS:
            raise LimitExceededError(
                f"The upload {upload_id} already has the maximum of {MAX_PARTS} parts."
            )
        new_size = await self._blobs.append_upload(
            upload_id,
            chunks,
            expected_offset=expected,
            max_bytes=MAX_LAYER_BYTES - expected,
        )
        part_size = new_size - expected
        previous_part = upload.last_part_size
        small_inner = upload.has_small_inner_part or (
            previous_part is not None and previous_part < MIN_PART_BYTES
        )
        async with self._store.write() as session:
            await session.update_upload(
                upload_id,
                size_bytes=new_size,
                part_count=upload.part_count + 1,
                last_part_size=part_size,
                has_small_inner_part=small_inner,
                updated_at=time.time(),
            )
        return await self.get(registry_id, repository, upload_id)

    async def upload_part(
        self,
        registry_id: str,
        repository: str,
        upload_id: str,
        *,
        first_byte: int,
        last_byte: int,
        data: bytes,
    ) -> int:
        """ECR's UploadLayerPart: inclusive byte range, in order. Returns lastByteReceived."""
        upload = await self.get(registry_id, repository, upload_id)

        def invalid_part(reason: str) -> InvalidLayerPartError:
            return InvalidLayerPartError(
                reason,
                extra={
                    "registryId": registry_id,
                    "repositoryName": repository,
                    "uploadId": upload_id,
                    "lastValidByteReceived": upload.size_bytes - 1,
                },
            )

        if first_byte != upload.size_bytes:
            raise invalid_part(
                f"The part's first byte {first_byte} does not follow the last byte received "
                f"({upload.size_bytes - 1})."
            )
        if last_byte < first_byte or last_byte - first_byte + 1 != len(data):
            raise invalid_part(
                f"The part's byte range {first_byte}-{last_byte} does not match the size of "
                f"the part blob ({len(data)} bytes)."
            )
        try:
            updated = await self.append(
                registry_id, repository, upload_id, _single_chunk(data), offset=first_byte
            )
        except UploadOffsetMismatch:
            upload = await self.get(registry_id, repository, upload_id)
            raise invalid_part("Another part was uploaded concurrently.") from None
        return updated.size_bytes - 1

    async def complete(
        self,
        registry_id: str,
        repository: str,
        upload_id: str,
        digest: str,
        *,
        enforce_part_sizes: bool,
        fail_if_layer_exists: bool,
    ) -> UploadedBlob:
        """Verifies the digest, makes the blob durable and links it into the repository."""
        try:
            parse_digest(digest)
        except InvalidDigest:
            raise InvalidParameterError(
                "Invalid parameter at 'layerDigest' failed to satisfy constraint: "
                f"'Invalid layer digest: {digest}'"
            ) from None
        upload = await self.get(registry_id, repository, upload_id)
        if upload.size_bytes == 0 and enforce_part_sizes:
            raise EmptyUploadError(f"The upload with id '{upload_id}' contains no layer parts.")
        if enforce_part_sizes and upload.has_small_inner_part:
            raise LayerPartTooSmallError(
                f"A layer part of upload '{upload_id}' other than the last is smaller than "
                f"the minimum of {MIN_PART_BYTES} bytes."
            )
        if fail_if_layer_exists:
            async with self._store.read() as session:
                existing = await session.get_layers(registry_id, repository, [digest])
            if digest in existing:
                await self._discard(upload_id)
                raise LayerAlreadyExistsError(
                    f"The layer with digest '{digest}' already exists in the repository with "
                    f"name '{repository}' in the registry with id '{registry_id}'"
                )
        # Publishing the bytes and recording the link happen under the blob's lock, which
        # garbage collection takes too: a sweep never deletes a blob being (re)published.
        async with self._store.named_lock(blob_lock_name(digest)):
            try:
                info = await self._blobs.commit_upload(upload_id, digest)
            except DigestMismatch as mismatch:
                raise InvalidLayerError(
                    f"The layer digest '{digest}' does not match the digest of the uploaded "
                    f"content ({mismatch.actual})."
                ) from None
            now = time.time()
            async with self._store.write() as session:
                await session.add_blob(digest, info.size, now)
                await session.link_layer(registry_id, repository, digest, info.size, None, now)
                await session.delete_upload(upload_id)
        return UploadedBlob(digest, info.size)

    async def cancel(self, registry_id: str, repository: str, upload_id: str) -> None:
        await self.get(registry_id, repository, upload_id)
        await self._discard(upload_id)

    async def _discard(self, upload_id: str) -> None:
        async with self._store.write() as session:
            await session.delete_upload(upload_id)
        await self._blobs.cancel_upload(upload_id)

    async def mount(
        self, registry_id: str, repository: str, digest: str, source_repository: str
    ) -> UploadedBlob | None:
        """Links a blob of another repository of the same registry; None if it has none."""
        now = time.time()
        async with (
            self._store.named_lock(blob_lock_name(digest)),
            self._store.write() as session,
        ):
            await require_repository(session, registry_id, repository)
            source = await session.get_layers(registry_id, source_repository, [digest])
            layer = source.get(digest)
            if layer is None or await self._blobs.stat(digest) is None:
                return None
            await session.link_layer(
                registry_id, repository, digest, layer.size_bytes, layer.media_type, now
            )
        return UploadedBlob(digest, layer.size_bytes)

    async def unlink(self, registry_id: str, repository: str, digest: str) -> bool:
        """Removes a blob from a repository (OCI blob DELETE); the bytes go at GC time."""
        async with self._store.write() as session:
            await require_repository(session, registry_id, repository)
            return await session.unlink_layer(registry_id, repository, digest)

    async def renew_links(
        self, registry_id: str, repository: str, layers: dict[str, LayerRecord]
    ) -> None:
        """Renews links a client was just told exist (blob HEAD, layer availability).

        A client that finds a layer present skips uploading it and pushes its manifest a
        moment later; renewing an old link keeps garbage collection, which spares links
        younger than its grace period, from removing it in between. Links renewed within
        the last half grace period are left alone, so this writes rarely.
        """
        now = time.time()
        stale = [
            d for d, layer in layers.items() if layer.created_at < now - self._renew_links_after
        ]
        if stale:
            async with self._store.write() as session:
                await session.renew_links(registry_id, repository, stale, now)

    async def find_layers(
        self, registry_id: str, repository: str, digests: list[str]
    ) -> dict[str, LayerRecord]:
        """The given blobs that are linked into the repository (which must exist)."""
        async with self._store.read() as session:
            found = await session.get_layers(registry_id, repository, digests) if digests else {}
            # A repository's links go with it (same transaction), so finding every blob
            # proves it exists; only a miss needs the repository looked up.
            if len(found) < len(set(digests)) or not digests:
                await require_repository(session, registry_id, repository)
            return found
