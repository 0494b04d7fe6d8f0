"""ECR image and layer operations through boto3: semantics and errors.

PutImage, BatchGetImage, BatchDeleteImage, ListImages, DescribeImages, the layer upload
operations, GetDownloadUrlForLayer and DeleteRepository on repositories with images.
Images are real (random layers, uploaded through the layer operations); nothing is mocked.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ecr_helpers import raises_ecr
from harness import TEST_ACCOUNT, ServerProcess
from images import (
    DOCKER_MANIFEST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Image,
    build_image,
    build_index,
    canonical_json,
    random_tar_gz,
    sha256,
)
from oci_helpers import Registry, ecr_push, ecr_upload_layer, registry_for

MiB = 1024 * 1024
SMALL = 2048


@pytest.fixture
def registry(server: ServerProcess, ecr: Any) -> Iterator[Registry]:
    with registry_for(server, ecr) as opened:
        yield opened


def small_image(**options: Any) -> Image:
    return build_image(layers=1, layer_size=SMALL, **options)


def ids(response: dict[str, Any]) -> set[tuple[str, str | None]]:
    return {(i["imageDigest"], i.get("imageTag")) for i in response["imageIds"]}


def failures(response: dict[str, Any]) -> list[tuple[dict[str, str], str]]:
    return [(f["imageId"], f["failureCode"]) for f in response["failures"]]


# --- PutImage -----------------------------------------------------------------------------


def test_put_image_response_and_media_type_from_the_manifest(ecr: Any, repo: str) -> None:
    image = small_image()
    pushed = ecr_push(ecr, repo, image, tag="v1")
    assert pushed == {
        "registryId": TEST_ACCOUNT,
        "repositoryName": repo,
        "imageId": {"imageDigest": image.digest, "imageTag": "v1"},
        "imageManifest": image.manifest.decode(),
        "imageManifestMediaType": OCI_MANIFEST,
    }
    docker = small_image(docker=True)
    assert ecr_push(ecr, repo, docker)["imageManifestMediaType"] == DOCKER_MANIFEST


def test_put_image_media_type_parameter(ecr: Any, repo: str) -> None:
    image = small_image()
    ecr_push(ecr, repo, image, tag="with-field")
    document = image.manifest_json
    del document["mediaType"]
    bare = canonical_json(document).decode()

    with raises_ecr("InvalidParameterException", "Invalid parameter at 'imageManifest'"):
        ecr.put_image(repositoryName=repo, imageManifest=bare, imageTag="bare")
    put = ecr.put_image(
        repositoryName=repo,
        imageManifest=bare,
        imageManifestMediaType=OCI_MANIFEST,
        imageTag="bare",
    )
    assert put["image"]["imageManifestMediaType"] == OCI_MANIFEST
    assert put["image"]["imageId"]["imageDigest"] == sha256(bare.encode())
    # The declared type must agree with the manifest's own mediaType.
    with raises_ecr("InvalidParameterException"):
        ecr.put_image(
            repositoryName=repo,
            imageManifest=image.manifest.decode(),
            imageManifestMediaType=DOCKER_MANIFEST,
            imageTag="conflict",
        )
    # The refused push stored nothing.
    assert {i.get("imageTag") for i in ecr.list_images(repositoryName=repo)["imageIds"]} == {
        "with-field",
        "bare",
    }


def test_put_image_digest_is_of_the_exact_bytes(ecr: Any, repo: str) -> None:
    image = small_image()
    ecr_push(ecr, repo, image)
    spaced = json.dumps(image.manifest_json, indent=3) + "\n"
    put = ecr.put_image(repositoryName=repo, imageManifest=spaced, imageTag="spaced")
    assert put["image"]["imageId"]["imageDigest"] == sha256(spaced.encode())
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "spaced"}])
    assert got["images"][0]["imageManifest"] == spaced


def test_put_image_digest_mismatch(ecr: Any, repo: str) -> None:
    image = small_image()
    ecr_push(ecr, repo, image)
    wrong = sha256(b"other")
    with raises_ecr("ImageDigestDoesNotMatchException"):
        ecr.put_image(
            repositoryName=repo,
            imageManifest=image.manifest.decode(),
            imageDigest=wrong,
            imageTag="t",
        )
    put = ecr.put_image(
        repositoryName=repo,
        imageManifest=image.manifest.decode(),
        imageDigest=image.digest,
        imageTag="t",
    )
    assert put["image"]["imageId"] == {"imageDigest": image.digest, "imageTag": "t"}


def test_put_image_with_missing_layers(ecr: Any, repo: str) -> None:
    image = build_image(layers=2, layer_size=SMALL)
    ecr_upload_layer(ecr, repo, image.config.data)
    ecr_upload_layer(ecr, repo, image.layers[0].data)
    with raises_ecr("LayersNotFoundException") as info:
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="x")
    assert image.layers[1].digest in info.value.response["Error"]["Message"]
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


def test_put_image_errors_for_missing_repository_and_bad_json(ecr: Any, repo: str) -> None:
    image = small_image()
    with raises_ecr("RepositoryNotFoundException"):
        ecr.put_image(repositoryName=f"{repo}-missing", imageManifest=image.manifest.decode())
    for bad in ("{not json", "[]", '{"schemaVersion": 2}'):
        with raises_ecr("InvalidParameterException"):
            ecr.put_image(
                repositoryName=repo, imageManifest=bad, imageManifestMediaType=OCI_MANIFEST
            )
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'imageTag'"):
        ecr_push(ecr, repo, image, tag="bad tag!")
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


def test_re_push_of_same_digest_and_tag_fails(ecr: Any, repo: str) -> None:
    image = small_image()
    ecr_push(ecr, repo, image, tag="v1")
    with raises_ecr("ImageAlreadyExistsException") as info:
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="v1")
    message = info.value.response["Error"]["Message"]
    assert image.digest in message and "'v1'" in message
    # The same image under a second tag is fine.
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="v2")
    assert ids(ecr.list_images(repositoryName=repo)) == {(image.digest, "v1"), (image.digest, "v2")}


def test_tag_moves_on_a_mutable_repository(ecr: Any, repo: str) -> None:
    old, new = small_image(), small_image()
    ecr_push(ecr, repo, old, tag="latest")
    ecr_push(ecr, repo, new, tag="latest")
    assert ids(ecr.list_images(repositoryName=repo)) == {(new.digest, "latest"), (old.digest, None)}
    untagged = ecr.list_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})
    assert ids(untagged) == {(old.digest, None)}
    details = {
        d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]
    }
    assert "imageTags" not in details[old.digest]
    assert details[new.digest]["imageTags"] == ["latest"]


def test_tag_move_keeps_the_other_tags_of_the_old_image(ecr: Any, repo: str) -> None:
    old, new = small_image(), small_image()
    ecr_push(ecr, repo, old, tag="latest")
    ecr.put_image(repositoryName=repo, imageManifest=old.manifest.decode(), imageTag="v1")
    ecr_push(ecr, repo, new, tag="latest")
    assert ids(ecr.list_images(repositoryName=repo)) == {
        (new.digest, "latest"),
        (old.digest, "v1"),
    }


def test_immutable_repository(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name, imageTagMutability="IMMUTABLE")
    first, second = small_image(), small_image()
    ecr_push(ecr, repo_name, first, tag="v1")
    with raises_ecr("ImageTagAlreadyExistsException") as info:
        ecr_push(ecr, repo_name, second, tag="v1")
    assert "v1" in info.value.response["Error"]["Message"]
    # Re-pushing the same digest and tag is still ImageAlreadyExists, not a tag error.
    with raises_ecr("ImageAlreadyExistsException"):
        ecr.put_image(
            repositoryName=repo_name, imageManifest=first.manifest.decode(), imageTag="v1"
        )
    # More tags for an image, and untagged images, are fine.
    ecr.put_image(repositoryName=repo_name, imageManifest=first.manifest.decode(), imageTag="v1.0")
    got = ecr.batch_get_image(repositoryName=repo_name, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageId"]["imageDigest"] == first.digest
    # The failed tag push stored nothing: second is not there.
    assert ids(ecr.list_images(repositoryName=repo_name)) == {
        (first.digest, "v1"),
        (first.digest, "v1.0"),
    }
    # Switching to MUTABLE lets the tag move.
    ecr.put_image_tag_mutability(repositoryName=repo_name, imageTagMutability="MUTABLE")
    ecr.put_image(repositoryName=repo_name, imageManifest=second.manifest.decode(), imageTag="v1")
    got = ecr.batch_get_image(repositoryName=repo_name, imageIds=[{"imageTag": "v1"}])
    assert got["images"][0]["imageId"]["imageDigest"] == second.digest


def test_index_with_missing_children(ecr: Any, repo: str) -> None:
    present = small_image(with_platform=True)
    absent = small_image(architecture="arm64", with_platform=True)
    ecr_push(ecr, repo, present)
    index = build_index([present, absent])
    with raises_ecr("ReferencedImagesNotFoundException") as info:
        ecr.put_image(repositoryName=repo, imageManifest=index.manifest.decode(), imageTag="m")
    assert absent.digest in info.value.response["Error"]["Message"]
    assert ids(ecr.list_images(repositoryName=repo)) == {(present.digest, None)}

    ecr_push(ecr, repo, absent)
    put = ecr.put_image(repositoryName=repo, imageManifest=index.manifest.decode(), imageTag="m")
    assert put["image"]["imageManifestMediaType"] == OCI_INDEX


def test_docker_manifest_list(ecr: Any, repo: str, registry: Registry) -> None:
    amd64 = small_image(docker=True, with_platform=True)
    arm64 = small_image(docker=True, architecture="arm64", with_platform=True)
    manifest_list = build_index([amd64, arm64], docker=True)
    pushed = ecr_push(ecr, repo, manifest_list, tag="list")
    assert pushed["imageManifestMediaType"] == manifest_list.media_type
    served = registry.manifest(repo, "list")
    assert served.content == manifest_list.manifest
    assert served.headers["Content-Type"] == manifest_list.media_type


SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def schema1_manifest(repo: str, layer: Blob, *, signed: bool) -> str:
    document: dict[str, Any] = {
        "schemaVersion": 1,
        "name": repo,
        "tag": "old",
        "architecture": "amd64",
        "fsLayers": [{"blobSum": layer.digest}],
        "history": [{"v1Compatibility": json.dumps({"id": uuid.uuid4().hex})}],
    }
    if signed:
        document["signatures"] = [
            {"header": {"alg": "ES256"}, "signature": "c2ln", "protected": "cHJvdA"}
        ]
    return json.dumps(document, indent=3)


def test_docker_schema1(ecr: Any, repo: str, registry: Registry) -> None:
    layer = Blob("application/octet-stream", random_tar_gz(3000)[0])
    ecr_upload_layer(ecr, repo, layer.data)
    manifest = schema1_manifest(repo, layer, signed=False)
    put = ecr.put_image(
        repositoryName=repo,
        imageManifest=manifest,
        imageManifestMediaType=SCHEMA1,
        imageTag="old",
    )
    assert put["image"]["imageManifestMediaType"] == SCHEMA1
    assert put["image"]["imageId"]["imageDigest"] == sha256(manifest.encode())
    served = registry.http.get(f"/v2/{repo}/manifests/old", headers={"Accept": SCHEMA1})
    assert served.status_code == 200
    assert served.content == manifest.encode()
    assert served.headers["Content-Type"] == SCHEMA1
    detail = ecr.describe_images(repositoryName=repo)["imageDetails"][0]
    assert detail["imageSizeInBytes"] == layer.size  # schema 1 records no sizes
    missing = schema1_manifest(repo, Blob("x/y", b"absent"), signed=False)
    with raises_ecr("LayersNotFoundException"):
        ecr.put_image(repositoryName=repo, imageManifest=missing, imageManifestMediaType=SCHEMA1)


def test_batch_get_signed_schema1_when_schema1_is_accepted(ecr: Any, repo: str) -> None:
    layer = Blob("application/octet-stream", random_tar_gz(1000)[0])
    ecr_upload_layer(ecr, repo, layer.data)
    manifest = schema1_manifest(repo, layer, signed=True)
    ecr.put_image(
        repositoryName=repo,
        imageManifest=manifest,
        imageManifestMediaType=SCHEMA1_SIGNED,
        imageTag="old",
    )
    got = ecr.batch_get_image(
        repositoryName=repo, imageIds=[{"imageTag": "old"}], acceptedMediaTypes=[SCHEMA1]
    )
    assert got["failures"] == []
    assert got["images"][0]["imageManifest"] == manifest


def test_layers_belong_to_their_repository(ecr: Any, repo: str, repo_name: str) -> None:
    other = f"{repo_name}-other"
    ecr.create_repository(repositoryName=other)
    image = small_image()
    ecr_push(ecr, other, image, tag="v1")
    with raises_ecr("LayersNotFoundException"):
        ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="v1")
    check = ecr.batch_check_layer_availability(repositoryName=repo, layerDigests=list(image.blobs))
    assert check["layers"] == []
    assert {f["failureCode"] for f in check["failures"]} == {"MissingLayerDigest"}
    with raises_ecr("LayersNotFoundException"):
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=image.layers[0].digest)


# --- BatchGetImage ------------------------------------------------------------------------


def test_batch_get_image_by_tag_digest_and_both(ecr: Any, repo: str) -> None:
    image = small_image()
    ecr_push(ecr, repo, image, tag="v1")
    got = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[
            {"imageTag": "v1"},
            {"imageDigest": image.digest},
            {"imageDigest": image.digest, "imageTag": "v1"},
        ],
    )
    assert got["failures"] == []
    assert len(got["images"]) >= 2
    for fetched in got["images"]:
        assert fetched["imageManifest"] == image.manifest.decode()
        assert fetched["imageId"]["imageDigest"] == image.digest
        assert fetched["imageManifestMediaType"] == OCI_MANIFEST
    assert {i["imageId"].get("imageTag") for i in got["images"]} == {"v1", None}


def test_batch_get_image_failures(ecr: Any, repo: str) -> None:
    image, other = small_image(), small_image()
    ecr_push(ecr, repo, image, tag="v1")
    ecr_push(ecr, repo, other, tag="other")
    unknown = sha256(b"unknown")
    got = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[
            {"imageTag": "v1"},
            {"imageTag": "nope"},
            {"imageDigest": unknown},
            {},
            {"imageDigest": "not-a-digest"},
            {"imageDigest": other.digest, "imageTag": "v1"},
        ],
    )
    assert [i["imageId"] for i in got["images"]] == [
        {"imageDigest": image.digest, "imageTag": "v1"}
    ]
    assert failures(got) == [
        ({"imageTag": "nope"}, "ImageNotFound"),
        ({"imageDigest": unknown}, "ImageNotFound"),
        ({}, "MissingDigestAndTag"),
        ({"imageDigest": "not-a-digest"}, "InvalidImageDigest"),
        ({"imageDigest": other.digest, "imageTag": "v1"}, "ImageTagDoesNotMatchDigest"),
    ]
    for failure in got["failures"]:
        assert failure["failureReason"]
    with raises_ecr("RepositoryNotFoundException"):
        ecr.batch_get_image(repositoryName=f"{repo}-missing", imageIds=[{"imageTag": "v1"}])


def test_batch_get_image_accepted_media_types(ecr: Any, repo: str) -> None:
    oci, docker = small_image(), small_image(docker=True)
    ecr_push(ecr, repo, oci, tag="oci")
    ecr_push(ecr, repo, docker, tag="docker")
    both = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[{"imageTag": "oci"}, {"imageTag": "docker"}],
        acceptedMediaTypes=[OCI_MANIFEST, DOCKER_MANIFEST],
    )
    assert len(both["images"]) == 2 and both["failures"] == []

    only_docker = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[{"imageTag": "oci"}, {"imageTag": "docker"}],
        acceptedMediaTypes=[DOCKER_MANIFEST],
    )
    assert [i["imageId"]["imageTag"] for i in only_docker["images"]] == ["docker"]
    assert only_docker["images"][0]["imageManifest"] == docker.manifest.decode()
    # No conversion: the OCI image is not available as a Docker manifest.
    assert [f["imageId"] for f in only_docker["failures"]] == [{"imageTag": "oci"}]


def test_batch_get_image_by_digest_is_not_subject_to_conversion(ecr: Any, repo: str) -> None:
    """By digest ECR converts nothing, so the stored manifest is what the digest names."""
    oci = small_image()
    ecr_push(ecr, repo, oci, tag="oci")
    got = ecr.batch_get_image(
        repositoryName=repo,
        imageIds=[{"imageDigest": oci.digest}],
        acceptedMediaTypes=[DOCKER_MANIFEST],
    )
    assert got["failures"] == []
    assert got["images"][0]["imageManifest"] == oci.manifest.decode()


# --- BatchDeleteImage ---------------------------------------------------------------------


def test_batch_delete_by_tag_removes_only_that_tag(ecr: Any, repo: str) -> None:
    image = small_image()
    ecr_push(ecr, repo, image, tag="a")
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="b")
    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "a"}])
    assert deleted["imageIds"] == [{"imageDigest": image.digest, "imageTag": "a"}]
    assert deleted["failures"] == []
    assert ids(ecr.list_images(repositoryName=repo)) == {(image.digest, "b")}

    # The last tag takes the image with it.
    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "b"}])
    assert deleted["imageIds"] == [{"imageDigest": image.digest, "imageTag": "b"}]
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


def test_batch_delete_every_tag_in_one_call(ecr: Any, repo: str) -> None:
    image = small_image()
    ecr_push(ecr, repo, image, tag="a")
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="b")
    deleted = ecr.batch_delete_image(
        repositoryName=repo, imageIds=[{"imageTag": "a"}, {"imageTag": "b"}]
    )
    assert ids(deleted) == {(image.digest, "a"), (image.digest, "b")}
    assert deleted["failures"] == []
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


def test_batch_delete_by_digest_removes_the_image_and_all_tags(
    ecr: Any, repo: str, registry: Registry
) -> None:
    image, untagged = small_image(), small_image()
    ecr_push(ecr, repo, image, tag="a")
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="b")
    ecr_push(ecr, repo, untagged)
    deleted = ecr.batch_delete_image(
        repositoryName=repo,
        imageIds=[{"imageDigest": image.digest}, {"imageDigest": untagged.digest}],
    )
    assert ids(deleted) == {(image.digest, "a"), (image.digest, "b"), (untagged.digest, None)}
    assert deleted["failures"] == []
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []
    assert registry.manifest(repo, "a").status_code == 404
    assert registry.manifest(repo, image.digest).status_code == 404


def test_batch_delete_failures(ecr: Any, repo: str) -> None:
    image, other = small_image(), small_image()
    ecr_push(ecr, repo, image, tag="v1")
    ecr_push(ecr, repo, other, tag="other")
    unknown = sha256(b"unknown")
    deleted = ecr.batch_delete_image(
        repositoryName=repo,
        imageIds=[
            {"imageTag": "nope"},
            {"imageDigest": unknown},
            {},
            {"imageDigest": "sha256:xyz"},
            {"imageDigest": other.digest, "imageTag": "v1"},
        ],
    )
    assert deleted["imageIds"] == []
    assert failures(deleted) == [
        ({"imageTag": "nope"}, "ImageNotFound"),
        ({"imageDigest": unknown}, "ImageNotFound"),
        ({}, "MissingDigestAndTag"),
        ({"imageDigest": "sha256:xyz"}, "InvalidImageDigest"),
        ({"imageDigest": other.digest, "imageTag": "v1"}, "ImageTagDoesNotMatchDigest"),
    ]
    assert ids(ecr.list_images(repositoryName=repo)) == {
        (image.digest, "v1"),
        (other.digest, "other"),
    }
    with raises_ecr("RepositoryNotFoundException"):
        ecr.batch_delete_image(repositoryName=f"{repo}-missing", imageIds=[{"imageTag": "v1"}])


def test_batch_delete_image_referenced_by_an_index(ecr: Any, repo: str) -> None:
    child = small_image(with_platform=True)
    index = build_index([child])
    ecr_push(ecr, repo, child, tag="child")
    ecr_push(ecr, repo, index, tag="index")

    refused = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": child.digest}])
    assert refused["imageIds"] == []
    assert failures(refused) == [({"imageDigest": child.digest}, "ImageReferencedByManifestList")]
    # Its last tag cannot go either (that would delete it)...
    refused = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "child"}])
    assert failures(refused) == [({"imageTag": "child"}, "ImageReferencedByManifestList")]
    # ...but once the index is gone, it can.
    ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageTag": "index"}])
    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": child.digest}])
    assert ids(deleted) == {(child.digest, "child")}
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


# --- ListImages ---------------------------------------------------------------------------


def populate(ecr: Any, repo: str, tagged: int, untagged: int) -> set[tuple[str, str | None]]:
    """``tagged`` images with two tags each and ``untagged`` images; returns ListImages ids."""
    expected: set[tuple[str, str | None]] = set()
    for i in range(tagged):
        image = build_image(layers=1, layer_size=512)
        ecr_push(ecr, repo, image, tag=f"t{i}-a")
        ecr.put_image(
            repositoryName=repo, imageManifest=image.manifest.decode(), imageTag=f"t{i}-b"
        )
        expected |= {(image.digest, f"t{i}-a"), (image.digest, f"t{i}-b")}
    for _ in range(untagged):
        image = build_image(layers=1, layer_size=512)
        ecr_push(ecr, repo, image)
        expected.add((image.digest, None))
    return expected


def test_list_images_entries_and_filters(ecr: Any, repo: str) -> None:
    expected = populate(ecr, repo, tagged=2, untagged=2)
    listed = ecr.list_images(repositoryName=repo)
    assert len(listed["imageIds"]) == 6
    assert ids(listed) == expected
    assert "nextToken" not in listed
    tagged = ecr.list_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})
    assert ids(tagged) == {e for e in expected if e[1] is not None}
    untagged = ecr.list_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})
    assert ids(untagged) == {e for e in expected if e[1] is None}
    assert all("imageTag" not in i for i in untagged["imageIds"])
    assert ids(ecr.list_images(repositoryName=repo, filter={"tagStatus": "ANY"})) == expected
    with raises_ecr("RepositoryNotFoundException"):
        ecr.list_images(repositoryName=f"{repo}-missing")


def test_list_images_pagination(ecr: Any, repo: str) -> None:
    expected = populate(ecr, repo, tagged=3, untagged=2)  # 8 entries
    seen: list[tuple[str, str | None]] = []
    token = None
    pages = 0
    while True:
        options = {"nextToken": token} if token else {}
        page = ecr.list_images(repositoryName=repo, maxResults=3, **options)
        assert len(page["imageIds"]) <= 3
        seen += [(i["imageDigest"], i.get("imageTag")) for i in page["imageIds"]]
        pages += 1
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 8
    assert set(seen) == expected

    paginated = ecr.get_paginator("list_images").paginate(
        repositoryName=repo, PaginationConfig={"PageSize": 2}
    )
    pages_seen = list(paginated)
    assert len(pages_seen) == 4
    from_paginator = [
        (i["imageDigest"], i.get("imageTag")) for p in pages_seen for i in p["imageIds"]
    ]
    assert from_paginator == seen

    untagged = ecr.get_paginator("list_images").paginate(
        repositoryName=repo, filter={"tagStatus": "UNTAGGED"}, PaginationConfig={"PageSize": 1}
    )
    assert {(i["imageDigest"], None) for p in untagged for i in p["imageIds"]} == {
        e for e in expected if e[1] is None
    }


@pytest.mark.parametrize("page_size", [1, 2, 3, 7, 1000])
def test_list_images_pages_every_filter_in_one_order(ecr: Any, repo: str, page_size: int) -> None:
    expected = populate(ecr, repo, tagged=4, untagged=3)  # 11 entries
    # A third tag on one image: a digest whose entries may straddle any page boundary.
    first_tagged = next(digest for digest, tag in sorted(expected, key=str) if tag)
    manifest = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": first_tagged}])
    ecr.put_image(
        repositoryName=repo,
        imageManifest=manifest["images"][0]["imageManifest"],
        imageTag="Z-upper",
    )
    expected.add((first_tagged, "Z-upper"))
    selections = {
        None: expected,
        "ANY": expected,
        "TAGGED": {e for e in expected if e[1] is not None},
        "UNTAGGED": {e for e in expected if e[1] is None},
    }
    for status, wanted in selections.items():
        options: dict[str, Any] = {"filter": {"tagStatus": status}} if status else {}
        pages = ecr.get_paginator("list_images").paginate(
            repositoryName=repo, PaginationConfig={"PageSize": page_size}, **options
        )
        listed = [(i["imageDigest"], i.get("imageTag")) for p in pages for i in p["imageIds"]]
        assert listed == sorted(wanted, key=lambda e: (e[0], e[1] or "")), status


def test_list_images_pagination_survives_deletes_between_pages(ecr: Any, repo: str) -> None:
    expected = populate(ecr, repo, tagged=3, untagged=3)  # 9 entries
    first = ecr.list_images(repositoryName=repo, maxResults=4)
    seen = [(i["imageDigest"], i.get("imageTag")) for i in first["imageIds"]]
    # Delete an image already listed (the last one of the page, whose key is the token)
    # and one not listed yet.
    not_yet = sorted(expected - set(seen), key=lambda e: (e[0], e[1] or ""))
    listed_digest = seen[-1][0]
    later = next(e for e in not_yet if e[0] != listed_digest)
    ecr.batch_delete_image(
        repositoryName=repo, imageIds=[{"imageDigest": listed_digest}, {"imageDigest": later[0]}]
    )
    token = first["nextToken"]
    while token:
        page = ecr.list_images(repositoryName=repo, maxResults=4, nextToken=token)
        seen += [(i["imageDigest"], i.get("imageTag")) for i in page["imageIds"]]
        token = page.get("nextToken")
    assert len(seen) == len(set(seen)), "an entry was listed twice"
    remaining = ids(ecr.list_images(repositoryName=repo))
    assert remaining <= set(seen), "an entry that was never deleted was skipped"
    assert later not in seen


def test_list_images_invalid_pagination_parameters(ecr: Any, repo: str) -> None:
    populate(ecr, repo, tagged=0, untagged=3)
    with raises_ecr("InvalidParameterException"):
        ecr.list_images(repositoryName=repo, nextToken="garbage!")
    # A token of another listing is not a ListImages token.
    describe_token = ecr.describe_images(repositoryName=repo, maxResults=1)["nextToken"]
    with raises_ecr("InvalidParameterException"):
        ecr.list_images(repositoryName=repo, nextToken=describe_token)
    list_token = ecr.list_images(repositoryName=repo, maxResults=1)["nextToken"]
    with raises_ecr("InvalidParameterException"):
        ecr.describe_images(repositoryName=repo, nextToken=list_token)
    with raises_ecr("InvalidParameterException"):
        ecr.list_images(repositoryName=repo, maxResults=1001)


# --- DescribeImages -----------------------------------------------------------------------


def test_describe_images_details(ecr: Any, repo: str) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    image = build_image(layer_sizes=[3000, 5000, 3000])
    ecr_push(ecr, repo, image, tag="v1")
    ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag="v2")
    untagged = small_image()
    ecr_push(ecr, repo, untagged)
    after = datetime.now(UTC) + timedelta(seconds=5)

    details = {
        d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]
    }
    assert set(details) == {image.digest, untagged.digest}
    detail = details[image.digest]
    assert detail["registryId"] == TEST_ACCOUNT
    assert detail["repositoryName"] == repo
    assert sorted(detail["imageTags"]) == ["v1", "v2"]
    assert detail["imageSizeInBytes"] == sum(layer.size for layer in image.layers)
    assert before <= detail["imagePushedAt"] <= after
    assert detail["imageManifestMediaType"] == OCI_MANIFEST
    assert detail["artifactMediaType"] == OCI_CONFIG
    assert "lastRecordedPullTime" not in detail
    assert "imageTags" not in details[untagged.digest]
    assert details[untagged.digest]["imageSizeInBytes"] == untagged.layer_size


def test_describe_images_duplicate_layers_count_once(ecr: Any, repo: str) -> None:
    layer_data, diff_id = random_tar_gz(4000)
    layer = Blob("application/vnd.oci.image.layer.v1.tar+gzip", layer_data)
    config = Blob(
        OCI_CONFIG,
        canonical_json(
            {
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [diff_id, diff_id]},
            }
        ),
    )
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor(), layer.descriptor()],
    }
    image = Image(canonical_json(manifest), OCI_MANIFEST, config, [layer, layer])
    ecr_push(ecr, repo, image, tag="dup")
    detail = ecr.describe_images(repositoryName=repo)["imageDetails"][0]
    assert detail["imageSizeInBytes"] == layer.size


def test_last_recorded_pull_time(ecr: Any, repo: str, registry: Registry) -> None:
    image = small_image()
    ecr_push(ecr, repo, image, tag="v1")

    def pulled_at() -> datetime | None:
        detail = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
        found: datetime | None = detail["imageDetails"][0].get("lastRecordedPullTime")
        return found

    # A HEAD is not a pull.
    assert registry.http.head(f"/v2/{repo}/manifests/v1").status_code == 200
    assert pulled_at() is None

    before = datetime.now(UTC) - timedelta(seconds=2)
    assert registry.manifest(repo, "v1").status_code == 200
    deadline = time.monotonic() + 3
    while (first := pulled_at()) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert first is not None, "lastRecordedPullTime not set within 3 s of a pull"
    assert before <= first <= datetime.now(UTC) + timedelta(seconds=2)

    time.sleep(1.1)
    ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": image.digest}])
    deadline = time.monotonic() + 3
    while (second := pulled_at()) == first and time.monotonic() < deadline:
        time.sleep(0.2)
    assert second is not None and second > first


def test_describe_images_by_id(ecr: Any, repo: str) -> None:
    image, other = small_image(), small_image()
    ecr_push(ecr, repo, image, tag="v1")
    ecr_push(ecr, repo, other)
    found = ecr.describe_images(
        repositoryName=repo,
        imageIds=[{"imageTag": "v1"}, {"imageDigest": other.digest}, {"imageDigest": image.digest}],
    )
    assert {d["imageDigest"] for d in found["imageDetails"]} == {image.digest, other.digest}
    assert len(found["imageDetails"]) == 2
    with raises_ecr("ImageNotFoundException") as info:
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}, {"imageTag": "no"}])
    assert "'no'" in info.value.response["Error"]["Message"]
    with raises_ecr("ImageNotFoundException"):
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": sha256(b"x")}])
    with raises_ecr("InvalidParameterException"):
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v1"}], maxResults=5)


def test_describe_images_filter_and_pagination(ecr: Any, repo: str) -> None:
    expected = populate(ecr, repo, tagged=3, untagged=2)
    digests = {digest for digest, _ in expected}
    tagged = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "TAGGED"})
    assert {d["imageDigest"] for d in tagged["imageDetails"]} == {
        digest for digest, tag in expected if tag
    }
    for detail in tagged["imageDetails"]:
        assert len(detail["imageTags"]) == 2
    untagged = ecr.describe_images(repositoryName=repo, filter={"tagStatus": "UNTAGGED"})
    assert {d["imageDigest"] for d in untagged["imageDetails"]} == {
        digest for digest, tag in expected if tag is None
    }

    seen: list[str] = []
    token = None
    while True:
        options = {"nextToken": token} if token else {}
        page = ecr.describe_images(repositoryName=repo, maxResults=2, **options)
        assert len(page["imageDetails"]) <= 2
        seen += [d["imageDigest"] for d in page["imageDetails"]]
        token = page.get("nextToken")
        if not token:
            break
    assert len(seen) == len(set(seen)) == 5
    assert set(seen) == digests

    paginator = ecr.get_paginator("describe_images")
    pages = list(paginator.paginate(repositoryName=repo, PaginationConfig={"PageSize": 3}))
    assert [d["imageDigest"] for p in pages for d in p["imageDetails"]] == seen
    with raises_ecr("RepositoryNotFoundException"):
        ecr.describe_images(repositoryName=f"{repo}-missing")


# --- layer uploads ------------------------------------------------------------------------


def test_upload_layer_part_out_of_order(ecr: Any, repo: str) -> None:
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    with raises_ecr("InvalidLayerPartException") as info:
        ecr.upload_layer_part(
            repositoryName=repo,
            uploadId=upload_id,
            partFirstByte=10,
            partLastByte=19,
            layerPartBlob=b"0123456789",
        )
    assert info.value.response["lastValidByteReceived"] == -1
    assert info.value.response["uploadId"] == upload_id
    assert info.value.response["repositoryName"] == repo
    assert info.value.response["registryId"] == TEST_ACCOUNT

    ecr.upload_layer_part(
        repositoryName=repo,
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=9,
        layerPartBlob=b"0123456789",
    )
    for first, last, blob in [(20, 29, b"x" * 10), (5, 14, b"y" * 10), (10, 20, b"z" * 10)]:
        with raises_ecr("InvalidLayerPartException") as info:
            ecr.upload_layer_part(
                repositoryName=repo,
                uploadId=upload_id,
                partFirstByte=first,
                partLastByte=last,
                layerPartBlob=blob,
            )
        assert info.value.response["lastValidByteReceived"] == 9
    # The rejected parts changed nothing: the upload completes with the first part only.
    done = ecr.complete_layer_upload(
        repositoryName=repo, uploadId=upload_id, layerDigests=[sha256(b"0123456789")]
    )
    assert done["layerDigest"] == sha256(b"0123456789")


def test_upload_not_found(ecr: Any, repo: str, repo_name: str) -> None:
    other = f"{repo_name}-other"
    ecr.create_repository(repositoryName=other)
    with raises_ecr("UploadNotFoundException"):
        ecr.upload_layer_part(
            repositoryName=repo,
            uploadId=str(uuid.uuid4()),
            partFirstByte=0,
            partLastByte=0,
            layerPartBlob=b"x",
        )
    # The model's UploadId pattern is a UUID.
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'uploadId'"):
        ecr.upload_layer_part(
            repositoryName=repo,
            uploadId="not-an-upload",
            partFirstByte=0,
            partLastByte=0,
            layerPartBlob=b"x",
        )
    # An upload belongs to the repository that started it.
    upload_id = ecr.initiate_layer_upload(repositoryName=other)["uploadId"]
    with raises_ecr("UploadNotFoundException"):
        ecr.upload_layer_part(
            repositoryName=repo,
            uploadId=upload_id,
            partFirstByte=0,
            partLastByte=0,
            layerPartBlob=b"x",
        )
    with raises_ecr("UploadNotFoundException"):
        ecr.complete_layer_upload(
            repositoryName=repo, uploadId=upload_id, layerDigests=[sha256(b"x")]
        )
    ecr.upload_layer_part(
        repositoryName=other,
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=0,
        layerPartBlob=b"x",
    )
    with raises_ecr("RepositoryNotFoundException"):
        ecr.initiate_layer_upload(repositoryName=f"{repo}-missing")


def test_complete_layer_upload_errors(ecr: Any, repo: str) -> None:
    data = b"layer bytes"
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    with raises_ecr("EmptyUploadException"):
        ecr.complete_layer_upload(
            repositoryName=repo, uploadId=upload_id, layerDigests=[sha256(b"")]
        )
    ecr.upload_layer_part(
        repositoryName=repo,
        uploadId=upload_id,
        partFirstByte=0,
        partLastByte=len(data) - 1,
        layerPartBlob=data,
    )
    with raises_ecr("InvalidLayerException"):
        ecr.complete_layer_upload(
            repositoryName=repo, uploadId=upload_id, layerDigests=[sha256(b"other")]
        )
    check = ecr.batch_check_layer_availability(
        repositoryName=repo, layerDigests=[sha256(b"other"), sha256(data)]
    )
    assert check["layers"] == []

    ecr_upload_layer(ecr, repo, data)
    again = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    ecr.upload_layer_part(
        repositoryName=repo,
        uploadId=again,
        partFirstByte=0,
        partLastByte=len(data) - 1,
        layerPartBlob=data,
    )
    with raises_ecr("LayerAlreadyExistsException"):
        ecr.complete_layer_upload(repositoryName=repo, uploadId=again, layerDigests=[sha256(data)])


def test_complete_layer_upload_with_a_small_inner_part(ecr: Any, repo: str) -> None:
    data = b"a" * 1000 + b"b" * 1000
    upload_id = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
    for start in (0, 1000):
        ecr.upload_layer_part(
            repositoryName=repo,
            uploadId=upload_id,
            partFirstByte=start,
            partLastByte=start + 999,
            layerPartBlob=data[start : start + 1000],
        )
    with raises_ecr("LayerPartTooSmallException"):
        ecr.complete_layer_upload(
            repositoryName=repo, uploadId=upload_id, layerDigests=[sha256(data)]
        )


def test_get_download_url_for_layer_errors(ecr: Any, repo: str) -> None:
    image = small_image()
    ecr_push(ecr, repo, image, tag="v1")
    with raises_ecr("LayersNotFoundException"):
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=sha256(b"none"))
    loose = ecr_upload_layer(ecr, repo, b"uploaded but never referenced")
    with raises_ecr("LayerInaccessibleException"):
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=loose)
    with raises_ecr("InvalidParameterException"):
        ecr.get_download_url_for_layer(repositoryName=repo, layerDigest="sha256:zzz")
    with raises_ecr("RepositoryNotFoundException"):
        ecr.get_download_url_for_layer(
            repositoryName=f"{repo}-missing", layerDigest=image.layers[0].digest
        )
    url = ecr.get_download_url_for_layer(repositoryName=repo, layerDigest=image.layers[0].digest)
    assert url["layerDigest"] == image.layers[0].digest


# --- DeleteRepository with images ---------------------------------------------------------


def test_delete_repository_with_images(ecr: Any, repo: str, registry: Registry) -> None:
    image = small_image()
    ecr_push(ecr, repo, image, tag="v1")
    with raises_ecr("RepositoryNotEmptyException"):
        ecr.delete_repository(repositoryName=repo)
    assert registry.manifest(repo, "v1").status_code == 200

    deleted = ecr.delete_repository(repositoryName=repo, force=True)
    assert deleted["repository"]["repositoryName"] == repo
    with raises_ecr("RepositoryNotFoundException"):
        ecr.describe_images(repositoryName=repo)
    gone = registry.manifest(repo, "v1")
    assert gone.status_code == 404
    assert gone.json()["errors"][0]["code"] == "NAME_UNKNOWN"

    # A new repository of the same name starts empty.
    ecr.create_repository(repositoryName=repo)
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []
    assert registry.http.get(f"/v2/{repo}/blobs/{image.layers[0].digest}").status_code == 404
    check = ecr.batch_check_layer_availability(
        repositoryName=repo, layerDigests=[image.layers[0].digest]
    )
    assert check["layers"] == []
