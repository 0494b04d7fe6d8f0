"""One registry, two APIs: what is pushed through the ECR API is pulled over /v2/ and back.

* boto3 InitiateLayerUpload / UploadLayerPart / CompleteLayerUpload / PutImage, then skopeo
  pulls the image with identical digests;
* skopeo pushes, then BatchGetImage, BatchCheckLayerAvailability and GetDownloadUrlForLayer
  report exactly what was pushed, and the download URL works without credentials (and only
  as issued).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from harness import TEST_ACCOUNT, ServerProcess
from images import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Layout,
    build_image,
    build_index,
    image_digests,
    sha256,
    write_oci_layout,
)
from oci_helpers import (
    Registry,
    ecr_push,
    ecr_upload_layer,
    expired_download_query,
    registry_for,
    skopeo_copy,
)

MiB = 1024 * 1024


@pytest.fixture
def registry(server: ServerProcess, ecr: Any) -> Iterator[Registry]:
    with registry_for(server, ecr) as opened:
        yield opened


def test_ecr_multipart_push_is_pulled_by_skopeo(
    ecr: Any, registry: Registry, repo: str, tmp_path: Path
) -> None:
    # One ~11 MiB layer uploaded in two parts (6 MiB, then the rest), one small layer.
    image = build_image(layer_sizes=[11 * MiB, 20 * 1024])
    big, small = image.layers
    assert big.size > 10 * MiB

    upload = ecr.initiate_layer_upload(repositoryName=repo)
    assert upload["partSize"] >= 5 * MiB
    upload_id = upload["uploadId"]
    first = ecr.upload_layer_part(
        repositoryName=repo,
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=6 * MiB - 1,
        layerPartBlob=big.data[: 6 * MiB],
    )
    assert first["lastByteReceived"] == 6 * MiB - 1
    assert first["uploadId"] == upload_id
    assert first["repositoryName"] == repo
    assert first["registryId"] == TEST_ACCOUNT
    second = ecr.upload_layer_part(
        repositoryName=repo,
        uploadId=upload_id,
        partFirstByte=6 * MiB,
        partLastByte=big.size - 1,
        layerPartBlob=big.data[6 * MiB :],
    )
    assert second["lastByteReceived"] == big.size - 1
    done = ecr.complete_layer_upload(
        repositoryName=repo, uploadId=upload_id, layerDigests=[big.digest]
    )
    assert done["layerDigest"] == big.digest
    assert done["uploadId"] == upload_id

    ecr_upload_layer(ecr, repo, small.data)
    ecr_upload_layer(ecr, repo, image.config.data)
    put = ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="big")
    assert put["image"]["imageId"] == {"imageDigest": image.digest, "imageTag": "big"}
    assert put["image"]["imageManifestMediaType"] == OCI_MANIFEST

    available = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=[big.digest])
    assert available["layers"][0]["layerSize"] == big.size

    skopeo_copy(registry, registry.ref(repo, "big"), f"oci:{tmp_path / 'back'}:big")
    back = Layout(tmp_path / "back")
    assert back.descriptor("big")["digest"] == image.digest
    assert back.manifest("big") == image.manifest
    assert back.all_digests() == image_digests(image)
    assert back.blob(big.digest) == big.data

    detail = ecr.describe_images(repositoryName=repo)["imageDetails"][0]
    assert detail["imageSizeInBytes"] == big.size + small.size


def test_skopeo_push_is_read_by_the_ecr_api(
    ecr: Any, registry: Registry, repo: str, tmp_path: Path
) -> None:
    image = build_image(layers=3)
    write_oci_layout(tmp_path / "src", {"v1": image})
    skopeo_copy(
        registry, f"oci:{tmp_path / 'src'}:v1", registry.ref(repo, "v1"), "--preserve-digests"
    )

    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert got["failures"] == []
    (fetched,) = got["images"]
    assert fetched["imageManifest"].encode() == image.manifest
    assert fetched["imageId"] == {"imageDigest": image.digest, "imageTag": "v1"}
    assert fetched["imageManifestMediaType"] == OCI_MANIFEST
    assert fetched["registryId"] == TEST_ACCOUNT
    assert fetched["repositoryName"] == repo

    missing, invalid = sha256(b"missing layer"), "sha256:not-hex"
    checked = ecr.batch_check_layer_availability(
        repositoryName=repo,
        layerDigests=[
            *(layer.digest for layer in image.layers),
            image.config.digest,
            missing,
            invalid,
        ],
    )
    layers = {layer["layerDigest"]: layer for layer in checked["layers"]}
    assert set(layers) == {image.config.digest, *(layer.digest for layer in image.layers)}
    for blob in (*image.layers, image.config):
        assert layers[blob.digest]["layerAvailability"] == "AVAILABLE"
        assert layers[blob.digest]["layerSize"] == blob.size
    for layer in image.layers:
        assert layers[layer.digest]["mediaType"] == OCI_LAYER
    assert layers[image.config.digest]["mediaType"] == OCI_CONFIG
    failures = {f["layerDigest"]: f["failureCode"] for f in checked["failures"]}
    assert failures == {missing: "MissingLayerDigest", invalid: "InvalidLayerDigest"}

    detail = ecr.describe_images(repositoryName=repo)["imageDetails"][0]
    assert detail["imageDigest"] == image.digest
    assert detail["imageTags"] == ["v1"]
    assert detail["imageSizeInBytes"] == image.layer_size
    assert detail["artifactMediaType"] == OCI_CONFIG


@pytest.fixture
def ecr_other_repo(ecr: Any, repo_name: str) -> str:
    name = repo_name + "-other"
    ecr.create_repository(repositoryName=name)
    return name


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def test_download_url_works_without_credentials_and_only_as_issued(
    ecr: Any, registry: Registry, repo: str, server: ServerProcess, ecr_other_repo: str
) -> None:
    image = build_image(layers=2)
    registry.push(repo, image, "v1")
    layer, other_layer = image.layers

    issued = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=layer.digest)
    assert issued["layerDigest"] == layer.digest
    url = issued["downloadUrl"]
    assert url.startswith(server.url)

    downloaded = httpx.get(url, timeout=30)  # no Authorization header at all
    assert downloaded.status_code == 200
    assert downloaded.content == layer.data
    assert downloaded.headers["Docker-Content-Digest"] == layer.digest
    assert httpx.head(url, timeout=30).status_code == 200
    config_url = ecr.get_download_url_for_layer(
        repositoryName=repo, layerDigest=image.config.digest
    )["downloadUrl"]
    assert httpx.get(config_url, timeout=30).content == image.config.data

    query = dict(parse_qsl(urlsplit(url).query))
    signature = query["X-Openecr-Signature"]
    tampered_signature = ("A" if signature[0] != "A" else "B") + signature[1:]
    refused = [
        _with_query(url, **{"X-Openecr-Signature": tampered_signature}),
        _with_query(url, **{"X-Openecr-Expires": str(int(query["X-Openecr-Expires"]) + 3600)}),
        _with_query(url, **{"X-Openecr-Expires": "1"}),
        _with_query(url, **{"X-Openecr-Expires": "soon"}),
        # The signature is for one blob path only: not another blob, not another repository.
        url.replace(layer.digest.replace(":", "%3A"), other_layer.digest.replace(":", "%3A")),
        url.replace(f"/v2/{repo}/", f"/v2/{ecr_other_repo}/"),
    ]
    for bad in refused:
        assert bad != url
        response = httpx.get(bad, timeout=30)
        assert response.status_code in (401, 403), (bad, response.status_code)
        assert response.content != layer.data

    # A correctly signed URL whose time is up.
    path = urlsplit(url).path.replace("%3A", ":")
    expired = _with_query(url, **expired_download_query(server, path))
    response = httpx.get(expired, timeout=30)
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "DENIED"

    # Without the signature it is an ordinary /v2/ request: credentials required.
    plain = urlunsplit(urlsplit(url)._replace(query=""))
    assert httpx.get(plain, timeout=30).status_code == 401
    # And the signature does not authorise anything but reading that blob.
    manifest_url = _with_query(f"{server.url}/v2/{repo}/manifests/v1", **query)
    assert httpx.get(manifest_url, timeout=30).status_code in (401, 403)
    delete = httpx.delete(url, timeout=30)
    assert delete.status_code in (401, 403, 405)
    assert httpx.get(url, timeout=30).status_code == 200


def test_ecr_push_of_an_index_is_served_over_v2(
    ecr: Any, registry: Registry, repo: str, tmp_path: Path
) -> None:
    amd64 = build_image(layers=1, with_platform=True)
    arm64 = build_image(layers=1, architecture="arm64", with_platform=True)
    index = build_index([amd64, arm64])
    pushed = ecr_push(ecr, repo, index, tag="multi")
    assert pushed["imageManifestMediaType"] == OCI_INDEX

    served = registry.manifest(repo, "multi")
    assert served.content == index.manifest
    assert served.headers["Content-Type"] == OCI_INDEX
    skopeo_copy(registry, registry.ref(repo, "multi"), f"oci:{tmp_path / 'back'}:m", "--all")
    back = Layout(tmp_path / "back")
    assert back.descriptor("m")["digest"] == index.digest
    assert back.all_digests() == image_digests(index)
