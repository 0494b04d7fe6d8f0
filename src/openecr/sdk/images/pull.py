"""``pull_image`` / ``apull_image``: an image from a repository into an OCI image layout
through the ECR API (no registry credentials needed, only the ECR API's).

1. ``BatchGetImage`` by tag or digest, accepting every OCI and Docker v2 manifest type; an
   index's manifests follow by digest, level by level. Every manifest's bytes are checked
   against its digest.
2. Every blob (each manifest's config and layers, once) not already in the layout is
   downloaded concurrently: ``GetDownloadUrlForLayer`` (the config too: it is referenced by
   an image, which is what the call requires), then a streamed GET into
   ``blobs/<alg>/<hex>``, hashed on the way; a blob whose digest or size is wrong is deleted
   and ``BlobDigestMismatchError`` raised. A failed transfer is retried with a fresh URL.
3. The manifests are written as blobs and the image is listed in ``index.json``, named by
   the tag (``org.opencontainers.image.ref.name``) when pulled by tag.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from openecr.errors import ECRError, ImageNotFoundError, TransportError
from openecr.models import BatchGetImageResponse, GetDownloadUrlForLayerResponse, ImageIdentifier
from openecr.sdk.images._files import is_digest, sha256_digest
from openecr.sdk.images._workflow import (
    AsyncDriver,
    Blocking,
    Call,
    CloseStream,
    Gather,
    OpenStream,
    Progress,
    ReadStream,
    Sleep,
    SyncDriver,
    Workflow,
)
from openecr.sdk.images.layout import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    BlobDigestMismatchError,
    BlobInfo,
    ImageSourceError,
    OCILayoutWriter,
    ParsedManifest,
    parse_manifest,
)
from openecr.sdk.images.progress import ProgressCallback, ProgressEvent, ProgressState

if TYPE_CHECKING:
    from openecr.sdk._client import ECR, AsyncECR

__all__ = ["ACCEPTED_MEDIA_TYPES", "PullResult", "apull_image", "pull_image"]

ACCEPTED_MEDIA_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST)
DOWNLOAD_ATTEMPTS = 3
_MAX_INDEX_DEPTH = 4


@dataclass(frozen=True, slots=True)
class PullResult:
    """What ``pull_image`` did. ``manifests`` lists every manifest written (an index's listed
    manifests first, ``digest`` last); ``bytes_received`` counts the blob bytes downloaded."""

    repository: str
    digest: str
    media_type: str
    tag: str | None
    destination: Path
    manifests: tuple[str, ...]
    blobs_downloaded: tuple[str, ...]
    blobs_skipped: tuple[str, ...]
    bytes_received: int


@dataclass(frozen=True, slots=True)
class _Manifest:
    digest: str
    data: bytes
    parsed: ParsedManifest


@dataclass(frozen=True, slots=True)
class _Pull:
    repository: str
    registry_id: str | None
    writer: OCILayoutWriter

    def call(self, operation: str, **kwargs: object) -> Call:
        return Call(
            operation,
            {"repository_name": self.repository, "registry_id": self.registry_id, **kwargs},
        )


def _get_images(
    pull: _Pull, ids: Sequence[ImageIdentifier], what: str
) -> Workflow[list[_Manifest]]:
    response: BatchGetImageResponse = yield pull.call(
        "batch_get_image", image_ids=list(ids), accepted_media_types=list(ACCEPTED_MEDIA_TYPES)
    )
    for failure in response.failures or []:
        message = f"{pull.repository}:{what}: {failure.failure_reason or failure.failure_code}"
        if failure.failure_code == "ImageNotFound":
            raise ImageNotFoundError(message)
        raise ECRError(message, code=failure.failure_code or "ImageFailure")
    found: list[_Manifest] = []
    for image in response.images or []:
        digest = image.image_id.image_digest if image.image_id else None
        if not image.image_manifest or not digest:
            raise ECRError(f"BatchGetImage returned no manifest for {what}", code="InvalidResponse")
        data = image.image_manifest.encode("utf-8")
        actual = sha256_digest(data)
        if actual != digest:
            raise BlobDigestMismatchError(
                f"the manifest {digest} has digest {actual}", expected=digest, actual=actual
            )
        found.append(_Manifest(digest, data, parse_manifest(data, image.image_manifest_media_type)))
    return found


def _event(blob: BlobInfo, done: int, state: ProgressState) -> Progress:
    return Progress(ProgressEvent(blob.digest, blob.media_type, done, blob.size, state))


def _pull(pull: _Pull, reference: str) -> Workflow[PullResult]:
    by_digest = is_digest(reference)
    identifier = ImageIdentifier(
        image_digest=reference if by_digest else None, image_tag=None if by_digest else reference
    )
    found = yield from _get_images(pull, [identifier], reference)
    if not found:
        raise ImageNotFoundError(f"{pull.repository}:{reference}: Requested image not found")
    top = found[0]
    if by_digest and top.digest != reference:
        raise BlobDigestMismatchError(
            f"asked for {reference}, got {top.digest}", expected=reference, actual=top.digest
        )
    manifests = {top.digest: top}
    level = [top]
    for _ in range(_MAX_INDEX_DEPTH):
        wanted = list(
            dict.fromkeys(
                child.digest
                for manifest in level
                for child in manifest.parsed.children
                if child.digest not in manifests
            )
        )
        if not wanted:
            break
        level = yield from _get_images(
            pull, [ImageIdentifier(image_digest=digest) for digest in wanted], reference
        )
        manifests.update((manifest.digest, manifest) for manifest in level)
    else:
        raise ImageSourceError(f"{pull.repository}:{reference}: indexes nested too deeply")

    blobs = list(
        {
            blob.digest: blob
            for manifest in manifests.values()
            for blob in manifest.parsed.blobs
            if blob.distributable
        }.values()
    )
    present = [blob for blob in blobs if pull.writer.has_blob(blob.digest, blob.size)]
    missing = [blob for blob in blobs if blob not in present]
    for blob in present:
        yield _event(blob, blob.size, ProgressState.SKIPPED)
    received: list[int] = yield Gather([_download(pull, blob) for blob in missing])

    # Listed manifests before their index; the index.json entry last, once all is there.
    ordered = [manifest for manifest in manifests.values() if manifest is not top] + [top]
    for manifest in ordered:
        yield Blocking(pull.writer.write_blob, (manifest.data, manifest.digest))
    tag = None if by_digest else reference
    yield Blocking(
        pull.writer.add_reference, (top.digest, len(top.data), top.parsed.media_type, tag)
    )
    return PullResult(
        repository=pull.repository,
        digest=top.digest,
        media_type=top.parsed.media_type,
        tag=tag,
        destination=pull.writer.root,
        manifests=tuple(manifest.digest for manifest in ordered),
        blobs_downloaded=tuple(blob.digest for blob in missing),
        blobs_skipped=tuple(blob.digest for blob in present),
        bytes_received=sum(received),
    )


def _download(pull: _Pull, blob: BlobInfo) -> Workflow[int]:
    """Streams one blob into the layout, verified; returns its size."""
    attempt = 0
    while True:
        attempt += 1
        located: GetDownloadUrlForLayerResponse = yield pull.call(
            "get_download_url_for_layer", layer_digest=blob.digest
        )
        if not located.download_url:
            raise ECRError(
                f"GetDownloadUrlForLayer returned no URL for {blob.digest}", code="InvalidResponse"
            )
        sink = pull.writer.open_blob(blob.digest, blob.size)
        stream = None
        try:
            yield _event(blob, 0, ProgressState.DOWNLOADING)
            stream = yield OpenStream(located.download_url)
            while chunk := (yield ReadStream(stream)):
                yield Blocking(sink.write, (chunk,))
                yield _event(blob, sink.written, ProgressState.DOWNLOADING)
            yield CloseStream(stream)
            yield Blocking(sink.commit)
        except (httpx.HTTPError, TransportError) as error:
            sink.abort()
            if stream is not None:
                yield CloseStream(stream)  # give the connection back before trying again
            if attempt >= DOWNLOAD_ATTEMPTS:
                raise TransportError(f"downloading {blob.digest} failed: {error}") from error
            yield Sleep(random.uniform(0, 0.5 * 2**attempt))
            continue
        except BaseException:
            sink.abort()
            raise
        yield _event(blob, blob.size, ProgressState.DONE)
        return blob.size


def _check_concurrency(concurrency: int) -> None:
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")


def pull_image(
    ecr: ECR,
    repository: str,
    reference: str,
    destination: str | os.PathLike[str],
    *,
    registry_id: str | None = None,
    progress: ProgressCallback | None = None,
    concurrency: int = 4,
) -> PullResult:
    """Pulls ``repository:reference`` (a tag, or a ``sha256:`` digest) into the OCI image
    layout directory ``destination`` (created if needed; other images in it are kept).
    Blobs already in the layout are not downloaded again. Up to ``concurrency`` blobs
    download at once; ``progress`` receives a ``ProgressEvent`` per blob step."""
    _check_concurrency(concurrency)
    pull = _Pull(repository, registry_id, OCILayoutWriter(destination))
    driver = SyncDriver(ecr, concurrency=concurrency, progress=progress)
    return driver.run(_pull(pull, reference))


async def apull_image(
    aecr: AsyncECR,
    repository: str,
    reference: str,
    destination: str | os.PathLike[str],
    *,
    registry_id: str | None = None,
    progress: ProgressCallback | None = None,
    concurrency: int = 4,
) -> PullResult:
    """The async twin of ``pull_image`` (file work runs in worker threads)."""
    _check_concurrency(concurrency)
    writer = await asyncio.to_thread(OCILayoutWriter, destination)
    driver = AsyncDriver(aecr, concurrency=concurrency, progress=progress)
    return await driver.run(_pull(_Pull(repository, registry_id, writer), reference))
