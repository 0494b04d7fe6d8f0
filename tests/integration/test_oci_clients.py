"""Real registry clients against /v2/: skopeo, podman and oras-py.

Every image is built in the test from random layers (tests/images.py), pushed with the
client, pulled back with the client and compared digest by digest: the registry must
store and serve manifests and blobs byte-for-byte.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import oras.oci
import oras.provider
import pytest
from ecr_helpers import raises_ecr
from harness import ServerProcess
from images import (
    DOCKER_CONFIG,
    DOCKER_LAYER,
    DOCKER_MANIFEST,
    EMPTY_JSON,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Layout,
    build_image,
    build_index,
    image_digests,
    read_dir_layout,
    sha256,
    write_dir_layout,
    write_oci_layout,
)
from oci_helpers import (
    Podman,
    Registry,
    registry_for,
    skopeo_copy,
    skopeo_registry,
)


@pytest.fixture
def registry(server: ServerProcess, ecr: Any) -> Iterator[Registry]:
    with registry_for(server, ecr) as opened:
        yield opened


def assert_served(registry: Registry, repo: str, reference: str, manifest: bytes, media: str):
    response = registry.manifest(repo, reference)
    assert response.status_code == 200, response.text
    assert response.content == manifest
    assert response.headers["Content-Type"] == media
    assert response.headers["Docker-Content-Digest"] == sha256(manifest)


# --- skopeo -------------------------------------------------------------------------------


def test_skopeo_oci_round_trip_preserves_every_digest(
    registry: Registry, repo: str, tmp_path: Path
) -> None:
    image = build_image(layers=3)
    write_oci_layout(tmp_path / "src", {"v1": image})

    skopeo_copy(
        registry, f"oci:{tmp_path / 'src'}:v1", registry.ref(repo, "v1"), "--preserve-digests"
    )
    assert_served(registry, repo, "v1", image.manifest, OCI_MANIFEST)
    for digest, data in image.blobs.items():
        blob = registry.http.get(f"/v2/{repo}/blobs/{digest}")
        assert blob.status_code == 200
        assert blob.content == data

    skopeo_copy(registry, registry.ref(repo, "v1"), f"oci:{tmp_path / 'back'}:v1")
    back = Layout(tmp_path / "back")
    assert back.descriptor("v1")["digest"] == image.digest
    assert back.manifest("v1") == image.manifest
    assert back.all_digests() == image_digests(image)
    for digest, data in image.blobs.items():
        assert back.blob(digest) == data


def test_skopeo_copy_by_digest(registry: Registry, repo: str, tmp_path: Path) -> None:
    image = build_image()
    write_oci_layout(tmp_path / "src", {"x": image})
    # Push by digest: the image stays untagged.
    skopeo_copy(
        registry,
        f"oci:{tmp_path / 'src'}:x",
        registry.ref(repo, image.digest),
        "--preserve-digests",
    )
    tags = registry.http.get(f"/v2/{repo}/tags/list").json()
    assert tags == {"name": repo, "tags": []}

    skopeo_copy(registry, registry.ref(repo, image.digest), f"oci:{tmp_path / 'back'}:pulled")
    back = Layout(tmp_path / "back")
    assert back.descriptor("pulled")["digest"] == image.digest
    assert back.all_digests() == image_digests(image)


def test_skopeo_docker_v2s2_round_trip(registry: Registry, repo: str, tmp_path: Path) -> None:
    """A Docker schema 2 image (kept verbatim by skopeo's dir: transport)."""
    image = build_image(docker=True, layers=2)
    write_dir_layout(tmp_path / "src", image)

    skopeo_copy(registry, f"dir:{tmp_path / 'src'}", registry.ref(repo, "docker"))
    assert_served(registry, repo, "docker", image.manifest, DOCKER_MANIFEST)

    skopeo_copy(registry, registry.ref(repo, "docker"), f"dir:{tmp_path / 'back'}")
    manifest, blobs = read_dir_layout(tmp_path / "back")
    assert manifest == image.manifest
    assert blobs == image.blobs


def test_skopeo_converts_oci_to_v2s2_on_push(
    registry: Registry, repo: str, tmp_path: Path, ecr: Any
) -> None:
    image = build_image(layers=2)
    write_oci_layout(tmp_path / "src", {"v1": image})
    skopeo_copy(
        registry, f"oci:{tmp_path / 'src'}:v1", registry.ref(repo, "v2s2"), "--format", "v2s2"
    )

    served = registry.manifest(repo, "v2s2")
    assert served.headers["Content-Type"] == DOCKER_MANIFEST
    document = served.json()
    assert document["mediaType"] == DOCKER_MANIFEST
    assert document["config"]["mediaType"] == DOCKER_CONFIG
    assert document["config"]["digest"] == image.config.digest
    assert [layer["digest"] for layer in document["layers"]] == [b.digest for b in image.layers]
    assert {layer["mediaType"] for layer in document["layers"]} == {DOCKER_LAYER}
    digest = served.headers["Docker-Content-Digest"]
    assert digest == sha256(served.content)

    details = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "v2s2"}])
    detail = details["imageDetails"][0]
    assert detail["imageDigest"] == digest
    assert detail["imageManifestMediaType"] == DOCKER_MANIFEST
    assert detail["artifactMediaType"] == DOCKER_CONFIG
    assert detail["imageSizeInBytes"] == image.layer_size

    skopeo_copy(registry, registry.ref(repo, "v2s2"), f"dir:{tmp_path / 'back'}")
    manifest, blobs = read_dir_layout(tmp_path / "back")
    assert manifest == served.content
    assert blobs == image.blobs


