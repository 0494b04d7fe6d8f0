"""Blob store throughput: append+commit of a large upload, and reads.

Run: python bench_blobstore.py [root] [--size-mib 256] [--part-mib 8] [--chunk-kib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from openecr.storage.blobs import FilesystemBlobStore

_sliced: dict[tuple[int, int], list[bytes]] = {}


def slice_parts(data: bytes, part: int) -> None:
    _sliced[id(data), part] = [data[i : i + part] for i in range(0, len(data), part)]


async def parts(data: bytes, part: int) -> AsyncIterator[bytes]:
    # Sliced before the clock starts: measures the store, not a test generator's copying.
    for chunk in _sliced[id(data), part]:
        yield chunk


class LoopLag:
    """Largest delay of a 1 ms ticker: how responsive the event loop stayed."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - start - 0.001)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", nargs="?", default="/tmp/blobbench/data")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--part-kib", type=int, default=8192)
    parser.add_argument("--chunk-kib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024
    data = os.urandom(size)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    slice_parts(data, args.part_kib * 1024)
    mb = size / 1e6
    root = Path(args.root)
    append_t, commit_t, total_t, read_t, reread_t, lags = [], [], [], [], [], []
    for _ in range(args.runs):
        shutil.rmtree(root, ignore_errors=True)
        store = FilesystemBlobStore(root, chunk_size=args.chunk_kib * 1024)
        upload_id = str(uuid.uuid4())
        await store.create_upload(upload_id)
        with LoopLag() as lag:
            t0 = time.perf_counter()
            await store.append_upload(
                upload_id, parts(data, args.part_kib * 1024), expected_offset=0
            )
            t1 = time.perf_counter()
            await store.commit_upload(upload_id, digest)
            t2 = time.perf_counter()
        lags.append(lag.worst)
        append_t.append(t1 - t0)
        commit_t.append(t2 - t1)
        total_t.append(t2 - t0)
        with LoopLag() as lag:
            t0 = time.perf_counter()
            n = 0
            async with await store.open_reader(digest) as reader:
                async for chunk in reader:
                    n += len(chunk)
            read_t.append(time.perf_counter() - t0)
        assert n == size
        lags.append(lag.worst)
        # A restarted process: commit must re-hash from disk.
        store2 = FilesystemBlobStore(root, chunk_size=args.chunk_kib * 1024)
        upload_id = str(uuid.uuid4())
        await store.create_upload(upload_id)
        await store.append_upload(upload_id, parts(data, args.part_kib * 1024), expected_offset=0)
        await store.delete(digest)
        t0 = time.perf_counter()
        await store2.commit_upload(upload_id, digest)
        reread_t.append(time.perf_counter() - t0)
    med = statistics.median
    print(
        f"  best of {args.runs}: append+commit {mb / min(total_t):.0f} MB/s, "
        f"read {mb / min(read_t):.0f} MB/s, re-hash commit {min(reread_t):.3f} s"
    )
    print(
        f"size {args.size_mib} MiB, parts {args.part_kib} KiB, chunk {args.chunk_kib} KiB: "
        f"append {mb / med(append_t):.0f} MB/s ({med(append_t):.3f} s), "
        f"commit {med(commit_t) * 1000:.1f} ms, append+commit {mb / med(total_t):.0f} MB/s, "
        f"read {mb / med(read_t):.0f} MB/s, commit after restart (re-hash) "
        f"{med(reread_t):.3f} s, worst loop lag {max(lags) * 1000:.1f} ms"
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
