"""The blob store contract, run against the S3 backend on moto's S3 server, plus what only
the S3 backend shows: its layout, the upload state shared by replicas through the bucket,
bounded memory, the re-hash path, multipart copies, presigned URLs and configuration.

One ``moto_server`` process (a real HTTP server on a loopback port) serves the whole
session; each test gets its own key prefix in one bucket.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import boto3
import httpx
import pytest
from blobstore_contract import (
    BlobStoreContract,
    MiB,
    StoreFactory,
    StreamBroke,
    broken_stream,
    data_of,
    digests,
    new_id,
    plain,
    read_all,
    sha256,
    stream,
    stream_of,
    upload,
    upload_ids,
)

from openecr.storage.blobs import (
    BlobStoreError,
    DigestMismatch,
    InvalidDigest,
    UploadOffsetMismatch,
)
from openecr.storage.blobs.s3 import MIN_PART_SIZE, S3BlobStore

BUCKET = "openecr-test"
KEY_ID = "testing"
SECRET = "testing"
REGION = "us-east-1"


# -- the moto server ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A ``moto_server`` process on a free loopback port, with the test bucket."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited: {log_path.read_text()[-2000:]}")
            try:
                httpx.get(f"{endpoint}/moto-api/", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        s3_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def s3_client(endpoint: str) -> Any:
    """A plain boto3 client, to look at the bucket from outside the store."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )


def keys_under(endpoint: str, prefix: str) -> list[str]:
    client = s3_client(endpoint)
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", ()))
    return keys


def multipart_uploads_under(endpoint: str, prefix: str) -> list[str]:
    response = s3_client(endpoint).list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
    return [item["Key"] for item in response.get("Uploads", ())]


def new_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


# -- the contract ----------------------------------------------------------------------------