def test_skopeo_inspect_list_tags_and_delete(
    registry: Registry, repo: str, tmp_path: Path, ecr: Any
) -> None:
    first, second = build_image(layers=2), build_image(layers=1, architecture="arm64")
    write_oci_layout(tmp_path / "src", {"first": first, "second": second})
    source = f"oci:{tmp_path / 'src'}"
    skopeo_copy(registry, f"{source}:first", registry.ref(repo, "a"), "--preserve-digests")
    skopeo_copy(registry, f"{source}:first", registry.ref(repo, "b"), "--preserve-digests")
    skopeo_copy(registry, f"{source}:second", registry.ref(repo, "c"), "--preserve-digests")

    inspected = json.loads(skopeo_registry(registry, "inspect", registry.ref(repo, "a")).stdout)
    assert inspected["Digest"] == first.digest
    assert inspected["Layers"] == [layer.digest for layer in first.layers]
    assert inspected["Architecture"] == "amd64"
    assert inspected["Os"] == "linux"
    assert sorted(inspected["RepoTags"]) == ["a", "b", "c"]

    raw = skopeo_registry(registry, "inspect", "--raw", registry.ref(repo, second.digest))
    assert raw.stdout.encode() == second.manifest
    config = skopeo_registry(registry, "inspect", "--config", "--raw", registry.ref(repo, "c"))
    assert config.stdout.encode() == second.config.data

    listed = skopeo_registry(registry, "list-tags", f"docker://{registry.host}/{repo}")
    assert json.loads(listed.stdout) == {
        "Repository": f"{registry.host}/{repo}",
        "Tags": ["a", "b", "c"],
    }

    # skopeo delete resolves the tag and deletes the manifest by digest: every tag goes.
    skopeo_registry(registry, "delete", registry.ref(repo, "a"))
    listed = skopeo_registry(registry, "list-tags", f"docker://{registry.host}/{repo}")
    assert json.loads(listed.stdout)["Tags"] == ["c"]
    result = ecr.batch_get_image(repositoryName=repo, imageIds=[{"imageDigest": first.digest}])
    assert result["images"] == []
    assert result["failures"][0]["failureCode"] == "ImageNotFound"
    missing = skopeo_registry(registry, "inspect", registry.ref(repo, "b"), check=False)
    assert missing.returncode != 0

    skopeo_registry(registry, "delete", registry.ref(repo, second.digest))
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


