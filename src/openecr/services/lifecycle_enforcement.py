"""Lifecycle enforcement: expires the images each repository's policy selects.

The same engine as the preview (``expirations_for_repository``) decides; images are then
deleted as BatchDeleteImage deletes them (by digest, with all their tags), so an image a
manifest list still references is never removed.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from openecr.services.images import ImageService
from openecr.services.lifecycle_previews import expirations_for_repository
from openecr.storage.metadata.store import MetadataStore

__all__ = ["ExpiredImage", "LifecycleEnforcer", "LifecycleRunReport"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExpiredImage:
    registry_id: str
    repository_name: str
    digest: str
    tags: tuple[str, ...]
    rule_priority: int


@dataclass
class LifecycleRunReport:
    dry_run: bool
    repositories: int = 0
    expired: list[ExpiredImage] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "dryRun": self.dry_run,
            "repositoriesEvaluated": self.repositories,
            "expiredImages": [
                {
                    "repositoryName": e.repository_name,
                    "imageDigest": e.digest,
                    "imageTags": list(e.tags),
                    "appliedRulePriority": e.rule_priority,
                }
                for e in self.expired
            ],
            "failures": self.failures,
        }


class LifecycleEnforcer:
    def __init__(self, store: MetadataStore, images: ImageService) -> None:
        self._store = store
        self._images = images

    async def run(
        self,
        *,
        repository: str | None = None,
        registry_id: str | None = None,
        dry_run: bool = False,
    ) -> LifecycleRunReport:
        report = LifecycleRunReport(dry_run=dry_run)
        async with self._store.read() as session:
            targets = await session.repositories_with_lifecycle_policies()
        for target_registry, name, policy_text in targets:
            if repository is not None and name != repository:
                continue
            if registry_id is not None and target_registry != registry_id:
                continue
            report.repositories += 1
            await self._enforce(report, target_registry, name, policy_text, dry_run)
        return report

    async def _enforce(
        self,
        report: LifecycleRunReport,
        registry_id: str,
        repository: str,
        policy: str,
        dry_run: bool,
    ) -> None:
        now = datetime.now(UTC)
        expirations = await expirations_for_repository(
            self._store, registry_id, repository, policy, now
        )
        for expiration in expirations:
            expired = ExpiredImage(
                registry_id,
                repository,
                expiration.image.digest,
                expiration.image.tags,
                expiration.rule_priority,
            )
            if not dry_run:
                outcome = await self._images.expire_if_unchanged(
                    registry_id, repository, expired.digest, expired.tags
                )
                if outcome is None:
                    log.info(
                        "lifecycle spared %s@%s: it changed since it was evaluated",
                        repository,
                        expired.digest,
                    )
                    continue
                if outcome.failures:
                    reason = outcome.failures[0].reason
                    report.failures.append(f"{repository}@{expired.digest}: {reason}")
                    continue
            log.info(
                "lifecycle %s %s@%s (tags %s) by rule %d",
                "would expire" if dry_run else "expired",
                repository,
                expired.digest,
                ",".join(expired.tags) or "-",
                expired.rule_priority,
            )
            report.expired.append(expired)
        if not dry_run:
            async with self._store.write() as session:
                await session.update_repository(
                    registry_id, repository, lifecycle_evaluated_at=round(time.time(), 3)
                )
