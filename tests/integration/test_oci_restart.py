"""Images survive a clean restart (SIGTERM): pulled again with identical digests.

These tests run their own servers (not the session ones) so that they can stop them; the
second server is a fresh process on the same data directory and database.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ecr_helpers import make_ecr_client
from harness import ServerProcess, postgres_database
from images import (
    DOCKER_MANIFEST,
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
from oci_helpers import Registry, login_password, skopeo_copy


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        with postgres_database() as url:
            yield url


def test_images_survive_a_clean_restart(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    image = build_image(layers=3)
    docker = build_image(layers=2, docker=True)
    amd64 = build_image(layers=1, with_platform=True)
    arm64 = build_image(layers=2, architecture="arm64", with_platform=True)
    index = build_index([amd64, arm64])
    write_oci_layout(tmp_path / "src", {"image": image, "index": index})
    write_dir_layout(tmp_path / "docker", docker)
    pending = os.urandom(3000)

    first = ServerProcess(data_dir, database_url=database_url).start()
    try:
        ecr = make_ecr_client(first.url)
        ecr.create_repository(repositoryName="team/app")
        ecr.create_repository(repositoryName="team/immutable", imageTagMutability="IMMUTABLE")
        registry = Registry(first, login_password(ecr))
        source = f"oci:{tmp_path / 'src'}"
        skopeo_copy(
            registry, f"{source}:image", registry.ref("team/app", "v1"), "--preserve-digests"
        )
        skopeo_copy(
            registry,
            f"{source}:index",
            registry.ref("team/app", "multi"),
            "--all",
            "--preserve-digests",
        )
        skopeo_copy(registry, f"dir:{tmp_path / 'docker'}", registry.ref("team/app", "docker"))
        skopeo_copy(
            registry, f"{source}:image", registry.ref("team/immutable", "1.0"), "--preserve-digests"
        )
        # An upload left half done.
        started = registry.http.post("/v2/team/app/blobs/uploads/")
        location = started.headers["Location"]
        assert registry.http.patch(location, content=pending[:1000]).status_code == 202
        before = ecr.describe_images(repositoryName="team/app")["imageDetails"]
        registry.close()
        assert first.stop() == 0
    finally:
        first.kill()

    second = ServerProcess(data_dir, database_url=database_url).start()
    try:
        ecr = make_ecr_client(second.url)
        # The token issued before the restart is still good.
        registry = Registry(second, registry.password)
        assert registry.http.get("/v2/").status_code == 200

        after = ecr.describe_images(repositoryName="team/app")["imageDetails"]
        assert after == before

        # The half-done upload continues where it stopped.
        status = registry.http.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == "0-999"
        done = registry.http.put(
            location, params={"digest": sha256(pending)}, content=pending[1000:]
        )
        assert done.status_code == 201
        assert registry.http.get(f"/v2/team/app/blobs/{sha256(pending)}").content == pending

        skopeo_copy(registry, registry.ref("team/app", "v1"), f"oci:{tmp_path / 'back'}:v1")
        skopeo_copy(
            registry, registry.ref("team/app", "multi"), f"oci:{tmp_path / 'back'}:multi", "--all"
        )
        back = Layout(tmp_path / "back")
        assert back.descriptor("v1")["digest"] == image.digest
        assert back.descriptor("multi")["digest"] == index.digest
        assert back.all_digests() == image_digests(image) | image_digests(index)

        skopeo_copy(registry, registry.ref("team/app", "docker"), f"dir:{tmp_path / 'docker2'}")
        manifest, blobs = read_dir_layout(tmp_path / "docker2")
        assert manifest == docker.manifest
        assert blobs == docker.blobs

        for reference, media_type in (
            ("v1", OCI_MANIFEST),
            ("multi", OCI_INDEX),
            ("docker", DOCKER_MANIFEST),
        ):
            assert registry.manifest("team/app", reference).headers["Content-Type"] == media_type
        tags = registry.http.get("/v2/team/app/tags/list").json()["tags"]
        assert tags == ["docker", "multi", "v1"]

        # Repository settings hold too: the immutable tag still cannot move.
        for digest in docker.blobs:
            mounted = registry.http.post(
                "/v2/team/immutable/blobs/uploads/", params={"mount": digest, "from": "team/app"}
            )
            assert mounted.status_code == 201
        refused = registry.put_manifest("team/immutable", "1.0", docker.manifest, DOCKER_MANIFEST)
        assert refused.status_code == 400
        assert refused.json()["errors"][0]["code"] == "TAG_INVALID"
        registry.close()
        assert second.stop() == 0
    finally:
        second.kill()
