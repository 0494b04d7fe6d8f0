"""The filesystem blob store: the embedded default.

Layout under ``root``::

    blobs/sha256/<first 2 hex>/<hex>     committed blobs, read-only, named by digest
    blobs/sha512/<first 2 hex>/<hex>
    uploads/<upload id>                  one file per upload in progress

How the guarantees of ``base`` are met:

* Commit verifies the digest, fsyncs the upload file, renames it into ``blobs/`` and fsyncs
  that directory. ``rename`` is atomic, so a blob path names either nothing or the whole,
  durable file; a crash before the rename leaves only the upload. The prefix directories
  are created (and their parents fsynced) when the store is opened, so a commit never has
  to make a directory entry durable other than the blob's own.
* Two commits of the same content rename identical files over each other, which is
  harmless; a commit that finds the blob already stored drops its upload instead.
* A commit sets the blob's mtime (``BlobInfo.modified_at``) to now, also when the blob was
  already stored, so garbage collection's grace period protects a blob from the moment
  it is published until the database records it.
* Delete is one ``unlink``: the blob vanishes whole; readers that opened it keep reading
  the old inode to the end.
* An append fsyncs before it returns, so an acknowledged part survives a crash.
* Appends and commits of one upload are serialised by an asyncio lock within the process
  and by ``flock`` on the upload file across processes (several servers on one shared
  directory). After taking the lock they check that the path still names the file they
  opened, so nothing is ever written through a descriptor of a file that was committed
  (renamed into ``blobs/``) or cancelled meanwhile.
* The running sha256 of an upload is kept in memory (``UploadHashStates``), tagged with the
  upload file's (device, inode, size, mtime). Appends only add bytes past the end, and a
  failed append truncates back to exactly where it started, so the prefix a state covers
  never changes; the tag catches every other case (restart, another process appended) and
  commit then re-hashes the file.

Blocking calls run in the default executor. Data moves in pieces of ``chunk_size`` (1 MiB
by default): small request chunks are joined up to it, larger ones are written as they
come. Measured here on a 256 MiB blob, reads ran at about 2 GB/s with 256 KiB pieces,
7 GB/s with 1 MiB and 9 GB/s with 4 MiB, and appends of 64 KiB request chunks gained
nothing measurable above 1 MiB; 1 MiB keeps the memory pinned per upload at about 2 MiB.
Each piece is written and hashed in two threads at once while the loop gathers the next
one, which took an append of 8 MiB chunks from about 0.6 to 1 GB/s (SHA-256 alone runs
at 1.7 GB/s).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import uuid
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from openecr.storage.blobs.base import (
    DIGEST_ALGORITHMS,
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStoreError,
    DigestAlgorithm,
    DigestMismatch,
    InvalidUploadId,
    UploadHashStates,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadTooLarge,
    parse_digest,
    validate_upload_id,
)

if TYPE_CHECKING:
    from _hashlib import HASH

__all__ = ["DEFAULT_CHUNK_SIZE", "FilesystemBlobStore"]

#: Bytes per blocking read or write call.
DEFAULT_CHUNK_SIZE = 1024 * 1024

# put_bytes hashes up to this much on the event loop (about 40 us); more goes to a thread.
_HASH_INLINE_LIMIT = 64 * 1024

_T = TypeVar("_T")
_PREFIX_RE = re.compile(r"[0-9a-f]{2}")
_HEX_RE = re.compile(r"[0-9a-f]+")
_Version = tuple[int, int, int, int]


class FilesystemBlobStore:
    """A ``BlobStore`` on a local (or shared POSIX) filesystem under ``root``.

    Creates its directory layout when constructed (a startup-time, blocking step).
    """

    def __init__(self, root: Path, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.root = Path(root)
        self._blobs = self.root / "blobs"
        self._uploads = self.root / "uploads"
        self._chunk_size = chunk_size
        self._hash_states = UploadHashStates()
        self._locks: dict[str, _LockEntry] = {}
        self._create_layout()

    # -- blobs ---------------------------------------------------------------------------

    async def stat(self, digest: str) -> BlobInfo | None:
        """The blob's info, or None if it is not stored."""
        path = self._blob_path(digest)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            return None
        return BlobInfo(digest, st.st_size, st.st_mtime)

    async def open_reader(
        self, digest: str, offset: int = 0, length: int | None = None
    ) -> BlobReader:
        """Opens the blob for reading ``length`` bytes (to the end if None) from
        ``offset``; ranges past the end are clamped. Raises ``BlobNotFound``."""
        if offset < 0 or (length is not None and length < 0):
            raise ValueError("offset and length must not be negative")
        path = self._blob_path(digest)
        try:
            fd, st = await _open_file(path, os.O_RDONLY)
        except FileNotFoundError:
            raise BlobNotFound(digest) from None
        start = min(offset, st.st_size)
        end = st.st_size if length is None else min(st.st_size, start + length)
        return _FileReader(fd, st.st_size, start, end - start, self._chunk_size)

    def local_path(self, digest: str) -> Path | None:
        """The blob's path (no I/O: it may not exist)."""
        return self._blob_path(digest)

    async def delete(self, digest: str) -> bool:
        """Unlinks the blob (atomic) and makes that durable; False if it was not stored."""
        return await asyncio.to_thread(_unlink_durably, self._blob_path(digest))

    async def list_digests(self) -> AsyncIterator[str]:
        """Every stored blob's digest, by algorithm, then in hex order."""
        for algorithm, hex_length in DIGEST_ALGORITHMS.items():
            directory = self._blobs / algorithm
            prefixes = await asyncio.to_thread(_list_names, directory, True)
            for prefix in sorted(name for name in prefixes if _PREFIX_RE.fullmatch(name)):
                names = await asyncio.to_thread(_list_names, directory / prefix, False)
                for name in sorted(names):
                    if (
                        len(name) == hex_length
                        and name.startswith(prefix)
                        and _HEX_RE.fullmatch(name)
                    ):
                        yield f"{algorithm}:{name}"

    async def put_bytes(self, data: bytes) -> BlobInfo:
        """Stores ``data`` under its sha256 digest through an upload, like any other blob."""
        if len(data) > _HASH_INLINE_LIMIT:
            digest = "sha256:" + await asyncio.to_thread(_sha256_hex, data)
        else:
            digest = "sha256:" + _sha256_hex(data)
        # Stored already: refresh its mtime, as commit_upload would (see _publish).
        st = await asyncio.to_thread(_touch, self._blob_path(digest))
        if st is not None:
            return BlobInfo(digest, st.st_size, st.st_mtime)
        upload_id = str(uuid.uuid4())
        await self.create_upload(upload_id)
        try:
            await self.append_upload(upload_id, _single_chunk(data), expected_offset=0)
            return await self.commit_upload(upload_id, digest)
        except BaseException:
            await self.cancel_upload(upload_id)
            raise

    # -- uploads -------------------------------------------------------------------------

    async def create_upload(self, upload_id: str) -> None:
        """Creates an empty upload durably; an existing upload is left as it is."""
        await asyncio.to_thread(_create_empty_file, self._upload_path(upload_id))

    async def upload_size(self, upload_id: str) -> int | None:
        """The upload's current size, or None if it does not exist."""
        path = self._upload_path(upload_id)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except FileNotFoundError:
            return None
        return st.st_size

    async def append_upload(
        self,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        expected_offset: int,
        max_bytes: int | None = None,
    ) -> int:
        """Streams ``chunks`` onto the upload at exactly ``expected_offset``; returns the
        new size once the bytes are durable. On failure the upload is truncated back to
        ``expected_offset`` and the exception propagates (see ``BlobStore``)."""
        if expected_offset < 0:
            raise ValueError("expected_offset must not be negative")
        path = self._upload_path(upload_id)
        async with self._upload_lock(upload_id):
            fd, st = await self._open_upload_exclusive(upload_id, path)
            try:
                if st.st_size != expected_offset:
                    raise UploadOffsetMismatch(st.st_size)
                before = _version(st)
                hasher = self._hash_states.get(upload_id, before)
                if hasher is None and expected_offset == 0:
                    hasher = hashlib.sha256()
                try:
                    size = await self._write_stream(fd, chunks, expected_offset, hasher, max_bytes)
                    st = await _run_blocking(_fsync_and_stat, fd)
                except BaseException:
                    # Cut back to where this append started, so the client can resume
                    # from the size it was last told; the old hash state stays valid.
                    st = await _run_blocking(_truncate_durably, fd, expected_offset)
                    self._hash_states.retag(upload_id, before, _version(st))
                    raise
                if hasher is None:
                    self._hash_states.drop(upload_id)
                else:
                    self._hash_states.put(upload_id, hasher, _version(st))
                return size
            finally:
                os.close(fd)

    async def commit_upload(self, upload_id: str, expected_digest: str) -> BlobInfo:
        """Verifies the upload against ``expected_digest`` and publishes it durably as that
        blob (see ``BlobStore``)."""
        path = self._upload_path(upload_id)
        algorithm, hex_digest = parse_digest(expected_digest)
        target = self._blobs / algorithm / hex_digest[:2] / hex_digest
        async with self._upload_lock(upload_id):
            fd, st = await self._open_upload_exclusive(upload_id, path)
            try:
                version = _version(st)
                hasher = None
                if algorithm == "sha256":
                    hasher = self._hash_states.get(upload_id, version)
                if hasher is None:
                    hasher = await _run_blocking(_hash_file, fd, algorithm, self._chunk_size)
                    if algorithm == "sha256":
                        self._hash_states.put(upload_id, hasher.copy(), version)
                actual = f"{algorithm}:{hasher.hexdigest()}"
                if actual != expected_digest:
                    raise DigestMismatch(actual)
                size, published_at = await _run_blocking(_publish, fd, path, target)
                self._hash_states.drop(upload_id)
                return BlobInfo(expected_digest, size, published_at)
            finally:
                os.close(fd)

    async def cancel_upload(self, upload_id: str) -> None:
        """Deletes the upload; no error if it does not exist."""
        path = self._upload_path(upload_id)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, path)
        self._hash_states.drop(upload_id)

    async def list_uploads(self) -> AsyncIterator[tuple[str, float]]:
        """``(upload id, mtime)`` of every upload in progress."""
        entries = await asyncio.to_thread(_list_files_with_mtimes, self._uploads)
        for name, mtime in sorted(entries):
            try:
                validate_upload_id(name)
            except InvalidUploadId:
                continue
            yield name, mtime

    # -- internals -----------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        algorithm, hex_digest = parse_digest(digest)
        return self._blobs / algorithm / hex_digest[:2] / hex_digest

    def _upload_path(self, upload_id: str) -> Path:
        return self._uploads / validate_upload_id(upload_id)

    async def quarantine(self, digest: str) -> bool:
        """Renames the blob into ``root/quarantine/`` (see ``BlobStore``)."""
        algorithm, hex_digest = parse_digest(digest)
        target = self.root / "quarantine" / f"{algorithm}-{hex_digest}"
        return await asyncio.to_thread(_move_durably, self._blob_path(digest), target)

    def _create_layout(self) -> None:
        directories = [self.root, self._blobs, self._uploads]
        for algorithm in DIGEST_ALGORITHMS:
            directories.append(self._blobs / algorithm)
            directories.extend(self._blobs / algorithm / f"{i:02x}" for i in range(256))
        changed: set[Path] = set()
        for directory in directories:
            if directory.is_dir():
                continue
            for missing in reversed([directory, *directory.parents]):
                if missing.is_dir():
                    continue
                with contextlib.suppress(FileExistsError):
                    missing.mkdir()
                changed.add(missing.parent)
        # A new directory entry is durable only once its parent is fsynced.
        for directory in changed:
            _fsync_dir(directory)

    @contextlib.asynccontextmanager
    async def _upload_lock(self, upload_id: str) -> AsyncIterator[None]:
        entry = self._locks.get(upload_id)
        if entry is None:
            entry = self._locks[upload_id] = _LockEntry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[upload_id]

    async def _open_upload_exclusive(
        self, upload_id: str, path: Path
    ) -> tuple[int, os.stat_result]:
        """Opens the upload read-write under an exclusive ``flock``; raises
        ``UploadNotFound`` if it does not exist (anymore)."""
        try:
            fd, _ = await _open_file(path, os.O_RDWR)
        except FileNotFoundError:
            raise UploadNotFound(upload_id) from None
        try:
            await _flock_exclusive(fd)
            st = await asyncio.to_thread(_stat_if_still_linked, fd, path)
            if st is None:
                raise UploadNotFound(upload_id)
            return fd, st
        except BaseException:
            os.close(fd)
            raise

    async def _write_stream(
        self,
        fd: int,
        chunks: AsyncIterable[bytes],
        offset: int,
        hasher: HASH | None,
        max_bytes: int | None,
    ) -> int:
        """Writes the stream at ``offset`` in ``chunk_size`` pieces and returns the end
        offset. Each piece is written and hashed in two threads at once while the loop
        gathers the next piece; hash updates stay in order because a piece is submitted
        only after the previous one is done."""
        loop = asyncio.get_running_loop()
        position = offset
        received = 0
        parts: list[bytes] = []
        buffered = 0
        pending: list[asyncio.Future[None]] = []

        async def finish_pending() -> None:
            for future in pending:
                await _wait_blocking(future)
            pending.clear()

        async def flush() -> None:
            nonlocal position, buffered
            data = parts[0] if len(parts) == 1 else b"".join(parts)
            parts.clear()
            buffered = 0
            await finish_pending()
            # Yield once per piece even when the stream and the threads never make us wait.
            await asyncio.sleep(0)
            pending.append(loop.run_in_executor(None, _write_all, fd, data, position))
            if hasher is not None:
                pending.append(loop.run_in_executor(None, hasher.update, data))
            position += len(data)

        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                received += len(chunk)
                if max_bytes is not None and received > max_bytes:
                    raise UploadTooLarge(max_bytes)
                parts.append(chunk)
                buffered += len(chunk)
                if buffered >= self._chunk_size:
                    await flush()
            if parts:
                await flush()
            await finish_pending()
            return position
        finally:
            # On failure, let the calls in flight finish before the caller truncates.
            for future in pending:
                if not future.done():
                    with contextlib.suppress(Exception):
                        await _wait_blocking(future)


