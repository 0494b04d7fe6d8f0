"""Helpers for the /v2/ (OCI distribution) tests: credentials, raw HTTP, skopeo and podman.

Images are pushed for real: through raw HTTP (the distribution API), through boto3 (the ECR
layer operations and PutImage), or with skopeo/podman/oras. Nothing is mocked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness import ServerProcess
from images import Image, Index

from openecr.services.auth_tokens import RegistryTokens, TokenClaims

CLIENT_TIMEOUT = 180


def login_password(ecr: Any) -> str:
    """What ``aws ecr get-login-password`` prints: the token after ``AWS:``."""
    data = ecr.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS"
    return password


@dataclass
class Registry:
    """One server's /v2/ API, with a valid token."""

    server: ServerProcess
    password: str
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def creds(self) -> str:
        return f"AWS:{self.password}"

    @property
    def http(self) -> httpx.Client:
        """An httpx client with the Basic credentials, rooted at the server."""
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, auth=("AWS", self.password), timeout=60)
        return self._client

    def ref(self, repository: str, reference: str) -> str:
        """``docker://host/repo:tag`` or ``docker://host/repo@sha256:...``."""
        separator = "@" if ":" in reference else ":"
        return f"docker://{self.host}/{repository}{separator}{reference}"

    # -- pushing through the distribution API ---------------------------------------------

    def upload_blob(self, repository: str, data: bytes) -> httpx.Response:
        """A monolithic upload (``POST ?digest=``)."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        response = self.http.post(
            f"/v2/{repository}/blobs/uploads/",
            params={"digest": digest},
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 201, response.text
        return response

    def put_manifest(
        self, repository: str, reference: str, manifest: bytes, media_type: str
    ) -> httpx.Response:
        return self.http.put(
            f"/v2/{repository}/manifests/{reference}",
            content=manifest,
            headers={"Content-Type": media_type},
        )

    def push(self, repository: str, image: Image | Index, tag: str | None = None) -> str:
        """Pushes blobs, child manifests and the manifest; returns the manifest digest."""
        for data in image.blobs.values():
            self.upload_blob(repository, data)
        if isinstance(image, Index):
            for child in image.images:
                response = self.put_manifest(
                    repository, child.digest, child.manifest, child.media_type
                )
                assert response.status_code == 201, response.text
        response = self.put_manifest(
            repository, tag or image.digest, image.manifest, image.media_type
        )
        assert response.status_code == 201, response.text
        assert response.headers["Docker-Content-Digest"] == image.digest
        return image.digest

    def manifest(self, repository: str, reference: str) -> httpx.Response:
        return self.http.get(
            f"/v2/{repository}/manifests/{reference}",
            headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)},
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


ALL_MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


# -- pushing through the ECR API ---------------------------------------------------------


def ecr_upload_layer(ecr: Any, repository: str, data: bytes, part_size: int | None = None) -> str:
    """InitiateLayerUpload, UploadLayerPart (in parts), CompleteLayerUpload."""
    upload_id = ecr.initiate_layer_upload(repositoryName=repository)["uploadId"]
    size = part_size or max(len(data), 1)
    for start in range(0, len(data), size):
        part = data[start : start + size]
        response = ecr.upload_layer_part(
            repositoryName=repository,
            uploadId=upload_id,
            partFirstByte=start,
            partLastByte=start + len(part) - 1,
            layerPartBlob=part,
        )
        assert response["lastByteReceived"] == start + len(part) - 1
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    done = ecr.complete_layer_upload(
        repositoryName=repository, uploadId=upload_id, layerDigests=[digest]
    )
    assert done["layerDigest"] == digest
    return digest


def ecr_push(ecr: Any, repository: str, image: Image | Index, tag: str | None = None) -> Any:
    """Uploads the blobs (skipping present ones) and calls PutImage; returns its ``image``."""
    blobs = image.blobs
    if blobs:
        present = ecr.batch_check_layer_availability(
            repositoryName=repository, layerDigests=list(blobs)
        )
        available = {layer["layerDigest"] for layer in present["layers"]}
        for digest, data in blobs.items():
            if digest not in available:
                ecr_upload_layer(ecr, repository, data)
    if isinstance(image, Index):
        for child in image.images:
            # A child may have been pushed before, on its own.
            with contextlib.suppress(ecr.exceptions.ImageAlreadyExistsException):
                ecr.put_image(repositoryName=repository, imageManifest=child.manifest.decode())
    options: dict[str, Any] = {"imageTag": tag} if tag else {}
    return ecr.put_image(
        repositoryName=repository, imageManifest=image.manifest.decode(), **options
    )["image"]


# -- command-line clients ----------------------------------------------------------------


def run(args: list[str], *, check: bool = True, **options: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=CLIENT_TIMEOUT, **options)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args[:3])} ... failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


def skopeo(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(["skopeo", "--insecure-policy", *args], check=check)


def skopeo_copy(
    registry: Registry, source: str, destination: str, *extra: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``skopeo copy`` with the registry credentials on whichever side is docker://."""
    args = ["copy", "--quiet", *extra]
    if source.startswith("docker://"):
        args += ["--src-tls-verify=false", "--src-creds", registry.creds]
    if destination.startswith("docker://"):
        args += ["--dest-tls-verify=false", "--dest-creds", registry.creds]
    return skopeo(*args, source, destination, check=check)


