"""Queries on images, their tags and references, repository layer links, blobs and uploads."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Sequence
from typing import Any

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
    PushTarget,
    RepositoryRecord,
    UploadRecord,
)

__all__ = ["ImageQueries"]

_NO_LIMIT = 2**31 - 1

# Concurrent pushes into one repository add to this many counter rows (PostgreSQL).
_IMAGE_COUNT_SHARDS = 64


def _in_repository(table: sa.Table, registry_id: str, repository: str) -> sa.ColumnElement[bool]:
    return sa.and_(table.c.registry_id == registry_id, table.c.repository_name == repository)


def _in_bound_repository(table: sa.Table) -> sa.ColumnElement[bool]:
    """The repository condition of cached statements: parameters registry_id, repository."""
    return sa.and_(
        table.c.registry_id == sa.bindparam("registry_id"),
        table.c.repository_name == sa.bindparam("repository"),
    )


def _tag_of_image() -> sa.ColumnElement[bool]:
    """Joins an image tag row to the image it names."""
    return sa.and_(
        t.image_tags.c.registry_id == t.images.c.registry_id,
        t.image_tags.c.repository_name == t.images.c.repository_name,
        t.image_tags.c.digest == t.images.c.digest,
    )


def _committed_image_count() -> sa.Select[Any]:
    """The image count of the bound repository: the sum of its counter rows."""
    counts = t.repository_image_counts
    return sa.select(sa.func.coalesce(sa.func.sum(counts.c.image_count), 0)).where(
        _in_bound_repository(counts)
    )


def _image_row(image: ImageRecord) -> dict[str, Any]:
    return {
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
    }


# ``ImageQueries.add_image`` on PostgreSQL: the image row, its references and its count in
# one statement. Nothing but the image row is written when that row exists already.
_ADD_IMAGE = (
    sa.text(
        """
    WITH new_image AS (
        INSERT INTO images (registry_id, repository_name, digest, manifest, media_type,
                            artifact_media_type, size_bytes, pushed_at, last_pulled_at,
                            subject_digest, artifact_type)
        VALUES (:registry_id, :repository_name, :digest, :manifest, :media_type,
                :artifact_media_type, :size_bytes, :pushed_at, :last_pulled_at,
                :subject_digest, :artifact_type)
        ON CONFLICT DO NOTHING
        RETURNING digest
    ), new_references AS (
        INSERT INTO image_references (registry_id, repository_name, image_digest,
                                      referenced_digest, is_manifest)
        SELECT :registry_id, :repository_name, new_image.digest, reference.digest,
               reference.is_manifest
        FROM new_image,
             unnest(CAST(:reference_digests AS varchar[]), CAST(:reference_kinds AS boolean[]))
                 AS reference(digest, is_manifest)
    ), counted AS (
        INSERT INTO repository_image_counts (registry_id, repository_name, shard, image_count)
        SELECT :registry_id, :repository_name, :shard, 1 FROM new_image
        ON CONFLICT (registry_id, repository_name, shard)
        DO UPDATE SET image_count = repository_image_counts.image_count + 1
    )
    SELECT count(*) AS added FROM new_image
    """
    )
    .bindparams(
        sa.bindparam("manifest", type_=sa.LargeBinary),
        sa.bindparam("size_bytes", type_=sa.BigInteger),
        sa.bindparam("pushed_at", type_=sa.Float),
        sa.bindparam("last_pulled_at", type_=sa.Float),
        sa.bindparam("shard", type_=sa.SmallInteger),
    )
    .columns(sa.column("added", sa.Integer))
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

    async def get_image_summaries(
        self, registry_id: str, repository: str, digests: Sequence[str]
    ) -> dict[str, ImageSummary]:
        """The named images of the repository without their manifests, by digest."""
        statement = cached(
            "get_image_summaries",
            lambda: select_records(t.images, ImageSummary).where(
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
        return {row.digest: record_from_row(ImageSummary, row) for row in rows}

    async def images_by_id(
        self, registry_id: str, repository: str, digests: Sequence[str], tags: Sequence[str]
    ) -> tuple[dict[str, str], dict[str, ImageRecord]]:
        """The images named by digest or by tag, in one statement: the digest each found
        tag names, and each found image by digest."""

        def build() -> sa.CompoundSelect[Any]:
            images, image_tags = t.images, t.image_tags
            by_digest = (
                select_records(images, ImageRecord)
                .add_columns(sa.cast(sa.null(), image_tags.c.tag.type).label("tag"))
                .where(
                    _in_bound_repository(images),
                    images.c.digest.in_(sa.bindparam("digests", expanding=True)),
                )
            )
            by_tag = (
                select_records(images, ImageRecord)
                .add_columns(image_tags.c.tag)
                .select_from(image_tags.join(images, _tag_of_image()))
                .where(
                    _in_bound_repository(image_tags),
                    image_tags.c.tag.in_(sa.bindparam("tags", expanding=True)),
                )
            )
            return sa.union_all(by_digest, by_tag)

        parameters = {
            "registry_id": registry_id,
            "repository": repository,
            "digests": list(digests),
            "tags": list(tags),
        }
        tagged: dict[str, str] = {}
        found: dict[str, ImageRecord] = {}
        for *fields, tag in await self._execute(cached("images_by_id", build), parameters):
            image = record_from_row(ImageRecord, fields)
            found[image.digest] = image
            if tag is not None:
                tagged[tag] = image.digest
        return tagged, found

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

    async def add_image(self, image: ImageRecord, references: Sequence[tuple[str, bool]]) -> bool:
        """Inserts the image with its references, (digest, is a manifest), and counts it;
        False, changing nothing, if the repository has that image already.

        PostgreSQL does it in one statement (a push's round trips are most of its cost).
        """
        distinct = dict(references)
        if self._conn.dialect.name == "postgresql":
            parameters = {
                **_image_row(image),
                "reference_digests": list(distinct),
                "reference_kinds": list(distinct.values()),
                "shard": random.randrange(_IMAGE_COUNT_SHARDS),
            }
            added = await self._scalar(cached("add_image", lambda: _ADD_IMAGE), parameters)
            return bool(added)
        try:
            await self._insert(t.images, _image_row(image))
        except DuplicateKeyError:
            return False
        rows = [
            {
                "registry_id": image.registry_id,
                "repository_name": image.repository_name,
                "image_digest": image.digest,
                "referenced_digest": digest,
                "is_manifest": is_manifest,
            }
            for digest, is_manifest in distinct.items()
        ]
        if rows:
            await self._execute(cached("insert:image_references", t.image_references.insert), rows)
        await self.change_image_count(image.registry_id, image.repository_name, +1)
        return True

    async def push_target(
        self, registry_id: str, repository: str, digest: str, tag: str | None
    ) -> PushTarget | None:
        """The repository and what a push of ``digest`` (tagged ``tag``) must check, in one
        round trip; None if the repository does not exist."""

        def build() -> sa.Select[Any]:
            image_tags = t.image_tags
            in_repository = sa.and_(
                t.repositories.c.registry_id == sa.bindparam("registry_id"),
                t.repositories.c.name == sa.bindparam("repository"),
            )
            image_count = _committed_image_count().scalar_subquery()
            image_exists = sa.exists().where(
                _in_bound_repository(t.images), t.images.c.digest == sa.bindparam("digest")
            )
            tag_digest = (
                sa.select(image_tags.c.digest)
                .where(_in_bound_repository(image_tags), image_tags.c.tag == sa.bindparam("tag"))
                .scalar_subquery()
            )
            tags_of_image = (
                sa.select(sa.func.count())
                .select_from(image_tags)
                .where(
                    _in_bound_repository(image_tags),
                    image_tags.c.digest == sa.bindparam("digest"),
                )
                .scalar_subquery()
            )
            return (
                select_records(t.repositories, RepositoryRecord)
                .add_columns(image_count, image_exists, tag_digest, tags_of_image)
                .where(in_repository)
            )

        parameters = {
            "registry_id": registry_id,
            "repository": repository,
            "digest": digest,
            "tag": tag,
        }
        row = (await self._execute(cached("push_target", build), parameters)).first()
        if row is None:
            return None
        *repository_columns, image_count, image_exists, tag_digest, tags_of_image = row
        return PushTarget(
            repository=record_from_row(RepositoryRecord, repository_columns),
            image_count=int(image_count),
            image_exists=bool(image_exists),
            tag_digest=tag_digest,
            tags_of_image=int(tags_of_image),
        )

    async def count_images(self, registry_id: str, repository: str) -> int:
        """The repository's image count as committed when the statement starts."""
        statement = cached("count_images", _committed_image_count)
        parameters = {"registry_id": registry_id, "repository": repository}
        return int(await self._scalar(statement, parameters) or 0)

    async def exact_image_count(self, registry_id: str, repository: str) -> int:
        """The image count with no other push that checks it in flight: the callers queue
        on one lock, and each counts after the previous one committed. Pushes check this
        near the quota, where the committed count (``push_target``) could miss one."""
        await self._conn.lock((), (f"image-count:{registry_id}/{repository}",))
        return await self.count_images(registry_id, repository)

    async def change_image_count(self, registry_id: str, repository: str, change: int) -> None:
        """Adds ``change`` to the repository's image count.

        PostgreSQL: into one of several counter rows chosen at random, so that concurrent
        pushes rarely wait for each other's commit on one row lock.
        """
        dialect = self._conn.dialect.name
        counts = t.repository_image_counts

        def build() -> Any:
            insert = self._dialect_insert(counts)
            return insert.on_conflict_do_update(
                index_elements=[counts.c.registry_id, counts.c.repository_name, counts.c.shard],
                set_={"image_count": counts.c.image_count + insert.excluded.image_count},
            )

        shard = random.randrange(_IMAGE_COUNT_SHARDS) if dialect == "postgresql" else 0
        parameters = {
            "registry_id": registry_id,
            "repository_name": repository,
            "shard": shard,
            "image_count": change,
        }
        await self._execute(cached(f"change_image_count:{dialect}", build), parameters)

    async def set_tag(
        self, registry_id: str, repository: str, tag: str, digest: str, now: float
    ) -> None:
        """Points ``tag`` at ``digest``, moving it from any other image."""
        tags = t.image_tags

        def build() -> Any:
            insert = self._dialect_insert(tags)
            return insert.on_conflict_do_update(
                index_elements=[tags.c.registry_id, tags.c.repository_name, tags.c.tag],
                set_={"digest": insert.excluded.digest, "tagged_at": insert.excluded.tagged_at},
            )

        parameters = {
            "registry_id": registry_id,
            "repository_name": repository,
            "tag": tag,
            "digest": digest,
            "tagged_at": now,
        }
        await self._execute(cached(f"set_tag:{self._conn.dialect.name}", build), parameters)

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
        tagged = sa.exists().where(_tag_of_image())
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
        parameters = {
            "registry_id": registry_id,
            "repository": repository,
            "after_digest": after[0] if after else "",
            "after_tag": after[1] if after else "",
            "limit": limit,
        }
        every_image = tag_status not in ("TAGGED", "UNTAGGED")  # None or ANY
        if every_image and self._conn.dialect.name == "postgresql":
            return await self._list_all_image_ids(parameters, after, limit)

        def build() -> sa.Select[Any]:
            images, tags = t.images, t.image_tags
            if every_image:
                # SQLite probes the tag index once per image, in-process: cheap.
                query = (
                    sa.select(images.c.digest, tags.c.tag)
                    .select_from(images.outerjoin(tags, _tag_of_image()))
                    .where(_in_bound_repository(images))
                )
            elif tag_status == "TAGGED":
                # Every tag row is an entry: the tag index alone answers.
                query = sa.select(tags.c.digest, tags.c.tag).where(_in_bound_repository(tags))
            else:
                query = self._tag_status_filter(
                    sa.select(images.c.digest, sa.null().label("tag")).where(
                        _in_bound_repository(images)
                    ),
                    "UNTAGGED",
                )
            digest: sa.ColumnElement[Any]
            tag: sa.ColumnElement[Any]
            digest, tag = query.selected_columns
            after_digest: sa.BindParameter[str] = sa.bindparam("after_digest")
            after_tag: sa.BindParameter[str] = sa.bindparam("after_tag")
            later = sa.or_(
                digest > after_digest,
                sa.and_(digest == after_digest, sa.func.coalesce(tag, "") > after_tag),
            )
            return query.where(later).order_by(digest, tag).limit(sa.bindparam("limit"))

        statement = cached(f"list_image_ids:{'all' if every_image else tag_status}", build)
        return [(digest, tag) for digest, tag in await self._plain_rows(statement, parameters)]

    async def _list_all_image_ids(
        self, parameters: dict[str, Any], after: tuple[str, str] | None, limit: int
    ) -> list[tuple[str, str | None]]:
        """``list_image_ids`` without a tag filter, on PostgreSQL.

        Rather than join each image to its tags (PostgreSQL's generic plan probes the tag
        index once per image: three times the CPU of this), one statement reads the page's
        digests and, separately, the tags in that digest range, both straight from their
        indexes; they are merged here.
        Each digest gives at least one entry, so ``limit`` + 1 digests fill the page even
        when the first is the previous page's last digest with no entries left.
        """

        def build() -> sa.CompoundSelect[Any]:
            images, tags = t.images, t.image_tags
            from_digest: sa.BindParameter[str] = sa.bindparam("after_digest")
            page = (
                sa.select(images.c.digest)
                .where(_in_bound_repository(images), images.c.digest >= from_digest)
                .order_by(images.c.digest)
                .limit(sa.bindparam("digests"))
                .cte("page")
            )
            last_digest = sa.select(sa.func.max(page.c.digest)).scalar_subquery()
            tags_in_page = sa.select(tags.c.digest, tags.c.tag).where(
                _in_bound_repository(tags),
                tags.c.digest >= from_digest,
                tags.c.digest <= last_digest,
            )
            return sa.union_all(
                sa.select(page.c.digest, sa.cast(sa.null(), tags.c.tag.type)), tags_in_page
            )

        rows = await self._plain_rows(
            cached("list_all_image_ids", build), {**parameters, "digests": limit + 1}
        )
        digests: list[str] = []
        tags_of: dict[str, list[str]] = {}
        for digest, tag in rows:
            if tag is None:
                digests.append(digest)
            elif digest in tags_of:
                tags_of[digest].append(tag)
            else:
                tags_of[digest] = [tag]
        digests.sort()  # already in order, as the index gives them: a linear check
        entries: list[tuple[str, str | None]] = []
        append = entries.append
        for digest in digests:
            tags = tags_of.get(digest)
            if tags is None:
                append((digest, None))
            elif len(tags) == 1:
                append((digest, tags[0]))
            else:
                tags.sort()
                entries.extend([(digest, tag) for tag in tags])
        # Only the previous page's last digest can have entries up to ``after``.
        start = 0
        if after is not None:
            while start < len(entries) and (entries[start][0], entries[start][1] or "") <= after:
                start += 1
        return entries[start : start + limit]

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