@dataclass(slots=True)
class _LockEntry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class _FileReader(BlobReader):
    def __init__(self, fd: int, size: int, offset: int, length: int, chunk_size: int) -> None:
        super().__init__(size, length)
        self._fd = fd
        self._position = offset
        self._remaining = length
        self._chunk_size = chunk_size
        self._in_flight: asyncio.Future[bytes] | None = None
        # Closes the descriptor exactly once: at the end, on aclose, or when collected.
        self._close = weakref.finalize(self, os.close, fd)
        if length == 0:
            self._close()

    async def read_chunk(self) -> bytes:
        if self._remaining <= 0 or not self._close.alive:
            self._close()
            return b""
        count = min(self._chunk_size, self._remaining)
        # A bound method keeps the reader (and so the descriptor) alive while the thread
        # reads, even if the awaiting task is cancelled and drops the reader.
        self._in_flight = asyncio.get_running_loop().run_in_executor(
            None, self._pread, count, self._position
        )
        # Shielded: cancelling the caller must not mark the read finished while the
        # thread still uses the descriptor (aclose waits for it).
        data = await asyncio.shield(self._in_flight)
        if not data:
            self._close()
            raise BlobStoreError("blob is shorter than when it was opened")
        self._position += len(data)
        self._remaining -= len(data)
        if self._remaining <= 0:
            self._close()
        return data

    async def aclose(self) -> None:
        in_flight = self._in_flight
        if in_flight is not None and not in_flight.done():
            # Never close a descriptor a thread is still reading from: its number could be
            # reused by another open file before the read runs.
            in_flight.add_done_callback(lambda _: self._close())
        else:
            self._close()

    def _pread(self, count: int, position: int) -> bytes:
        return os.pread(self._fd, count, position)


