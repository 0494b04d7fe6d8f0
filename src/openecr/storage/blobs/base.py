"""The blob store interface: content-addressed blobs plus resumable uploads.

A blob store knows bytes and digests, nothing about repositories, images or references
(those live in the metadata store). The interface is deliberately narrow, in the spirit
of CNCF distribution's storage drivers, so that the filesystem backend and an S3 backend
fit the same shape:

* blobs: ``stat``, ``open_reader``, ``local_path``, ``delete``, ``list_digests``,
  ``put_bytes``;
* uploads: ``create_upload``, ``upload_size``, ``append_upload``, ``commit_upload``,
  ``cancel_upload``, ``list_uploads``.

Guarantees every backend gives:

* A blob is visible under its digest only after its bytes were verified against that
  digest and made durable. Readers never see a partial blob.
* An upload grows only by ``append_upload`` at exactly its current size. An append that
  fails (the stream broke, ``max_bytes`` was exceeded, the task was cancelled) leaves the
  upload at the size it had before, so the client can resume from there.
* Digests and upload ids are validated before they name anything in storage; invalid ones
  raise ``InvalidDigest`` / ``InvalidUploadId``.

Running hashes: ``commit_upload`` must know the digest of everything uploaded. Backends
keep the running ``hashlib`` object per upload in process memory (``UploadHashStates``),
tagged with the version of the upload it covers, and re-hash the stored bytes only when
that state is missing or stale (after a restart, or when another replica appended). Python
cannot serialise a ``hashlib`` object, so persisting the state is not an option; re-hashing
costs one sequential read at SHA-256 speed, which only the rare cases pay.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterable, AsyncIterator, Hashable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self

if TYPE_CHECKING:
    from _hashlib import HASH

__all__ = [
    "DIGEST_ALGORITHMS",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobStoreError",
    "DigestAlgorithm",
    "DigestMismatch",
    "InvalidDigest",
    "InvalidUploadId",
    "UploadHashStates",
    "UploadNotFound",
    "UploadOffsetMismatch",
    "UploadTooLarge",
    "parse_digest",
    "validate_upload_id",
]

DigestAlgorithm = Literal["sha256", "sha512"]

#: Accepted digest algorithms and the length of their lowercase hex encoding.
DIGEST_ALGORITHMS: dict[DigestAlgorithm, int] = {"sha256": 64, "sha512": 128}

# fullmatch (never ``$``, which also matches before a trailing newline); ASCII classes only.
_DIGEST_RE = re.compile(r"(sha256):([0-9a-f]{64})|(sha512):([0-9a-f]{128})")
_UPLOAD_ID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class BlobStoreError(Exception):
    """Base class of every error a blob store raises on purpose."""


class BlobNotFound(BlobStoreError):
    """No blob is stored under this digest."""

    def __init__(self, digest: str) -> None:
        super().__init__(f"blob not found: {digest}")
        self.digest = digest


class UploadNotFound(BlobStoreError):
    """No upload exists with this id (never created, committed, cancelled or purged)."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"upload not found: {upload_id!r}")
        self.upload_id = upload_id


class InvalidUploadId(UploadNotFound):
    """The upload id is not a lowercase UUID, so it cannot name an upload.

    A subclass of ``UploadNotFound`` so wire adapters answer it the same way (unknown
    upload) without a special case.
    """


class UploadOffsetMismatch(BlobStoreError):
    """An append did not start at the upload's current size; nothing was written."""

    def __init__(self, current_size: int) -> None:
        super().__init__(f"upload offset mismatch: the upload holds {current_size} bytes")
        self.current_size = current_size


class DigestMismatch(BlobStoreError):
    """The uploaded bytes do not hash to the expected digest; the upload is kept."""

    def __init__(self, actual: str) -> None:
        super().__init__(f"digest mismatch: the uploaded bytes hash to {actual}")
        self.actual = actual


class UploadTooLarge(BlobStoreError):
    """An append's stream carried more than ``max_bytes`` bytes; it was rolled back."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the append exceeds its limit of {max_bytes} bytes")
        self.max_bytes = max_bytes


class InvalidDigest(BlobStoreError, ValueError):
    """The text is not ``sha256:<64 lowercase hex>`` or ``sha512:<128 lowercase hex>``."""

    def __init__(self, text: str) -> None:
        shown = text if len(text) <= 200 else text[:200] + "..."
        super().__init__(f"invalid digest: {shown!r}")
        self.text = text


def parse_digest(text: str) -> tuple[DigestAlgorithm, str]:
    """Splits a digest into ``(algorithm, hex)``; anything but the two accepted forms
    raises ``InvalidDigest``. Storage paths are derived only from digests that passed."""
    match = _DIGEST_RE.fullmatch(text)
    if match is None:
        raise InvalidDigest(text)
    if match.group(1) is not None:
        return "sha256", match.group(2)
    return "sha512", match.group(4)


def validate_upload_id(upload_id: str) -> str:
    """Returns the id if it is a lowercase hyphenated UUID, else raises ``InvalidUploadId``."""
    if _UPLOAD_ID_RE.fullmatch(upload_id) is None:
        raise InvalidUploadId(upload_id)
    return upload_id


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored blob: its digest, size in bytes and (where the store knows it) the time its
    bytes were last written, in epoch seconds."""

    digest: str
    size: int
    modified_at: float | None = None


