"""S3 client libraries for the S3 blob store: obstore against aiobotocore, on moto's server.

Starts moto's S3 server on a loopback port (pinned to CPU 0 unless ``--no-pin``), creates
a bucket with boto3, then runs each client in its own worker process (pinned to CPU 1),
rounds interleaved (obstore, aiobotocore, aiobotocore, obstore, ...). A worker measures:

* ``put 64 MiB``: one PutObject of 64 MiB from memory;
* ``get 64 MiB``: one streamed GetObject of it, every chunk turned into ``bytes`` (what
  a ``BlobReader`` hands to the HTTP layer);
* ``multipart 5x8 MiB``: CreateMultipartUpload, five 8 MiB parts one after the other,
  CompleteMultipartUpload. obstore has no call for single parts (its multipart upload
  lives inside one ``put_async`` call), so its figure is ``put_async`` of five 8 MiB
  buffers with ``chunk_size`` 8 MiB and ``max_concurrency`` 1;
* ``small GET``: 500 sequential GETs of a 1 KiB object, p50 and p99 latency;
* CPU: user + system seconds of the worker process (all its threads, so obstore's Rust
  runtime counts) per MiB moved, over the put, get and multipart steps.

Each library runs with its defaults (botocore computes CRC32 checksums and, over plain
HTTP, signs the payload's SHA-256; object_store signs the payload's SHA-256), path-style
addressing, HTTP allowed. moto is Python: it bounds the throughput figures, so the CPU the
client spends per MiB is the figure that carries over to real S3.

    python bench/s3_clients.py [--rounds 3] [--aiobotocore-python PATH] [--no-pin]

aiobotocore pins an exact botocore release; to keep the project's botocore untouched,
install it in a separate environment (``python -m venv --system-site-packages V &&
V/bin/pip install aiobotocore``) and pass ``--aiobotocore-python V/bin/python``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
BUCKET = "bench"
KEY_ID = "testing"
SECRET = "testing"
REGION = "us-east-1"
BIG = 64 * MiB
PART = 8 * MiB
PARTS = 5
SMALL = 1024
SMALL_GETS = 500


# -- worker side -----------------------------------------------------------------------------


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _timed(step: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Wall and CPU seconds of one step."""
    cpu, wall = _cpu(), time.perf_counter()
    await step()
    return time.perf_counter() - wall, _cpu() - cpu


async def _run_obstore(endpoint: str, tag: str) -> dict[str, Any]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        BUCKET,
        endpoint=endpoint,
        region=REGION,
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        virtual_hosted_style_request=False,
        # moto's --ssl certificate is self-signed.
        client_options={"allow_http": True, "allow_invalid_certificates": True},
    )
    big = os.urandom(BIG)
    parts = [os.urandom(PART) for _ in range(PARTS)]

    async def put() -> None:
        await obstore.put_async(store, f"{tag}/big", big, use_multipart=False)

    async def get() -> None:
        result = await obstore.get_async(store, f"{tag}/big")
        total = 0
        async for chunk in result.stream(min_chunk_size=MiB):
            total += len(bytes(chunk))
        assert total == BIG, total

    async def multipart() -> None:
        await obstore.put_async(
            store, f"{tag}/multi", iter(parts), chunk_size=PART, max_concurrency=1
        )
        meta = await obstore.head_async(store, f"{tag}/multi")
        assert meta["size"] == PART * PARTS

    async def small_get() -> None:
        result = await obstore.get_async(store, f"{tag}/small")
        assert len(bytes(await result.bytes_async())) == SMALL

    await obstore.put_async(store, f"{tag}/small", os.urandom(SMALL))
    return await _measure(put, get, multipart, small_get)


async def _run_aiobotocore(endpoint: str, tag: str) -> dict[str, Any]:
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    session = get_session()
    config = AioConfig(s3={"addressing_style": "path"})
    big = os.urandom(BIG)
    parts = [os.urandom(PART) for _ in range(PARTS)]
    async with session.create_client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
        config=config,
        verify=False,  # moto's --ssl certificate is self-signed
    ) as s3:

        async def put() -> None:
            await s3.put_object(Bucket=BUCKET, Key=f"{tag}/big", Body=big)

        async def get() -> None:
            response = await s3.get_object(Bucket=BUCKET, Key=f"{tag}/big")
            total = 0
            async with response["Body"] as body:
                async for chunk in body.iter_chunks(MiB):
                    total += len(chunk)
            assert total == BIG, total

        async def multipart() -> None:
            key = f"{tag}/multi"
            created = await s3.create_multipart_upload(Bucket=BUCKET, Key=key)
            upload_id = created["UploadId"]
            done = []
            for number, data in enumerate(parts, 1):
                part = await s3.upload_part(
                    Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=data
                )
                done.append({"PartNumber": number, "ETag": part["ETag"]})
            await s3.complete_multipart_upload(
                Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": done}
            )
            head = await s3.head_object(Bucket=BUCKET, Key=key)
            assert head["ContentLength"] == PART * PARTS

        async def small_get() -> None:
            response = await s3.get_object(Bucket=BUCKET, Key=f"{tag}/small")
            async with response["Body"] as body:
                assert len(await body.read()) == SMALL

        await s3.put_object(Bucket=BUCKET, Key=f"{tag}/small", Body=os.urandom(SMALL))
        return await _measure(put, get, multipart, small_get)


