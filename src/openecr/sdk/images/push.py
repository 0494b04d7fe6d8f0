"""``push_image`` / ``apush_image``: an image from disk into a repository through the ECR
layer API (no registry credentials needed, only the ECR API's).

1. ``BatchCheckLayerAvailability`` for every blob (config and layers of every manifest);
   the repository's blobs are skipped.
2. The others upload concurrently: ``InitiateLayerUpload``, ``UploadLayerPart`` in parts of
   the advertised ``partSize`` (clamped to ECR's 5-20 MiB, and large enough for the
   4,200-part limit), ``CompleteLayerUpload`` (``LayerAlreadyExistsException`` counts as
   done). A rejected part (``InvalidLayerPartException``) continues from the
   ``lastValidByteReceived + 1`` the registry reports; a part that failed in transit or with
   a server error is retried a few times.
3. ``PutImage`` for every manifest, an index's manifests before the index, with the exact
   bytes of the source and its media type (``ImageAlreadyExistsException`` counts as done).

An upload a push leaves unfinished (an error, an exception from the progress callback, a
cancellation) is remembered for the life of the process: pushing the same layer to the same
repository again continues that upload instead of sending the layer again.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openecr.errors import (
    ECRError,
    ImageAlreadyExistsError,
    InvalidLayerPartError,
    LayerAlreadyExistsError,
    TransportError,
    UploadNotFoundError,
)
from openecr.models import BatchCheckLayerAvailabilityResponse, Layer
from openecr.sdk._core import THROTTLING_CODES
from openecr.sdk.images._workflow import (
    AsyncDriver,
    Blocking,
    Call,
    Gather,
    Progress,
    Sleep,
    SyncDriver,
    Workflow,
)
from openecr.sdk.images.layout import BlobInfo, ImageSource, ImageSourceError, ManifestInfo
from openecr.sdk.images.layout import open_image_source as _open_image_source
from openecr.sdk.images.progress import ProgressCallback, ProgressEvent, ProgressState

if TYPE_CHECKING:
    from openecr.sdk._client import ECR, AsyncECR

__all__ = [
    "DEFAULT_PART_SIZE",
    "MAX_PARTS",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "PushResult",
    "apush_image",
    "choose_part_size",
    "push_image",
]

MIN_PART_SIZE = 5 * 1024 * 1024
MAX_PART_SIZE = 20 * 1024 * 1024
DEFAULT_PART_SIZE = 10 * 1024 * 1024
MAX_PARTS = 4200
PART_RETRIES = 4
# A part no upload can be at: the answer (InvalidLayerPartException) says where one is.
_PROBE_OFFSET = 1 << 62

Source = str | os.PathLike[str] | ImageSource


@dataclass(frozen=True, slots=True)
class PushResult:
    """What ``push_image`` did. ``manifests`` lists every manifest put, an index's listed
    manifests first and ``digest`` last. ``layers_uploaded``/``layers_skipped`` are blob
    digests, configs included (ECR stores them as layers); ``bytes_sent`` counts the bytes
    of the parts the registry accepted."""

    repository: str
    digest: str
    media_type: str
    tag: str | None
    manifests: tuple[str, ...]
    layers_uploaded: tuple[str, ...]
    layers_skipped: tuple[str, ...]
    bytes_sent: int


def choose_part_size(requested: int | None, advertised: int | None, size: int) -> int:
    """The part size for a blob of ``size`` bytes: ``requested``, else the ``partSize``
    InitiateLayerUpload advertised, else 10 MiB; clamped to [5 MiB, 20 MiB] and raised if
    the blob would need more than 4,200 parts."""
    part = requested or advertised or DEFAULT_PART_SIZE
    part = min(max(part, MIN_PART_SIZE), MAX_PART_SIZE)
    if size > part * MAX_PARTS:
        part = -(-size // MAX_PARTS)
        if part > MAX_PART_SIZE:
            raise ImageSourceError(
                f"a {size}-byte layer exceeds what ECR accepts ({MAX_PARTS} parts of at most "
                f"{MAX_PART_SIZE} bytes)"
            )
    return part


class _UploadSessions:
    """Unfinished uploads by (endpoint, registry, repository, digest): (uploadId, part
    size). Bounded; the oldest are forgotten first."""

    def __init__(self, limit: int = 1000) -> None:
        self._limit = limit
        self._sessions: OrderedDict[tuple[str, ...], tuple[str, int]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: tuple[str, ...]) -> tuple[str, int] | None:
        with self._lock:
            return self._sessions.pop(key, None)

    def remember(self, key: tuple[str, ...], upload_id: str, part_size: int) -> None:
        with self._lock:
            self._sessions[key] = (upload_id, part_size)
            self._sessions.move_to_end(key)
            while len(self._sessions) > self._limit:
                self._sessions.popitem(last=False)

    def forget(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._sessions.pop(key, None)


_SESSIONS = _UploadSessions()


def _retryable(error: Exception) -> bool:
    if isinstance(error, TransportError):
        return True
    return isinstance(error, ECRError) and (
        error.http_status >= 500 or error.code in THROTTLING_CODES
    )


def _backoff(failures: int) -> float:
    return random.uniform(0, min(8.0, 0.25 * 2**failures))


@dataclass(frozen=True, slots=True)
class _Push:
    source: ImageSource
    repository: str
    registry_id: str | None
    part_size: int | None
    endpoint: str

    def key(self, digest: str) -> tuple[str, ...]:
        return (self.endpoint, self.registry_id or "", self.repository, digest)

    def call(self, operation: str, **kwargs: Any) -> Call:
        return Call(
            operation,
            {"repository_name": self.repository, "registry_id": self.registry_id, **kwargs},
        )


def _event(blob: BlobInfo, done: int, state: ProgressState) -> Progress:
    return Progress(ProgressEvent(blob.digest, blob.media_type, done, blob.size, state))


def _push(push: _Push, tag: str | None) -> Workflow[PushResult]:
    image: ManifestInfo = yield Blocking(push.source.load)
    blobs = image.distributable_blobs()
    available: set[str] = set()
    if blobs:
        checked: BatchCheckLayerAvailabilityResponse = yield push.call(
            "batch_check_layer_availability", layer_digests=[blob.digest for blob in blobs]
        )
        available = {
            layer.layer_digest
            for layer in checked.layers or []
            if layer.layer_digest and layer.layer_availability in (None, "AVAILABLE")
        }
    skipped = [blob for blob in blobs if blob.digest in available]
    pending = [blob for blob in blobs if blob.digest not in available]
    for blob in skipped:
        yield _event(blob, blob.size, ProgressState.SKIPPED)
    sent: list[int] = yield Gather([_upload(push, blob) for blob in pending])
    manifests = list(image.walk())
    for manifest in manifests:
        yield from _put_image(push, manifest, tag if manifest is image else None)
    return PushResult(
        repository=push.repository,
        digest=image.digest,
        media_type=image.media_type,
        tag=tag,
        manifests=tuple(manifest.digest for manifest in manifests),
        layers_uploaded=tuple(blob.digest for blob in pending),
        layers_skipped=tuple(blob.digest for blob in skipped),
        bytes_sent=sum(sent),
    )


def _put_image(push: _Push, manifest: ManifestInfo, tag: str | None) -> Workflow[None]:
    try:
        text = manifest.data.decode("utf-8")
    except UnicodeDecodeError:
        raise ImageSourceError(f"the manifest {manifest.digest} is not UTF-8 JSON") from None
    with contextlib.suppress(ImageAlreadyExistsError):  # the same manifest and tag are there
        yield push.call(
            "put_image",
            image_manifest=text,
            image_manifest_media_type=manifest.media_type,
            image_tag=tag,
        )


def _initiate(push: _Push, blob: BlobInfo) -> Workflow[tuple[str, int]]:
    started = yield push.call("initiate_layer_upload")
    if not started.upload_id:
        raise ECRError("InitiateLayerUpload returned no uploadId", code="InvalidResponse")
    return started.upload_id, choose_part_size(push.part_size, started.part_size, blob.size)


def _resume_offset(error: InvalidLayerPartError, size: int) -> int | None:
    """Where an upload continues after ``InvalidLayerPartException``, if it says."""
    last = error.extra.get("lastValidByteReceived")
    if isinstance(last, int) and not isinstance(last, bool) and -1 <= last < size:
        return last + 1
    return None


def _probe(push: _Push, upload_id: str, blob: BlobInfo) -> Workflow[int | None]:
    """How far an unfinished upload got: an impossible part makes the registry say
    (None: the upload cannot be continued)."""
    try:
        yield push.call(
            "upload_layer_part",
            upload_id=upload_id,
            part_first_byte=_PROBE_OFFSET,
            part_last_byte=_PROBE_OFFSET,
            layer_part_blob=b"\0",
        )
    except InvalidLayerPartError as error:
        return _resume_offset(error, blob.size)
    except ECRError:
        return None
    return None  # accepted?! the upload is unusable now


def _upload(push: _Push, blob: BlobInfo) -> Workflow[int]:
    """Uploads one blob; returns the bytes sent."""
    key = push.key(blob.digest)
    upload_id: str | None = None
    part_size = offset = 0
    session = _SESSIONS.take(key)
    if session is not None:
        resumed = yield from _probe(push, session[0], blob)
        if resumed is not None:
            (upload_id, part_size), offset = session, resumed
    if upload_id is None:
        upload_id, part_size = yield from _initiate(push, blob)
    _SESSIONS.remember(key, upload_id, part_size)
    yield _event(blob, offset, ProgressState.UPLOADING)

    sent = failures = 0
    while offset < blob.size:
        length = min(part_size, blob.size - offset)
        data: bytes = yield Blocking(push.source.read_blob, (blob.digest, offset, length))
        if len(data) != length:
            raise ImageSourceError(f"the blob {blob.digest} is shorter than {blob.size} bytes")
        try:
            part = yield push.call(
                "upload_layer_part",
                upload_id=upload_id,
                part_first_byte=offset,
                part_last_byte=offset + length - 1,
                layer_part_blob=data,
            )
        except InvalidLayerPartError as error:
            # Out of step with the registry (an earlier attempt of this part arrived after
            # all, or another client appended): continue where it says.
            failures += 1
            resume = _resume_offset(error, blob.size)
            if resume is None or failures > PART_RETRIES:
                raise
            offset = resume
            yield _event(blob, offset, ProgressState.UPLOADING)
            continue
        except UploadNotFoundError:
            failures += 1
            if failures > PART_RETRIES:
                raise
            upload_id, part_size = yield from _initiate(push, blob)
            _SESSIONS.remember(key, upload_id, part_size)
            offset = 0
            continue
        except (TransportError, ECRError) as error:
            failures += 1
            if not _retryable(error) or failures > PART_RETRIES:
                raise
            yield Sleep(_backoff(failures))
            continue
        failures = 0
        sent += length
        last = part.last_byte_received
        offset = (
            last + 1
            if isinstance(last, int) and offset <= last < offset + length
            else offset + length
        )
        yield _event(blob, offset, ProgressState.UPLOADING)

    yield from _complete(push, blob, upload_id, key)
    yield _event(blob, blob.size, ProgressState.DONE)
    return sent


def _complete(push: _Push, blob: BlobInfo, upload_id: str, key: tuple[str, ...]) -> Workflow[None]:
    try:
        yield push.call("complete_layer_upload", upload_id=upload_id, layer_digests=[blob.digest])
    except LayerAlreadyExistsError:
        pass
    except UploadNotFoundError:
        # A retried CompleteLayerUpload whose first attempt succeeded finds no upload: fine
        # if the layer is there now.
        checked: BatchCheckLayerAvailabilityResponse = yield push.call(
            "batch_check_layer_availability", layer_digests=[blob.digest]
        )
        layers: list[Layer] = checked.layers or []
        if not any(layer.layer_digest == blob.digest for layer in layers):
            _SESSIONS.forget(key)
            raise
    except ECRError:
        # InvalidLayerException (the bytes do not match the digest), LayerPartTooSmall...:
        # the upload cannot be completed; the next push starts afresh.
        _SESSIONS.forget(key)
        raise
    _SESSIONS.forget(key)


def _check_concurrency(concurrency: int) -> None:
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")


def _open(source: Source, ref: str | None) -> tuple[ImageSource, bool]:
    """The source to push from, and whether this push opened it (and must close it)."""
    if isinstance(source, ImageSource):
        if ref is not None:
            raise ValueError("ref= selects an image in a path; an ImageSource is one already")
        return source, False
    return _open_image_source(source, ref=ref), True


def push_image(
    ecr: ECR,
    source: Source,
    repository: str,
    tag: str | None = None,
    *,
    ref: str | None = None,
    registry_id: str | None = None,
    progress: ProgressCallback | None = None,
    concurrency: int = 4,
    part_size: int | None = None,
) -> PushResult:
    """Pushes an image to ``repository`` (which must exist), tagged ``tag`` if given.

    ``source`` is an OCI image layout directory, a ``docker save`` archive (see
    ``open_image_source``) or an ``ImageSource``; ``ref`` picks the image when the source
    holds several. Up to ``concurrency`` blobs upload at once; ``part_size`` overrides the
    part size the registry advertises (clamped to 5-20 MiB). ``progress`` receives a
    ``ProgressEvent`` per blob step.
    """
    _check_concurrency(concurrency)
    image_source, owned = _open(source, ref)
    try:
        push = _Push(image_source, repository, registry_id, part_size, ecr.endpoint_url)
        driver = SyncDriver(ecr, concurrency=concurrency, progress=progress)
        return driver.run(_push(push, tag))
    finally:
        if owned:
            image_source.close()


async def apush_image(
    aecr: AsyncECR,
    source: Source,
    repository: str,
    tag: str | None = None,
    *,
    ref: str | None = None,
    registry_id: str | None = None,
    progress: ProgressCallback | None = None,
    concurrency: int = 4,
    part_size: int | None = None,
) -> PushResult:
    """The async twin of ``push_image`` (file work runs in worker threads)."""
    _check_concurrency(concurrency)
    image_source, owned = await asyncio.to_thread(_open, source, ref)
    try:
        push = _Push(image_source, repository, registry_id, part_size, aecr.endpoint_url)
        driver = AsyncDriver(aecr, concurrency=concurrency, progress=progress)
        return await driver.run(_push(push, tag))
    finally:
        if owned:
            await asyncio.to_thread(image_source.close)