def test_skopeo_multi_arch_index(registry: Registry, repo: str, tmp_path: Path, ecr: Any) -> None:
    amd64 = build_image(architecture="amd64", with_platform=True, layer_size=8 * 1024)
    arm64 = build_image(architecture="arm64", with_platform=True, layer_size=12 * 1024, layers=3)
    index = build_index([amd64, arm64])
    write_oci_layout(tmp_path / "src", {"multi": index})

    skopeo_copy(
        registry,
        f"oci:{tmp_path / 'src'}:multi",
        registry.ref(repo, "multi"),
        "--all",
        "--preserve-digests",
    )
    assert_served(registry, repo, "multi", index.manifest, OCI_INDEX)
    for child in (amd64, arm64):
        assert_served(registry, repo, child.digest, child.manifest, OCI_MANIFEST)

    details = {
        d["imageDigest"]: d for d in ecr.describe_images(repositoryName=repo)["imageDetails"]
    }
    assert set(details) == {index.digest, amd64.digest, arm64.digest}
    assert details[index.digest]["imageTags"] == ["multi"]
    assert details[index.digest]["imageManifestMediaType"] == OCI_INDEX
    assert details[index.digest]["imageSizeInBytes"] == max(amd64.layer_size, arm64.layer_size)
    assert "imageTags" not in details[amd64.digest]
    assert details[arm64.digest]["imageSizeInBytes"] == arm64.layer_size

    skopeo_copy(registry, registry.ref(repo, "multi"), f"oci:{tmp_path / 'back'}:multi", "--all")
    back = Layout(tmp_path / "back")
    assert back.descriptor("multi")["digest"] == index.digest
    assert back.manifest("multi") == index.manifest
    assert back.all_digests() == image_digests(index)

    # Without --all skopeo picks one platform from the index.
    skopeo_copy(
        registry,
        registry.ref(repo, "multi"),
        f"oci:{tmp_path / 'arm'}:arm",
        "--override-arch",
        "arm64",
    )
    arm = Layout(tmp_path / "arm")
    assert arm.descriptor("arm")["digest"] == arm64.digest
    assert arm.all_digests() == image_digests(arm64)

    # The children are referenced by the index: they cannot be deleted on their own.
    deleted = ecr.batch_delete_image(repositoryName=repo, imageIds=[{"imageDigest": arm64.digest}])
    assert deleted["imageIds"] == []
    assert deleted["failures"][0]["failureCode"] == "ImageReferencedByManifestList"


def test_immutable_tag_holds_over_v2(
    registry: Registry, ecr: Any, repo_name: str, tmp_path: Path
) -> None:
    repo = repo_name
    ecr.create_repository(repositoryName=repo, imageTagMutability="IMMUTABLE")
    first, second = build_image(), build_image()
    write_oci_layout(tmp_path / "src", {"first": first, "second": second})
    source = f"oci:{tmp_path / 'src'}"
    skopeo_copy(registry, f"{source}:first", registry.ref(repo, "v1"), "--preserve-digests")
    # Pushing the same image again is a no-op, not an overwrite.
    skopeo_copy(registry, f"{source}:first", registry.ref(repo, "v1"), "--preserve-digests")

    failed = skopeo_copy(
        registry, f"{source}:second", registry.ref(repo, "v1"), "--preserve-digests", check=False
    )
    assert failed.returncode != 0
    assert "TAG_INVALID" in failed.stderr or "immutable" in failed.stderr, failed.stderr

    raw = registry.put_manifest(repo, "v1", second.manifest, OCI_MANIFEST)
    assert raw.status_code == 400
    error = raw.json()["errors"][0]
    assert error["code"] == "TAG_INVALID"
    assert "v1" in error["message"] and "immutable" in error["message"]
    assert_served(registry, repo, "v1", first.manifest, OCI_MANIFEST)
    # A new tag is fine.
    skopeo_copy(registry, f"{source}:second", registry.ref(repo, "v2"), "--preserve-digests")
    assert_served(registry, repo, "v2", second.manifest, OCI_MANIFEST)


