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
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import msgspec

from openecr.errors import (
    LifecyclePolicyNotFoundError,
    LifecyclePolicyPreviewInProgressError,
    LifecyclePolicyPreviewNotFoundError,
)
from openecr.services.images import ImageId
from openecr.services.lifecycle import (
    Expiration,
    ImageFacts,
    LifecyclePolicy,
    evaluate_lifecycle_policy,
    parse_lifecycle_policy,
)
from openecr.services.repositories import require_repository
from openecr.storage.metadata.records import LifecyclePreviewRecord
from openecr.storage.metadata.store import MetadataStore

__all__ = [
    "LifecyclePreviewService",
    "PreviewPage",
    "PreviewResult",
    "expirations_for_repository",
]

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
    results: list[PreviewResult]
    expiring_total: int
    next_offset: int | None


class PreviewResult(NamedTuple):
    """One image a preview expires."""

    image_digest: str
    image_tags: tuple[str, ...]
    image_pushed_at: float
    applied_rule_priority: int


async def expirations_for_repository(
    store: MetadataStore, registry_id: str, repository: str, policy_text: str, now: datetime
) -> list[Expiration]:
    """What the policy would expire now, oldest first; ``pushed_at`` in epoch seconds.

    Images that a manifest list or index references are never expired while it exists, so
    they are evaluated (they count toward the rules) but not reported. The evaluation runs
    in a worker thread: over a large repository it takes long enough to stall every other
    request if it ran on the event loop.
    """
    policy = parse_lifecycle_policy(policy_text)
    async with store.read() as session:
        push_times = await session.push_times(registry_id, repository)
        tags = await session.all_tags(registry_id, repository)
        protected = await session.manifests_referenced_by_indexes(registry_id, repository)
    return await asyncio.to_thread(_expirations, policy, push_times, tags, protected, now)


def _expirations(
    policy: LifecyclePolicy,
    push_times: Sequence[Sequence[Any]],
    tags: dict[str, list[str]],
    protected: set[str],
    now: datetime,
) -> list[Expiration]:
    no_tags: tuple[str, ...] = ()
    # Epoch seconds rather than datetimes: the engine takes either (see its module).
    facts = [
        ImageFacts(digest, tuple(tags[digest]) if digest in tags else no_tags, pushed_at)
        for digest, pushed_at in push_times
    ]
    expirations = evaluate_lifecycle_policy(policy, facts, now.timestamp())
    if not protected:
        return expirations
    return [e for e in expirations if e.image.digest not in protected]


# A preview's results as stored (a JSON array per image) and kept decoded: plain tuples,
# the cheapest to build by the 100,000; PreviewResult names them for the page served.
_ResultRow = tuple[str, tuple[str, ...], float, int]


def _preview_results(expirations: list[Expiration]) -> tuple[list[_ResultRow], str]:
    """The result rows and their stored JSON."""
    # expirations_for_repository evaluates with epoch seconds.
    rows = [
        (e.image.digest, e.image.tags, cast(float, e.image.pushed_at), e.rule_priority)
        for e in expirations
    ]
    return rows, msgspec.json.encode(rows).decode()


def _decode_results(text: str) -> list[_ResultRow]:
    try:
        return msgspec.json.decode(text, type=list[_ResultRow])
    except msgspec.ValidationError:
        # Stored by an earlier version, as objects.
        return [
            (
                r["imageDigest"],
                tuple(r["imageTags"]),
                r["imagePushedAt"],
                r["appliedRulePriority"],
            )
            for r in json.loads(text)
        ]


# Decoded results of the previews read last, by (registry, repository, start time): a
# client pages through a preview of 100,000 images 100 results at a time, and decoding the
# stored JSON each time took a quarter of a second a page.
_DECODED_PREVIEWS_KEPT = 8
_PreviewKey = tuple[str, str, float]


class LifecyclePreviewService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._running: set[asyncio.Task[None]] = set()
        self._decoded: OrderedDict[_PreviewKey, list[_ResultRow]] = OrderedDict()

    def _remember(self, key: _PreviewKey, results: list[_ResultRow]) -> None:
        self._decoded[key] = results
        self._decoded.move_to_end(key)
        while len(self._decoded) > _DECODED_PREVIEWS_KEPT:
            self._decoded.popitem(last=False)

    async def _results(self, preview: LifecyclePreviewRecord) -> list[_ResultRow]:
        """The results of ``preview`` (read without them), from memory when decoded before."""
        if preview.status != "COMPLETE":
            return []
        key = (preview.registry_id, preview.repository_name, preview.started_at)
        results = self._decoded.get(key)
        if results is None:
            async with self._store.read() as session:
                stored = await session.get_lifecycle_preview(
                    preview.registry_id, preview.repository_name
                )
            if stored is None or stored.started_at != preview.started_at or not stored.results:
                return []  # replaced by a newer preview meanwhile: this one has no results
            results = await asyncio.to_thread(_decode_results, stored.results)
            self._remember(key, results)
        return results

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
        status = "COMPLETE"
        results: list[_ResultRow] | None = None
        stored: str | None = None
        try:
            expiring = await expirations_for_repository(
                self._store,
                preview.registry_id,
                preview.repository_name,
                preview.policy_text,
                datetime.now(UTC),
            )
            results, stored = await asyncio.to_thread(_preview_results, expiring)
        except Exception:
            log.exception("lifecycle preview of %s failed", preview.repository_name)
            status = "FAILED"
        async with self._store.write() as session:
            current = await session.get_lifecycle_preview(
                preview.registry_id, preview.repository_name
            )
            if current is not None and current.started_at == preview.started_at:
                if results is not None:
                    key = (preview.registry_id, preview.repository_name, preview.started_at)
                    self._remember(key, results)
                await session.save_lifecycle_preview(
                    LifecyclePreviewRecord(
                        preview.registry_id,
                        preview.repository_name,
                        preview.policy_text,
                        status,
                        preview.started_at,
                        stored,
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
            preview = await session.get_lifecycle_preview(
                registry_id, repository, with_results=False
            )
        if preview is None:
            raise LifecyclePolicyPreviewNotFoundError(
                f"There is no lifecycle policy preview for the repository with name "
                f"'{repository}' in the registry with id '{registry_id}'"
            )
        status = _current_status(preview, time.time())
        if status != preview.status:
            preview = dataclasses.replace(preview, status=status)
        results = await self._results(preview)
        total = len(results)
        if image_ids:
            results = [
                (digest, tags, pushed_at, priority)
                for digest, tags, pushed_at, priority in results
                if any(
                    (i.digest is None or i.digest == digest) and (i.tag is None or i.tag in tags)
                    for i in image_ids
                )
            ]
        if tag_status == "TAGGED":
            results = [row for row in results if row[1]]
        elif tag_status == "UNTAGGED":
            results = [row for row in results if not row[1]]
        page = [PreviewResult(*row) for row in results[offset : offset + limit]]
        next_offset = offset + limit if offset + limit < len(results) else None
        return PreviewPage(preview, page, total, next_offset)

    async def wait_idle(self) -> None:
        """Waits for running previews (used at shutdown)."""
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
