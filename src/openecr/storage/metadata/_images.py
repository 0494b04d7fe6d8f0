"""Queries on images, their tags and references, repository layer links, blobs and uploads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa

from openecr.storage.metadata import _schema as t
from openecr.storage.metadata._base import (
    DuplicateKeyError,
    QueryBase,
    cached,
    record_from_row,
    select_records,
)
from openecr.storage.metadata.records import (
    ImageRecord,
    ImageSummary,
    LayerRecord,
    UploadRecord,
)

__all__ = ["ImageQueries"]

ImageRecordT = TypeVar("ImageRecordT", ImageRecord, ImageSummary)

_NO_LIMIT = 2**31 - 1

# Advisory lock keys are (namespace, hash of name); this namespace holds the tag locks.
_TAG_LOCK_NAMESPACE = 7301947


def _in_repository(table: sa.Table, registry_id: str, repository: str) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.registry_id == registry_id, table.c.repository_name == repository)


def _in_bound_repository(table: sa.Table) -> sa.ColumnElement[bool]:
    """The repository condition of cached statements: parameters registry_id, repository."""
    return sa.and_(
        table.c.registry_id == sa.bindparam("registry_id"),
        table.c.repository_name == sa.bindparam("repository"),
    )


class ImageQueries(QueryBase):
    # -- images ---------------------------------------------------------------------------

    async def get_image(self, registry_id: str, repository: str, digest: str) -> ImageRecord | None:
        statement = cached(
            "get_image",
            lambda: select_records(t.images, ImageRecord).where(
                _in_bound_repository(t.images), t.images.c.digest == sa.bindparam("digest")
            ),
        )
        parameters = {"registry_id": registry_id, "repository": repository, "digest": digest}
        row = (await self._execute(statement, parameters)).first()
        return None if row is None else record_from_row(ImageRecord, row)

    async def get_images(
        self, registry_id: str, repository: str, digests: Sequence[str]
    ) -> dict[str, ImageRecord]:
        return await self._images_as(ImageRecord, registry_id, repository, digests)

    async def get_image_summaries(
        self, registry_id: str, repository: str, digests: Sequence[str]
    ) -> dict[str, ImageSummary]:
        """Like ``get_images``, without the manifests."""
        return await self._images_as(ImageSummary, registry_id, repository, digests)

    async def _images_as(
        self, record: type[ImageRecordT], registry_id: str, repository: str, digests: Sequence[str]
    ) -> dict[str, ImageRecordT]:
        """The named images of the repository as ``record``s, by digest."""
        statement = cached(
            f"images_as:{record.__name__}",
            lambda: select_records(t.images, record).where(
                _in_bound_repository(t.images),
                t.images.c.digest.in_(sa.bindparam("digests", expanding=True)),
            ),
        )
        parameters = {
            "registry_id": registry_id,
            "repository": repository,
            "digests": list(digests),
        }
        rows = await self._execute(statement, parameters)
        return {row.digest: record_from_row(record, row) for row in rows}

    async def digest_for_tag(self, registry_id: str, repository: str, tag: str) -> str | None:
        statement = cached(
            "digest_for_tag",
            lambda: sa.select(t.image_tags.c.digest).where(
                _in_bound_repository(t.image_tags), t.image_tags.c.tag == sa.bindparam("tag")
            ),
        )
        parameters = {"registry_id": registry_id, "repository": repository, "tag": tag}
        value = await self._scalar(statement, parameters)
        return None if value is None else str(value)

    async def digests_for_tags(
        self, registry_id: str, repository: str, tags: Sequence[str]
    ) -> dict[str, str]:
        statement = cached(
            "digests_for_tags",
            lambda: sa.select(t.image_tags.c.tag, t.image_tags.c.digest).where(
                _in_bound_repository(t.image_tags),
                t.image_tags.c.tag.in_(sa.bindparam("tags", expanding=True)),
            ),
        )
        parameters = {"registry_id": registry_id, "repository": repository, "tags": list(tags)}
        rows = await self._execute(statement, parameters)
        return {row.tag: row.digest for row in rows}

    async def tags_by_digest(
        self, registry_id: str, repository: str, digests: Sequence[str]
    ) -> dict[str, list[str]]:
        """Each image's tags, oldest tagging first."""
        statement = cached(
            "tags_by_digest",
            lambda: (
                sa.select(t.image_tags.c.digest, t.image_tags.c.tag)
                .where(
                    _in_bound_repository(t.image_tags),
                    t.image_tags.c.digest.in_(sa.bindparam("digests", expanding=True)),
                )
                .order_by(t.image_tags.c.tagged_at, t.image_tags.c.tag)
            ),
        )
        parameters = {
            "registry_id": registry_id,
            "repository": repository,
            "digests": list(digests),
        }
        rows = await self._execute(statement, parameters)
        result: dict[str, list[str]] = {digest: [] for digest in digests}
        for row in rows:
            result[row.digest].append(row.tag)
        return result

    async def all_tags(self, registry_id: str, repository: str) -> dict[str, list[str]]:
        """Every tag of the repository, grouped by image digest, each image's in the order
        they were set (then by name)."""
        statement = cached(
            "all_tags",
            lambda: sa.select(
                t.image_tags.c.digest, t.image_tags.c.tag, t.image_tags.c.tagged_at
            ).where(_in_bound_repository(t.image_tags)),
        )
        parameters = {"registry_id": registry_id, "repository": repository}
        rows = await self._plain_rows(statement, parameters)
        # Grouped here rather than sorted by the database: most images have one tag, and
        # sorting a large repository's tags spilled to disk on PostgreSQL.
        result: dict[str, list[str]] = {}
        several: set[str] = set()
        for digest, tag, _ in rows:
            tags = result.get(digest)
            if tags is None:
                result[digest] = [tag]
            else:
                tags.append(tag)
                several.add(digest)
        if several:
            dated: dict[str, list[tuple[float, str]]] = {digest: [] for digest in several}
            for digest, tag, tagged_at in rows:
                if digest in dated:
                    dated[digest].append((tagged_at, tag))
            for digest, pairs in dated.items():
                result[digest] = [tag for _, tag in sorted(pairs)]
        return result

    async def push_times(self, registry_id: str, repository: str) -> Sequence[Sequence[Any]]:
        """(digest, pushed_at) of every image of the repository, in no particular order."""
        statement = cached(
            "push_times",
            lambda: sa.select(t.images.c.digest, t.images.c.pushed_at).where(
                _in_bound_repository(t.images)
            ),
        )
        parameters = {"registry_id": registry_id, "repository": repository}
        return await self._plain_rows(statement, parameters)

    async def manifests_referenced_by_indexes(self, registry_id: str, repository: str) -> set[str]:
        rows = await self._execute(
            sa.select(t.image_references.c.referenced_digest)
            .where(
                _in_repository(t.image_references, registry_id, repository),
                t.image_references.c.is_manifest.is_(True),
            )
            .distinct()
        )
        return {row.referenced_digest for row in rows}

    async def insert_image(self, image: ImageRecord) -> None:
        await self._insert(
            t.images,
            {
                "registry_id": image.registry_id,
                "repository_name": image.repository_name,
                "digest": image.digest,
                "manifest": image.manifest,
                "media_type": image.media_type,
                "artifact_media_type": image.artifact_media_type,
                "size_bytes": image.size_bytes,
                "pushed_at": image.pushed_at,
                "last_pulled_at": image.last_pulled_at,
                "subject_digest": image.subject_digest,
                "artifact_type": image.artifact_type,
            },
        )

    async def change_image_count(self, registry_id: str, repository: str, change: int) -> int:
        """Adds ``change`` to the repository's image count and returns the new count.

        The update locks the repository row until the transaction ends, so pushes call this
        last, just before their commit, to keep concurrent pushes apart only briefly.
        """
        statement = cached(
            "count_image",
            lambda: (
                t.repositories.update()
                .where(
                    # Not the column names: UPDATE reserves those for its SET values.
                    t.repositories.c.registry_id == sa.bindparam("in_registry"),
                    t.repositories.c.name == sa.bindparam("in_repository"),
                )
                .values(image_count=t.repositories.c.image_count + sa.bindparam("change"))
                .returning(t.repositories.c.image_count)
            ),
        )
        parameters = {"in_registry": registry_id, "in_repository": repository, "change": change}
        return int(await self._scalar(statement, parameters) or 0)

    async def lock_tag(self, registry_id: str, repository: str, tag: str) -> None:
        """Serialises the writers of one tag until the transaction ends (PostgreSQL; on
        SQLite every writer is serialised already)."""
        if self._conn.dialect.name != "postgresql":
            return
        statement = cached(
            "lock_tag",
            lambda: sa.select(
                sa.func.pg_advisory_xact_lock(
                    sa.bindparam("namespace", type_=sa.Integer),
                    sa.func.hashtext(sa.bindparam("name", type_=sa.Text)),
                )
            ),
        )
        name = f"tag:{registry_id}/{repository}:{tag}"
        await self._execute(statement, {"namespace": _TAG_LOCK_NAMESPACE, "name": name})

    async def set_tag(
        self, registry_id: str, repository: str, tag: str, digest: str, now: float
    ) -> None:
        """Points ``tag`` at ``digest``, moving it from any other image."""
        statement = cached(
            "move_tag",
            lambda: (
                t.image_tags.update()
                .where(
                    # Not the column names: UPDATE reserves those for its SET values.
                    t.image_tags.c.registry_id == sa.bindparam("in_registry"),
                    t.image_tags.c.repository_name == sa.bindparam("in_repository"),
                    t.image_tags.c.tag == sa.bindparam("in_tag"),
                )
                .values(digest=sa.bindparam("new_digest"), tagged_at=sa.bindparam("new_time"))
            ),
        )
        parameters = {
            "in_registry": registry_id,
            "in_repository": repository,
            "in_tag": tag,
            "new_digest": digest,
            "new_time": now,
        }
        updated = await self._execute(statement, parameters)
        if updated.rowcount == 0:
            await self._insert(
                t.image_tags,
                {
                    "registry_id": registry_id,
                    "repository_name": repository,
                    "tag": tag,
                    "digest": digest,
                    "tagged_at": now,
                },
            )

    async def delete_tag(self, registry_id: str, repository: str, tag: str) -> None:
        await self._execute(
            t.image_tags.delete().where(
                _in_repository(t.image_tags, registry_id, repository), t.image_tags.c.tag == tag
            )
        )

    async def count_tags(self, registry_id: str, repository: str, digest: str) -> int:
        statement = cached(
            "count_tags",
            lambda: (
                sa.select(sa.func.count())
                .select_from(t.image_tags)
                .where(
                    _in_bound_repository(t.image_tags),
                    t.image_tags.c.digest == sa.bindparam("digest"),
                )
            ),
        )
        parameters = {"registry_id": registry_id, "repository": repository, "digest": digest}
        return int(await self._scalar(statement, parameters) or 0)

    async def delete_image(self, registry_id: str, repository: str, digest: str) -> None:
        """Deletes the image with its tags and its reference rows."""
        await self._execute(
            t.image_tags.delete().where(
                _in_repository(t.image_tags, registry_id, repository),
                t.image_tags.c.digest == digest,
            )
        )
        await self._execute(
            t.image_references.delete().where(
                _in_repository(t.image_references, registry_id, repository),
                t.image_references.c.image_digest == digest,
            )
        )
        deleted = await self._execute(
            t.images.delete().where(
                _in_repository(t.images, registry_id, repository), t.images.c.digest == digest
            )
        )
        if deleted.rowcount:
            await self.change_image_count(registry_id, repository, -deleted.rowcount)

    async def add_image_references(
        self,
        registry_id: str,
        repository: str,
        image_digest: str,
        references: Iterable[tuple[str, bool]],
    ) -> None:
        rows = [
            {
                "registry_id": registry_id,
                "repository_name": repository,
                "image_digest": image_digest,
                "referenced_digest": digest,
                "is_manifest": is_manifest,
            }
            for digest, is_manifest in dict(references).items()
        ]
        if rows:
            await self._execute(cached("insert:image_references", t.image_references.insert), rows)

    async def indexes_referencing(
        self, registry_id: str, repository: str, manifest_digest: str
    ) -> list[str]:
        rows = await self._execute(
            sa.select(t.image_references.c.image_digest).where(
                _in_repository(t.image_references, registry_id, repository),
                t.image_references.c.referenced_digest == manifest_digest,
                t.image_references.c.is_manifest.is_(True),
            )
        )
        return [row.image_digest for row in rows]

    async def is_blob_referenced_in_repository(
        self, registry_id: str, repository: str, digest: str
    ) -> bool:
        found = await self._scalar(
            sa.select(t.image_references.c.image_digest)
            .where(
                _in_repository(t.image_references, registry_id, repository),
                t.image_references.c.referenced_digest == digest,
            )
            .limit(1)
        )
        return found is not None

    def _tag_status_filter(self, query: sa.Select[Any], tag_status: str | None) -> sa.Select[Any]:
        tagged = sa.exists().where(
            t.image_tags.c.registry_id == t.images.c.registry_id,
            t.image_tags.c.repository_name == t.images.c.repository_name,
            t.image_tags.c.digest == t.images.c.digest,
        )
        if tag_status == "TAGGED":
            return query.where(tagged)
        if tag_status == "UNTAGGED":
            return query.where(~tagged)
        return query

    async def list_image_summaries(
        self,
        registry_id: str,
        repository: str,
        *,
        after_digest: str | None,
        limit: int | None,
        tag_status: str | None = None,
    ) -> list[ImageSummary]:
        """Images ordered by digest, strictly after ``after_digest`` (keyset pagination)."""

        def build() -> sa.Select[Any]:
            query = select_records(t.images, ImageSummary).where(_in_bound_repository(t.images))
            if after_digest is not None:
                query = query.where(t.images.c.digest > sa.bindparam("after"))
            query = self._tag_status_filter(query, tag_status).order_by(t.images.c.digest)
            return query.limit(sa.bindparam("limit")) if limit is not None else query

        statement = cached(
            f"list_image_summaries:{after_digest is None}:{tag_status}:{limit is None}", build
        )
        parameters = {
            "registry_id": registry_id,
            "repository": repository,
            "after": after_digest,
            "limit": limit,
        }
        rows = await self._execute(statement, parameters)
        return [record_from_row(ImageSummary, row) for row in rows]

    async def list_image_ids(
        self,
        registry_id: str,
        repository: str,
        *,
        after: tuple[str, str] | None,
        limit: int,
        tag_status: str | None,
    ) -> list[tuple[str, str | None]]:
        """One (digest, tag) per tag and one (digest, None) per untagged image.

        Ordered by digest then tag, with an untagged image's empty tag first; ``after`` is
        the last (digest, tag or "") of the previous page.
        """

        def build() -> sa.Select[Any]:
            tag = sa.func.coalesce(t.image_tags.c.tag, "")
            joined = t.images.outerjoin(
                t.image_tags,
                sa.and_(
                    t.image_tags.c.registry_id == t.images.c.registry_id,
                    t.image_tags.c.repository_name == t.images.c.repository_name,
                    t.image_tags.c.digest == t.images.c.digest,
                ),
            )
            query = (
                sa.select(t.images.c.digest, t.image_tags.c.tag)
                .select_from(joined)
                .where(_in_bound_repository(t.images))
            )
            if tag_status == "TAGGED":
                query = query.where(t.image_tags.c.tag.is_not(None))
            elif tag_status == "UNTAGGED":
                query = query.where(t.image_tags.c.tag.is_(None))
            if after is not None:
                after_digest: sa.BindParameter[str] = sa.bindparam("after_digest")
                query = query.where(
                    sa.or_(
                        t.images.c.digest > after_digest,
                        sa.and_(t.images.c.digest == after_digest, tag > sa.bindparam("after_tag")),
                    )
                )
            # The order of the (digest, tag) index. A NULL tag (an untagged image) is never
            # beside a tag of the same image, so where NULLs sort does not matter.
            return query.order_by(t.images.c.digest, t.image_tags.c.tag).limit(
                sa.bindparam("limit")
            )

        statement = cached(f"list_image_ids:{after is None}:{tag_status}", build)
        parameters = {
            "registry_id": registry_id,
            "repository": repository,
            "after_digest": after[0] if after else None,
            "after_tag": after[1] if after else None,
            "limit": limit,
        }
        return [(digest, tag) for digest, tag in await self._plain_rows(statement, parameters)]

    async def list_tags(
        self, registry_id: str, repository: str, *, after: str | None, limit: int | None
    ) -> list[str]:
        """Tags in lexical order, those after ``after`` (a tag is never empty, so "" starts
        at the first), at most ``limit``."""
        statement = cached(
            "list_tags",
            lambda: (
                sa.select(t.image_tags.c.tag)
                .where(
                    _in_bound_repository(t.image_tags),
                    t.image_tags.c.tag > sa.bindparam("after"),
                )
                .order_by(t.image_tags.c.tag)
                .limit(sa.bindparam("limit", type_=sa.Integer))
            ),
        )
        parameters = {
            "registry_id": registry_id,
            "repository": repository,
            "after": after or "",
            # A LIMIT beyond any repository's tag count (it is an int4 on PostgreSQL).
            "limit": _NO_LIMIT if limit is None else limit,
        }
        return await self._scalars(statement, parameters)

    async def list_referrers(
        self, registry_id: str, repository: str, subject_digest: str
    ) -> list[ImageRecord]:
        rows = await self._execute(
            select_records(t.images, ImageRecord)
            .where(
                _in_repository(t.images, registry_id, repository),
                t.images.c.subject_digest == subject_digest,
            )
            .order_by(t.images.c.digest)
        )
        return [record_from_row(ImageRecord, row) for row in rows]

    async def record_pull_times(self, pulls: Iterable[tuple[str, str, str, float]]) -> None:
        """Sets lastRecordedPullTime for (registry, repository, digest, time) entries."""
        for registry_id, repository, digest, pulled_at in pulls:
            await self._execute(
                t.images.update()
                .where(
                    _in_repository(t.images, registry_id, repository),
                    t.images.c.digest == digest,
                )
                .values(last_pulled_at=pulled_at)
            )

    # -- blobs and their repository links -------------------------------------------------

    async def add_blob(self, digest: str, size: int, now: float) -> None:
        # Content-addressed: an existing row for the digest describes the same bytes.
        with contextlib.suppress(DuplicateKeyError):
            await self._insert(t.blobs, {"digest": digest, "size_bytes": size, "created_at": now})

    async def get_blob_size(self, digest: str) -> int | None:
        size = await self._scalar(sa.select(t.blobs.c.size_bytes).where(t.blobs.c.digest == digest))
        return None if size is None else int(size)

    async def get_layers(
        self, registry_id: str, repository: str, digests: Sequence[str]
    ) -> dict[str, LayerRecord]:
        statement = cached(
            "get_layers",
            lambda: select_records(t.repository_layers, LayerRecord).where(
                _in_bound_repository(t.repository_layers),
                t.repository_layers.c.digest.in_(sa.bindparam("digests", expanding=True)),
            ),
        )
        parameters = {
            "registry_id": registry_id,
            "repository": repository,
            "digests": list(digests),
        }
        rows = await self._execute(statement, parameters)
        return {row.digest: record_from_row(LayerRecord, row) for row in rows}

    async def link_layer(
        self,
        registry_id: str,
        repository: str,
        digest: str,
        size: int,
        media_type: str | None,
        now: float,
    ) -> None:
        """Makes a blob usable in a repository (or renews the link); a known media type is
        remembered."""
        try:
            await self._insert(
                t.repository_layers,
                {
                    "registry_id": registry_id,
                    "repository_name": repository,
                    "digest": digest,
                    "size_bytes": size,
                    "media_type": media_type,
                    "created_at": now,
                },
            )
        except DuplicateKeyError:
            # Linking again renews the link: garbage collection spares links younger than
            # its grace period, and this push is about to use the blob.
            values: dict[str, Any] = {"created_at": now}
            if media_type is not None:
                values["media_type"] = media_type
            await self._execute(
                t.repository_layers.update()
                .where(
                    _in_repository(t.repository_layers, registry_id, repository),
                    t.repository_layers.c.digest == digest,
                )
                .values(**values)
            )

    async def remember_layer_media_types(
        self, registry_id: str, repository: str, media_types: dict[str, str]
    ) -> None:
        """Records the media type of linked blobs that have none yet (one statement per
        media type, not per blob)."""
        by_type: dict[str, list[str]] = {}
        for digest, media_type in media_types.items():
            by_type.setdefault(media_type, []).append(digest)
        statement = cached(
            "remember_layer_media_types",
            lambda: (
                t.repository_layers.update()
                .where(
                    # Not the column names: UPDATE reserves those for its SET values.
                    t.repository_layers.c.registry_id == sa.bindparam("in_registry"),
                    t.repository_layers.c.repository_name == sa.bindparam("in_repository"),
                    t.repository_layers.c.digest.in_(sa.bindparam("digests", expanding=True)),
                    t.repository_layers.c.media_type.is_(None),
                )
                .values(media_type=sa.bindparam("new_media_type"))
            ),
        )
        for media_type, digests in by_type.items():
            await self._execute(
                statement,
                {
                    "in_registry": registry_id,
                    "in_repository": repository,
                    "digests": digests,
                    "new_media_type": media_type,
                },
            )

    async def renew_links(
        self, registry_id: str, repository: str, digests: Sequence[str], now: float
    ) -> None:
        await self._execute(
            t.repository_layers.update()
            .where(
                _in_repository(t.repository_layers, registry_id, repository),
                t.repository_layers.c.digest.in_(list(digests)),
            )
            .values(created_at=now)
        )

    async def unlink_layer(self, registry_id: str, repository: str, digest: str) -> bool:
        deleted = await self._execute(
            t.repository_layers.delete().where(
                _in_repository(t.repository_layers, registry_id, repository),
                t.repository_layers.c.digest == digest,
            )
        )
        return bool(deleted.rowcount)

    # -- garbage collection ---------------------------------------------------------------

    async def expired_uploads(self, updated_before: float) -> list[UploadRecord]:
        rows = await self._execute(
            select_records(t.uploads, UploadRecord).where(t.uploads.c.updated_at < updated_before)
        )
        return [record_from_row(UploadRecord, row) for row in rows]

    async def untagged_unreferenced_images(
        self, pushed_before: float
    ) -> list[tuple[str, str, str]]:
        """(registry, repository, digest) of untagged images no index references."""
        img = t.images
        tagged = sa.exists().where(
            t.image_tags.c.registry_id == img.c.registry_id,
            t.image_tags.c.repository_name == img.c.repository_name,
            t.image_tags.c.digest == img.c.digest,
        )
        referenced = sa.exists().where(
            t.image_references.c.registry_id == img.c.registry_id,
            t.image_references.c.repository_name == img.c.repository_name,
            t.image_references.c.referenced_digest == img.c.digest,
        )
        rows = await self._execute(
            sa.select(img.c.registry_id, img.c.repository_name, img.c.digest).where(
                img.c.pushed_at < pushed_before, ~tagged, ~referenced
            )
        )
        return [(row.registry_id, row.repository_name, row.digest) for row in rows]

    def _unreferenced_links(self, created_before: float) -> sa.Select[Any]:
        links = t.repository_layers
        referenced = sa.exists().where(
            t.image_references.c.registry_id == links.c.registry_id,
            t.image_references.c.repository_name == links.c.repository_name,
            t.image_references.c.referenced_digest == links.c.digest,
        )
        return sa.select(links.c.registry_id, links.c.repository_name, links.c.digest).where(
            links.c.created_at < created_before, ~referenced
        )

    async def unreferenced_links(self, created_before: float) -> list[tuple[str, str, str]]:
        """Blobs linked into a repository long ago that none of its images uses."""
        rows = await self._execute(self._unreferenced_links(created_before))
        return [(row.registry_id, row.repository_name, row.digest) for row in rows]

    async def delete_unreferenced_link(
        self, registry_id: str, repository: str, digest: str, created_before: float
    ) -> bool:
        """Unlinks the blob if it is still old and unreferenced (checked in the statement)."""
        links = t.repository_layers
        referenced = sa.exists().where(
            t.image_references.c.registry_id == registry_id,
            t.image_references.c.repository_name == repository,
            t.image_references.c.referenced_digest == digest,
        )
        deleted = await self._execute(
            links.delete().where(
                _in_repository(links, registry_id, repository),
                links.c.digest == digest,
                links.c.created_at < created_before,
                ~referenced,
            )
        )
        return bool(deleted.rowcount)

    async def unlinked_blobs(self) -> list[tuple[str, int]]:
        """(digest, size) of blobs that no repository links any more."""
        linked = sa.exists().where(t.repository_layers.c.digest == t.blobs.c.digest)
        rows = await self._execute(sa.select(t.blobs.c.digest, t.blobs.c.size_bytes).where(~linked))
        return [(row.digest, int(row.size_bytes)) for row in rows]

    async def link_holders(self, digests: Sequence[str]) -> dict[str, set[tuple[str, str]]]:
        """The (registry, repository) pairs linking each blob."""
        links = t.repository_layers
        rows = await self._execute(
            sa.select(links.c.digest, links.c.registry_id, links.c.repository_name).where(
                links.c.digest.in_(list(digests))
            )
        )
        holders: dict[str, set[tuple[str, str]]] = {}
        for row in rows:
            holders.setdefault(row.digest, set()).add((row.registry_id, row.repository_name))
        return holders

    async def blob_sizes(self, digests: Sequence[str]) -> list[tuple[str, int]]:
        rows = await self._execute(
            sa.select(t.blobs.c.digest, t.blobs.c.size_bytes).where(
                t.blobs.c.digest.in_(list(digests))
            )
        )
        return [(row.digest, int(row.size_bytes)) for row in rows]

    async def blob_is_linked(self, digest: str) -> bool:
        found = await self._scalar(
            sa.select(t.repository_layers.c.digest)
            .where(t.repository_layers.c.digest == digest)
            .limit(1)
        )
        return found is not None

    async def delete_blob_row(self, digest: str) -> None:
        await self._execute(t.blobs.delete().where(t.blobs.c.digest == digest))

    async def known_blobs(self, digests: Sequence[str]) -> set[str]:
        rows = await self._execute(
            sa.select(t.blobs.c.digest).where(t.blobs.c.digest.in_(list(digests)))
        )
        return {row.digest for row in rows}

    async def all_blobs(self) -> list[tuple[str, int]]:
        rows = await self._execute(sa.select(t.blobs.c.digest, t.blobs.c.size_bytes))
        return [(row.digest, int(row.size_bytes)) for row in rows]

    async def all_image_references(self) -> list[tuple[str, str, str, str, bool]]:
        """(registry, repository, image digest, referenced digest, is manifest) for all."""
        refs = t.image_references
        rows = await self._execute(
            sa.select(
                refs.c.registry_id,
                refs.c.repository_name,
                refs.c.image_digest,
                refs.c.referenced_digest,
                refs.c.is_manifest,
            )
        )
        return [tuple(row) for row in rows]

    # -- uploads --------------------------------------------------------------------------

    async def insert_upload(self, upload: UploadRecord) -> None:
        await self._insert(
            t.uploads,
            {
                "upload_id": upload.upload_id,
                "registry_id": upload.registry_id,
                "repository_name": upload.repository_name,
                "size_bytes": upload.size_bytes,
                "part_count": upload.part_count,
                "last_part_size": upload.last_part_size,
                "has_small_inner_part": upload.has_small_inner_part,
                "created_at": upload.created_at,
                "updated_at": upload.updated_at,
            },
        )

    async def get_upload(self, upload_id: str, *, for_update: bool = False) -> UploadRecord | None:
        def build() -> sa.Select[Any]:
            query = select_records(t.uploads, UploadRecord).where(
                t.uploads.c.upload_id == sa.bindparam("upload_id")
            )
            return query.with_for_update() if for_update else query

        statement = cached(f"get_upload:{for_update}", build)
        row = (await self._execute(statement, {"upload_id": upload_id})).first()
        return None if row is None else record_from_row(UploadRecord, row)

    async def update_upload(self, upload_id: str, **values: Any) -> None:
        await self._execute(
            t.uploads.update().where(t.uploads.c.upload_id == upload_id).values(**values)
        )

    async def delete_upload(self, upload_id: str) -> None:
        await self._execute(t.uploads.delete().where(t.uploads.c.upload_id == upload_id))