# -- helpers (blocking ones run in the executor) --------------------------------------------


def _version(st: os.stat_result) -> _Version:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


async def _single_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _run_blocking(function: Callable[..., _T], *args: object) -> _T:
    """Runs a blocking call in the executor and returns its result; if the caller is
    cancelled meanwhile, still waits for the call to finish (a thread cannot be stopped,
    and the caller's cleanup must not race it), then propagates the cancellation."""
    future = asyncio.get_running_loop().run_in_executor(None, function, *args)
    return await _wait_blocking(future)


async def _wait_blocking(future: asyncio.Future[_T]) -> _T:
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled = True
            if not future.done():
                continue
            if not future.cancelled() and future.exception() is None:
                result = future.result()
            else:
                raise
        break
    if cancelled:
        raise asyncio.CancelledError
    return result


async def _open_file(path: Path, flags: int) -> tuple[int, os.stat_result]:
    """Opens and fstats ``path`` in a thread; a descriptor opened after the caller was
    cancelled is closed rather than leaked."""
    future = asyncio.get_running_loop().run_in_executor(None, _open_and_stat, path, flags)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        future.add_done_callback(_close_opened)
        raise


def _open_and_stat(path: Path, flags: int) -> tuple[int, os.stat_result]:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def _close_opened(future: asyncio.Future[tuple[int, os.stat_result]]) -> None:
    if not future.cancelled() and future.exception() is None:
        os.close(future.result()[0])