class TestS3BlobStore(BlobStoreContract):
    @pytest.fixture
    def prefix(self) -> str:
        return new_prefix()

    @pytest.fixture
    async def make_store(
        self, moto_endpoint: str, prefix: str, anyio_backend: str
    ) -> AsyncIterator[StoreFactory]:
        stores: list[S3BlobStore] = []

        def make(**options: Any) -> S3BlobStore:
            # The smallest part size S3 allows, so the tests cross many part boundaries.
            settings: dict[str, Any] = {
                "part_size": MIN_PART_SIZE,
                "read_chunk_size": 256 * 1024,
            }
            settings.update(options)
            store = S3BlobStore(
                BUCKET,
                prefix,
                endpoint_url=moto_endpoint,
                region=REGION,
                access_key_id=KEY_ID,
                secret_access_key=SECRET,
                **settings,
            )
            stores.append(store)
            return store

        yield make
        for store in stores:
            await store.aclose()

    # layout

    async def test_layout(self, make_store: Any, moto_endpoint: str, prefix: str) -> None:
        store = make_store(part_size=8 * MiB)
        info = await store.put_bytes(b"layout")
        hex_digest = info.digest.removeprefix("sha256:")
        assert keys_under(moto_endpoint, prefix) == [f"{prefix}/blobs/sha256/{hex_digest}"]
        assert store.local_path(info.digest) is None
        with pytest.raises(InvalidDigest):
            store.local_path("sha256:../x")

        data = data_of(6 * MiB, "layout")
        upload_id = new_id()
        await store.create_upload(upload_id)
        await store.append_upload(upload_id, stream(data[:MiB]), expected_offset=0)
        names = _names(keys_under(moto_endpoint, f"{prefix}/uploads/{upload_id}/"), upload_id)
        assert sorted(n.split("-")[0] for n in names) == ["state.json", "tail"]
        await store.append_upload(upload_id, stream(data[MiB:]), expected_offset=MiB)
        # 6 MiB (under part_size, at least 5 MiB): one part, the old tail merged into it.
        names = _names(keys_under(moto_endpoint, f"{prefix}/uploads/{upload_id}/"), upload_id)
        assert names == ["state.json"]
        assert len(multipart_uploads_under(moto_endpoint, f"{prefix}/uploads/{upload_id}/")) == 1
        state = json.loads(
            s3_client(moto_endpoint)
            .get_object(Bucket=BUCKET, Key=f"{prefix}/uploads/{upload_id}/state.json")["Body"]
            .read()
        )
        assert state["size"] == 6 * MiB
        assert [part[2] for part in state["parts"]] == [6 * MiB]
        assert state["tail"] is None

        await store.commit_upload(upload_id, sha256(data))
        assert sorted(keys_under(moto_endpoint, prefix)) == sorted(
            [f"{prefix}/blobs/sha256/{hex_digest}", f"{prefix}/blobs/sha256/{sha256(data)[7:]}"]
        )
        assert multipart_uploads_under(moto_endpoint, prefix) == []

    async def test_stat_has_the_modification_time(self, store: S3BlobStore) -> None:
        before = time.time()
        info = await store.put_bytes(b"timed")
        stat = await store.stat(info.digest)
        assert stat is not None and stat.modified_at is not None
        assert before - 5 <= stat.modified_at <= time.time() + 5

    async def test_strays_are_not_listed(
        self, store: S3BlobStore, moto_endpoint: str, prefix: str
    ) -> None:
        info = await store.put_bytes(b"real")
        client = s3_client(moto_endpoint)
        for stray in [
            f"{prefix}/blobs/sha256/{'0' * 63}",
            f"{prefix}/blobs/sha256/{'0' * 64}.tmp",
            f"{prefix}/blobs/sha256/{'G' * 64}",
            f"{prefix}/blobs/sha384/{'a' * 96}",
            f"{prefix}/uploads/not-an-upload/state.json",
            f"{prefix}x/blobs/sha256/{'a' * 64}",
        ]:
            client.put_object(Bucket=BUCKET, Key=stray, Body=b"")
        assert await digests(store) == [info.digest]
        assert await upload_ids(store) == []

    # replicas

    async def test_two_replicas_append_alternately(self, make_store: StoreFactory) -> None:
        """Two instances (two server processes sharing only the bucket) take turns."""
        replicas = [make_store(), make_store()]
        rng = random.Random(11)
        sizes = [rng.choice([1024, 300_000, 2 * MiB, 5 * MiB, 6 * MiB + 1]) for _ in range(9)]
        data = data_of(sum(sizes), "replicas")
        upload_id = new_id()
        await replicas[0].create_upload(upload_id)
        offset = 0
        for turn, size in enumerate(sizes):
            replica = replicas[turn % 2]
            chunk = rng.choice([1024, 64 * 1024, MiB])
            new_size = await replica.append_upload(
                upload_id, stream(data[offset : offset + size], chunk), expected_offset=offset
            )
            offset += size
            assert new_size == offset
            assert await replicas[(turn + 1) % 2].upload_size(upload_id) == offset
            with pytest.raises(UploadOffsetMismatch):  # a stale offset from the other one
                await replicas[(turn + 1) % 2].append_upload(
                    upload_id, stream(b"x"), expected_offset=offset - size
                )
        assert plain(await replicas[0].commit_upload(upload_id, sha256(data))) == (
            sha256(data),
            len(data),
        )
        assert await read_all(replicas[1], sha256(data)) == data

    async def test_racing_replicas_never_corrupt(self, make_store: StoreFactory) -> None:
        """Appends must be serialised by the caller; when two replicas race anyway, one
        wins (the conditional state write), the other gets ``UploadOffsetMismatch``, and
        commit either publishes exactly the winner's bytes or refuses."""
        for size in (100_000, 6 * MiB, 100_000, 6 * MiB):
            a, b = make_store(), make_store()
            upload_id = await upload(a, b"start:")
            one, two = data_of(size, f"one{size}"), data_of(size, f"two{size}")
            results = await asyncio.gather(
                a.append_upload(upload_id, stream(one), expected_offset=6),
                b.append_upload(upload_id, stream(two), expected_offset=6),
                return_exceptions=True,
            )
            assert sum(r == 6 + size for r in results) == 1, results
            assert sum(isinstance(r, UploadOffsetMismatch) for r in results) == 1, results
            winner = one if results[0] == 6 + size else two
            try:
                info = await a.commit_upload(upload_id, sha256(b"start:" + winner))
            except BlobStoreError as error:  # a loser's part replaced the winner's
                assert "overwritten" in str(error)
                await a.cancel_upload(upload_id)
                continue
            assert await read_all(a, info.digest) == b"start:" + winner

    # chunk shapes and memory

    async def test_small_and_large_chunks_mixed(self, make_store: StoreFactory) -> None:
        store = make_store()
        sizes = [1024, 7, 6 * MiB, 1024, 3 * MiB, 100_000, 5 * MiB, 1, 2 * MiB + 1, 4096, 6 * MiB]
        data = data_of(sum(sizes), "mixed")
        upload_id = new_id()
        await store.create_upload(upload_id)
        offset = 0
        rng = random.Random(3)
        for size in sizes:
            part = data[offset : offset + size]
            pieces = []
            start = 0
            while start < len(part):
                step = rng.choice([1, 1024, 64 * 1024, MiB, 6 * MiB])
                pieces.append(part[start : start + step])
                start += step
            offset = await store.append_upload(upload_id, stream_of(pieces), expected_offset=offset)
        assert offset == len(data)
        await store.commit_upload(upload_id, sha256(data))
        assert await read_all(store, sha256(data)) == data
        assert (
            await read_all(store, sha256(data), 6 * MiB - 3, 5 * MiB)
            == data[6 * MiB - 3 : 11 * MiB - 3]
        )

    async def test_memory_holds_one_part(self, make_store: StoreFactory) -> None:
        """20 MiB streamed in 64 KiB chunks: the store never holds more than about one
        part (5 MiB here) of it, never the whole upload."""
        store = make_store()
        total, chunk = 20 * MiB, 64 * 1024
        upload_id = new_id()
        await store.create_upload(upload_id)
        await store.append_upload(upload_id, stream(b"warm-up"), expected_offset=0)
        expected = hashlib.sha256(b"warm-up")

        async def generated() -> AsyncIterator[bytes]:
            rng = random.Random("memory")
            for _ in range(total // chunk):
                piece = rng.randbytes(chunk)
                expected.update(piece)
                yield piece

        tracemalloc.start()
        try:
            size = await store.append_upload(upload_id, generated(), expected_offset=7)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert size == total + 7
        # One part plus transient read buffers; two parts would be 10 MiB.
        assert peak < MIN_PART_SIZE + 4 * MiB, f"peak {peak / MiB:.1f} MiB"
        info = await store.commit_upload(upload_id, "sha256:" + expected.hexdigest())
        assert info.size == total + 7

    # hashes and commits

    async def test_rehash_after_another_replica_appended(self, make_store: StoreFactory) -> None:
        a, b = make_store(), make_store()
        data = data_of(7 * MiB + 3, "rehash")
        upload_id = await upload(a, data[: 6 * MiB])
        await b.append_upload(upload_id, stream(data[6 * MiB :]), expected_offset=6 * MiB)
        # a's running hash covers only its own bytes: it must re-hash what is stored.
        with pytest.raises(DigestMismatch) as mismatch:
            await a.commit_upload(upload_id, sha256(data[: 6 * MiB]))
        assert mismatch.value.actual == sha256(data)
        assert plain(await a.commit_upload(upload_id, sha256(data))) == (sha256(data), len(data))

    @pytest.mark.parametrize("size", [MiB + 1, 6 * MiB + 1])
    async def test_append_after_a_mismatch(self, make_store: StoreFactory, size: int) -> None:
        """A failed commit leaves the upload assembled into one object; appending turns it
        back into parts (a tail below 5 MiB, UploadPartCopy above)."""
        data = data_of(size + 6 * MiB, "after")
        first = make_store()
        upload_id = await upload(first, data[:size], parts=2)
        restarted = make_store()  # no running hash: commit re-hashes
        with pytest.raises(DigestMismatch):
            await restarted.commit_upload(upload_id, sha256(b"wrong"))
        assert await restarted.upload_size(upload_id) == size
        await restarted.append_upload(upload_id, stream(data[size:]), expected_offset=size)
        assert await first.upload_size(upload_id) == len(data)
        with pytest.raises(DigestMismatch) as mismatch:
            await first.commit_upload(upload_id, sha256(data[:size]))
        assert mismatch.value.actual == sha256(data)
        await restarted.commit_upload(upload_id, sha256(data))
        assert await read_all(first, sha256(data)) == data

    async def test_commit_after_a_commit_died_midway(
        self, make_store: Any, moto_endpoint: str, prefix: str
    ) -> None:
        """A commit that completed the multipart upload and died before recording it:
        the next commit (another replica) finds the object and finishes the job."""
        data = data_of(7 * MiB + 5, "midway")
        upload_id = await upload(make_store(), data, parts=2)  # a 5 MiB part and a tail
        client = s3_client(moto_endpoint)
        upload_prefix = f"{prefix}/uploads/{upload_id}/"
        state = json.loads(
            client.get_object(Bucket=BUCKET, Key=upload_prefix + "state.json")["Body"].read()
        )
        assert len(state["parts"]) == 1 and state["tail"]["size"] == 2 * MiB + 5
        # What the dead commit did: the tail as the last part, then CompleteMultipartUpload.
        key = upload_prefix + state["multipart_name"]
        copied = client.upload_part_copy(
            Bucket=BUCKET,
            Key=key,
            UploadId=state["multipart_id"],
            PartNumber=2,
            CopySource={"Bucket": BUCKET, "Key": upload_prefix + state["tail"]["name"]},
        )
        client.complete_multipart_upload(
            Bucket=BUCKET,
            Key=key,
            UploadId=state["multipart_id"],
            MultipartUpload={
                "Parts": [
                    {"PartNumber": 1, "ETag": state["parts"][0][1]},
                    {"PartNumber": 2, "ETag": copied["CopyPartResult"]["ETag"]},
                ]
            },
        )
        # moto answers a part for a completed upload with a 500 (S3: 404): do not retry it.
        other = make_store(max_attempts=1)
        assert plain(await other.commit_upload(upload_id, sha256(data))) == (
            sha256(data),
            len(data),
        )
        assert await read_all(other, sha256(data)) == data
        assert keys_under(moto_endpoint, upload_prefix) == []

    @pytest.mark.parametrize("how", ["commit", "commit elsewhere", "put_bytes"])
    async def test_storing_an_existing_blob_touches_it(
        self, store: S3BlobStore, moto_endpoint: str, prefix: str, how: str
    ) -> None:
        """The upload is not copied over the stored blob, but the blob is copied onto
        itself (metadata kept) so that its LastModified becomes now, and the upload goes."""
        data = data_of(6 * MiB, "exists")
        first = await store.commit_upload(await upload(store, data), sha256(data))
        key = f"{prefix}/blobs/sha256/{sha256(data)[7:]}"
        client = s3_client(moto_endpoint)
        client.copy_object(
            Bucket=BUCKET,
            Key=key,
            CopySource={"Bucket": BUCKET, "Key": key},
            Metadata={"mark": "first"},
            MetadataDirective="REPLACE",
        )
        old = await store.stat(sha256(data))
        assert old is not None and old.modified_at is not None and first.modified_at is not None
        time.sleep(1.1)  # S3's LastModified has one-second resolution
        if how == "put_bytes":
            info = await store.put_bytes(data)
        else:
            # "elsewhere": another replica, configured from the environment, without the
            # running hash, so it assembles and re-hashes before it finds the blob.
            environ = {
                "AWS_ENDPOINT_URL": moto_endpoint,
                "AWS_ACCESS_KEY_ID": KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SECRET,
            }
            async with S3BlobStore.from_url(f"s3://{BUCKET}/{prefix}", environ=environ) as other:
                committer = other if how == "commit elsewhere" else store
                second = await upload(store, data, parts=3)
                info = await committer.commit_upload(second, sha256(data))
        assert plain(info) == (sha256(data), len(data))
        assert info.modified_at is not None and info.modified_at > old.modified_at
        assert await store.stat(sha256(data)) == info
        assert client.head_object(Bucket=BUCKET, Key=key)["Metadata"] == {"mark": "first"}
        assert await read_all(store, sha256(data)) == data
        assert await upload_ids(store) == []
        assert keys_under(moto_endpoint, f"{prefix}/uploads/") == []

    async def test_multipart_copy_above_the_threshold(
        self, make_store: Any, moto_endpoint: str, prefix: str
    ) -> None:
        store = make_store(multipart_copy_threshold=10 * MiB)
        data = data_of(23 * MiB + 5, "big copy")
        info = await store.commit_upload(await upload(store, data, parts=2), sha256(data))
        assert info.size == len(data)
        assert await read_all(store, info.digest) == data
        head = s3_client(moto_endpoint).head_object(
            Bucket=BUCKET, Key=f"{prefix}/blobs/sha256/{info.digest[7:]}"
        )
        assert head["ETag"].endswith('-3"')  # copied in three parts
        assert await store.quarantine(info.digest)
        assert await store.stat(info.digest) is None
        assert keys_under(moto_endpoint, f"{prefix}/quarantine/") == [
            f"{prefix}/quarantine/sha256-{info.digest[7:]}"
        ]

    # failures and clean-up

    async def test_failed_append_aborts_its_multipart_upload(
        self, store: S3BlobStore, moto_endpoint: str, prefix: str
    ) -> None:
        upload_id = await upload(store, b"kept")
        with pytest.raises(StreamBroke):
            await store.append_upload(
                upload_id, broken_stream(data_of(11 * MiB)), expected_offset=4
            )
        assert await store.upload_size(upload_id) == 4
        assert multipart_uploads_under(moto_endpoint, prefix) == []
        names = _names(keys_under(moto_endpoint, f"{prefix}/uploads/{upload_id}/"), upload_id)
        assert sorted(n.split("-")[0] for n in names) == ["state.json", "tail"]
        await store.commit_upload(upload_id, sha256(b"kept"))

    async def test_cancel_aborts_the_multipart_upload(
        self, store: S3BlobStore, moto_endpoint: str, prefix: str
    ) -> None:
        upload_id = await upload(store, data_of(6 * MiB), parts=2)
        assert len(multipart_uploads_under(moto_endpoint, prefix)) == 1
        await store.cancel_upload(upload_id)
        assert multipart_uploads_under(moto_endpoint, prefix) == []
        assert keys_under(moto_endpoint, prefix) == []

    # presigned URLs

    async def test_presigned_get_url(self, store: S3BlobStore) -> None:
        data = data_of(300_000, "presigned")
        info = await store.put_bytes(data)
        url = await store.presigned_get_url(info.digest, 60)
        assert "X-Amz-Signature=" in url
        async with httpx.AsyncClient() as client:
            response = await client.get(url)
            assert response.status_code == 200
            assert response.content == data
            ranged = await client.get(
                await store.presigned_get_url(info.digest, timedelta(minutes=5)),
                headers={"Range": "bytes=10-19"},
            )
            assert ranged.status_code == 206 and ranged.content == data[10:20]
        for bad in (0, -1, 8 * 24 * 3600):
            with pytest.raises(ValueError):
                await store.presigned_get_url(info.digest, bad)
        with pytest.raises(InvalidDigest):
            await store.presigned_get_url("sha256:nope")


def _names(keys: list[str], upload_id: str) -> list[str]:
    return sorted(key.rpartition(f"{upload_id}/")[2] for key in keys)


# -- a writer killed at random moments ---------------------------------------------------------


_CHILD = textwrap.dedent(
    """
    import asyncio, hashlib, random, sys, uuid
    from openecr.storage.blobs.s3 import S3BlobStore

    async def main() -> None:
        store = S3BlobStore(
            sys.argv[2], sys.argv[3], endpoint_url=sys.argv[1],
            access_key_id="testing", secret_access_key="testing", part_size=5 * 1024 * 1024,
        )
        print("ready", flush=True)
        while True:
            upload_id = str(uuid.uuid4())
            data = random.Random(upload_id).randbytes(6 * 1024 * 1024 + 11)
            await store.create_upload(upload_id)
            for start in range(0, len(data), 2 * 1024 * 1024):
                part = data[start : start + 2 * 1024 * 1024]

                async def chunks(part: bytes = part):
                    for i in range(0, len(part), 256 * 1024):
                        yield part[i : i + 256 * 1024]

                await store.append_upload(upload_id, chunks(), expected_offset=start)
            await store.commit_upload(upload_id, "sha256:" + hashlib.sha256(data).hexdigest())

    asyncio.run(main())
    """
)


def test_killed_writer_leaves_only_whole_blobs(moto_endpoint: str) -> None:
    """SIGKILL a process that uploads and commits, at random moments; afterwards every
    visible blob is complete and every upload left over resumes from its size."""
    prefix = new_prefix()
    rng = random.Random(99)
    for _ in range(4):
        process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, moto_endpoint, BUCKET, prefix],
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.3, 2.5))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        process.stdout.close()
        asyncio.run(_check_after_crash(moto_endpoint, prefix))


