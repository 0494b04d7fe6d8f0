"""The OCI distribution API over raw HTTP (httpx with Basic auth): spec behaviours and errors.

After every refused request the tests check that nothing half-written shows up (no blob,
no tag, no image) and that the server still serves.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from harness import TEST_ACCOUNT, ServerProcess
from images import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    build_image,
    build_index,
    canonical_json,
    sha256,
)
from oci_helpers import Registry, expired_token, registry_for

MiB = 1024 * 1024


@pytest.fixture
def registry(server: ServerProcess, ecr: Any) -> Iterator[Registry]:
    with registry_for(server, ecr) as opened:
        yield opened


def oci_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("application/json")
    errors = response.json()["errors"]
    assert errors[0]["code"] == code, errors
    assert isinstance(errors[0]["message"], str)
    error: dict[str, Any] = errors[0]
    return error


def assert_no_blob(registry: Registry, repo: str, digest: str) -> None:
    assert registry.http.head(f"/v2/{repo}/blobs/{digest}").status_code == 404


def assert_still_serves(registry: Registry, repo: str) -> None:
    """A complete push and pull still work."""
    image = build_image(layers=1, layer_size=1024)
    registry.push(repo, image, "alive")
    assert registry.manifest(repo, "alive").content == image.manifest


# --- authentication -----------------------------------------------------------------------


def test_base_endpoint_requires_basic_auth(server: ServerProcess, registry: Registry) -> None:
    for path in ("/v2/", "/v2/_catalog", "/v2/some/repo/tags/list"):
        response = httpx.get(server.url + path)
        error = oci_error(response, 401, "UNAUTHORIZED")
        assert error["message"]
        challenge = response.headers["WWW-Authenticate"]
        assert re.match(r'Basic realm="[^"]+"', challenge), challenge
        assert response.headers["Docker-Distribution-API-Version"] == "registry/2.0"
    ok = registry.http.get("/v2/")
    assert ok.status_code == 200
    assert ok.headers["Docker-Distribution-API-Version"] == "registry/2.0"


def _forge(password: str) -> list[tuple[str, str]]:
    claims, _, mac = password.partition(".")
    body = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    body["e"] = body["e"] + 86400
    stretched = base64.urlsafe_b64encode(json.dumps(body).encode()).decode().rstrip("=")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    return [
        ("wrong mac", f"{claims}.{flipped}"),
        ("claims changed", f"{stretched}.{mac}"),
        ("no mac", claims),
        ("garbage", "garbage"),
    ]


def test_bad_tokens_are_refused(server: ServerProcess, registry: Registry, repo: str) -> None:
    attempts = [(name, ("AWS", token)) for name, token in _forge(registry.password)]
    attempts.append(("wrong user", ("admin", registry.password)))
    attempts.append(("expired", ("AWS", expired_token(server, TEST_ACCOUNT))))
    for name, auth in attempts:
        for path in ("/v2/", f"/v2/{repo}/tags/list"):
            response = httpx.get(server.url + path, auth=auth)
            assert response.status_code == 401, (name, path, response.text)
            assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    headers = [
        {"Authorization": f"Bearer {registry.password}"},
        {"Authorization": "Basic !!!not-base64!!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Basic"},
    ]
    for header in headers:
        assert httpx.get(server.url + "/v2/", headers=header).status_code == 401, header
    assert registry.http.get(f"/v2/{repo}/tags/list").status_code == 200


def test_the_authorization_token_is_the_basic_credential(
    server: ServerProcess, ecr: Any, repo: str
) -> None:
    """The ECR ``authorizationToken`` is already ``base64("AWS:" + password)``."""
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    response = httpx.get(
        f"{server.url}/v2/{repo}/tags/list", headers={"Authorization": f"Basic {token}"}
    )
    assert response.status_code == 200
    assert response.json() == {"name": repo, "tags": []}


# --- blob uploads -------------------------------------------------------------------------


def test_chunked_upload(registry: Registry, repo: str) -> None:
    data = os.urandom(3000)
    digest = sha256(data)
    started = registry.http.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202
    location = started.headers["Location"]
    upload_id = started.headers["Docker-Upload-UUID"]
    assert upload_id in location
    assert started.headers["Range"] == "0-0"

    first = registry.http.patch(
        location,
        content=data[:1000],
        headers={"Content-Range": "0-999", "Content-Type": "application/octet-stream"},
    )
    assert first.status_code == 202
    assert first.headers["Range"] == "0-999"
    location = first.headers["Location"]

    # A chunk that does not start at the end of the upload: 416, and the upload is intact.
    overlap = registry.http.patch(
        location, content=data[500:1500], headers={"Content-Range": "500-1499"}
    )
    assert overlap.status_code == 416
    assert overlap.headers["Range"] == "0-999"
    gap = registry.http.patch(
        location, content=data[1500:2000], headers={"Content-Range": "1500-1999"}
    )
    assert gap.status_code == 416
    # Content-Range disagreeing with the body length.
    short = registry.http.patch(
        location, content=data[1000:1100], headers={"Content-Range": "1000-1999"}
    )
    assert short.status_code == 416

    status = registry.http.get(location)
    assert status.status_code == 204
    assert status.headers["Range"] == "0-999"
    assert status.headers["Docker-Upload-UUID"] == upload_id

    # A chunk without Content-Range appends at the end (streamed PATCH).
    second = registry.http.patch(location, content=data[1000:2000])
    assert second.status_code == 202
    assert second.headers["Range"] == "0-1999"

    # The final chunk comes with the PUT.
    done = registry.http.put(
        second.headers["Location"],
        params={"digest": digest},
        content=data[2000:],
        headers={"Content-Range": "2000-2999", "Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201
    assert done.headers["Docker-Content-Digest"] == digest
    assert done.headers["Location"].endswith(f"/v2/{repo}/blobs/{digest}")
    fetched = registry.http.get(f"/v2/{repo}/blobs/{digest}")
    assert fetched.content == data
    # The session is gone once completed.
    assert registry.http.get(location).status_code == 404


def test_large_blob_in_chunks(registry: Registry, repo: str) -> None:
    """The one big blob (21 MiB): three 7 MiB PATCHes, read back whole and across seams."""
    chunk = 7 * MiB
    data = os.urandom(3 * chunk)
    digest = sha256(data)
    location = registry.http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    for i in range(3):
        response = registry.http.patch(
            location,
            content=data[i * chunk : (i + 1) * chunk],
            headers={"Content-Range": f"{i * chunk}-{(i + 1) * chunk - 1}"},
        )
        assert response.status_code == 202
        assert response.headers["Range"] == f"0-{(i + 1) * chunk - 1}"
        location = response.headers["Location"]
    assert registry.http.put(location, params={"digest": digest}).status_code == 201
    head = registry.http.head(f"/v2/{repo}/blobs/{digest}")
    assert head.headers["Content-Length"] == str(len(data))
    full = registry.http.get(f"/v2/{repo}/blobs/{digest}")
    assert sha256(full.content) == digest
    seam = registry.http.get(
        f"/v2/{repo}/blobs/{digest}", headers={"Range": f"bytes={chunk - 8}-{chunk + 7}"}
    )
    assert seam.status_code == 206
    assert seam.content == data[chunk - 8 : chunk + 8]


def test_upload_with_put_only(registry: Registry, repo: str) -> None:
    data = os.urandom(1234)
    started = registry.http.post(f"/v2/{repo}/blobs/uploads/")
    done = registry.http.put(
        started.headers["Location"], params={"digest": sha256(data)}, content=data
    )
    assert done.status_code == 201
    assert registry.http.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_cancelled_upload_is_gone(registry: Registry, repo: str) -> None:
    started = registry.http.post(f"/v2/{repo}/blobs/uploads/")
    location = started.headers["Location"]
    registry.http.patch(location, content=b"partial")
    cancelled = registry.http.delete(location)
    assert cancelled.status_code == 204
    oci_error(registry.http.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    oci_error(registry.http.patch(location, content=b"more"), 404, "BLOB_UPLOAD_UNKNOWN")
    finish = registry.http.put(location, params={"digest": sha256(b"partial")})
    oci_error(finish, 404, "BLOB_UPLOAD_UNKNOWN")
    oci_error(registry.http.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_no_blob(registry, repo, sha256(b"partial"))


def test_upload_sessions_belong_to_their_repository(
    registry: Registry, repo: str, ecr: Any
) -> None:
    other = f"{repo}-other"
    ecr.create_repository(repositoryName=other)
    location = registry.http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    foreign = f"/v2/{other}/blobs/uploads/{upload_id}"
    oci_error(registry.http.get(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    oci_error(registry.http.patch(foreign, content=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    oci_error(registry.http.delete(foreign), 404, "BLOB_UPLOAD_UNKNOWN")
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        oci_error(
            registry.http.get(f"/v2/{repo}/blobs/uploads/{unknown}"), 404, "BLOB_UPLOAD_UNKNOWN"
        )
    # The real session is untouched.
    assert registry.http.get(location).status_code == 204


def test_monolithic_upload(registry: Registry, repo: str) -> None:
    data = os.urandom(5000)
    digest = sha256(data)
    response = registry.upload_blob(repo, data)
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Location"].endswith(f"/v2/{repo}/blobs/{digest}")
    # Uploading the same blob again is fine.
    registry.upload_blob(repo, data)
    assert registry.http.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_blob_digest_mismatch(registry: Registry, repo: str) -> None:
    data, claimed = b"the real bytes", sha256(b"other bytes")
    monolithic = registry.http.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": claimed}, content=data
    )
    oci_error(monolithic, 400, "DIGEST_INVALID")

    location = registry.http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    registry.http.patch(location, content=data)
    oci_error(registry.http.put(location, params={"digest": claimed}), 400, "DIGEST_INVALID")
    for digest in (claimed, sha256(data)):
        assert_no_blob(registry, repo, digest)

    for bad in ("sha256:xyz", "md5:" + "0" * 32, "nonsense"):
        fresh = registry.http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
        oci_error(
            registry.http.put(fresh, params={"digest": bad}, content=data), 400, "DIGEST_INVALID"
        )
    fresh = registry.http.post(f"/v2/{repo}/blobs/uploads/").headers["Location"]
    oci_error(registry.http.put(fresh, content=data), 400, "DIGEST_INVALID")
    assert_still_serves(registry, repo)


def test_cross_repository_mount(registry: Registry, repo: str, ecr: Any) -> None:
    target = f"{repo}-target"
    ecr.create_repository(repositoryName=target)
    image = build_image(layers=2, layer_size=4096)
    registry.push(repo, image, "v1")
    for digest in image.blobs:
        mounted = registry.http.post(
            f"/v2/{target}/blobs/uploads/", params={"mount": digest, "from": repo}
        )
        assert mounted.status_code == 201
        assert mounted.headers["Docker-Content-Digest"] == digest
        assert mounted.headers["Location"].endswith(f"/v2/{target}/blobs/{digest}")
    # No blob was uploaded to the target, yet the manifest is complete there.
    response = registry.put_manifest(target, "v1", image.manifest, OCI_MANIFEST)
    assert response.status_code == 201
    for digest, data in image.blobs.items():
        assert registry.http.get(f"/v2/{target}/blobs/{digest}").content == data
    checked = ecr.batch_check_layer_availability(
        repositoryName=target, layerDigests=list(image.blobs)
    )
    assert {layer["layerDigest"] for layer in checked["layers"]} == set(image.blobs)


def test_mount_that_cannot_be_done_opens_an_upload(registry: Registry, repo: str, ecr: Any) -> None:
    source, bystander = f"{repo}-source", f"{repo}-bystander"
    ecr.create_repository(repositoryName=source)
    ecr.create_repository(repositoryName=bystander)
    data = os.urandom(2048)
    registry.upload_blob(source, data)
    attempts = [
        {"mount": sha256(b"unknown blob"), "from": source},
        # The blob exists in the registry, but not in the repository named in from=.
        {"mount": sha256(data), "from": bystander},
        {"mount": sha256(data), "from": f"{repo}-does-not-exist"},
        {"mount": sha256(data), "from": "INVALID NAME"},
        {"mount": sha256(data)},
    ]
    for params in attempts:
        response = registry.http.post(f"/v2/{repo}/blobs/uploads/", params=params)
        assert response.status_code == 202, (params, response.text)
        location = response.headers["Location"]
        assert registry.http.get(location).status_code == 204
        assert_no_blob(registry, repo, sha256(data))
    # The session is an ordinary upload.
    done = registry.http.put(location, params={"digest": sha256(data)}, content=data)
    assert done.status_code == 201
    assert registry.http.get(f"/v2/{repo}/blobs/{sha256(data)}").content == data


def test_blob_get_head_and_ranges(registry: Registry, repo: str) -> None:
    data = os.urandom(4096)
    digest = sha256(data)
    registry.upload_blob(repo, data)

    head = registry.http.head(f"/v2/{repo}/blobs/{digest}")
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.content == b""

    full = registry.http.get(f"/v2/{repo}/blobs/{digest}")
    assert full.status_code == 200
    assert full.content == data
    assert full.headers["Docker-Content-Digest"] == digest

    ranges = {
        "bytes=10-19": data[10:20],
        "bytes=4000-": data[4000:],
        "bytes=-16": data[-16:],
        "bytes=0-0": data[:1],
    }
    for header, expected in ranges.items():
        partial = registry.http.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": header})
        assert partial.status_code == 206, header
        assert partial.content == expected, header
        assert partial.headers["Content-Range"].endswith(f"/{len(data)}")
    outside = registry.http.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=5000-6000"})
    assert outside.status_code == 416


def test_unknown_blobs(registry: Registry, repo: str, ecr: Any) -> None:
    unknown = sha256(b"never uploaded")
    oci_error(registry.http.get(f"/v2/{repo}/blobs/{unknown}"), 404, "BLOB_UNKNOWN")
    head = registry.http.head(f"/v2/{repo}/blobs/{unknown}")
    assert head.status_code == 404 and head.content == b""
    oci_error(registry.http.get(f"/v2/{repo}/blobs/sha256:zz"), 400, "DIGEST_INVALID")
    # A blob of another repository is not visible here.
    other = f"{repo}-other"
    ecr.create_repository(repositoryName=other)
    data = os.urandom(100)
    registry.upload_blob(other, data)
    oci_error(registry.http.get(f"/v2/{repo}/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")


# --- manifests ----------------------------------------------------------------------------


def _push_blobs(registry: Registry, repo: str, blobs: dict[str, bytes]) -> None:
    for data in blobs.values():
        registry.upload_blob(repo, data)


def assert_no_tag(registry: Registry, repo: str, tag: str) -> None:
    assert registry.manifest(repo, tag).status_code == 404
    assert tag not in registry.http.get(f"/v2/{repo}/tags/list").json()["tags"]


def test_manifest_referencing_a_missing_blob(registry: Registry, repo: str, ecr: Any) -> None:
    image = build_image(layers=2, layer_size=1024)
    registry.upload_blob(repo, image.config.data)
    registry.upload_blob(repo, image.layers[0].data)
    response = registry.put_manifest(repo, "broken", image.manifest, OCI_MANIFEST)
    oci_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_no_tag(registry, repo, "broken")
    assert registry.manifest(repo, image.digest).status_code == 404
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []

    index = build_index([build_image(layers=1, layer_size=64, with_platform=True)])
    response = registry.put_manifest(repo, "index", index.manifest, OCI_INDEX)
    oci_error(response, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_no_tag(registry, repo, "index")
    assert_still_serves(registry, repo)


MALFORMED = {
    "not json": b"{not json",
    "a list": b"[]",
    "no config": canonical_json({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": []}),
    "bad digest": canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/json", "digest": "sha256:1", "size": 1},
            "layers": [],
        }
    ),
    "duplicate key": b'{"schemaVersion": 2, "schemaVersion": 2, "layers": []}',
    "not utf-8": b'{"schemaVersion": 2, "x": "\xff"}',
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_manifests(registry: Registry, repo: str, name: str) -> None:
    response = registry.put_manifest(repo, "bad", MALFORMED[name], OCI_MANIFEST)
    oci_error(response, 400, "MANIFEST_INVALID")
    assert_no_tag(registry, repo, "bad")


def test_manifest_media_type_must_match_content_type(registry: Registry, repo: str) -> None:
    image = build_image(layers=1, layer_size=512)
    _push_blobs(registry, repo, image.blobs)
    response = registry.put_manifest(repo, "mismatch", image.manifest, DOCKER_MANIFEST)
    oci_error(response, 400, "MANIFEST_INVALID")
    assert_no_tag(registry, repo, "mismatch")
    # Without a Content-Type the mediaType field decides.
    ok = registry.http.put(f"/v2/{repo}/manifests/ok", content=image.manifest)
    assert ok.status_code == 201
    assert registry.manifest(repo, "ok").headers["Content-Type"] == OCI_MANIFEST


def test_manifest_too_large(registry: Registry, repo: str) -> None:
    body = b'{"schemaVersion": 2, "padding": "' + b"x" * (4 * MiB) + b'"}'
    response = registry.put_manifest(repo, "huge", body, OCI_MANIFEST)
    assert response.status_code == 413
    # Streamed without a Content-Length, too.
    streamed = registry.http.put(
        f"/v2/{repo}/manifests/huge",
        content=iter([body[: 2 * MiB], body[2 * MiB :]]),
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert streamed.status_code == 413
    assert_no_tag(registry, repo, "huge")
    assert_still_serves(registry, repo)


def test_manifest_of_exactly_the_maximum_size(registry: Registry, repo: str, ecr: Any) -> None:
    image = build_image(layers=1, layer_size=64)
    _push_blobs(registry, repo, image.blobs)
    document = image.manifest_json
    document["annotations"] = {"pad": ""}
    padding = 4 * MiB - len(canonical_json(document))
    document["annotations"]["pad"] = "x" * padding
    manifest = canonical_json(document)
    assert len(manifest) == 4 * MiB
    assert registry.put_manifest(repo, "max", manifest, OCI_MANIFEST).status_code == 201
    assert registry.manifest(repo, "max").content == manifest
    got = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "max"}])
    assert got["images"][0]["imageManifest"].encode() == manifest


def test_manifest_put_by_digest(registry: Registry, repo: str) -> None:
    image = build_image(layers=1, layer_size=512)
    _push_blobs(registry, repo, image.blobs)
    wrong = registry.put_manifest(repo, sha256(b"other"), image.manifest, OCI_MANIFEST)
    oci_error(wrong, 400, "DIGEST_INVALID")
    assert registry.manifest(repo, image.digest).status_code == 404
    right = registry.put_manifest(repo, image.digest, image.manifest, OCI_MANIFEST)
    assert right.status_code == 201
    assert right.headers["Location"].endswith(f"/v2/{repo}/manifests/{image.digest}")
    assert right.headers["Docker-Content-Digest"] == image.digest
    assert registry.http.get(f"/v2/{repo}/tags/list").json()["tags"] == []
    # Putting it again (by digest or by tag) is idempotent.
    assert (
        registry.put_manifest(repo, image.digest, image.manifest, OCI_MANIFEST).status_code == 201
    )
    assert registry.put_manifest(repo, "t", image.manifest, OCI_MANIFEST).status_code == 201
    assert registry.put_manifest(repo, "t", image.manifest, OCI_MANIFEST).status_code == 201


def test_invalid_tags(registry: Registry, repo: str) -> None:
    image = build_image(layers=1, layer_size=512)
    _push_blobs(registry, repo, image.blobs)
    for tag in ("-leading-dash", ".dot", "x" * 129):
        response = registry.put_manifest(repo, tag, image.manifest, OCI_MANIFEST)
        oci_error(response, 400, "TAG_INVALID")
    assert registry.http.get(f"/v2/{repo}/tags/list").json()["tags"] == []
    assert registry.put_manifest(repo, "_ok.Tag-1", image.manifest, OCI_MANIFEST).status_code == 201


def test_manifest_get_and_head(registry: Registry, repo: str) -> None:
    image = build_image(layers=1, layer_size=512, docker=True)
    registry.push(repo, image, "v1")
    for reference in ("v1", image.digest):
        got = registry.manifest(repo, reference)
        assert got.status_code == 200
        assert got.content == image.manifest
        assert got.headers["Content-Type"] == DOCKER_MANIFEST
        assert got.headers["Docker-Content-Digest"] == image.digest
        assert got.headers["Content-Length"] == str(len(image.manifest))
        head = registry.http.head(
            f"/v2/{repo}/manifests/{reference}", headers={"Accept": DOCKER_MANIFEST}
        )
        assert head.status_code == 200
        assert head.content == b""
        assert head.headers["Content-Type"] == DOCKER_MANIFEST
        assert head.headers["Docker-Content-Digest"] == image.digest
        assert head.headers["Content-Length"] == str(len(image.manifest))
    for reference in ("nope", sha256(b"nope")):
        oci_error(registry.manifest(repo, reference), 404, "MANIFEST_UNKNOWN")
        head = registry.http.head(f"/v2/{repo}/manifests/{reference}")
        assert head.status_code == 404 and head.content == b""
    oci_error(registry.manifest(repo, "sha256:short"), 400, "DIGEST_INVALID")


def test_accept_negotiation(registry: Registry, repo: str) -> None:
    image = build_image(layers=1, layer_size=512)
    registry.push(repo, image, "v1")
    path = f"/v2/{repo}/manifests/v1"

    def status(*accept: str) -> int:
        headers = httpx.Headers([("Accept", value) for value in accept])
        return registry.http.get(path, headers=headers).status_code

    assert status() == 200
    assert status(OCI_MANIFEST) == 200
    assert status("*/*") == 200
    assert status("application/*") == 200
    assert status(f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.5") == 200
    # Repeated Accept headers combine.
    assert status(DOCKER_MANIFEST, OCI_MANIFEST) == 200
    # No conversion: an OCI manifest is not served as a Docker one.
    oci_error(registry.http.get(path, headers={"Accept": DOCKER_MANIFEST}), 404, "MANIFEST_UNKNOWN")
    assert status(f"{OCI_MANIFEST};q=0") == 404
    # By digest, the client asked for exactly these bytes: Accept does not matter.
    by_digest = registry.http.get(
        f"/v2/{repo}/manifests/{image.digest}", headers={"Accept": DOCKER_MANIFEST}
    )
    assert by_digest.status_code == 200
    assert by_digest.headers["Content-Type"] == OCI_MANIFEST


def test_delete_manifest_by_tag_and_by_digest(registry: Registry, repo: str, ecr: Any) -> None:
    image = build_image(layers=1, layer_size=512)
    registry.push(repo, image, "a")
    assert registry.put_manifest(repo, "b", image.manifest, OCI_MANIFEST).status_code == 201

    assert registry.http.delete(f"/v2/{repo}/manifests/a").status_code == 202
    oci_error(registry.manifest(repo, "a"), 404, "MANIFEST_UNKNOWN")
    assert registry.manifest(repo, "b").status_code == 200
    assert registry.http.get(f"/v2/{repo}/tags/list").json()["tags"] == ["b"]
    oci_error(registry.http.delete(f"/v2/{repo}/manifests/a"), 404, "MANIFEST_UNKNOWN")

    assert registry.http.delete(f"/v2/{repo}/manifests/{image.digest}").status_code == 202
    oci_error(registry.manifest(repo, "b"), 404, "MANIFEST_UNKNOWN")
    oci_error(registry.manifest(repo, image.digest), 404, "MANIFEST_UNKNOWN")
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []
    oci_error(registry.http.delete(f"/v2/{repo}/manifests/{image.digest}"), 404, "MANIFEST_UNKNOWN")

    # Deleting the only tag over /v2/ leaves the image, untagged.
    registry.push(repo, image, "only")
    assert registry.http.delete(f"/v2/{repo}/manifests/only").status_code == 202
    assert registry.manifest(repo, image.digest).status_code == 200
    listed = ecr.list_images(repositoryName=repo)["imageIds"]
    assert listed == [{"imageDigest": image.digest}]


def test_delete_manifest_referenced_by_an_index(registry: Registry, repo: str) -> None:
    child = build_image(layers=1, layer_size=512, with_platform=True)
    index = build_index([child])
    registry.push(repo, index, "multi")
    response = registry.http.delete(f"/v2/{repo}/manifests/{child.digest}")
    assert 400 <= response.status_code < 500, response.text
    assert registry.manifest(repo, child.digest).status_code == 200


# --- listings -----------------------------------------------------------------------------

TAGS = ["Zeta", "alpha", "beta", "v1.0", "v1.10", "v1.2", "v1_0", "x-1"]


def _follow(registry: Registry, path: str, key: str, **params: Any) -> tuple[list[str], int]:
    """Every entry of a paginated listing, following Link headers; (entries, pages)."""
    entries: list[str] = []
    pages = 0
    response = registry.http.get(path, params=params)
    while True:
        assert response.status_code == 200, response.text
        pages += 1
        entries += response.json()[key]
        link = response.headers.get("Link")
        if not link:
            return entries, pages
        match = re.fullmatch(r'<([^>]+)>;\s*rel="next"', link)
        assert match, link
        assert match[1].startswith(path + "?")
        response = registry.http.get(match[1])


def test_tags_list_pagination(registry: Registry, repo: str) -> None:
    image = build_image(layers=1, layer_size=512)
    registry.push(repo, image)
    for tag in TAGS:
        assert registry.put_manifest(repo, tag, image.manifest, OCI_MANIFEST).status_code == 201

    everything = registry.http.get(f"/v2/{repo}/tags/list")
    assert everything.json() == {"name": repo, "tags": sorted(TAGS)}
    assert "Link" not in everything.headers

    first = registry.http.get(f"/v2/{repo}/tags/list", params={"n": 3})
    assert first.json()["tags"] == sorted(TAGS)[:3]
    assert first.headers["Link"].endswith('; rel="next"')
    entries, pages = _follow(registry, f"/v2/{repo}/tags/list", "tags", n=3)
    assert entries == sorted(TAGS)
    assert pages == 3

    after = registry.http.get(f"/v2/{repo}/tags/list", params={"last": "beta"}).json()["tags"]
    assert after == [t for t in sorted(TAGS) if t > "beta"]
    tail = registry.http.get(f"/v2/{repo}/tags/list", params={"n": 100, "last": "v1.2"})
    assert tail.json()["tags"] == [t for t in sorted(TAGS) if t > "v1.2"]
    assert "Link" not in tail.headers
    exact = registry.http.get(f"/v2/{repo}/tags/list", params={"n": len(TAGS)})
    assert exact.json()["tags"] == sorted(TAGS)
    assert "Link" not in exact.headers
    bad = registry.http.get(f"/v2/{repo}/tags/list", params={"n": "many"})
    assert bad.status_code == 400


def test_catalog_pagination(registry: Registry, ecr: Any) -> None:
    prefix = f"catalog-{uuid.uuid4().hex[:8]}"
    names = sorted(f"{prefix}/{suffix}" for suffix in ("a", "b", "c", "d", "e"))
    for name in names:
        ecr.create_repository(repositoryName=name)
    listed = registry.http.get("/v2/_catalog", params={"last": f"{prefix}/"}).json()
    assert [n for n in listed["repositories"] if n.startswith(prefix)] == names
    page = registry.http.get("/v2/_catalog", params={"n": 2, "last": names[0]})
    assert page.json()["repositories"] == names[1:3]
    assert "Link" in page.headers
    entries, _ = _follow(registry, "/v2/_catalog", "repositories", n=2, last=f"{prefix}/")
    assert entries[:5] == names
    assert len(entries) == len(set(entries))
    assert entries == sorted(entries)


def test_unknown_repository(registry: Registry) -> None:
    missing = f"missing/{uuid.uuid4().hex[:8]}"
    digest = sha256(b"x")
    requests = [
        registry.http.get(f"/v2/{missing}/tags/list"),
        registry.http.get(f"/v2/{missing}/manifests/latest"),
        registry.http.get(f"/v2/{missing}/blobs/{digest}"),
        registry.http.post(f"/v2/{missing}/blobs/uploads/"),
        registry.http.post(
            f"/v2/{missing}/blobs/uploads/", params={"digest": digest}, content=b"x"
        ),
        registry.put_manifest(
            missing, "latest", build_image(layers=1, layer_size=64).manifest, OCI_MANIFEST
        ),
        registry.http.get(f"/v2/{missing}/referrers/{digest}"),
    ]
    for response in requests:
        oci_error(response, 404, "NAME_UNKNOWN")
    head = registry.http.head(f"/v2/{missing}/manifests/latest")
    assert head.status_code == 404 and head.content == b""


@pytest.mark.parametrize("name", ["a", "ab-", "ab/-cd", "ab//cd", "ab/cd_", "a.-b"])
def test_invalid_repository_names(registry: Registry, name: str) -> None:
    oci_error(registry.http.get(f"/v2/{name}/tags/list"), 400, "NAME_INVALID")
    oci_error(registry.http.post(f"/v2/{name}/blobs/uploads/"), 400, "NAME_INVALID")


def test_upper_case_repository_names_are_refused(registry: Registry) -> None:
    response = registry.http.get("/v2/Upper/Case/tags/list")
    assert response.status_code in (400, 404)
    if response.status_code == 400:
        oci_error(response, 400, "NAME_INVALID")


def test_referrers_errors(registry: Registry, repo: str) -> None:
    oci_error(registry.http.get(f"/v2/{repo}/referrers/sha256:zz"), 400, "DIGEST_INVALID")
    empty = registry.http.get(f"/v2/{repo}/referrers/{sha256(b'x')}")
    assert empty.status_code == 200
    assert empty.headers["Content-Type"] == OCI_INDEX
    assert empty.json() == {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}


def test_blob_etag_is_the_same_for_head_and_get(registry: Registry, repo: str) -> None:
    data = os.urandom(1000)
    digest = sha256(data)
    registry.upload_blob(repo, data)
    head = registry.http.head(f"/v2/{repo}/blobs/{digest}")
    got = registry.http.get(f"/v2/{repo}/blobs/{digest}")
    assert got.headers.get("ETag") == head.headers.get("ETag")
    cached = registry.http.get(
        f"/v2/{repo}/blobs/{digest}", headers={"If-None-Match": head.headers["ETag"]}
    )
    assert cached.status_code == 304


@pytest.mark.parametrize("size", [1000, 300 * 1024], ids=["small", "large"])
def test_blob_conditions_use_the_etag_the_registry_sent(
    registry: Registry, repo: str, size: int
) -> None:
    data = os.urandom(size)
    digest = sha256(data)
    registry.upload_blob(repo, data)
    path = f"/v2/{repo}/blobs/{digest}"
    etag = registry.http.head(path).headers["ETag"]
    assert registry.http.get(path, headers={"If-Match": etag}).content == data
    assert registry.http.get(path, headers={"If-Match": '"other"'}).status_code == 412
    assert registry.http.get(path, headers={"If-None-Match": '"other", ' + etag}).status_code == 304
    assert registry.http.get(path, headers={"If-None-Match": '"other"'}).content == data
    assert registry.http.get(path, headers={"Range": "bytes=10-19"}).content == data[10:20]


def test_delete_of_an_unreferenced_blob(registry: Registry, repo: str) -> None:
    data = os.urandom(1000)
    digest = sha256(data)
    registry.upload_blob(repo, data)
    assert registry.http.delete(f"/v2/{repo}/blobs/{digest}").status_code == 202
    assert_no_blob(registry, repo, digest)
    oci_error(registry.http.delete(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_delete_of_a_referenced_blob_does_not_break_the_image(
    registry: Registry, repo: str, ecr: Any
) -> None:
    image = build_image(layers=1, layer_size=512)
    registry.push(repo, image, "v1")
    layer = image.layers[0]
    registry.http.delete(f"/v2/{repo}/blobs/{layer.digest}")
    # Whatever the answer (refusal, or deferral to garbage collection), the image must
    # stay pullable: every blob its manifest names is still served.
    assert registry.manifest(repo, "v1").status_code == 200
    assert registry.http.get(f"/v2/{repo}/blobs/{layer.digest}").content == layer.data


@pytest.mark.parametrize(
    ("path", "n"), [("/v2/_catalog", "0"), ("/v2/{repo}/tags/list", str(2**63 - 1))]
)
def test_extreme_page_sizes_are_not_server_errors(
    registry: Registry, repo: str, path: str, n: str
) -> None:
    image = build_image(layers=1, layer_size=64)
    registry.push(repo, image, "v1")
    response = registry.http.get(path.format(repo=repo), params={"n": n})
    assert response.status_code < 500, response.text
    if response.status_code == 400:
        oci_error(response, 400, "PAGINATION_NUMBER_INVALID")
    else:
        assert response.status_code == 200
        assert isinstance(response.json(), dict)


def test_page_size_zero_for_tags(registry: Registry, repo: str) -> None:
    registry.push(repo, build_image(layers=1, layer_size=64), "v1")
    response = registry.http.get(f"/v2/{repo}/tags/list", params={"n": 0})
    assert response.status_code == 200
    assert response.json() == {"name": repo, "tags": []}


def test_referrer_of_a_subject_that_is_not_there(registry: Registry, repo: str) -> None:
    """OCI 1.1: a manifest whose subject is missing is accepted and listed."""
    ghost = sha256(b"not pushed (yet)")
    artifact = build_image(
        layers=1,
        layer_size=64,
        subject={"mediaType": OCI_MANIFEST, "digest": ghost, "size": 100},
        annotations={"org.example.note": "early"},
    )
    for data in artifact.blobs.values():
        registry.upload_blob(repo, data)
    put = registry.put_manifest(repo, artifact.digest, artifact.manifest, OCI_MANIFEST)
    assert put.status_code == 201
    assert put.headers["OCI-Subject"] == ghost
    listed = registry.http.get(f"/v2/{repo}/referrers/{ghost}").json()["manifests"]
    assert listed == [
        {
            "mediaType": OCI_MANIFEST,
            "digest": artifact.digest,
            "size": len(artifact.manifest),
            "artifactType": "application/vnd.oci.image.config.v1+json",
            "annotations": {"org.example.note": "early"},
        }
    ]
    # A manifest without a subject gets no OCI-Subject header.
    plain = build_image(layers=1, layer_size=64)
    for data in plain.blobs.values():
        registry.upload_blob(repo, data)
    response = registry.put_manifest(repo, "plain", plain.manifest, OCI_MANIFEST)
    assert "OCI-Subject" not in response.headers
