"""Online garbage collection: reclaims space while pushes and pulls go on.

What is collected, in this order:

1. uploads not touched for ``upload_expiry`` (their rows and bytes);
2. optionally, untagged images that no index references, pushed before ``grace``;
3. repository links to blobs that no image of that repository uses, made before ``grace``
   (a push links its layers first and references them with its manifest a moment later;
   the grace period is that moment);
4. blobs that no repository links any more, and files in the blob store the database does
   not know (left by a crash between publishing bytes and recording them).

Why this is safe while pushes continue: a manifest can only be stored when all its blobs are
linked into its repository (checked in the same transaction, with the repository row locked);
a link is only removed by step 3, under that same repository lock, and only when no image
references the blob; and a blob is only deleted (step 4) under the blob's named lock, after
re-checking that nothing links it. Publishing an upload and mounting a blob take the same
named lock, so a blob being uploaded or mounted at that moment is never deleted under it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from openecr.services.images import ImageId, ImageService
from openecr.services.uploads import blob_lock_name
from openecr.storage.blobs import BlobStore
from openecr.storage.metadata.store import MetadataStore

__all__ = ["GarbageCollector", "GcReport"]

log = logging.getLogger(__name__)

_ORPHAN_BATCH = 500
# Blobs deleted at once. Each deletion waits on its lock, a commit and a durable unlink, one
# after the other; several in flight share the commits' fsyncs (SQLite's group commit,
# PostgreSQL's WAL flushes) and the disk. Each holds two pooled connections on PostgreSQL.
_DELETE_PARALLELISM = 8


@dataclass
class GcReport:
    dry_run: bool
    uploads_purged: int = 0
    upload_bytes: int = 0
    images_deleted: int = 0
    links_removed: int = 0
    blobs_deleted: int = 0
    blob_bytes: int = 0
    orphan_files_deleted: int = 0
    orphan_bytes: int = 0
    seconds: float = 0.0
    deleted_digests: list[str] = field(default_factory=list)

    @property
    def bytes_reclaimed(self) -> int:
        return self.upload_bytes + self.blob_bytes + self.orphan_bytes

    def as_dict(self) -> dict[str, object]:
        return {
            "dryRun": self.dry_run,
            "uploadsPurged": self.uploads_purged,
            "imagesDeleted": self.images_deleted,
            "linksRemoved": self.links_removed,
            "blobsDeleted": self.blobs_deleted,
            "orphanFilesDeleted": self.orphan_files_deleted,
            "bytesReclaimed": self.bytes_reclaimed,
            "seconds": round(self.seconds, 3),
        }


class GarbageCollector:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        images: ImageService,
        *,
        grace_seconds: float = 3600.0,
        upload_expiry_seconds: float = 24 * 3600.0,
        delete_untagged: bool = False,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self._images = images
        self.grace_seconds = grace_seconds
        self.upload_expiry_seconds = upload_expiry_seconds
        self.delete_untagged = delete_untagged

    async def run(self, *, dry_run: bool = False) -> GcReport:
        started = time.monotonic()
        report = GcReport(dry_run=dry_run)
        now = time.time()
        cutoff = now - self.grace_seconds
        await self._purge_uploads(report, now - self.upload_expiry_seconds, dry_run)
        if self.delete_untagged:
            await self._delete_untagged(report, cutoff, dry_run)
        would_unlink = await self._unlink_unreferenced(report, cutoff, dry_run)
        await self._delete_unlinked_blobs(report, dry_run, would_unlink)
        await self._delete_orphan_files(report, cutoff, dry_run)
        report.seconds = time.monotonic() - started
        log.info("garbage collection: %s", report.as_dict())
        return report

    async def _purge_uploads(self, report: GcReport, before: float, dry_run: bool) -> None:
        async with self._store.read() as session:
            expired = await session.expired_uploads(before)
        known = {upload.upload_id for upload in expired}
        for upload in expired:
            report.uploads_purged += 1
            report.upload_bytes += upload.size_bytes
            if not dry_run:
                async with self._store.write() as session:
                    await session.delete_upload(upload.upload_id)
                await self._blobs.cancel_upload(upload.upload_id)
        # Upload files whose row is gone (a crash between the two deletions above).
        async for upload_id, modified in self._blobs.list_uploads():
            if upload_id in known or modified >= before:
                continue
            async with self._store.read() as session:
                if await session.get_upload(upload_id) is not None:
                    continue
            size = await self._blobs.upload_size(upload_id) or 0
            report.uploads_purged += 1
            report.upload_bytes += size
            if not dry_run:
                await self._blobs.cancel_upload(upload_id)

    async def _delete_untagged(self, report: GcReport, cutoff: float, dry_run: bool) -> None:
        async with self._store.read() as session:
            candidates = await session.untagged_unreferenced_images(cutoff)
        for registry_id, repository, digest in candidates:
            if dry_run:
                report.images_deleted += 1
                continue
            result = await self._images.batch_delete(
                registry_id, repository, [ImageId(digest=digest)]
            )
            report.images_deleted += len(result.deleted)

    async def _unlink_unreferenced(
        self, report: GcReport, cutoff: float, dry_run: bool
    ) -> set[tuple[str, str, str]]:
        """Removes old unreferenced links; a dry run returns those it would remove."""
        async with self._store.read() as session:
            links = await session.unreferenced_links(cutoff)
        if dry_run:
            report.links_removed += len(links)
            return set(links)
        for registry_id, repository, digest in links:
            async with self._store.write() as session:
                # Same lock a manifest push holds while it checks its blobs are linked.
                if await session.get_repository(registry_id, repository, for_update=True) is None:
                    continue
                if await session.delete_unreferenced_link(registry_id, repository, digest, cutoff):
                    report.links_removed += 1
        return set()

    async def _delete_unlinked_blobs(
        self, report: GcReport, dry_run: bool, would_unlink: set[tuple[str, str, str]]
    ) -> None:
        async with self._store.read() as session:
            candidates = await session.unlinked_blobs()
            if dry_run and would_unlink:
                # Also count blobs whose every link the dry run would have removed.
                digests = sorted({digest for _, _, digest in would_unlink})
                holders = await session.link_holders(digests)
                candidates += [
                    (digest, size)
                    for digest, size in await session.blob_sizes(digests)
                    if {(r, n, digest) for r, n in holders.get(digest, set())} <= would_unlink
                ]
        if dry_run:
            report.blobs_deleted += len(candidates)
            report.blob_bytes += sum(size for _, size in candidates)
            return

        async def delete(candidate: tuple[str, int]) -> None:
            digest, size = candidate
            async with self._store.named_lock(blob_lock_name(digest)):
                async with self._store.write() as session:
                    if await session.blob_is_linked(digest):
                        return  # linked again since the candidate list was read
                    await session.delete_blob_row(digest)
                # The row is gone first: a crash now leaves an orphan file, found below.
                await self._blobs.delete(digest)
            report.blobs_deleted += 1
            report.blob_bytes += size
            report.deleted_digests.append(digest)

        await _for_each_concurrently(candidates, _DELETE_PARALLELISM, delete)

    async def _delete_orphan_files(self, report: GcReport, cutoff: float, dry_run: bool) -> None:
        batch: list[str] = []
        async for digest in self._blobs.list_digests():
            batch.append(digest)
            if len(batch) >= _ORPHAN_BATCH:
                await self._delete_orphans(batch, report, cutoff, dry_run)
                batch = []
        if batch:
            await self._delete_orphans(batch, report, cutoff, dry_run)

    async def _delete_orphans(
        self, digests: list[str], report: GcReport, cutoff: float, dry_run: bool
    ) -> None:
        async with self._store.read() as session:
            known = await session.known_blobs(digests)
        for digest in digests:
            if digest in known:
                continue
            async with self._store.named_lock(blob_lock_name(digest)):
                info = await self._blobs.stat(digest)
                if info is None or (info.modified_at or 0.0) >= cutoff:
                    continue  # young: maybe published a moment ago, recorded any moment now
                async with self._store.read() as session:
                    if await session.known_blobs([digest]):
                        continue
                report.orphan_files_deleted += 1
                report.orphan_bytes += info.size
                if not dry_run:
                    await self._blobs.delete(digest)


ItemT = TypeVar("ItemT")


async def _for_each_concurrently(
    items: Iterable[ItemT], limit: int, action: Callable[[ItemT], Awaitable[None]]
) -> None:
    """Runs ``action`` on every item, ``limit`` at a time; the first failure cancels the
    rest and is raised."""
    remaining = iter(items)

    async def worker() -> None:
        for item in remaining:  # shared: each item goes to the first free worker
            await action(item)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(limit):
                group.create_task(worker())
    except ExceptionGroup as failures:
        raise failures.exceptions[0] from None
