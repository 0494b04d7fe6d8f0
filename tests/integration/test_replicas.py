"""Scale-out: three ``openecr serve`` replicas on one PostgreSQL database and one S3 bucket.

One moto S3 server (a real HTTP server on loopback) and one fresh PostgreSQL database for
the module; replicas r1, r2 and r3 are started on them at the same time (so the first
start's migrations, signing key and access key bootstrap race each other, as in a rolling
deployment), and a fourth replica with ``--blob-redirect``. Each replica has its own data
directory: they share only the database and the bucket. A request goes to whichever
replica the test names, as a load balancer would send it:

* skopeo pushes through r1 and pulls through r2, and through the redirecting replica
  (blob GETs answer 307 to a presigned S3 URL, which skopeo follows);
* a chunked OCI upload and an ECR layer-API upload alternate replicas request by request;
* a registry token and a GetDownloadUrlForLayer URL from one replica work on another;
* paginated DescribeImages, ListImages and DescribeRepositories continue on any replica.

The failover (SIGKILL) and GC race tests are in test_replica_failover.py and
test_replica_gc_race.py, each with storage of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import httpx
import pytest
from ecr_helpers import make_ecr_client
from harness import ServerProcess
from images import Image, Layout, build_image, image_digests, sha256, write_oci_layout
from oci_helpers import Registry, ecr_push, login_password, skopeo_copy
from replica_helpers import Fleet, fleet
from s3_server import S3_REGION, S3_SECRET

pytestmark = pytest.mark.postgres

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with fleet(tmp_path_factory.mktemp("replicas")) as storage:
        errors: list[BaseException] = []

        def start(name: str) -> None:
            try:
                storage.start(name)
            except BaseException as error:  # reported below, in the test's thread
                errors.append(error)

        threads = [threading.Thread(target=start, args=(f"r{i}",)) for i in (1, 2, 3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        storage.replicas.sort(key=lambda server: server.data_dir.parent.name)
        storage.start("redirect", "--blob-redirect")
        yield storage


@pytest.fixture(scope="module")
def replicas(shared: Fleet) -> list[ServerProcess]:
    """r1, r2, r3 (without redirects)."""
    return shared.replicas[:3]


@pytest.fixture(scope="module")
def redirecting(shared: Fleet) -> ServerProcess:
    return shared.replicas[3]


@pytest.fixture(scope="module")
def password(replicas: list[ServerProcess]) -> str:
    return login_password(make_ecr_client(replicas[0].url))


@pytest.fixture
def repository(replicas: list[ServerProcess]) -> str:
    name = f"replicas/{uuid.uuid4().hex[:10]}"
    make_ecr_client(replicas[1].url).create_repository(repositoryName=name)
    return name


@pytest.fixture
def registries(replicas: list[ServerProcess], password: str) -> Iterator[list[Registry]]:
    opened = [Registry(server, password) for server in replicas]
    yield opened
    for registry in opened:
        registry.close()


def pull_and_verify(registry: Registry, repository: str, image: Image, where: Path) -> None:
    """skopeo pulls the image into an OCI layout; manifest bytes and every digest match."""
    skopeo_copy(registry, registry.ref(repository, "v1"), f"oci:{where}:v1", "--preserve-digests")
    layout = Layout(where)
    assert layout.manifest("v1") == image.manifest
    assert layout.descriptor("v1")["digest"] == image.digest
    assert layout.all_digests() == image_digests(image)
    for digest, data in image.blobs.items():
        assert layout.blob(digest) == data


# -- 1. push through one replica, pull through another --------------------------------------


def test_skopeo_push_through_r1_pull_through_r2_and_through_a_redirecting_replica(
    registries: list[Registry],
    redirecting: ServerProcess,
    password: str,
    repository: str,
    tmp_path: Path,
) -> None:
    r1, r2, _ = registries
    image = build_image(layer_sizes=[6 * MiB, 9 * MiB + 123, 256 * 1024, 3000, 1])
    source = write_oci_layout(tmp_path / "source", {"v1": image})
    skopeo_copy(r1, f"oci:{source}:v1", r1.ref(repository, "v1"), "--preserve-digests")

    pull_and_verify(r2, repository, image, tmp_path / "via-r2")

    via_redirect = Registry(redirecting, password)
    try:
        # The redirecting replica hands blob GETs to S3 ...
        layer = image.layers[1]
        response = via_redirect.http.get(f"/v2/{repository}/blobs/{layer.digest}")
        assert response.status_code == 307, response.text
        location = response.headers["Location"]
        assert location.startswith(f"{_s3_endpoint(redirecting)}/"), location
        assert "X-Amz-Signature=" in location
        assert httpx.get(location, timeout=60).content == layer.data
        # ... but still answers manifests itself.
        assert via_redirect.manifest(repository, "v1").content == image.manifest
        # skopeo follows the redirects; what it writes is byte for byte what was pushed.
        pull_and_verify(via_redirect, repository, image, tmp_path / "via-redirect")
    finally:
        via_redirect.close()


def _s3_endpoint(server: ServerProcess) -> str:
    args = server.extra_args
    return args[args.index("--s3-endpoint-url") + 1]


def _presigned_signature_is_valid(url: str, method: str, secret: str) -> bool:
    """Recomputes the SigV4 query signature of a presigned S3 URL for ``method``, as S3
    does (the method is part of the canonical request); True when the URL's matches."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(query)
        if k != "X-Amz-Signature"
    )
    signed = params["X-Amz-SignedHeaders"].split(";")
    assert signed == ["host"], signed
    canonical = "\n".join(
        [method, parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    _, date, region, service, _ = params["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, params["X-Amz-Signature"])


def test_a_blob_head_on_a_redirecting_replica_is_answered_or_redirected_validly_for_head(
    registries: list[Registry],
    redirecting: ServerProcess,
    password: str,
    repository: str,
) -> None:
    data = os.urandom(1000)
    registries[0].upload_blob(repository, data)
    via_redirect = Registry(redirecting, password)
    try:
        get = via_redirect.http.get(f"/v2/{repository}/blobs/{sha256(data)}")
        assert get.status_code == 307
        # The verifier is right about GET (the URL was signed for it) ...
        assert _presigned_signature_is_valid(get.headers["Location"], "GET", S3_SECRET)
        assert S3_REGION in get.headers["Location"]
        head = via_redirect.http.head(f"/v2/{repository}/blobs/{sha256(data)}")
    finally:
        via_redirect.close()
    if head.status_code == 200:
        assert head.headers["Content-Length"] == str(len(data))
    else:
        assert head.status_code == 307
        # ... and a redirected HEAD must be signed for HEAD, or S3 refuses it.
        assert _presigned_signature_is_valid(head.headers["Location"], "HEAD", S3_SECRET)


def test_a_blob_head_does_not_read_the_blob_from_s3(
    shared: Fleet, registries: list[Registry], repository: str
) -> None:
    data = os.urandom(3 * MiB)
    registries[0].upload_blob(repository, data)
    key = f"/{shared.bucket}/{shared.prefix}/blobs/sha256/{sha256(data)[7:]}"
    before = len(shared.s3.log_path.read_text().splitlines())
    for registry in registries:
        head = registry.http.head(f"/v2/{repository}/blobs/{sha256(data)}")
        assert head.status_code == 200
        assert head.headers["Content-Length"] == str(len(data))
    time.sleep(0.3)  # moto writes its access log line after the response
    requests = shared.s3.log_path.read_text().splitlines()[before:]
    reads = [line for line in requests if f'"GET {key}' in line]
    assert reads == [], reads


# -- 2. uploads that move between replicas request by request ---------------------------------


def test_chunked_oci_upload_alternating_replicas_patch_by_patch(
    replicas: list[ServerProcess], registries: list[Registry], repository: str
) -> None:
    r1, r2, r3 = registries
    # Mixed sizes: under S3's 5 MiB part minimum, over it, over the store's 8 MiB part
    # size, a single byte, and a last piece sent with the PUT.
    chunks = [3 * MiB + 5, 6 * MiB + 1, 1, 9 * MiB + 77, 100 * 1024, 2 * MiB]
    data = os.urandom(sum(chunks))
    digest = sha256(data)

    started = r1.http.post(f"/v2/{repository}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    assert location.startswith(f"/v2/{repository}/blobs/uploads/")

    offset = 0
    patchers = [r2, r1, r3, r2, r1]
    for size, registry in zip(chunks[:-1], patchers, strict=True):
        response = registry.http.patch(
            location,
            content=data[offset : offset + size],
            headers={
                "Content-Range": f"{offset}-{offset + size - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert response.status_code == 202, (registry.url, response.text)
        offset += size
        assert response.headers["Range"] == f"0-{offset - 1}"
        # Every other replica sees the same progress.
        for other in registries:
            status = other.http.get(location)
            assert status.status_code == 204
            assert status.headers["Range"] == f"0-{offset - 1}"

    # A chunk that does not start at the end, sent to another replica: 416 with the
    # true progress, and the upload is intact.
    stale = r3.http.patch(
        location,
        content=data[:10],
        headers={"Content-Range": "0-9", "Content-Type": "application/octet-stream"},
    )
    assert stale.status_code == 416
    assert stale.headers["Range"] == f"0-{offset - 1}"

    # The PUT (with the last chunk) on r2, which did not receive the previous PATCH.
    done = r2.http.put(
        location,
        params={"digest": digest},
        content=data[offset:],
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    assert done.headers["Docker-Content-Digest"] == digest

    blob = r3.http.get(f"/v2/{repository}/blobs/{digest}")
    assert blob.status_code == 200
    assert blob.headers["Docker-Content-Digest"] == digest
    assert int(blob.headers["Content-Length"]) == len(data)
    assert blob.content == data
    start = 5 * MiB - 3
    ranged = r1.http.get(
        f"/v2/{repository}/blobs/{digest}", headers={"Range": f"bytes={start}-{start + 99}"}
    )
    assert ranged.status_code == 206
    assert ranged.content == data[start : start + 100]
    head = r2.http.head(f"/v2/{repository}/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    # The finished upload is gone on every replica.
    for registry in registries:
        assert registry.http.get(location).status_code == 404


def test_ecr_layer_upload_alternating_replicas_part_by_part(
    replicas: list[ServerProcess], registries: list[Registry], repository: str
) -> None:
    e1, e2, e3 = (make_ecr_client(server.url) for server in replicas)
    parts = [5 * MiB + 17, 9 * MiB + 5, 300 * 1024]
    data = os.urandom(sum(parts))
    digest = sha256(data)

    upload_id = e1.initiate_layer_upload(repositoryName=repository)["uploadId"]
    offset = 0
    for size, client in zip(parts, [e2, e1, e3], strict=True):
        response = client.upload_layer_part(
            repositoryName=repository,
            uploadId=upload_id,
            partFirstByte=offset,
            partLastByte=offset + size - 1,
            layerPartBlob=data[offset : offset + size],
        )
        offset += size
        assert response["lastByteReceived"] == offset - 1
    # A part that does not follow on, on yet another replica.
    with pytest.raises(e2.exceptions.InvalidLayerPartException) as info:
        e2.upload_layer_part(
            repositoryName=repository,
            uploadId=upload_id,
            partFirstByte=0,
            partLastByte=9,
            layerPartBlob=data[:10],
        )
    assert info.value.response["lastValidByteReceived"] == len(data) - 1

    done = e2.complete_layer_upload(
        repositoryName=repository, uploadId=upload_id, layerDigests=[digest]
    )
    assert done["layerDigest"] == digest
    check = e3.batch_check_layer_availability(repositoryName=repository, layerDigests=[digest])
    available = check["layers"]
    assert [(a["layerDigest"], a["layerAvailability"], a["layerSize"]) for a in available] == [
        (digest, "AVAILABLE", len(data))
    ]
    blob = registries[2].http.get(f"/v2/{repository}/blobs/{digest}")
    assert blob.status_code == 200
    assert blob.content == data
    with pytest.raises(e1.exceptions.UploadNotFoundException):
        e1.upload_layer_part(
            repositoryName=repository,
            uploadId=upload_id,
            partFirstByte=len(data),
            partLastByte=len(data),
            layerPartBlob=b"x",
        )


# -- 3. credentials and download URLs from one replica, used on another -----------------------


def test_a_token_from_r1_works_on_every_replica_and_vice_versa(
    replicas: list[ServerProcess], repository: str
) -> None:
    image = build_image(layers=1)
    for issuer in replicas:
        token = login_password(make_ecr_client(issuer.url))
        for server in replicas:
            registry = Registry(server, token)
            try:
                assert registry.http.get("/v2/").status_code == 200, (issuer.url, server.url)
                if issuer is replicas[0] and server is replicas[0]:
                    registry.push(repository, image, "v1")
                response = registry.manifest(repository, "v1")
                assert response.status_code == 200
                assert response.content == image.manifest
            finally:
                registry.close()
    # And a forged one is refused everywhere.
    forged = login_password(make_ecr_client(replicas[0].url))[:-2] + "AA"
    for server in replicas:
        assert httpx.get(f"{server.url}/v2/", auth=("AWS", forged)).status_code == 401


def test_a_download_url_from_r1_downloads_from_r2(
    replicas: list[ServerProcess], redirecting: ServerProcess, repository: str, password: str
) -> None:
    r1, r2, r3 = replicas
    image = build_image(layer_sizes=[7 * MiB + 3])
    pusher = Registry(r3, password)
    pusher.push(repository, image, "v1")
    pusher.close()
    layer = image.layers[0]

    url = make_ecr_client(r1.url).get_download_url_for_layer(
        repositoryName=repository, layerDigest=layer.digest
    )["downloadUrl"]
    assert url.startswith(r1.url)
    on_r2 = r2.url + url[len(r1.url) :]
    response = httpx.get(on_r2, timeout=60)
    assert response.status_code == 200
    assert response.content == layer.data
    # The signature covers the path: another layer's path with it is refused on r2.
    other = on_r2.replace(layer.digest[7:], image.config.digest[7:])
    assert other != on_r2
    assert httpx.get(other).status_code == 403

    # From the redirecting replica the URL points at S3 directly.
    direct = make_ecr_client(redirecting.url).get_download_url_for_layer(
        repositoryName=repository, layerDigest=layer.digest
    )["downloadUrl"]
    assert direct.startswith(_s3_endpoint(redirecting))
    assert httpx.get(direct, timeout=60).content == layer.data


# -- 4. pagination tokens continue on any replica ----------------------------------------------


def _walk(
    clients: list[Any], call: Callable[[Any, dict[str, Any]], dict[str, Any]], key: str
) -> tuple[list[Any], list[int]]:
    """Pages of 2 from r1, r2, r3, r1, ...; returns the items and which replica served each."""
    items: list[Any] = []
    served: list[int] = []
    token: str | None = None
    for page_number in range(100):
        index = page_number % len(clients)
        options: dict[str, Any] = {"maxResults": 2}
        if token:
            options["nextToken"] = token
        page = call(clients[index], options)
        items.extend(page[key])
        served.append(index)
        token = page.get("nextToken")
        if not token:
            return items, served
    raise AssertionError("pagination did not end")


def test_pagination_walks_across_replicas_without_repeats_or_gaps(
    replicas: list[ServerProcess], password: str
) -> None:
    clients = [make_ecr_client(server.url) for server in replicas]
    repository = f"pages/{uuid.uuid4().hex[:8]}"
    clients[0].create_repository(repositoryName=repository)
    pushed = []
    for i in range(7):
        image = build_image(layers=1, layer_size=200 + i)
        ecr_push(clients[i % 3], repository, image, tag=f"t{i}")
        pushed.append(image.digest)
    # One untagged image too: ListImages and DescribeImages list it.
    untagged = build_image(layers=1, layer_size=999)
    ecr_push(clients[1], repository, untagged)
    pushed.append(untagged.digest)

    described, served = _walk(
        clients,
        lambda c, o: c.describe_images(repositoryName=repository, **o),
        "imageDetails",
    )
    digests = [detail["imageDigest"] for detail in described]
    assert len(digests) == len(set(digests)), "a page repeated an image"
    assert set(digests) == set(pushed), "a page skipped an image"
    assert served == [0, 1, 2, 0]

    listed, _ = _walk(
        clients, lambda c, o: c.list_images(repositoryName=repository, **o), "imageIds"
    )
    pairs = [(i["imageDigest"], i.get("imageTag")) for i in listed]
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == {(d, f"t{i}") for i, d in enumerate(pushed[:7])} | {
        (untagged.digest, None)
    }

    for i in range(7):
        clients[i % 3].create_repository(repositoryName=f"{repository}/r{i}")
    everything = clients[2].describe_repositories(maxResults=1000)["repositories"]
    assert "nextToken" not in clients[2].describe_repositories(maxResults=1000)
    repositories, served = _walk(clients, lambda c, o: c.describe_repositories(**o), "repositories")
    names = [r["repositoryName"] for r in repositories]
    assert len(names) == len(set(names))
    assert names == [r["repositoryName"] for r in everything]
    assert {f"{repository}/r{i}" for i in range(7)} <= set(names)
    assert len(served) >= 4
