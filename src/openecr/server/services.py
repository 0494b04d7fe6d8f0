"""The set of domain services one server process runs, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from openecr.config import Settings
from openecr.services.auth_tokens import RegistryTokens
from openecr.services.credentials import AccessKeys
from openecr.services.garbage_collection import GarbageCollector
from openecr.services.images import ImageService
from openecr.services.lifecycle_enforcement import LifecycleEnforcer
from openecr.services.lifecycle_previews import LifecyclePreviewService
from openecr.services.pull_through_cache import PullThroughCacheService
from openecr.services.registry import RegistryService
from openecr.services.repositories import RepositoryService
from openecr.services.uploads import UploadService
from openecr.storage.blobs import BlobStore, FilesystemBlobStore
from openecr.storage.blobs.s3 import S3BlobStore
from openecr.storage.metadata.store import MetadataStore

__all__ = ["MAX_BODY", "SERVICES", "Services"]


def open_blob_store(settings: Settings) -> BlobStore:
    """The filesystem under the data directory, or S3 with --blob-store s3://..."""
    if settings.blob_store is None:
        return FilesystemBlobStore(settings.data_dir)
    return S3BlobStore.from_url(
        settings.blob_store,
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=settings.s3_secret_access_key,
    )


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: MetadataStore
    access_keys: AccessKeys
    tokens: RegistryTokens
    repositories: RepositoryService
    registry: RegistryService
    pull_through_cache: PullThroughCacheService
    blobs: BlobStore
    uploads: UploadService
    images: ImageService
    lifecycle_previews: LifecyclePreviewService
    lifecycle: LifecycleEnforcer
    gc: GarbageCollector

    @property
    def public_url(self) -> str:
        return self.settings.effective_public_url

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        store = await MetadataStore.open(
            settings.effective_database_url, pool_size=settings.database_pool_size
        )
        blobs = open_blob_store(settings)
        images = ImageService(store)
        return cls(
            settings=settings,
            store=store,
            access_keys=AccessKeys(store),
            tokens=await RegistryTokens.load(store),
            repositories=RepositoryService(store),
            registry=RegistryService(store),
            pull_through_cache=PullThroughCacheService(store),
            blobs=blobs,
            uploads=UploadService(store, blobs, renew_links_after=settings.gc_grace / 2),
            images=images,
            lifecycle_previews=LifecyclePreviewService(store),
            lifecycle=LifecycleEnforcer(store, images),
            gc=GarbageCollector(
                store,
                blobs,
                images,
                grace_seconds=settings.gc_grace,
                upload_expiry_seconds=settings.upload_expiry,
                delete_untagged=settings.gc_untagged,
            ),
        )

    async def presigned_blob_url(self, digest: str, expires_in: int) -> str | None:
        """A direct S3 URL for the blob when --blob-redirect is on, else None."""
        if not self.settings.blob_redirect or not isinstance(self.blobs, S3BlobStore):
            return None
        return await self.blobs.presigned_get_url(digest, expires_in)

    async def close(self) -> None:
        await self.lifecycle_previews.wait_idle()
        await self.images.flush_pull_times()
        await self.store.close()
        if isinstance(self.blobs, S3BlobStore):
            await self.blobs.aclose()


SERVICES = web.AppKey("services", Services)
MAX_BODY = web.AppKey("max_body", int)