async def _check_after_crash(endpoint: str, prefix: str) -> None:
    async with S3BlobStore(
        BUCKET, prefix, endpoint_url=endpoint, access_key_id=KEY_ID, secret_access_key=SECRET
    ) as store:
        async for digest in store.list_digests():
            assert sha256(await read_all(store, digest)) == digest
        async for upload_id, _ in store.list_uploads():
            size = await store.upload_size(upload_id)
            if size is None:  # only leftovers of a commit or cancel: purge them
                await store.cancel_upload(upload_id)
                continue
            data = random.Random(upload_id).randbytes(6 * MiB + 11)
            await store.append_upload(upload_id, stream(data[size:]), expected_offset=size)
            await store.commit_upload(upload_id, sha256(data))
        assert [u async for u in store.list_uploads()] == []


# -- configuration -----------------------------------------------------------------------------


def test_from_url_reads_the_environment() -> None:
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
        "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9000",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_REGION": "eu-central-1",
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
    }
    store = S3BlobStore.from_url("s3://my-bucket/some/prefix/", environ=env)
    assert (store.bucket, store.prefix) == ("my-bucket", "some/prefix")
    assert store.endpoint_url == "http://127.0.0.1:9000"
    assert store.region == "eu-central-1"
    options = store._client_options
    assert options["aws_access_key_id"] == "key"
    assert options["aws_session_token"] == "token"
    assert options["config"].s3 == {"addressing_style": "path"}

    env.pop("AWS_ENDPOINT_URL_S3")
    env.pop("AWS_REGION")
    store = S3BlobStore.from_url("s3://my-bucket", environ=env, region=None)
    assert store.endpoint_url == "http://127.0.0.1:1"
    assert store.region == "eu-west-1"
    assert store.prefix == ""

    explicit = S3BlobStore.from_url(
        "s3://my-bucket/p",
        endpoint_url="https://s3.example.com",
        region="ap-south-1",
        access_key_id="k2",
        secret_access_key="s2",
        environ=env,
    )
    assert explicit.endpoint_url == "https://s3.example.com"
    assert explicit.region == "ap-south-1"
    assert explicit._client_options["aws_access_key_id"] == "k2"
    assert explicit._client_options["aws_session_token"] is None

    aws = S3BlobStore.from_url("s3://my-bucket", environ={})
    assert aws.endpoint_url is None and aws.region == "us-east-1"
    assert "aws_access_key_id" not in aws._client_options  # botocore's credential chain
    assert aws._client_options["config"].s3 == {"addressing_style": "auto"}


