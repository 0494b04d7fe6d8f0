"""The set of domain services one server process runs, built once at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from openecr.config import Settings
from openecr.services.auth_tokens import RegistryTokens
from openecr.services.credentials import AccessKeys
from openecr.services.pull_through_cache import PullThroughCacheService
from openecr.services.registry import RegistryService
from openecr.services.repositories import RepositoryService
from openecr.storage.metadata.store import MetadataStore

__all__ = ["SERVICES", "Services"]


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: MetadataStore
    access_keys: AccessKeys
    tokens: RegistryTokens
    repositories: RepositoryService
    registry: RegistryService
    pull_through_cache: PullThroughCacheService

    @property
    def public_url(self) -> str:
        return self.settings.effective_public_url

    @classmethod
    async def start(cls, settings: Settings) -> Services:
        store = await MetadataStore.open(settings.effective_database_url)
        return cls(
            settings=settings,
            store=store,
            access_keys=AccessKeys(store),
            tokens=await RegistryTokens.load(store),
            repositories=RepositoryService(store),
            registry=RegistryService(store),
            pull_through_cache=PullThroughCacheService(store),
        )

    async def close(self) -> None:
        await self.store.close()


SERVICES = web.AppKey("services", Services)