def skopeo_registry(
    registry: Registry, command: str, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """``skopeo inspect|list-tags|delete`` against the registry."""
    return skopeo(command, "--tls-verify=false", "--creds", registry.creds, *args, check=check)


class Podman:
    """podman with a private storage root, runroot and auth file (no daemon needed).

    podman refuses a runroot path longer than 50 characters, so that one lives in a short
    directory under /tmp; ``close`` removes it.
    """

    def __init__(self, base: Path) -> None:
        self.base = base
        self.runroot = Path(tempfile.mkdtemp(prefix="podrun-", dir="/tmp"))
        for sub in ("root", "tmp"):
            (base / sub).mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env["REGISTRY_AUTH_FILE"] = str(self.base / "auth.json")
        env["TMPDIR"] = str(self.base / "tmp")
        env["XDG_RUNTIME_DIR"] = str(self.runroot)
        return run(
            [
                "podman",
                "--root", str(self.base / "root"),
                "--runroot", str(self.runroot),
                "--storage-driver", "vfs",
                "--cgroup-manager", "cgroupfs",
                "--events-backend", "file",
                "--tmpdir", str(self.base / "tmp"),
                *args,
            ],
            check=check,
            env=env,
        )  # fmt: skip

    def close(self) -> None:
        # vfs layers are plain directories: removing them is the whole cleanup.
        shutil.rmtree(self.runroot, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)


# -- server-side secrets (for validly signed but expired credentials) --------------------


def token_key(server: ServerProcess) -> bytes:
    """The key the server signs tokens and download URLs with, read from its database."""
    query = "SELECT value FROM server_secrets WHERE name = 'registry-token-key'"
    if server.database_url:
        result = run(["psql", server.database_url, "-tA", "-c", query])
        return bytes.fromhex(result.stdout.strip())
    with sqlite3.connect(server.data_dir / "metadata.db") as db:
        (value,) = db.execute(query).fetchone()
    return bytes.fromhex(value)


def expired_token(server: ServerProcess, account_id: str) -> str:
    tokens = RegistryTokens(token_key(server))
    return tokens.encode(TokenClaims(account_id, None, round(time.time() - 60, 3)))


def expired_download_query(server: ServerProcess, path: str) -> dict[str, str]:
    expires = int(time.time()) - 60
    return {
        "X-Openecr-Expires": str(expires),
        "X-Openecr-Signature": RegistryTokens(token_key(server)).sign_download(path, expires),
    }


@contextmanager
def registry_for(server: ServerProcess, ecr: Any) -> Iterator[Registry]:
    registry = Registry(server, login_password(ecr))
    try:
        yield registry
    finally:
        registry.close()