@pytest.mark.parametrize(
    "url",
    [
        "https://bucket/x",
        "s3://",
        "s3:///prefix",
        "s3://bucket/a/../b",
        "s3://bucket/a//b",
        "s3://bucket?versionId=1",
        "s3://user@bucket",
        "s3://bucket:9000",
        "s3://Bucket_Name",
    ],
)
def test_from_url_rejects(url: str) -> None:
    with pytest.raises(ValueError):
        S3BlobStore.from_url(url, environ={})


def test_plain_http_only_on_loopback() -> None:
    for endpoint in ("http://127.0.0.1:9000", "http://localhost:9000", "http://[::1]:9000"):
        S3BlobStore("bucket", endpoint_url=endpoint)
    with pytest.raises(ValueError, match="allow_http"):
        S3BlobStore("bucket", endpoint_url="http://minio.internal:9000")
    S3BlobStore("bucket", endpoint_url="http://minio.internal:9000", allow_http=True)
    S3BlobStore("bucket", endpoint_url="https://minio.internal:9000")
    with pytest.raises(ValueError):
        S3BlobStore("bucket", endpoint_url="ftp://example.com")


@pytest.mark.parametrize(
    "options",
    [
        {"part_size": MIN_PART_SIZE - 1},
        {"read_chunk_size": 0},
        {"multipart_copy_threshold": MiB},
        {"checksum_algorithm": "MD5"},
        {"access_key_id": "only the key"},
    ],
)
def test_invalid_options(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        S3BlobStore("bucket", **options)