def test_skopeo_pull_with_wrong_credentials_fails(
    registry: Registry, repo: str, tmp_path: Path
) -> None:
    image = build_image(layers=1)
    registry.push(repo, image, "v1")
    result = skopeo_registry(
        Registry(registry.server, "not-a-token"), "inspect", registry.ref(repo, "v1"), check=False
    )
    assert result.returncode != 0
    assert "unauthorized" in result.stderr.lower() or "401" in result.stderr, result.stderr


# --- podman -------------------------------------------------------------------------------


@pytest.fixture
def podman(tmp_path: Path) -> Iterator[Podman]:
    client = Podman(tmp_path / "podman")
    yield client
    client.close()


def test_podman_login_push_pull(
    registry: Registry, repo: str, tmp_path: Path, podman: Podman
) -> None:
    image = build_image(layers=2)
    write_oci_layout(tmp_path / "src", {"v1": image})

    refused = podman(
        "login", "--tls-verify=false", "-u", "AWS", "-p", "wrong", registry.host, check=False
    )
    assert refused.returncode != 0
    assert "invalid username/password" in refused.stderr, refused.stderr
    podman("login", "--tls-verify=false", "-u", "AWS", "-p", registry.password, registry.host)

    pulled = podman("pull", "-q", f"oci:{tmp_path / 'src'}:v1").stdout.strip().splitlines()[-1]
    image_id = pulled.removeprefix("sha256:")
    # The image ID is the config digest: the config came through unchanged.
    assert image_id == image.config.digest.removeprefix("sha256:")

    target = f"{registry.host}/{repo}:pod"
    podman("tag", image_id, target)
    digest_file = tmp_path / "digest"
    podman("push", "--tls-verify=false", "--digestfile", str(digest_file), target)
    pushed_digest = digest_file.read_text().strip()

    served = registry.manifest(repo, "pod")
    assert served.status_code == 200
    assert served.headers["Docker-Content-Digest"] == pushed_digest
    assert sha256(served.content) == pushed_digest
    document = served.json()
    assert document["config"]["digest"] == image.config.digest
    for layer in document["layers"]:
        blob = registry.http.get(f"/v2/{repo}/blobs/{layer['digest']}")
        assert blob.status_code == 200
        assert sha256(blob.content) == layer["digest"]
        assert len(blob.content) == layer["size"]

    podman("rmi", "-f", image_id)
    podman("pull", "-q", "--tls-verify=false", target)
    inspected = json.loads(podman("image", "inspect", target).stdout)[0]
    assert inspected["Id"] == image_id
    assert inspected["Digest"] == pushed_digest

    podman("rmi", "-f", image_id)
    podman("pull", "-q", "--tls-verify=false", f"{registry.host}/{repo}@{pushed_digest}")
    inspected = json.loads(podman("image", "inspect", image_id).stdout)[0]
    assert inspected["Digest"] == pushed_digest

    podman("logout", registry.host)
    denied = podman("pull", "--tls-verify=false", target, check=False)
    assert denied.returncode != 0


# --- oras ---------------------------------------------------------------------------------

SBOM_TYPE = "application/vnd.example.sbom.v1+json"
SIGNATURE_TYPE = "application/vnd.example.signature.v1+json"


def oras_client(registry: Registry) -> oras.provider.Registry:
    client = oras.provider.Registry(hostname=registry.host, insecure=True, auth_backend="basic")
    client.auth.set_basic_auth("AWS", registry.password)
    return client