async def _measure(
    put: Callable[[], Awaitable[None]],
    get: Callable[[], Awaitable[None]],
    multipart: Callable[[], Awaitable[None]],
    small_get: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    # Warm-up: connections, credentials, code paths.
    for _ in range(20):
        await small_get()
    put_wall, put_cpu = await _timed(put)
    get_wall, get_cpu = await _timed(get)
    multi_wall, multi_cpu = await _timed(multipart)
    latencies = []
    small_cpu = _cpu()
    for _ in range(SMALL_GETS):
        start = time.perf_counter()
        await small_get()
        latencies.append(time.perf_counter() - start)
    small_cpu = _cpu() - small_cpu
    latencies.sort()
    moved = (2 * BIG + PARTS * PART) / MiB
    return {
        "put_mbs": BIG / MiB / put_wall,
        "get_mbs": BIG / MiB / get_wall,
        "multipart_mbs": PARTS * PART / MiB / multi_wall,
        "multipart_s": multi_wall,
        "small_p50_ms": 1000 * latencies[len(latencies) // 2],
        "small_p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
        "small_cpu_us": 1e6 * small_cpu / SMALL_GETS,
        "put_cpu_ms_per_mib": 1000 * put_cpu / (BIG / MiB),
        "get_cpu_ms_per_mib": 1000 * get_cpu / (BIG / MiB),
        "multipart_cpu_ms_per_mib": 1000 * multi_cpu / (PARTS * PART / MiB),
        "cpu_ms_per_mib": 1000 * (put_cpu + get_cpu + multi_cpu) / moved,
    }


def worker(client: str, endpoint: str, tag: str) -> None:
    runner = {"obstore": _run_obstore, "aiobotocore": _run_aiobotocore}[client]
    print(json.dumps(asyncio.run(runner(endpoint, tag))))


# -- orchestration ---------------------------------------------------------------------------


def _ready(endpoint: str) -> bool:
    import httpx

    try:
        httpx.get(f"{endpoint}/moto-api/", timeout=1.0, verify=False)
    except httpx.HTTPError:
        return False
    return True


COLUMNS = [
    ("put_mbs", "PUT 64 MiB MB/s"),
    ("get_mbs", "GET 64 MiB MB/s"),
    ("multipart_mbs", "MPU 5x8 MiB MB/s"),
    ("small_p50_ms", "1 KiB GET p50 ms"),
    ("small_p99_ms", "p99 ms"),
    ("small_cpu_us", "CPU us/GET"),
    ("put_cpu_ms_per_mib", "PUT CPU ms/MiB"),
    ("get_cpu_ms_per_mib", "GET CPU ms/MiB"),
    ("multipart_cpu_ms_per_mib", "MPU CPU ms/MiB"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--aiobotocore-python", default=sys.executable)
    parser.add_argument("--obstore-python", default=sys.executable)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--https", action="store_true", help="moto with a self-signed cert")
    parser.add_argument("--worker", nargs=3, metavar=("CLIENT", "ENDPOINT", "TAG"))
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return 0

    sys.path.insert(0, str(Path(__file__).parent))
    import boto3
    from _common import ChildProcess, Placement, free_port, machine_note, table

    placement = Placement(None, None) if args.no_pin else Placement()
    pythons = {"obstore": args.obstore_python, "aiobotocore": args.aiobotocore_python}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in pythons}
    with tempfile.TemporaryDirectory(prefix="s3bench-") as workdir:
        port = free_port()
        endpoint = f"{'https' if args.https else 'http'}://127.0.0.1:{port}"
        quiet_moto = (
            "import logging, sys\n"
            "logging.getLogger('werkzeug').setLevel(logging.WARNING)\n"
            "from moto.server import main\n"
            "main(sys.argv[1:])\n"
        )
        moto_argv = [sys.executable, "-c", quiet_moto, "-H", "127.0.0.1", "-p", str(port)]
        if args.https:
            moto_argv.append("--ssl")
        moto = ChildProcess("moto", placement.server(moto_argv), Path(workdir) / "moto.log")
        moto.start(lambda: _ready(endpoint))
        try:
            s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id=KEY_ID,
                aws_secret_access_key=SECRET,
                verify=False,
            )
            s3.create_bucket(Bucket=BUCKET)
            order = list(pythons)
            for round_number in range(args.rounds):
                for client in order:
                    tag = f"r{round_number}-{client}"
                    argv = [pythons[client], __file__, "--worker", client, endpoint, tag]
                    done = subprocess.run(
                        placement.client(argv), capture_output=True, text=True, timeout=600
                    )
                    if done.returncode != 0:
                        print(f"{client} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
                        return 1
                    results[client].append(json.loads(done.stdout.strip().splitlines()[-1]))
                    # Free moto's memory between runs.
                    for key in ("big", "multi", "small"):
                        s3.delete_object(Bucket=BUCKET, Key=f"{tag}/{key}")
                order.reverse()
        finally:
            moto.stop()

    scheme = "HTTPS" if args.https else "HTTP"
    print(f"{args.rounds} rounds over {scheme}, medians; {placement.describe()}; {machine_note()}")
    rows = []
    for client, runs in results.items():
        row: list[object] = [client]
        for key, _ in COLUMNS:
            row.append(f"{statistics.median(run[key] for run in runs):.2f}")
        rows.append(row)
    print(table(["client", *(label for _, label in COLUMNS)], rows))
    print("\nper round:")
    for client, runs in results.items():
        for number, run in enumerate(runs):
            cells = ", ".join(f"{key}={run[key]:.2f}" for key, _ in COLUMNS)
            print(f"  {client} #{number}: {cells}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