class BlobReader(ABC):
    """The bytes of one blob, or of a range of it, as chunks.

    Iterate with ``async for``; close with ``aclose()`` or ``async with`` (a reader that is
    iterated to the end closes itself). ``size`` is the whole blob's size, ``length`` the
    number of bytes this reader yields, both known before the first chunk so the HTTP layer
    can send its headers first.
    """

    def __init__(self, size: int, length: int) -> None:
        self.size = size
        self.length = length

    @abstractmethod
    async def read_chunk(self) -> bytes:
        """Returns the next chunk, ``b""`` at the end."""

    @abstractmethod
    async def aclose(self) -> None:
        """Releases the reader's resources; idempotent."""

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.read_chunk()
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


class BlobStore(Protocol):
    """Content-addressed blob storage with resumable, verified uploads."""

    async def stat(self, digest: str) -> BlobInfo | None:
        """The blob's info, or None if it is not stored."""
        ...

    async def open_reader(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> BlobReader:
        """Opens the blob for reading from ``offset``, at most ``length`` bytes (to the
        end if None). Like slicing, a range past the end is clamped (``length`` 0 when
        ``offset >= size``). Raises ``BlobNotFound``; ``ValueError`` for negative values."""
        ...

    def local_path(self, digest: str) -> Path | None:
        """Where the blob lives on local disk (for sendfile), or None for remote stores.
        Does no I/O: the file may not exist, ``stat`` first and handle a race with delete."""
        ...

    async def delete(self, digest: str) -> bool:
        """Removes the blob atomically; False if it was not stored. Readers that already
        opened it finish reading the whole blob."""
        ...

    def list_digests(self) -> AsyncIterator[str]:
        """Every stored blob's digest (for garbage collection and fsck)."""
        ...

    async def put_bytes(self, data: bytes) -> BlobInfo:
        """Stores a small blob held in memory under its sha256 digest, as durably as
        ``commit_upload`` does."""
        ...

    async def create_upload(self, upload_id: str) -> None:
        """Creates an empty upload. Creating an existing one keeps it as it is."""
        ...

    async def upload_size(self, upload_id: str) -> int | None:
        """The upload's current size, or None if it does not exist."""
        ...

    async def append_upload(
        self,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        expected_offset: int,
        max_bytes: int | None = None,
    ) -> int:
        """Streams ``chunks`` onto the end of the upload and returns its new size; the
        bytes are durable when this returns.

        Raises ``UploadOffsetMismatch`` (nothing written) if the upload's size is not
        ``expected_offset``, ``UploadTooLarge`` if ``chunks`` carries more than
        ``max_bytes`` bytes (a cap on this append, not on the upload's total: pass
        ``limit - expected_offset`` to cap the total). On any failure, including an
        exception from ``chunks`` or cancellation, the upload is cut back to
        ``expected_offset`` bytes before the exception propagates. Appends to one upload
        are serialised.
        """
        ...

    async def commit_upload(self, upload_id: str, expected_digest: str) -> BlobInfo:
        """Verifies that the upload hashes to ``expected_digest`` and publishes it as that
        blob, consuming the upload.

        Raises ``DigestMismatch`` (the upload is kept), ``InvalidDigest``,
        ``UploadNotFound``. If the blob already exists the upload is simply dropped.
        Either way the blob's ``modified_at`` becomes now, so a garbage collector that
        spares young blobs does not delete it before the caller records it.
        """
        ...

    async def cancel_upload(self, upload_id: str) -> None:
        """Deletes the upload and its bytes; no error if it does not exist."""
        ...

    def list_uploads(self) -> AsyncIterator[tuple[str, float]]:
        """``(upload id, last modified as a POSIX timestamp)`` of every upload, for
        purging abandoned ones."""
        ...

    async def quarantine(self, digest: str) -> bool:
        """Moves a (corrupt) blob out of the way so it is no longer served, keeping its
        bytes for inspection; False if it was not stored."""
        ...


@dataclass(slots=True)
class _HashState:
    hasher: HASH
    version: Hashable


class UploadHashStates:
    """Running sha256 states of uploads, for backends (see the module docstring).

    Each state is tagged with a backend-defined ``version`` of the upload it covers (the
    filesystem backend uses inode, size and mtime); ``get`` returns a copy only when the
    caller's current version matches, so a stale state is never used. Bounded: the least
    recently used states are dropped first, which only costs a re-hash.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._states: OrderedDict[str, _HashState] = OrderedDict()
        self._max_entries = max_entries

    def get(self, upload_id: str, version: Hashable) -> HASH | None:
        """A copy of the state if it covers exactly ``version``, else None."""
        state = self._states.get(upload_id)
        if state is None or state.version != version:
            return None
        self._states.move_to_end(upload_id)
        return state.hasher.copy()

    def put(self, upload_id: str, hasher: HASH, version: Hashable) -> None:
        """Records ``hasher`` as covering ``version`` of the upload."""
        self._states[upload_id] = _HashState(hasher, version)
        self._states.move_to_end(upload_id)
        while len(self._states) > self._max_entries:
            self._states.popitem(last=False)

    def retag(self, upload_id: str, old_version: Hashable, new_version: Hashable) -> None:
        """The upload changed version without changing content (e.g. it was truncated
        back to exactly the bytes the state covers): keep the state valid."""
        state = self._states.get(upload_id)
        if state is not None and state.version == old_version:
            state.version = new_version

    def drop(self, upload_id: str) -> None:
        """Forgets the upload's state."""
        self._states.pop(upload_id, None)

    def __len__(self) -> int:
        return len(self._states)
