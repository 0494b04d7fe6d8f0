"""The ``BlobStore`` contract, shared by the tests of every backend.

``BlobStoreContract`` holds every behaviour the ``BlobStore`` interface promises; a backend's
test module reuses it by subclassing it with a ``make_store`` fixture that returns a factory
of store instances sharing one backing storage (a new instance plays a restarted process or
another replica)::

    from blobstore_contract import BlobStoreContract, StoreFactory

    class TestMyBlobStore(BlobStoreContract):
        @pytest.fixture
        def make_store(self, ...) -> StoreFactory: ...

The helpers (``data_of``, ``upload``, ``read_all``, ``BAD_DIGESTS``, ...) are for the
backend-specific tests too. ``tests/conftest.py`` puts this folder on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable

import pytest

from openecr.storage.blobs import (
    BlobInfo,
    BlobNotFound,
    BlobStore,
    DigestMismatch,
    InvalidDigest,
    InvalidUploadId,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadTooLarge,
)

MiB = 1024 * 1024
StoreFactory = Callable[[], BlobStore]


# -- helpers -----------------------------------------------------------------------------


def data_of(size: int, seed: int | str = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


def new_id() -> str:
    return str(uuid.uuid4())


async def stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]


async def stream_of(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


class StreamBroke(Exception):
    """What a client disconnect looks like to the store: the body iterator raises."""


async def broken_stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    async for piece in stream(data, chunk):
        yield piece
    raise StreamBroke


async def read_all(
    store: BlobStore, digest: str, offset: int = 0, length: int | None = None
) -> bytes:
    async with await store.open_reader(digest, offset, length) as reader:
        return b"".join([chunk async for chunk in reader])


async def upload(store: BlobStore, data: bytes, *, parts: int = 1, chunk: int = 64 * 1024) -> str:
    """Uploads ``data`` in ``parts`` appends; returns the upload id (not committed)."""
    upload_id = new_id()
    await store.create_upload(upload_id)
    bounds = [len(data) * i // parts for i in range(parts + 1)]
    for start, end in itertools.pairwise(bounds):
        size = await store.append_upload(
            upload_id, stream(data[start:end], chunk), expected_offset=start
        )
        assert size == end
    return upload_id


def plain(info: BlobInfo | None) -> tuple[str, int] | None:
    """Digest and size: what must match exactly (``modified_at`` is a time)."""
    return None if info is None else (info.digest, info.size)


async def digests(store: BlobStore) -> list[str]:
    return [digest async for digest in store.list_digests()]


async def upload_ids(store: BlobStore) -> list[str]:
    return [upload_id async for upload_id, _ in store.list_uploads()]


BAD_DIGESTS = [
    "",
    "sha256:",
    "sha256",
    "sha256:../../../../etc/passwd",
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "A" * 64,
    "sha256:" + "g" * 64,
    "sha256:" + "a" * 64 + "\n",
    "sha256:" + "a" * 62 + "/.",
    "sha256:" + "a" * 62 + "..",
    "sha256:/" + "a" * 63,
    "SHA256:" + "a" * 64,
    " sha256:" + "a" * 64,
    "sha384:" + "a" * 96,
    "sha512:" + "a" * 64,
    "sha256:" + "\u0661" * 64,  # Arabic-Indic digits are \d but not hex
    "sha256:" + "a" * 32 + "\x00" + "a" * 31,
    "sha256:" + "\uff41" * 64,  # fullwidth a
    "md5:" + "a" * 32,
    "../blobs/sha256/aa/" + "a" * 64,
]

BAD_UPLOAD_IDS = [
    "",
    ".",
    "..",
    "../blobs",
    "../../etc/passwd",
    "/etc/passwd",
    "a/b",
    str(uuid.UUID(int=1)) + "\n",
    "ABCDEF01-2345-4678-9ABC-DEF012345678",
    str(uuid.UUID(int=1)).replace("-", ""),
    "{" + str(uuid.UUID(int=1)) + "}",
    str(uuid.UUID(int=1))[:-1] + "/",
    str(uuid.UUID(int=1)) + "/../x",
    "00000000-0000-0000-0000-00000000000\u0661",
]


# -- the contract --------------------------------------------------------------------------


@pytest.mark.anyio
class BlobStoreContract:
    """Every ``BlobStore`` backend must pass these. Subclasses provide ``make_store``."""

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    @pytest.fixture
    def store(self, make_store: StoreFactory) -> BlobStore:
        return make_store()

    # round trips

    @pytest.mark.parametrize("size", [0, 1, 1000, 5 * MiB + 17])
    async def test_round_trip(self, store: BlobStore, size: int) -> None:
        data = data_of(size, size)
        digest = sha256(data)
        upload_id = await upload(store, data, parts=3 if size > 2 else 1)
        assert plain(await store.commit_upload(upload_id, digest)) == (digest, size)
        assert plain(await store.stat(digest)) == (digest, size)
        assert await read_all(store, digest) == data
        assert await digests(store) == [digest]
        assert await store.upload_size(upload_id) is None
        assert await upload_ids(store) == []

    async def test_put_bytes(self, store: BlobStore) -> None:
        data = b'{"schemaVersion": 2}'
        info = await store.put_bytes(data)
        assert plain(info) == (sha256(data), len(data))
        assert plain(await store.put_bytes(data)) == plain(info)
        assert await read_all(store, info.digest) == data
        assert plain(await store.put_bytes(b"")) == (sha256(b""), 0)
        assert sorted(await digests(store)) == sorted([info.digest, sha256(b"")])
        assert await upload_ids(store) == []

    async def test_sha512(self, store: BlobStore) -> None:
        data = data_of(3 * MiB + 5, "sha512")
        upload_id = await upload(store, data, parts=2)
        with pytest.raises(DigestMismatch) as mismatch:
            await store.commit_upload(upload_id, sha512(b"other"))
        assert mismatch.value.actual == sha512(data)
        info = await store.commit_upload(upload_id, sha512(data))
        assert plain(info) == (sha512(data), len(data))
        assert await read_all(store, sha512(data)) == data
        assert await store.stat(sha256(data)) is None
        assert await digests(store) == [sha512(data)]

    async def test_chunked_appends_of_every_shape(self, store: BlobStore) -> None:
        data = data_of(3 * MiB + 333, "shapes")
        rng = random.Random(7)
        upload_id = new_id()
        await store.create_upload(upload_id)
        assert await store.upload_size(upload_id) == 0
        offset = 0
        while offset < len(data):
            part = data[offset : offset + rng.choice([1, 7, 4096, 100_000, MiB + 1, 2 * MiB])]
            pieces: list[bytes] = []
            start = 0
            while start < len(part):
                size = rng.choice([0, 1, 13, 65536, MiB - 1, MiB, 3 * MiB])
                pieces.append(part[start : start + size])
                start += size
            size = await store.append_upload(upload_id, stream_of(pieces), expected_offset=offset)
            offset += len(part)
            assert size == offset
            assert await store.upload_size(upload_id) == offset
        # An empty append is a no-op that still answers the size.
        assert await store.append_upload(upload_id, stream_of([]), expected_offset=offset) == offset
        await store.commit_upload(upload_id, sha256(data))
        assert await read_all(store, sha256(data)) == data

    # appends that must not happen

    async def test_offset_mismatch_writes_nothing(self, store: BlobStore) -> None:
        upload_id = await upload(store, b"hello")
        for wrong in (0, 4, 6, 1000):
            with pytest.raises(UploadOffsetMismatch) as mismatch:
                await store.append_upload(upload_id, stream(b"XXXX"), expected_offset=wrong)
            assert mismatch.value.current_size == 5
        assert await store.upload_size(upload_id) == 5
        await store.append_upload(upload_id, stream(b" world"), expected_offset=5)
        info = await store.commit_upload(upload_id, sha256(b"hello world"))
        assert await read_all(store, info.digest) == b"hello world"

    async def test_negative_offset_is_rejected(self, store: BlobStore) -> None:
        upload_id = await upload(store, b"")
        with pytest.raises(ValueError):
            await store.append_upload(upload_id, stream(b"x"), expected_offset=-1)

    async def test_append_to_missing_upload(self, store: BlobStore) -> None:
        with pytest.raises(UploadNotFound):
            await store.append_upload(new_id(), stream(b"x"), expected_offset=0)
        assert await store.upload_size(new_id()) is None

    async def test_broken_stream_rolls_back_and_resumes(self, store: BlobStore) -> None:
        data = data_of(6 * MiB + 1, "resume")
        upload_id = await upload(store, data[: 2 * MiB])
        # Breaks after 3 MiB more, which spans several store chunks.
        with pytest.raises(StreamBroke):
            await store.append_upload(
                upload_id, broken_stream(data[2 * MiB : 5 * MiB]), expected_offset=2 * MiB
            )
        assert await store.upload_size(upload_id) == 2 * MiB
        with pytest.raises(StreamBroke):  # breaking before the first byte, too
            await store.append_upload(upload_id, broken_stream(b""), expected_offset=2 * MiB)
        assert await store.upload_size(upload_id) == 2 * MiB
        await store.append_upload(upload_id, stream(data[2 * MiB :]), expected_offset=2 * MiB)
        await store.commit_upload(upload_id, sha256(data))
        assert await read_all(store, sha256(data)) == data

    async def test_broken_first_append_resumes_from_zero(self, store: BlobStore) -> None:
        data = data_of(2 * MiB + 3, "first")
        upload_id = new_id()
        await store.create_upload(upload_id)
        with pytest.raises(StreamBroke):
            await store.append_upload(upload_id, broken_stream(data), expected_offset=0)
        assert await store.upload_size(upload_id) == 0
        await store.append_upload(upload_id, stream(data), expected_offset=0)
        assert (await store.commit_upload(upload_id, sha256(data))).size == len(data)

    async def test_cancelled_append_rolls_back(self, store: BlobStore) -> None:
        upload_id = await upload(store, b"kept")
        received = asyncio.Event()

        async def stalls() -> AsyncIterator[bytes]:
            yield data_of(3 * MiB, "stall")
            received.set()
            await asyncio.sleep(3600)
            yield b"never"

        task = asyncio.ensure_future(store.append_upload(upload_id, stalls(), expected_offset=4))
        await received.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.upload_size(upload_id) == 4
        await store.append_upload(upload_id, stream(b"!"), expected_offset=4)
        await store.commit_upload(upload_id, sha256(b"kept!"))

    async def test_max_bytes_caps_one_append(self, store: BlobStore) -> None:
        upload_id = await upload(store, b"0123456789")
        with pytest.raises(UploadTooLarge) as too_large:
            await store.append_upload(
                upload_id, stream(data_of(3 * MiB), 100_000), expected_offset=10, max_bytes=MiB
            )
        assert too_large.value.max_bytes == MiB
        assert await store.upload_size(upload_id) == 10
        with pytest.raises(UploadTooLarge):
            await store.append_upload(upload_id, stream(b"abc"), expected_offset=10, max_bytes=2)
        assert await store.upload_size(upload_id) == 10
        # Exactly at the limit is fine; the limit is per append, not on the total.
        size = await store.append_upload(upload_id, stream(b"abc"), expected_offset=10, max_bytes=3)
        assert size == 13
        assert await store.append_upload(upload_id, stream(b""), expected_offset=13, max_bytes=0)
        await store.commit_upload(upload_id, sha256(b"0123456789abc"))

    async def test_concurrent_appends_at_one_offset(self, store: BlobStore) -> None:
        upload_id = await upload(store, b"start:")
        one, two = data_of(2 * MiB, 1), data_of(2 * MiB, 2)
        results = await asyncio.gather(
            store.append_upload(upload_id, stream(one), expected_offset=6),
            store.append_upload(upload_id, stream(two), expected_offset=6),
            return_exceptions=True,
        )
        succeeded = [r for r in results if r == 6 + 2 * MiB]
        failed = [r for r in results if isinstance(r, UploadOffsetMismatch)]
        assert len(succeeded) == 1 and len(failed) == 1, results
        winner = one if results[0] == 6 + 2 * MiB else two
        info = await store.commit_upload(upload_id, sha256(b"start:" + winner))
        assert await read_all(store, info.digest) == b"start:" + winner

    # commits

    async def test_digest_mismatch_keeps_the_upload(self, store: BlobStore) -> None:
        data = data_of(MiB + 9, "mismatch")
        upload_id = await upload(store, data, parts=2)
        with pytest.raises(DigestMismatch) as mismatch:
            await store.commit_upload(upload_id, sha256(b"something else"))
        assert mismatch.value.actual == sha256(data)
        assert await store.stat(sha256(b"something else")) is None
        assert await store.stat(sha256(data)) is None
        assert await store.upload_size(upload_id) == len(data)
        assert await digests(store) == []
        # The upload is intact: it can grow and be committed.
        await store.append_upload(upload_id, stream(b"tail"), expected_offset=len(data))
        await store.commit_upload(upload_id, sha256(data + b"tail"))
        assert await read_all(store, sha256(data + b"tail")) == data + b"tail"

    async def test_commit_rejects_invalid_digests(self, store: BlobStore) -> None:
        upload_id = await upload(store, b"x")
        for bad in BAD_DIGESTS:
            with pytest.raises(InvalidDigest):
                await store.commit_upload(upload_id, bad)
        assert await store.upload_size(upload_id) == 1

    async def test_commit_of_existing_blob_drops_the_upload(self, store: BlobStore) -> None:
        data = data_of(MiB, "twice")
        first = await store.commit_upload(await upload(store, data), sha256(data))
        second_id = await upload(store, data, parts=2)
        assert plain(await store.commit_upload(second_id, sha256(data))) == plain(first)
        assert await store.upload_size(second_id) is None
        assert await upload_ids(store) == []
        assert await read_all(store, sha256(data)) == data
        assert await digests(store) == [sha256(data)]

    async def test_publishing_sets_modified_at(self, store: BlobStore) -> None:
        before = time.time()
        committed = await store.commit_upload(await upload(store, b"new"), sha256(b"new"))
        put = await store.put_bytes(b"put")
        for info in (committed, put, await store.stat(sha256(b"new"))):
            assert info is not None and info.modified_at is not None
            assert before - 5 <= info.modified_at <= time.time() + 5

    async def test_commit_consumes_the_upload(self, store: BlobStore) -> None:
        upload_id = await upload(store, b"once")
        await store.commit_upload(upload_id, sha256(b"once"))
        with pytest.raises(UploadNotFound):
            await store.commit_upload(upload_id, sha256(b"once"))
        with pytest.raises(UploadNotFound):
            await store.append_upload(upload_id, stream(b"more"), expected_offset=4)
        assert await read_all(store, sha256(b"once")) == b"once"

    async def test_concurrent_commits_of_the_same_content(self, make_store: StoreFactory) -> None:
        data = data_of(2 * MiB + 1, "same")
        stores = [make_store() for _ in range(3)]
        ids = [await upload(stores[i % 3], data, parts=2) for i in range(8)]
        infos = await asyncio.gather(
            *(
                stores[i % 3].commit_upload(upload_id, sha256(data))
                for i, upload_id in enumerate(ids)
            )
        )
        assert {plain(info) for info in infos} == {(sha256(data), len(data))}
        assert await read_all(stores[0], sha256(data)) == data
        assert await upload_ids(stores[0]) == []
        assert await digests(stores[0]) == [sha256(data)]

    async def test_concurrent_commits_of_one_upload(self, store: BlobStore) -> None:
        upload_id = await upload(store, b"race")
        results = await asyncio.gather(
            *(store.commit_upload(upload_id, sha256(b"race")) for _ in range(4)),
            return_exceptions=True,
        )
        infos = [r for r in results if isinstance(r, BlobInfo)]
        assert len(infos) >= 1
        assert all(isinstance(r, BlobInfo | UploadNotFound) for r in results), results
        assert await read_all(store, sha256(b"race")) == b"race"

    # hash state

    async def test_new_instance_commits_without_the_hash_state(
        self, make_store: StoreFactory
    ) -> None:
        data = data_of(3 * MiB + 7, "restart")
        first = make_store()
        upload_id = await upload(first, data[:MiB])
        restarted = make_store()
        await restarted.append_upload(upload_id, stream(data[MiB:]), expected_offset=MiB)
        with pytest.raises(DigestMismatch):
            await restarted.commit_upload(upload_id, sha256(data[:MiB]))
        assert plain(await restarted.commit_upload(upload_id, sha256(data))) == (
            sha256(data),
            len(data),
        )
        assert await read_all(first, sha256(data)) == data

    async def test_stale_hash_state_is_not_trusted(self, make_store: StoreFactory) -> None:
        """A appends (and keeps a running hash), B appends more, A commits: A must notice
        that its state covers only part of the upload."""
        data = data_of(2 * MiB + 5, "stale")
        a, b = make_store(), make_store()
        upload_id = await upload(a, data[:MiB])
        await b.append_upload(upload_id, stream(data[MiB:]), expected_offset=MiB)
        with pytest.raises(DigestMismatch) as mismatch:
            await a.commit_upload(upload_id, sha256(data[:MiB]))
        assert mismatch.value.actual == sha256(data)
        assert (await a.commit_upload(upload_id, sha256(data))).size == len(data)

    async def test_hash_state_survives_a_failed_append_elsewhere(
        self, make_store: StoreFactory
    ) -> None:
        data = data_of(2 * MiB, "elsewhere")
        a, b = make_store(), make_store()
        upload_id = await upload(a, data[:MiB])
        with pytest.raises(StreamBroke):
            await b.append_upload(upload_id, broken_stream(b"junk" * 1000), expected_offset=MiB)
        await a.append_upload(upload_id, stream(data[MiB:]), expected_offset=MiB)
        assert (await a.commit_upload(upload_id, sha256(data))).size == len(data)
        assert await read_all(b, sha256(data)) == data

    # readers

    @pytest.mark.parametrize(
        ("offset", "length"),
        [
            (0, None),
            (1, None),
            (0, 0),
            (5, 0),
            (0, 1),
            (7, 100),
            (MiB - 1, 2),
            (MiB, MiB),
            (100, 3 * MiB),
            (3 * MiB, None),
            (3 * MiB + 999, None),
            (3 * MiB + 1000, None),
            (3 * MiB + 1000, 5),
            (10 * MiB, None),
            (3 * MiB - 1, 10),
        ],
    )
    async def test_reader_ranges(self, store: BlobStore, offset: int, length: int | None) -> None:
        data = data_of(3 * MiB + 1000, "ranges")
        info = await store.put_bytes(data)
        end = len(data) if length is None else offset + length
        expected = data[offset:end]
        async with await store.open_reader(info.digest, offset, length) as reader:
            assert reader.size == len(data)
            assert reader.length == len(expected)
            chunks = [chunk async for chunk in reader]
        assert b"".join(chunks) == expected
        assert all(chunks)
        assert all(len(chunk) <= 8 * MiB for chunk in chunks)

    async def test_reader_rejects_negative_ranges(self, store: BlobStore) -> None:
        info = await store.put_bytes(b"abc")
        with pytest.raises(ValueError):
            await store.open_reader(info.digest, -1)
        with pytest.raises(ValueError):
            await store.open_reader(info.digest, 0, -1)

    async def test_reader_of_missing_blob(self, store: BlobStore) -> None:
        with pytest.raises(BlobNotFound):
            await store.open_reader(sha256(b"missing"))
        assert await store.stat(sha256(b"missing")) is None

    async def test_reader_closed_early_and_twice(self, store: BlobStore) -> None:
        data = data_of(4 * MiB, "early")
        info = await store.put_bytes(data)
        reader = await store.open_reader(info.digest)
        first = await reader.read_chunk()
        assert first == data[: len(first)]
        await reader.aclose()
        await reader.aclose()
        for _ in range(50):  # no descriptor leaks: many readers abandoned mid-way
            async with await store.open_reader(info.digest, 5) as reader:
                assert (await reader.read_chunk())[:10] == data[5:15]

    async def test_many_concurrent_readers(self, store: BlobStore) -> None:
        data = data_of(2 * MiB + 1, "many")
        info = await store.put_bytes(data)
        results = await asyncio.gather(
            *(read_all(store, info.digest, i * 1000, MiB) for i in range(20))
        )
        assert results == [data[i * 1000 : i * 1000 + MiB] for i in range(20)]

    # delete, list, cancel

    async def test_delete(self, store: BlobStore) -> None:
        keep, drop = await store.put_bytes(b"keep"), await store.put_bytes(b"drop")
        assert await store.delete(drop.digest) is True
        assert await store.delete(drop.digest) is False
        assert await store.stat(drop.digest) is None
        with pytest.raises(BlobNotFound):
            await store.open_reader(drop.digest)
        assert await digests(store) == [keep.digest]
        assert await read_all(store, keep.digest) == b"keep"
        # Stored again after deletion: a fresh, complete blob.
        assert plain(await store.put_bytes(b"drop")) == plain(drop)
        assert await read_all(store, drop.digest) == b"drop"

    async def test_quarantine(self, store: BlobStore) -> None:
        keep, bad = await store.put_bytes(b"keep"), await store.put_bytes(b"corrupt")
        assert await store.quarantine(bad.digest) is True
        assert await store.quarantine(bad.digest) is False
        assert await store.stat(bad.digest) is None
        with pytest.raises(BlobNotFound):
            await store.open_reader(bad.digest)
        assert await digests(store) == [keep.digest]
        assert plain(await store.put_bytes(b"corrupt")) == plain(bad)  # stored again
        assert await read_all(store, bad.digest) == b"corrupt"

    async def test_list_digests(self, store: BlobStore) -> None:
        assert await digests(store) == []
        blobs = [data_of(100, i) for i in range(40)]
        for blob in blobs:
            await store.put_bytes(blob)
        big = data_of(MiB, "512")
        await store.commit_upload(await upload(store, big), sha512(big))
        listed = await digests(store)
        assert sorted(listed) == sorted([sha256(b) for b in blobs] + [sha512(big)])
        assert len(listed) == len(set(listed))

    async def test_list_and_cancel_uploads(self, store: BlobStore) -> None:
        before = time.time()
        ids = sorted([await upload(store, b"x" * i) for i in range(3)])
        listed = [item async for item in store.list_uploads()]
        assert sorted(upload_id for upload_id, _ in listed) == ids
        assert all(before - 5 <= modified <= time.time() + 5 for _, modified in listed)
        await store.cancel_upload(ids[1])
        await store.cancel_upload(ids[1])  # idempotent
        await store.cancel_upload(new_id())
        assert sorted(await upload_ids(store)) == [ids[0], ids[2]]
        assert await store.upload_size(ids[1]) is None
        with pytest.raises(UploadNotFound):
            await store.append_upload(ids[1], stream(b"y"), expected_offset=1)
        with pytest.raises(UploadNotFound):
            await store.commit_upload(ids[1], sha256(b"x"))
        assert await digests(store) == []

    async def test_create_upload_is_idempotent(self, store: BlobStore) -> None:
        upload_id = await upload(store, b"abc")
        await store.create_upload(upload_id)
        assert await store.upload_size(upload_id) == 3

    # crashes and hostile input

    async def test_uncommitted_bytes_are_never_a_blob(self, make_store: StoreFactory) -> None:
        data = data_of(2 * MiB, "uncommitted")
        store = make_store()
        upload_id = await upload(store, data, parts=2)
        with pytest.raises(DigestMismatch):
            await store.commit_upload(upload_id, sha256(b"wrong"))
        for view in (store, make_store()):  # this process, and after a "restart"
            assert await view.stat(sha256(data)) is None
            with pytest.raises(BlobNotFound):
                await view.open_reader(sha256(data))
            assert await digests(view) == []
            assert await upload_ids(view) == [upload_id]

    @pytest.mark.parametrize("bad", BAD_DIGESTS)
    async def test_invalid_digests_touch_nothing(self, store: BlobStore, bad: str) -> None:
        with pytest.raises(InvalidDigest):
            await store.stat(bad)
        with pytest.raises(InvalidDigest):
            await store.open_reader(bad)
        with pytest.raises(InvalidDigest):
            await store.delete(bad)
        with pytest.raises(InvalidDigest):
            await store.quarantine(bad)
        with pytest.raises(InvalidDigest):
            store.local_path(bad)

    @pytest.mark.parametrize("bad", BAD_UPLOAD_IDS)
    async def test_invalid_upload_ids_touch_nothing(self, store: BlobStore, bad: str) -> None:
        with pytest.raises(InvalidUploadId):
            await store.create_upload(bad)
        with pytest.raises(InvalidUploadId):
            await store.upload_size(bad)
        with pytest.raises(InvalidUploadId):
            await store.append_upload(bad, stream(b"x"), expected_offset=0)
        with pytest.raises(InvalidUploadId):
            await store.commit_upload(bad, sha256(b"x"))
        with pytest.raises(InvalidUploadId):
            await store.cancel_upload(bad)
        assert await upload_ids(store) == []
        assert await digests(store) == []
