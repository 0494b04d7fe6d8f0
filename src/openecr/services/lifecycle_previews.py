"""StartLifecyclePolicyPreview / GetLifecyclePolicyPreview: the lifecycle engine, dry run.

A preview evaluates a policy against a snapshot of the repository in the background and
stores its results in the database, where any replica can page through them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from openecr.errors import (
    LifecyclePolicyNotFoundError,
    LifecyclePolicyPreviewInProgressError,
    LifecyclePolicyPreviewNotFoundError,
)
from openecr.services.images import ImageId
from openecr.services.lifecycle import ImageFacts, evaluate_lifecycle_policy, parse_lifecycle_policy
from openecr.services.repositories import require_repository
from openecr.storage.metadata.records import LifecyclePreviewRecord
from openecr.storage.metadata.store import MetadataStore

__all__ = ["LifecyclePreviewService", "PreviewPage", "expirations_for_repository"]

log = logging.getLogger(__name__)

# A preview runs in the process that started it; if that process dies, the preview would
# stay IN_PROGRESS forever. One still running after this long is reported as FAILED.
STALE_PREVIEW_SECONDS = 600.0


def _current_status(preview: LifecyclePreviewRecord, now: float) -> str:
    if preview.status == "IN_PROGRESS" and now - preview.started_at > STALE_PREVIEW_SECONDS:
        return "FAILED"
    return preview.status


@dataclass(frozen=True, slots=True)
class PreviewPage:
    preview: LifecyclePreviewRecord
    results: list[dict[str, Any]]
    expiring_total: int
    next_offset: int | None


async def expirations_for_repository(
    store: MetadataStore, registry_id: str, repository: str, policy_text: str, now: datetime
) -> list[dict[str, Any]]:
    """What the policy would expire now, as preview results (oldest first).

    Images that a manifest list or index references are never expired while it exists, so
    they are evaluated (they count toward the rules) but not reported.
    """
    policy = parse_lifecycle_policy(policy_text)
    async with store.read() as session:
        summaries = await session.list_image_summaries(
            registry_id, repository, after_digest=None, limit=None
        )
        tags = await session.all_tags(registry_id, repository)
        protected = await session.manifests_referenced_by_indexes(registry_id, repository)
    facts = [
        ImageFacts(
            digest=s.digest,
            tags=tuple(tags.get(s.digest, ())),
            pushed_at=datetime.fromtimestamp(s.pushed_at, UTC),
        )
        for s in summaries
    ]
    return [
        {
            "imageDigest": expiration.image.digest,
            "imageTags": list(expiration.image.tags),
            "imagePushedAt": expiration.image.pushed_at.timestamp(),
            "appliedRulePriority": expiration.rule_priority,
        }
        for expiration in evaluate_lifecycle_policy(policy, facts, now)
        if expiration.image.digest not in protected
    ]


class LifecyclePreviewService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._running: set[asyncio.Task[None]] = set()

    async def start(
        self, registry_id: str, repository: str, policy_text: str | None
    ) -> LifecyclePreviewRecord:
        async with self._store.write() as session:
            repo = await require_repository(session, registry_id, repository, for_update=True)
            text = policy_text if policy_text is not None else repo.lifecycle_policy_text
            if text is None:
                raise LifecyclePolicyNotFoundError(
                    f"Lifecycle policy does not exist for the repository with name "
                    f"'{repository}' in the registry with id '{registry_id}'"
                )
            parse_lifecycle_policy(text)
            existing = await session.get_lifecycle_preview(registry_id, repository)
            if existing is not None and _current_status(existing, time.time()) == "IN_PROGRESS":
                raise LifecyclePolicyPreviewInProgressError(
                    f"A lifecycle policy preview is already in progress for the repository "
                    f"with name '{repository}' in the registry with id '{registry_id}'"
                )
            preview = LifecyclePreviewRecord(
                registry_id, repository, text, "IN_PROGRESS", round(time.time(), 3)
            )
            await session.save_lifecycle_preview(preview)
        task = asyncio.get_running_loop().create_task(self._run(preview))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return preview

    async def _run(self, preview: LifecyclePreviewRecord) -> None:
        status, results = "COMPLETE", None
        try:
            expiring = await expirations_for_repository(
                self._store,
                preview.registry_id,
                preview.repository_name,
                preview.policy_text,
                datetime.now(UTC),
            )
            results = json.dumps(expiring)
        except Exception:
            log.exception("lifecycle preview of %s failed", preview.repository_name)
            status = "FAILED"
        async with self._store.write() as session:
            current = await session.get_lifecycle_preview(
                preview.registry_id, preview.repository_name
            )
            if current is not None and current.started_at == preview.started_at:
                await session.save_lifecycle_preview(
                    LifecyclePreviewRecord(
                        preview.registry_id,
                        preview.repository_name,
                        preview.policy_text,
                        status,
                        preview.started_at,
                        results,
                    )
                )

    async def get(
        self,
        registry_id: str,
        repository: str,
        *,
        image_ids: Sequence[ImageId] | None,
        tag_status: str | None,
        offset: int,
        limit: int,
    ) -> PreviewPage:
        async with self._store.read() as session:
            await require_repository(session, registry_id, repository)
            preview = await session.get_lifecycle_preview(registry_id, repository)
        if preview is None:
            raise LifecyclePolicyPreviewNotFoundError(
                f"There is no lifecycle policy preview for the repository with name "
                f"'{repository}' in the registry with id '{registry_id}'"
            )
        status = _current_status(preview, time.time())
        if status != preview.status:
            preview = dataclasses.replace(preview, status=status)
        results: list[dict[str, Any]] = json.loads(preview.results or "[]")
        total = len(results)
        if image_ids:
            results = [
                r
                for r in results
                if any(
                    (i.digest is None or i.digest == r["imageDigest"])
                    and (i.tag is None or i.tag in r["imageTags"])
                    for i in image_ids
                )
            ]
        if tag_status == "TAGGED":
            results = [r for r in results if r["imageTags"]]
        elif tag_status == "UNTAGGED":
            results = [r for r in results if not r["imageTags"]]
        page = results[offset : offset + limit]
        next_offset = offset + limit if offset + limit < len(results) else None
        return PreviewPage(preview, page, total, next_offset)

    async def wait_idle(self) -> None:
        """Waits for running previews (used at shutdown)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
