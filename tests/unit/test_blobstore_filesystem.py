"""The blob store contract, run against the filesystem backend.

``BlobStoreContract`` holds every behaviour the ``BlobStore`` interface promises; a backend
reuses it by subclassing it with a ``make_store`` fixture that returns a factory of store
instances sharing one backing storage (a new instance plays a restarted process or another
replica). ``TestFilesystemBlobStore`` adds what only the filesystem backend can show:
its layout, fault injection around fsync/rename, and crashes of a real process.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from blobstore_contract import (
    BAD_DIGESTS,
    BAD_UPLOAD_IDS,
    BlobStoreContract,
    MiB,
    StoreFactory,
    data_of,
    digests,
    plain,
    read_all,
    sha256,
    sha512,
    stream,
    upload,
    upload_ids,
)
from hypothesis import given
from hypothesis import strategies as st

from openecr.storage.blobs import (
    BlobStore,
    FilesystemBlobStore,
    InvalidDigest,
    InvalidUploadId,
    UploadNotFound,
    parse_digest,
    validate_upload_id,
)

# -- pure helpers ----------------------------------------------------------------------------


def test_parse_digest_accepts_the_two_forms() -> None:
    assert parse_digest("sha256:" + "0" * 64) == ("sha256", "0" * 64)
    assert parse_digest(sha512(b"")) == ("sha512", sha512(b"")[7:])


@pytest.mark.parametrize("bad", BAD_DIGESTS)
def test_parse_digest_rejects(bad: str) -> None:
    with pytest.raises(InvalidDigest):
        parse_digest(bad)


@given(st.text(max_size=140))
def test_parse_digest_accepts_nothing_else(text: str) -> None:
    try:
        algorithm, hex_digest = parse_digest(text)
    except InvalidDigest:
        return
    assert text == f"{algorithm}:{hex_digest}"
    assert set(hex_digest) <= set("0123456789abcdef")
    assert len(hex_digest) == {"sha256": 64, "sha512": 128}[algorithm]


@given(st.binary(max_size=200))
def test_parse_digest_round_trips_real_digests(data: bytes) -> None:
    assert parse_digest(sha256(data)) == ("sha256", hashlib.sha256(data).hexdigest())


@pytest.mark.parametrize("bad", BAD_UPLOAD_IDS)
def test_validate_upload_id_rejects(bad: str) -> None:
    with pytest.raises(InvalidUploadId):
        validate_upload_id(bad)
    assert issubclass(InvalidUploadId, UploadNotFound)


@given(st.uuids())
def test_validate_upload_id_accepts_uuids(value: uuid.UUID) -> None:
    assert validate_upload_id(str(value)) == str(value)


# -- the filesystem backend ------------------------------------------------------------------


class TestFilesystemBlobStore(BlobStoreContract):
    @pytest.fixture
    def root(self, tmp_path: Path) -> Path:
        return tmp_path / "data"

    @pytest.fixture
    def make_store(self, root: Path) -> StoreFactory:
        # A small chunk size so the tests cross many chunk boundaries.
        return lambda: FilesystemBlobStore(root, chunk_size=256 * 1024)

    async def test_layout(self, root: Path) -> None:
        store = FilesystemBlobStore(root)
        data = data_of(1000, "layout")
        info = await store.put_bytes(data)
        hex_digest = info.digest.removeprefix("sha256:")
        path = root / "blobs" / "sha256" / hex_digest[:2] / hex_digest
        assert store.local_path(info.digest) == path
        assert path.read_bytes() == data
        assert path.stat().st_mode & 0o777 == 0o444
        assert list((root / "uploads").iterdir()) == []
        assert (root / "blobs" / "sha512" / "ff").is_dir()

    async def test_strays_are_not_listed(self, root: Path) -> None:
        store = FilesystemBlobStore(root)
        info = await store.put_bytes(b"real")
        hex_digest = info.digest.removeprefix("sha256:")
        prefix = root / "blobs" / "sha256" / hex_digest[:2]
        (prefix / (hex_digest + ".tmp")).write_bytes(b"half")
        (prefix / ("0" * 64)).write_bytes(b"wrong prefix")
        (prefix / "notes.txt").write_bytes(b"")
        (prefix / ("a" * 64)).mkdir()
        (root / "blobs" / "sha256" / "zz").mkdir()
        (root / "blobs" / "sha384").mkdir()
        (root / "uploads" / "not-an-upload").write_bytes(b"")
        (root / "uploads" / str(uuid.UUID(int=5))).mkdir()
        assert await digests(store) == [info.digest]
        assert await upload_ids(store) == []

    async def test_traversal_stays_inside_the_root(self, tmp_path: Path, root: Path) -> None:
        store = FilesystemBlobStore(root)
        outside = tmp_path / "outside"
        outside.write_bytes(b"precious")
        for bad in ["../../outside", "../outside", str(outside)]:
            with pytest.raises(InvalidUploadId):
                await store.cancel_upload(bad)
            with pytest.raises(InvalidDigest):
                await store.delete("sha256:" + bad)
        assert outside.read_bytes() == b"precious"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "outside"]

    @pytest.mark.parametrize("how", ["commit", "put_bytes"])
    async def test_republishing_refreshes_modified_at(self, root: Path, how: str) -> None:
        """An old orphan blob that a push stores again must look young to garbage
        collection until the push has recorded it."""
        store = FilesystemBlobStore(root)
        data = b"stored twice"
        info = await store.put_bytes(data)
        path = store.local_path(info.digest)
        assert path is not None
        os.utime(path, (1_000_000, 1_000_000))
        old = await store.stat(info.digest)
        assert old is not None and old.modified_at == 1_000_000
        before = time.time()
        if how == "commit":
            published = await store.commit_upload(await upload(store, data), info.digest)
        else:
            published = await store.put_bytes(data)
        assert published.modified_at is not None and published.modified_at >= before - 1
        refreshed = await store.stat(info.digest)
        assert refreshed is not None and refreshed.modified_at == published.modified_at

    async def test_open_reader_survives_delete(self, root: Path) -> None:
        store = FilesystemBlobStore(root, chunk_size=64 * 1024)
        data = data_of(MiB, "survivor")
        info = await store.put_bytes(data)
        async with await store.open_reader(info.digest) as reader:
            first = await reader.read_chunk()
            assert await store.delete(info.digest)
            rest = [chunk async for chunk in reader]
        assert first + b"".join(rest) == data

    async def test_failed_fsync_during_commit_publishes_nothing(
        self, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = FilesystemBlobStore(root)
        data = data_of(MiB, "fsync")
        upload_id = await upload(store, data)

        def failing_fsync(fd: int) -> None:
            raise OSError(5, "Input/output error")

        with monkeypatch.context() as patch:
            patch.setattr(os, "fsync", failing_fsync)
            with pytest.raises(OSError):
                await store.commit_upload(upload_id, sha256(data))
        assert await store.stat(sha256(data)) is None
        upload_path = root / "uploads" / upload_id
        assert upload_path.stat().st_mode & 0o777 == 0o644
        assert plain(await store.commit_upload(upload_id, sha256(data))) == (
            sha256(data),
            len(data),
        )

    async def test_failed_rename_keeps_the_upload(
        self, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = FilesystemBlobStore(root)
        upload_id = await upload(store, b"rename")

        def failing_rename(source: object, target: object) -> None:
            raise OSError(28, "No space left on device")

        with monkeypatch.context() as patch:
            patch.setattr(os, "rename", failing_rename)
            with pytest.raises(OSError):
                await store.commit_upload(upload_id, sha256(b"rename"))
        assert await digests(store) == []
        assert await store.append_upload(upload_id, stream(b"!"), expected_offset=6) == 7
        await store.commit_upload(upload_id, sha256(b"rename!"))

    async def test_failed_write_rolls_back(
        self, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        store = FilesystemBlobStore(root, chunk_size=64 * 1024)
        upload_id = await upload(store, b"before")
        real_pwrite = os.pwrite
        calls = 0

        def flaky_pwrite(fd: int, data: bytes, position: int) -> int:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError(28, "No space left on device")
            return real_pwrite(fd, data, position)

        with monkeypatch.context() as patch:
            patch.setattr(os, "pwrite", flaky_pwrite)
            with pytest.raises(OSError):
                await store.append_upload(
                    upload_id, stream(data_of(MiB), 64 * 1024), expected_offset=6
                )
        assert await store.upload_size(upload_id) == 6
        await store.commit_upload(upload_id, sha256(b"before"))

    async def test_append_waiting_for_a_commit_never_writes_into_the_blob(
        self, store: BlobStore, root: Path
    ) -> None:
        """Another process commits the upload while this one waits for the upload's lock:
        the waiting append must notice that its descriptor now names the blob."""
        upload_id = await upload(store, b"content")
        upload_path = root / "uploads" / upload_id
        blob_path = store.local_path(sha256(b"content"))
        assert blob_path is not None
        fd = os.open(upload_path, os.O_RDONLY)
        try:
            # The other process, committing: it holds the lock and renames the file.
            fcntl.flock(fd, fcntl.LOCK_EX)
            append = asyncio.ensure_future(
                store.append_upload(upload_id, stream(b" appended"), expected_offset=7)
            )
            await asyncio.sleep(0.05)
            assert not append.done()
            os.rename(upload_path, blob_path)
        finally:
            os.close(fd)
        with pytest.raises(UploadNotFound):
            await append
        assert await read_all(store, sha256(b"content")) == b"content"

    async def test_cancel_during_a_slow_write_rolls_back_after_it(
        self, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A thread cannot be stopped: the rollback must wait for the write in flight,
        or that write would land after the truncation."""
        store = FilesystemBlobStore(root, chunk_size=64 * 1024)
        upload_id = await upload(store, b"before")
        real_pwrite = os.pwrite
        writing = asyncio.Event()
        loop = asyncio.get_running_loop()

        def slow_pwrite(fd: int, data: bytes, position: int) -> int:
            loop.call_soon_threadsafe(writing.set)
            time.sleep(0.3)
            return real_pwrite(fd, data, position)

        with monkeypatch.context() as patch:
            patch.setattr(os, "pwrite", slow_pwrite)
            task = asyncio.ensure_future(
                store.append_upload(upload_id, stream(data_of(MiB)), expected_offset=6)
            )
            await writing.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        # Had the upload's descriptor been closed under the write, this file would likely
        # get its number, and the late write would land here.
        sentinel = root / "sentinel"
        sentinel.write_bytes(b"untouched")
        fd = os.open(sentinel, os.O_RDWR)
        try:
            await asyncio.sleep(0.4)
        finally:
            os.close(fd)
        assert sentinel.read_bytes() == b"untouched"
        assert await store.upload_size(upload_id) == 6
        await store.commit_upload(upload_id, sha256(b"before"))

    async def test_recreated_prefix_directory(self, root: Path) -> None:
        store = FilesystemBlobStore(root)
        upload_id = await upload(store, b"prefix")
        hex_digest = sha256(b"prefix").removeprefix("sha256:")
        (root / "blobs" / "sha256" / hex_digest[:2]).rmdir()
        await store.commit_upload(upload_id, sha256(b"prefix"))
        assert await read_all(store, sha256(b"prefix")) == b"prefix"

    def test_killed_writer_leaves_only_whole_blobs(self, root: Path) -> None:
        """SIGKILL a process that uploads and commits, at random moments; afterwards every
        visible blob is complete and every upload left over resumes from its size."""
        child = textwrap.dedent(
            """
            import asyncio, hashlib, random, sys, uuid
            from pathlib import Path
            from openecr.storage.blobs import FilesystemBlobStore

            async def main() -> None:
                store = FilesystemBlobStore(Path(sys.argv[1]), chunk_size=256 * 1024)
                print("ready", flush=True)
                while True:
                    upload_id = str(uuid.uuid4())
                    data = random.Random(upload_id).randbytes(3 * 1024 * 1024 + 11)
                    await store.create_upload(upload_id)
                    for start in range(0, len(data), 1024 * 1024):
                        part = data[start : start + 1024 * 1024]

                        async def chunks(part: bytes = part):
                            for i in range(0, len(part), 64 * 1024):
                                yield part[i : i + 64 * 1024]

                        await store.append_upload(upload_id, chunks(), expected_offset=start)
                    digest = "sha256:" + hashlib.sha256(data).hexdigest()
                    await store.commit_upload(upload_id, digest)

            asyncio.run(main())
            """
        )
        rng = random.Random(1234)
        for _ in range(4):
            process = subprocess.Popen(
                [sys.executable, "-c", child, str(root)], stdout=subprocess.PIPE
            )
            assert process.stdout is not None
            assert process.stdout.readline() == b"ready\n"
            time.sleep(rng.uniform(0.05, 0.6))
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stdout.close()
            asyncio.run(self._check_after_crash(root))

    @staticmethod
    async def _check_after_crash(root: Path) -> None:
        store = FilesystemBlobStore(root)
        async for digest in store.list_digests():
            data = await read_all(store, digest)
            assert sha256(data) == digest
        async for upload_id, _ in store.list_uploads():
            data = random.Random(upload_id).randbytes(3 * MiB + 11)
            size = await store.upload_size(upload_id)
            assert size is not None
            await store.append_upload(upload_id, stream(data[size:]), expected_offset=size)
            await store.commit_upload(upload_id, sha256(data))
        assert [u async for u in store.list_uploads()] == []