async def _flock_exclusive(fd: int) -> None:
    # Non-blocking attempts with back-off: a blocking flock would pin an executor thread
    # for as long as another process streams into the same upload.
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)


def _stat_if_still_linked(fd: int, path: Path) -> os.stat_result | None:
    st = os.fstat(fd)
    try:
        linked = os.stat(path)
    except FileNotFoundError:
        return None
    if (linked.st_dev, linked.st_ino) != (st.st_dev, st.st_ino):
        return None
    return st


def _write_all(fd: int, data: bytes, position: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        position += written
        view = view[written:]


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_and_stat(fd: int) -> os.stat_result:
    os.fsync(fd)
    return os.fstat(fd)


def _truncate_durably(fd: int, size: int) -> os.stat_result:
    os.ftruncate(fd, size)
    os.fsync(fd)
    return os.fstat(fd)


def _hash_file(fd: int, algorithm: DigestAlgorithm, chunk_size: int) -> HASH:
    hasher = hashlib.new(algorithm)
    position = 0
    while data := os.pread(fd, chunk_size, position):
        hasher.update(data)
        position += len(data)
    return hasher


def _publish(fd: int, upload_path: Path, target: Path) -> tuple[int, float]:
    """Makes the verified upload the blob at ``target``; returns the blob's size and
    modification time.

    The blob's mtime is set to now, also when it was stored already: garbage collection
    spares files younger than its grace period, and a blob just published is about to be
    recorded in the database.
    """
    existing = _touch(target)
    if existing is not None:
        # Content-addressed: the stored blob holds these very bytes already.
        os.unlink(upload_path)
        return existing.st_size, existing.st_mtime
    # Not stored (or deleted a moment ago): publish this upload.
    # Read-only before it becomes visible; restored if publishing fails, so the upload
    # can still be appended to or committed again.
    os.fchmod(fd, 0o444)
    os.utime(fd)
    try:
        os.fsync(fd)
        try:
            os.rename(upload_path, target)
        except FileNotFoundError:
            if not upload_path.exists():
                raise
            # The prefix directory was removed by hand: recreate it durably, then retry.
            target.parent.mkdir(parents=True, exist_ok=True)
            _fsync_dir(target.parent.parent)
            os.rename(upload_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o644)
        raise
    _fsync_dir(target.parent)
    st = os.fstat(fd)
    return st.st_size, st.st_mtime


def _touch(path: Path) -> os.stat_result | None:
    """Sets the file's mtime to now and returns its stat, or None if it does not exist."""
    try:
        os.utime(path)
        return os.stat(path)
    except FileNotFoundError:
        return None


def _create_empty_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(path.parent)


def _unlink_durably(path: Path) -> bool:
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _fsync_dir(path.parent)
    return True


def _move_durably(source: Path, target: Path) -> bool:
    if not target.parent.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        _fsync_dir(target.parent.parent)
    try:
        os.rename(source, target)
    except FileNotFoundError:
        return False
    _fsync_dir(target.parent)
    _fsync_dir(source.parent)
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _list_names(directory: Path, directories: bool) -> list[str]:
    """Names of the subdirectories, or of the regular files, in ``directory``."""
    try:
        with os.scandir(directory) as entries:
            return [
                entry.name
                for entry in entries
                if (
                    entry.is_dir(follow_symlinks=False)
                    if directories
                    else entry.is_file(follow_symlinks=False)
                )
            ]
    except FileNotFoundError:
        return []


def _list_files_with_mtimes(directory: Path) -> list[tuple[str, float]]:
    found: list[tuple[str, float]] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):  # removed while listing
                if entry.is_file(follow_symlinks=False):
                    found.append((entry.name, entry.stat(follow_symlinks=False).st_mtime))
    return found