def test_oras_artifacts_and_referrers(
    registry: Registry, repo: str, tmp_path: Path, ecr: Any
) -> None:
    subject = build_image(layers=1)
    registry.push(repo, subject, "app")
    client = oras_client(registry)
    oras_subject = oras.oci.Subject(
        mediaType=OCI_MANIFEST, digest=subject.digest, size=len(subject.manifest)
    )

    # 1. oras push: the config media type names the artifact (OCI 1.0 style).
    sbom_file = tmp_path / "sbom.json"
    sbom_file.write_text('{"packages": []}')
    pushed = client.push(
        f"{registry.host}/{repo}:sbom",
        files=[f"{sbom_file}:application/spdx+json"],
        manifest_config=f"/dev/null:{SBOM_TYPE}",
        manifest_annotations={"org.example.kind": "sbom"},
        subject=oras_subject,
        disable_path_validation=True,
        quiet=True,
    )
    assert pushed.status_code == 201
    assert pushed.headers["OCI-Subject"] == subject.digest
    sbom_digest = pushed.headers["Docker-Content-Digest"]

    # 2. An OCI 1.1 artifact with an explicit artifactType and the empty config.
    signature_blob = tmp_path / "signature"
    signature_blob.write_bytes(b"signed!")
    empty = tmp_path / "empty"
    empty.write_bytes(EMPTY_JSON)
    container = client.get_container(f"{registry.host}/{repo}:sig")
    layer = oras.oci.NewLayer(str(signature_blob), media_type="application/octet-stream")
    assert client.upload_blob(str(signature_blob), container, layer).status_code == 201
    config = {"mediaType": OCI_EMPTY, "digest": sha256(EMPTY_JSON), "size": 2}
    assert client.upload_blob(str(empty), container, config).status_code == 201
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": SIGNATURE_TYPE,
        "config": config,
        "layers": [layer],
        "subject": {
            "mediaType": OCI_MANIFEST,
            "digest": subject.digest,
            "size": len(subject.manifest),
        },
    }
    uploaded = client.upload_manifest(manifest, container)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.headers["OCI-Subject"] == subject.digest
    signature_digest = uploaded.headers["Docker-Content-Digest"]

    everything = registry.http.get(f"/v2/{repo}/referrers/{subject.digest}")
    assert everything.status_code == 200
    assert everything.headers["Content-Type"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in everything.headers
    index = everything.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == OCI_INDEX
    entries = {entry["digest"]: entry for entry in index["manifests"]}
    assert set(entries) == {sbom_digest, signature_digest}
    assert entries[sbom_digest]["artifactType"] == SBOM_TYPE
    assert entries[sbom_digest]["mediaType"] == OCI_MANIFEST
    assert entries[sbom_digest]["annotations"] == {"org.example.kind": "sbom"}
    assert entries[signature_digest]["artifactType"] == SIGNATURE_TYPE
    for digest, entry in entries.items():
        body = registry.manifest(repo, digest).content
        assert entry["size"] == len(body)
        assert sha256(body) == digest

    filtered = registry.http.get(
        f"/v2/{repo}/referrers/{subject.digest}", params={"artifactType": SIGNATURE_TYPE}
    )
    assert filtered.status_code == 200
    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert [entry["digest"] for entry in filtered.json()["manifests"]] == [signature_digest]

    nothing = registry.http.get(
        f"/v2/{repo}/referrers/{subject.digest}", params={"artifactType": "application/x-none"}
    )
    assert nothing.status_code == 200
    assert nothing.json()["manifests"] == []

    # A digest nothing refers to: an empty index, never a 404.
    unknown = registry.http.get(f"/v2/{repo}/referrers/{sha256(b'nothing')}")
    assert unknown.status_code == 200
    assert unknown.json()["manifests"] == []

    # oras pulls the artifact back.
    files = client.pull(f"{registry.host}/{repo}:sbom", outdir=str(tmp_path / "out"))
    assert [Path(f).read_text() for f in files] == ['{"packages": []}']
    assert sorted(client.get_tags(f"{registry.host}/{repo}")) == ["app", "sbom", "sig"]

    detail = ecr.describe_images(repositoryName=repo, imageIds=[{"imageTag": "sbom"}])
    assert detail["imageDetails"][0]["artifactMediaType"] == SBOM_TYPE

    # oras deletes a tag by deleting its manifest: the referrer leaves the list.
    assert client.delete_tag(f"{registry.host}/{repo}:sig", "sig")
    with raises_ecr("ImageNotFoundException"):
        ecr.describe_images(repositoryName=repo, imageIds=[{"imageDigest": signature_digest}])
    remaining = registry.http.get(f"/v2/{repo}/referrers/{subject.digest}").json()
    assert [entry["digest"] for entry in remaining["manifests"]] == [sbom_digest]
