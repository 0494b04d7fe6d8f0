"""Images: manifests, tags and their rules, shared by the ECR API and the OCI /v2/ API.

An image pushed through either API is visible through both: both call ``put_image``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from openecr.errors import (
    ImageAlreadyExistsError,
    ImageDigestDoesNotMatchError,
    ImageNotFoundError,
    ImageTagAlreadyExistsError,
    InvalidParameterError,
    LayersNotFoundError,
    LimitExceededError,
    ReferencedImagesNotFoundError,
)
from openecr.services.manifests import (
    ManifestInvalid,
    ManifestTooLarge,
    ParsedManifest,
    ecr_accepts_media_type,
    ecr_tag_is_valid,
    image_size,
    parse_manifest,
)
from openecr.services.repositories import repository_not_found, require_repository
from openecr.storage.metadata.records import (
    ImageRecord,
    ImageSummary,
    LayerRecord,
    PushTarget,
    RepositoryRecord,
)
from openecr.storage.metadata.store import (
    MetadataSession,
    MetadataStore,
    repository_lock,
    tag_lock,
)

__all__ = [
    "MAX_IMAGES_PER_REPOSITORY",
    "MAX_TAGS_PER_IMAGE",
    "DeletedImages",
    "DescribedImage",
    "FetchedImages",
    "ImageFailure",
    "ImageId",
    "ImageService",
]

MAX_TAGS_PER_IMAGE = 1000
MAX_IMAGES_PER_REPOSITORY = 100_000
_DIGEST = re.compile(r"[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+")
_PULL_FLUSH_SECONDS = 1.0
# Pushes that may be in flight at once into one repository, across every replica (each
# runs at most --database-pool-size transactions, 10 by default). Within this many images
# of the quota, pushes count the repository's images one at a time (_check_image_quota).
_IN_FLIGHT_PUSHES_BOUND = 1_000


@dataclass(frozen=True, slots=True)
class ImageId:
    digest: str | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class ImageFailure:
    image_id: ImageId
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class FetchedImages:
    images: list[tuple[ImageRecord, str | None]]  # (image, the tag it was asked for)
    failures: list[ImageFailure]


@dataclass(frozen=True, slots=True)
class DeletedImages:
    deleted: list[ImageId]
    failures: list[ImageFailure]


@dataclass(frozen=True, slots=True)
class DescribedImage:
    image: ImageSummary
    tags: list[str] = field(default_factory=list)


def _too_many_images(repository: str) -> LimitExceededError:
    return LimitExceededError(
        f"The repository '{repository}' already holds the maximum of "
        f"{MAX_IMAGES_PER_REPOSITORY} images."
    )


def _references(parsed: ParsedManifest, layers: dict[str, LayerRecord]) -> list[tuple[str, bool]]:
    """What an image needs kept, as (digest, is a manifest). Non-distributable layers live
    elsewhere: only stored blobs are referenced."""
    references = [(digest, False) for digest in parsed.referenced_blob_digests if digest in layers]
    return references + [(digest, True) for digest in parsed.referenced_manifest_digests]


def _reference_id(reference: str) -> ImageId:
    """The image id a /v2/ reference names: a digest (it has a colon) or a tag."""
    return ImageId(digest=reference) if ":" in reference else ImageId(tag=reference)


def _image_not_found(registry_id: str, repository: str, image_id: ImageId) -> ImageNotFoundError:
    digest = f"'{image_id.digest}'" if image_id.digest else "null"
    tag = f"'{image_id.tag}'" if image_id.tag else "null"
    return ImageNotFoundError(
        f"The image with imageId {{imageDigest:{digest}, imageTag:{tag}}} does not exist within "
        f"the repository with name '{repository}' in the registry with id '{registry_id}'"
    )


def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")))


def tag_is_immutable(repository: RepositoryRecord, tag: str) -> bool:
    """Whether ``tag`` may not move in this repository, exclusion filters included."""
    mutability = repository.image_tag_mutability
    if mutability in ("MUTABLE", "IMMUTABLE"):
        return mutability == "IMMUTABLE"
    filters = json.loads(repository.tag_mutability_exclusion_filters or "[]")
    excluded = any(_wildcard(f["filter"]).fullmatch(tag) for f in filters)
    # The filters name the tags that behave opposite to the base setting.
    return excluded if mutability == "MUTABLE_WITH_EXCLUSION" else not excluded


def check_image_id(image_id: ImageId) -> ImageFailure | None:
    """The failure ECR reports for a malformed image id in a batch, if any."""
    if not image_id.digest and not image_id.tag:
        return ImageFailure(
            image_id,
            "MissingDigestAndTag",
            "Invalid request parameters: both tag and digest cannot be null",
        )
    if image_id.digest is not None and not _DIGEST.fullmatch(image_id.digest):
        return ImageFailure(
            image_id,
            "InvalidImageDigest",
            "Invalid request parameters: image digest should satisfy the regex "
            "'[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+'",
        )
    if image_id.tag is not None and not ecr_tag_is_valid(image_id.tag):
        return ImageFailure(
            image_id,
            "InvalidImageTag",
            "Invalid request parameters: image tag should satisfy the regex '[a-zA-Z0-9-_.]+'",
        )
    return None


class ImageService:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._pending_pulls: dict[tuple[str, str, str], float] = {}
        self._flush_task: asyncio.Task[None] | None = None

    # -- push -----------------------------------------------------------------------------

    async def put_image(
        self,
        registry_id: str,
        repository: str,
        manifest: bytes,
        *,
        media_type: str | None,
        tag: str | None,
        expected_digest: str | None,
        repush_is_error: bool,
        infer_media_type: bool,
    ) -> ImageRecord:
        """Stores a manifest, optionally tagging it.

        ``repush_is_error`` is ECR's PutImage rule (pushing an existing digest+tag fails with
        ImageAlreadyExistsException); over /v2/ a re-push is a successful no-op.
        ``infer_media_type`` allows a manifest with neither a ``mediaType`` field nor a
        declared type (OCI allows it; ECR's PutImage does not).
        """
        try:
            parsed = parse_manifest(manifest, media_type, infer_media_type=infer_media_type)
        except ManifestTooLarge:
            raise InvalidParameterError(
                "Invalid parameter at 'imageManifest' failed to satisfy constraint: "
                "'Member must have length less than or equal to 4194304'"
            ) from None
        except ManifestInvalid as invalid:
            raise InvalidParameterError(
                f"Invalid parameter at 'imageManifest' failed to satisfy constraint: '{invalid}'"
            ) from None
        if expected_digest is not None and expected_digest != parsed.digest:
            raise ImageDigestDoesNotMatchError(
                f"Invalid parameter at 'imageDigest' failed to satisfy constraint: 'The image "
                f"digest '{expected_digest}' does not match the digest of the manifest "
                f"'{parsed.digest}''"
            )
        if tag is not None and not ecr_tag_is_valid(tag):
            raise InvalidParameterError(
                "Invalid parameter at 'imageTag' failed to satisfy constraint: 'must satisfy "
                "regular expression '[a-zA-Z0-9-_.]+''"
            )
        now = round(time.time(), 3)
        # Pushes into one repository run side by side (PostgreSQL; SQLite serialises all
        # writers anyway): the shared repository lock only keeps out deletion and settings
        # changes, and pushes of one tag queue on that tag's lock, so the tag and
        # immutability checks below cannot race.
        async with self._store.write(
            shared_locks=[repository_lock(registry_id, repository)],
            exclusive_locks=[tag_lock(registry_id, repository, tag)] if tag else [],
        ) as session:
            target = await session.push_target(registry_id, repository, parsed.digest, tag)
            if target is None:
                raise repository_not_found(registry_id, repository)
            layers = await self._check_references(session, registry_id, repository, parsed)
            blob_sizes = {digest: layer.size_bytes for digest, layer in layers.items()}
            if target.image_exists and (tag is None or target.tag_digest == parsed.digest):
                if repush_is_error:
                    raise ImageAlreadyExistsError(
                        f"Image with digest '{parsed.digest}' and tag '{tag or 'null'}' already "
                        "exists in "
                        f"the repository with name '{repository}' in registry with id "
                        f"'{registry_id}'"
                    )
                existing = await session.get_image(registry_id, repository, parsed.digest)
                assert existing is not None  # images are only deleted under the exclusive lock
                return existing
            if (
                tag is not None
                and target.tag_digest is not None
                and tag_is_immutable(target.repository, tag)
            ):
                raise ImageTagAlreadyExistsError(
                    f"The image tag '{tag}' already exists in the '{repository}' repository "
                    "and cannot be overwritten because the tag is immutable."
                )
            inserted = False
            if not target.image_exists:
                await self._check_image_quota(session, registry_id, repository, target)
                new_image = ImageRecord(
                    registry_id=registry_id,
                    repository_name=repository,
                    digest=parsed.digest,
                    manifest=manifest,
                    media_type=parsed.media_type,
                    artifact_media_type=parsed.config.media_type if parsed.config else None,
                    size_bytes=await self._image_size(
                        session, registry_id, repository, parsed, blob_sizes
                    ),
                    pushed_at=now,
                    subject_digest=parsed.subject.digest if parsed.subject else None,
                    artifact_type=parsed.artifact_type,
                )
                # False when the same manifest, pushed under another tag (or none) at this
                # moment, committed first: the push then tags that image.
                inserted = await session.add_image(new_image, _references(parsed, layers))
            if inserted:
                image = new_image
                await self._remember_layer_media_types(session, image, parsed, layers)
            else:
                found = await session.get_image(registry_id, repository, parsed.digest)
                assert found is not None
                image = found
            if tag is not None:
                if target.tags_of_image >= MAX_TAGS_PER_IMAGE:
                    raise LimitExceededError(
                        f"The image {parsed.digest} already has the maximum of "
                        f"{MAX_TAGS_PER_IMAGE} tags."
                    )
                await session.set_tag(registry_id, repository, tag, parsed.digest, now)
        self._store.note_changes(1)
        return image

    @staticmethod
    async def _check_image_quota(
        session: MetadataSession, registry_id: str, repository: str, target: PushTarget
    ) -> None:
        count = target.image_count
        if count >= MAX_IMAGES_PER_REPOSITORY - _IN_FLIGHT_PUSHES_BOUND:
            # Near the quota, pushes in flight (not yet in the committed count) could take
            # the repository past it: count again, one push at a time. Far from it, the
            # bound keeps them from reaching it.
            count = await session.exact_image_count(registry_id, repository)
        if count >= MAX_IMAGES_PER_REPOSITORY:
            raise _too_many_images(repository)

    @staticmethod
    async def _remember_layer_media_types(
        session: MetadataSession,
        image: ImageRecord,
        parsed: ParsedManifest,
        layers: dict[str, LayerRecord],
    ) -> None:
        """Uploads do not say what a blob is; a new image's manifest does (for
        BatchCheckLayerAvailability's mediaType)."""
        descriptors = (*([parsed.config] if parsed.config else []), *parsed.layers)
        untyped = {
            d.digest: d.media_type
            for d in descriptors
            if d.digest in layers and layers[d.digest].media_type is None
        }
        if untyped:
            await session.remember_layer_media_types(
                image.registry_id, image.repository_name, untyped
            )

    async def _check_references(
        self,
        session: MetadataSession,
        registry_id: str,
        repository: str,
        parsed: ParsedManifest,
    ) -> dict[str, LayerRecord]:
        """Checks that everything the manifest needs is in the repository.

        Returns the manifest's blobs as linked into the repository.
        Non-distributable ("foreign") layers are not required, as in every registry.
        """
        required = list(parsed.required_blob_digests)
        found = await session.get_layers(
            registry_id, repository, list(parsed.referenced_blob_digests)
        )
        missing = [digest for digest in required if digest not in found]
        if missing:
            raise LayersNotFoundError(
                f"Layers with digests {missing} required for pushing image into repository "
                f"with name '{repository}' in registry with id '{registry_id}' do not exist"
            )
        children = list(parsed.referenced_manifest_digests)
        if children:
            found_images = await session.get_image_summaries(registry_id, repository, children)
            missing = [digest for digest in children if digest not in found_images]
            if missing:
                raise ReferencedImagesNotFoundError(
                    f"Images with digests {missing} referenced by the manifest list do not "
                    f"exist in the repository with name '{repository}' in registry with id "
                    f"'{registry_id}'"
                )
        return found

    async def _image_size(
        self,
        session: MetadataSession,
        registry_id: str,
        repository: str,
        parsed: ParsedManifest,
        blob_sizes: dict[str, int],
    ) -> int:
        """ECR's imageSizeInBytes: layer sizes, or for an index its largest child image."""
        children = list(parsed.referenced_manifest_digests)
        found = (
            await session.get_image_summaries(registry_id, repository, children) if children else {}
        )
        return image_size(
            parsed,
            manifest_sizes={digest: image.size_bytes for digest, image in found.items()},
            blob_sizes=blob_sizes,
        )

    # -- pull -----------------------------------------------------------------------------

    async def resolve(self, registry_id: str, repository: str, reference: str) -> ImageRecord:
        """The image a tag or digest names; records the pull."""
        image = await self.find(registry_id, repository, reference)
        if image is None:
            raise _image_not_found(registry_id, repository, _reference_id(reference))
        self.record_pull(registry_id, repository, image.digest)
        return image

    async def find(self, registry_id: str, repository: str, reference: str) -> ImageRecord | None:
        """Like ``resolve`` but without recording a pull (HEAD requests, existence checks)."""
        async with self._store.read() as session:
            image, _ = await self._lookup(
                session, registry_id, repository, _reference_id(reference)
            )
            if image is None:
                # An image found proves its repository exists; a miss may be either.
                await require_repository(session, registry_id, repository)
            return image

    async def require_image(
        self, registry_id: str, repository: str, image_id: ImageId
    ) -> ImageRecord:
        """The image an id names, or ImageNotFoundException (bad ids are parameter errors)."""
        failure = check_image_id(image_id)
        if failure is not None and failure.code != "MissingDigestAndTag":
            raise InvalidParameterError(failure.reason)
        async with self._store.read() as session:
            await require_repository(session, registry_id, repository)
            found, _ = (
                (None, None)
                if failure is not None
                else await self._lookup(session, registry_id, repository, image_id)
            )
        if found is None:
            raise _image_not_found(registry_id, repository, image_id)
        return found

    async def batch_get(
        self,
        registry_id: str,
        repository: str,
        image_ids: Sequence[ImageId],
        accepted_media_types: Sequence[str] | None,
    ) -> FetchedImages:
        images: list[tuple[ImageRecord, str | None]] = []
        failures: list[ImageFailure] = []
        malformed = {i: f for i in image_ids if (f := check_image_id(i)) is not None}
        tags = [i.tag for i in image_ids if i.tag is not None and i not in malformed]
        digests = [i.digest for i in image_ids if i.digest is not None and i not in malformed]
        async with self._store.read() as session:
            # One query for the whole batch; the repository is only looked up on a miss
            # (an image found proves it exists).
            tagged, found = await session.images_by_id(registry_id, repository, digests, tags)
            seen: set[tuple[str, str | None]] = set()
            for image_id in image_ids:
                failure = malformed.get(image_id)
                image: ImageRecord | None = None
                if failure is None:
                    image, failure = self._resolve_in_batch(image_id, tagged, found)
                if image is not None and not ecr_accepts_media_type(
                    image.media_type, accepted_media_types, by_digest=image_id.tag is None
                ):
                    image, failure = (
                        None,
                        ImageFailure(
                            image_id,
                            "ImageNotFound",
                            "Requested image not found in the accepted media types",
                        ),
                    )
                if failure is not None:
                    failures.append(failure)
                elif image is not None and (image.digest, image_id.tag) not in seen:
                    seen.add((image.digest, image_id.tag))
                    images.append((image, image_id.tag))
            if failures:
                await require_repository(session, registry_id, repository)
        for image, _ in images:
            self.record_pull(registry_id, repository, image.digest)
        return FetchedImages(images, failures)

    @staticmethod
    def _resolve_in_batch(
        image_id: ImageId, tagged: dict[str, str], found: dict[str, ImageRecord]
    ) -> tuple[ImageRecord | None, ImageFailure | None]:
        digest = image_id.digest
        if image_id.tag is not None:
            if image_id.tag not in tagged:
                return None, ImageFailure(image_id, "ImageNotFound", "Requested image not found")
            if digest is not None and digest != tagged[image_id.tag]:
                return None, ImageFailure(
                    image_id,
                    "ImageTagDoesNotMatchDigest",
                    "Invalid request parameters: the image tag does not match the image digest",
                )
            digest = tagged[image_id.tag]
        image = found.get(digest or "")
        if image is None:
            return None, ImageFailure(image_id, "ImageNotFound", "Requested image not found")
        return image, None

    async def _lookup(
        self, session: MetadataSession, registry_id: str, repository: str, image_id: ImageId
    ) -> tuple[ImageRecord | None, ImageFailure | None]:
        """``_resolve_in_batch`` for one id, in one query."""
        tagged, found = await session.images_by_id(
            registry_id,
            repository,
            [image_id.digest] if image_id.digest is not None else [],
            [image_id.tag] if image_id.tag is not None else [],
        )
        return self._resolve_in_batch(image_id, tagged, found)

    def record_pull(self, registry_id: str, repository: str, digest: str) -> None:
        """Notes a pull; pull times are written in batches, not one write per pull."""
        self._pending_pulls[(registry_id, repository, digest)] = round(time.time(), 3)
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(_PULL_FLUSH_SECONDS)
        await self.flush_pull_times()

    async def flush_pull_times(self) -> None:
        pending, self._pending_pulls = self._pending_pulls, {}
        if pending:
            async with self._store.write() as session:
                await session.record_pull_times(
                    (registry, repository, digest, pulled_at)
                    for (registry, repository, digest), pulled_at in pending.items()
                )

    # -- delete ---------------------------------------------------------------------------

    async def batch_delete(
        self, registry_id: str, repository: str, image_ids: Sequence[ImageId]
    ) -> DeletedImages:
        deleted: list[ImageId] = []
        failures: list[ImageFailure] = []
        async with self._store.write() as session:
            await require_repository(session, registry_id, repository, for_update=True)
            for image_id in image_ids:
                failure = check_image_id(image_id)
                if failure is None:
                    found, failure = await self._lookup(session, registry_id, repository, image_id)
                    if found is not None:
                        failure = await self._delete_one(
                            session, registry_id, repository, image_id, found, deleted
                        )
                if failure is not None:
                    failures.append(failure)
        return DeletedImages(deleted, failures)

    async def expire_if_unchanged(
        self, registry_id: str, repository: str, digest: str, tags: Sequence[str]
    ) -> DeletedImages | None:
        """Deletes the image as BatchDeleteImage would, but only if it still has exactly
        ``tags`` (lifecycle rules judged it with those; a tag added since may save it).
        None when it changed or is gone."""
        deleted: list[ImageId] = []
        async with self._store.write() as session:
            await require_repository(session, registry_id, repository, for_update=True)
            image = await session.get_image(registry_id, repository, digest)
            current = (await session.tags_by_digest(registry_id, repository, [digest]))[digest]
            if image is None or sorted(current) != sorted(tags):
                return None
            failure = await self._delete_one(
                session, registry_id, repository, ImageId(digest=digest), image, deleted
            )
        return DeletedImages(deleted, [failure] if failure else [])

    async def _delete_one(
        self,
        session: MetadataSession,
        registry_id: str,
        repository: str,
        image_id: ImageId,
        image: ImageRecord,
        deleted: list[ImageId],
    ) -> ImageFailure | None:
        tags = (await session.tags_by_digest(registry_id, repository, [image.digest]))[image.digest]
        removes_image = image_id.tag is None or tags == [image_id.tag]
        if removes_image and await session.indexes_referencing(
            registry_id, repository, image.digest
        ):
            return ImageFailure(
                image_id,
                "ImageReferencedByManifestList",
                "Requested image is referenced by a manifest list",
            )
        if not removes_image:
            assert image_id.tag is not None
            await session.delete_tag(registry_id, repository, image_id.tag)
            deleted.append(ImageId(image.digest, image_id.tag))
            return None
        await session.delete_image(registry_id, repository, image.digest)
        if tags:
            deleted.extend(ImageId(image.digest, tag) for tag in tags)
        else:
            deleted.append(ImageId(image.digest))
        return None

    async def delete_tag(self, registry_id: str, repository: str, tag: str) -> None:
        """Removes a tag only (OCI DELETE by tag); the image stays, maybe untagged."""
        async with self._store.write() as session:
            await require_repository(session, registry_id, repository, for_update=True)
            if await session.digest_for_tag(registry_id, repository, tag) is None:
                raise _image_not_found(registry_id, repository, ImageId(tag=tag))
            await session.delete_tag(registry_id, repository, tag)

    async def delete_by_digest(self, registry_id: str, repository: str, digest: str) -> None:
        result = await self.batch_delete(registry_id, repository, [ImageId(digest=digest)])
        if result.failures:
            failure = result.failures[0]
            if failure.code == "ImageNotFound":
                raise _image_not_found(registry_id, repository, ImageId(digest=digest))
            raise InvalidParameterError(failure.reason)

    # -- listings -------------------------------------------------------------------------

    async def list_image_ids(
        self,
        registry_id: str,
        repository: str,
        *,
        after: tuple[str, str] | None,
        limit: int,
        tag_status: str | None,
    ) -> list[tuple[str, str | None]]:
        async with self._store.read() as session:
            await require_repository(session, registry_id, repository)
            return await session.list_image_ids(
                registry_id, repository, after=after, limit=limit, tag_status=tag_status
            )

    async def describe(
        self,
        registry_id: str,
        repository: str,
        *,
        image_ids: Sequence[ImageId] | None,
        after_digest: str | None,
        limit: int,
        tag_status: str | None,
    ) -> list[DescribedImage]:
        await self.flush_pull_times()
        async with self._store.read() as session:
            await require_repository(session, registry_id, repository)
            if image_ids:
                summaries: list[ImageSummary] = []
                for image_id in image_ids:
                    failure = check_image_id(image_id)
                    found, failure = (
                        (None, failure)
                        if failure
                        else await self._lookup(session, registry_id, repository, image_id)
                    )
                    if found is None:
                        if failure is not None and failure.code != "ImageNotFound":
                            raise InvalidParameterError(failure.reason)
                        raise _image_not_found(registry_id, repository, image_id)
                    if all(s.digest != found.digest for s in summaries):
                        summaries.append(
                            (
                                await session.get_image_summaries(
                                    registry_id, repository, [found.digest]
                                )
                            )[found.digest]
                        )
            else:
                summaries = await session.list_image_summaries(
                    registry_id,
                    repository,
                    after_digest=after_digest,
                    limit=limit,
                    tag_status=tag_status,
                )
            tags = await session.tags_by_digest(
                registry_id, repository, [s.digest for s in summaries]
            )
        return [DescribedImage(s, tags[s.digest]) for s in summaries]

    async def list_tags(
        self, registry_id: str, repository: str, *, after: str | None, limit: int | None
    ) -> list[str]:
        async with self._store.read() as session:
            await require_repository(session, registry_id, repository)
            return await session.list_tags(registry_id, repository, after=after, limit=limit)

    async def is_layer_referenced(self, registry_id: str, repository: str, digest: str) -> bool:
        async with self._store.read() as session:
            return await session.is_blob_referenced_in_repository(registry_id, repository, digest)

    async def referrer_images(
        self, registry_id: str, repository: str, subject_digest: str
    ) -> list[ImageRecord]:
        async with self._store.read() as session:
            await require_repository(session, registry_id, repository)
            return await session.list_referrers(registry_id, repository, subject_digest)
