"""The OCI Distribution Spec v1.1 API under /v2/.

Handlers validate names, digests and references, call the same services as the ECR API,
and render the distribution spec's headers and error format.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import msgspec
from aiohttp import ClientConnectionResetError, web

from openecr.errors import ECRError, RepositoryNotFoundError
from openecr.oci.auth import TokenCache, authenticate_registry_request
from openecr.oci.errors import OCIError, oci_error_for, oci_error_response
from openecr.server.services import SERVICES, Services
from openecr.services.context import CallerContext
from openecr.services.manifests import (
    MAX_MANIFEST_BYTES,
    matches_accept,
    repository_name_is_valid,
    tag_is_valid,
)
from openecr.storage.blobs import BlobNotFound, InvalidDigest, UploadOffsetMismatch, parse_digest

__all__ = ["add_oci_routes"]

log = logging.getLogger(__name__)

API_VERSION_HEADER = {"Docker-Distribution-API-Version": "registry/2.0"}
_CHUNK = 1024 * 1024
# Blobs up to this size are answered from memory (see _small_local_blob)...
_INLINE_BLOB_BYTES = 64 * 1024
# ...unless the request asks for a part or has a date condition: FileResponse handles those.
_CONDITIONAL_HEADERS = ("Range", "If-Range", "If-Modified-Since", "If-Unmodified-Since")
_REDIRECT_SECONDS = 900  # lifetime of a presigned S3 URL handed to a pulling client
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?(\d+)-(\d+)(?:/\d+|/\*)?")
_NAME = r"{name:[a-z0-9][a-z0-9._/-]*}"
_ENDPOINT_SHAPE = re.compile(r"/v2/(?P<name>.+?)/(?:manifests|blobs|tags|referrers)/")
_TOKEN_CACHE: web.AppKey[TokenCache] = web.AppKey("oci_token_cache", TokenCache)

RouteHandler = Callable[[web.Request, Services, str, str], Awaitable[web.StreamResponse]]


def _registry_route(
    handler: RouteHandler,
) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Authenticates, validates the repository name and turns errors into OCI errors."""

    async def route(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        head = request.method == "HEAD"
        try:
            name = request.match_info.get("name", "")
            registry_id = _authorize(request, services)
            if name and not repository_name_is_valid(name):
                raise OCIError("NAME_INVALID", 400, f"invalid repository name: {name!r}")
            request["operation"] = f"oci:{handler.__name__}"
            response = await handler(request, services, registry_id, name)
        except OCIError as error:
            return oci_error_response(error, head=head)
        except ECRError as error:
            return oci_error_response(oci_error_for(error), head=head)
        except (ConnectionResetError, ClientConnectionResetError):
            raise  # the client went away; nothing to answer
        except Exception:
            log.exception("unexpected error in %s %s", request.method, request.path)
            return oci_error_response(OCIError("UNKNOWN", 500, "internal server error"), head=head)
        response.headers.update(API_VERSION_HEADER)
        return response

    return route


def _authorize(request: web.Request, services: Services) -> str:
    """The registry (account) the caller's token is for.

    A blob GET may instead carry a GetDownloadUrlForLayer signature for exactly its path.
    """
    expires = request.query.get("X-Openecr-Expires")
    signature = request.query.get("X-Openecr-Signature")
    if expires and signature and request.method in ("GET", "HEAD"):
        if expires.isdigit() and services.tokens.download_is_valid(
            request.path, int(expires), signature, now=time.time()
        ):
            return services.settings.account_id
        raise OCIError("DENIED", 403, "the download URL is invalid or has expired")
    claims = authenticate_registry_request(services, request.app[_TOKEN_CACHE], request)
    return claims.account_id


def _checked_digest(text: str) -> str:
    try:
        parse_digest(text)
    except InvalidDigest:
        raise OCIError("DIGEST_INVALID", 400, f"invalid digest: {text!r}") from None
    return text


async def _body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(_CHUNK):
        yield chunk


def _upload_location(name: str, upload_id: str) -> str:
    return f"/v2/{name}/blobs/uploads/{upload_id}"


def _upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    # An empty upload reports "0-0", as the reference registry does.
    return {
        "Location": _upload_location(name, upload_id),
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def _blob_created(name: str, digest: str) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": digest,
        },
    )


async def _ensure_repository(services: Services, registry_id: str, name: str) -> None:
    """With --create-repository-on-push a push to a missing repository creates it."""
    if not services.settings.create_repository_on_push:
        return
    try:
        await services.repositories.get_repository(
            CallerContext(registry_id, services.settings.region), registry_id=None, name=name
        )
    except RepositoryNotFoundError:
        await services.repositories.ensure_repository(registry_id, name)


# -- base, catalog -------------------------------------------------------------------------


async def base(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    return web.json_response({})


def _next_link(path: str, n: int, last: str) -> dict[str, str]:
    return {"Link": f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'}


MAX_PAGE_SIZE = 10_000


def _page_size(request: web.Request) -> int | None:
    """The ``n`` query parameter, clamped to ``MAX_PAGE_SIZE`` as the spec allows."""
    raw = request.query.get("n")
    if raw is None:
        return None
    if not raw.isdigit():
        raise OCIError("PAGINATION_NUMBER_INVALID", 400, f"invalid page size: {raw!r}")
    return min(int(raw), MAX_PAGE_SIZE)


async def catalog(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    n = _page_size(request)
    limit = 1000 if n is None else n
    if limit == 0:
        return web.json_response({"repositories": []})
    names = await services.repositories.list_names(
        registry_id, after=request.query.get("last"), limit=limit + 1
    )
    headers: dict[str, str] = {}
    if len(names) > limit:
        names = names[:limit]
        headers = _next_link("/v2/_catalog", limit, names[-1])
    return web.json_response({"repositories": names}, headers=headers)


# -- manifests -----------------------------------------------------------------------------


def _reference(request: web.Request) -> str:
    reference = request.match_info["reference"]
    if ":" in reference:
        return _checked_digest(reference)
    if not tag_is_valid(reference):
        raise OCIError("TAG_INVALID", 400, f"invalid tag: {reference!r}")
    return reference


def _accept_values(request: web.Request) -> list[str]:
    return list(request.headers.getall("Accept", []))


async def get_manifest(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    reference = _reference(request)
    if request.method == "HEAD":
        image = await services.images.find(registry_id, name, reference)
        if image is None:
            raise OCIError("MANIFEST_UNKNOWN", 404, f"manifest unknown: {reference}")
    else:
        image = await services.images.resolve(registry_id, name, reference)
    if ":" not in reference and not matches_accept(image.media_type, _accept_values(request)):
        raise OCIError(
            "MANIFEST_UNKNOWN",
            404,
            f"the manifest of {name}:{reference} is a {image.media_type}, which the request "
            "does not accept",
        )
    headers = {
        "Docker-Content-Digest": image.digest,
        "ETag": f'"{image.digest}"',
        "Content-Type": image.media_type,
        "Content-Length": str(len(image.manifest)),
    }
    if request.method == "HEAD":
        return web.Response(status=200, headers=headers)
    return web.Response(status=200, body=image.manifest, headers=headers)


async def put_manifest(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    reference = _reference(request)
    if request.content_length is not None and request.content_length > MAX_MANIFEST_BYTES:
        raise OCIError("SIZE_INVALID", 413, f"manifests are limited to {MAX_MANIFEST_BYTES} bytes")
    body = bytearray()
    async for chunk in _body_chunks(request):
        body += chunk
        if len(body) > MAX_MANIFEST_BYTES:
            raise OCIError(
                "SIZE_INVALID", 413, f"manifests are limited to {MAX_MANIFEST_BYTES} bytes"
            )
    await _ensure_repository(services, registry_id, name)
    is_digest = ":" in reference
    image = await services.images.put_image(
        registry_id,
        name,
        bytes(body),
        media_type=request.headers.get("Content-Type"),
        tag=None if is_digest else reference,
        expected_digest=reference if is_digest else None,
        repush_is_error=False,
        infer_media_type=True,
    )
    headers = {
        "Location": f"/v2/{name}/manifests/{image.digest}",
        "Docker-Content-Digest": image.digest,
    }
    if image.subject_digest:
        headers["OCI-Subject"] = image.subject_digest
    return web.Response(status=201, headers=headers)


async def delete_manifest(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    reference = _reference(request)
    if ":" in reference:
        await services.images.delete_by_digest(registry_id, name, reference)
    else:
        await services.images.delete_tag(registry_id, name, reference)
    return web.Response(status=202)


async def list_tags(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    n = _page_size(request)
    last = request.query.get("last")
    if n == 0:
        return web.json_response({"name": name, "tags": []})
    tags = await services.images.list_tags(
        registry_id, name, after=last, limit=None if n is None else n + 1
    )
    headers: dict[str, str] = {}
    if n is not None and len(tags) > n:
        tags = tags[:n]
        if tags:
            headers = _next_link(f"/v2/{name}/tags/list", n, tags[-1])
    # msgspec encodes a long listing several times faster than the json module.
    body = msgspec.json.encode({"name": name, "tags": tags})
    return web.Response(body=body, content_type="application/json", headers=headers)


async def referrers(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    subject = _checked_digest(request.match_info["digest"])
    artifact_type = request.query.get("artifactType")
    descriptors: list[dict[str, Any]] = []
    for image in await services.images.referrer_images(registry_id, name, subject):
        if artifact_type is not None and image.artifact_type != artifact_type:
            continue
        descriptor: dict[str, Any] = {
            "mediaType": image.media_type,
            "digest": image.digest,
            "size": len(image.manifest),
        }
        if image.artifact_type:
            descriptor["artifactType"] = image.artifact_type
        annotations = json.loads(image.manifest).get("annotations")
        if isinstance(annotations, dict) and annotations:
            descriptor["annotations"] = annotations
        descriptors.append(descriptor)
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": descriptors,
    }
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type is not None else {}
    return web.Response(
        body=json.dumps(index).encode(),
        content_type="application/vnd.oci.image.index.v1+json",
        headers=headers,
    )


# -- blobs ---------------------------------------------------------------------------------


async def get_blob(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.StreamResponse:
    digest = _checked_digest(request.match_info["digest"])
    layers = await services.uploads.find_layers(registry_id, name, [digest])
    layer = layers.get(digest)
    if layer is None:
        raise OCIError("BLOB_UNKNOWN", 404, f"blob unknown to registry: {digest}")
    await services.uploads.renew_links(registry_id, name, layers)
    headers = {
        "Docker-Content-Digest": digest,
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
    }
    if request.method == "HEAD" and services.blobs.local_path(digest) is None:
        # The database knows the size: no need to ask the object store (a presigned GET
        # URL would not even be valid for a HEAD).
        return web.Response(
            status=200,
            headers={**headers, "Content-Length": str(layer.size_bytes), "ETag": f'"{digest}"'},
        )
    redirect = await services.presigned_blob_url(digest, _REDIRECT_SECONDS)
    if redirect is not None:
        return web.Response(status=307, headers={**headers, "Location": redirect})
    path = services.blobs.local_path(digest)
    if path is not None:
        if layer.size_bytes <= _INLINE_BLOB_BYTES and not any(
            name in request.headers for name in _CONDITIONAL_HEADERS
        ):
            return _small_local_blob(request, path, digest, headers)
        if not path.exists():
            raise OCIError("BLOB_UNKNOWN", 404, f"blob unknown to registry: {digest}")
        # FileResponse answers GET and HEAD alike (same ETag and Content-Length), streams
        # with sendfile, and answers Range and conditional requests itself.
        return web.FileResponse(path, chunk_size=_CHUNK, headers=headers)
    return await _stream_blob(request, services, digest, layer.size_bytes, headers)


def _small_local_blob(
    request: web.Request, path: Path, digest: str, headers: dict[str, str]
) -> web.Response:
    """A small blob (config, tiny layer) read whole on the event loop: from the page cache
    that takes microseconds, less than the worker-thread round trips of a FileResponse,
    and images of many small layers are pulled blob by blob. Its ETag is the digest, and
    the ETag conditions are answered here."""
    etag = f'"{digest}"'
    headers = {**headers, "ETag": etag}
    if_match = request.headers.get("If-Match")
    if if_match is not None and not _etag_listed(if_match, etag):
        return web.Response(status=412, headers=headers)
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and _etag_listed(if_none_match, etag):
        return web.Response(status=304, headers=headers)
    try:
        if request.method == "HEAD":
            size = path.stat().st_size
            return web.Response(headers={**headers, "Content-Length": str(size)})
        return web.Response(body=path.read_bytes(), headers=headers)
    except FileNotFoundError:
        raise OCIError("BLOB_UNKNOWN", 404, f"blob unknown to registry: {digest}") from None


def _etag_listed(header: str, etag: str) -> bool:
    """Whether an If-Match / If-None-Match value names ``etag`` (or is ``*``)."""
    listed = {value.strip().removeprefix("W/") for value in header.split(",")}
    return "*" in listed or etag in listed


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, length) of a single ``bytes=`` range; None for the whole blob."""
    if header is None:
        return None
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if match is None or (not match[1] and not match[2]):
        return None  # unsupported forms (several ranges) get the whole blob, as RFC 9110 allows
    if not match[1]:  # suffix: the last N bytes
        length = min(int(match[2]), size)
        return size - length, length
    start = int(match[1])
    end = min(int(match[2]), size - 1) if match[2] else size - 1
    if start >= size or end < start:
        raise OCIError(
            "BLOB_UNKNOWN",
            416,
            f"range {header} is not satisfiable for {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end - start + 1


async def _stream_blob(
    request: web.Request, services: Services, digest: str, size: int, headers: dict[str, str]
) -> web.StreamResponse:
    """Streams a blob from a store without local files (S3), honouring one byte range."""
    wanted = _byte_range(request.headers.get("Range"), size)
    start, length = wanted if wanted is not None else (0, size)
    try:
        reader = await services.blobs.open_reader(digest, start, length)
    except BlobNotFound:
        raise OCIError("BLOB_UNKNOWN", 404, f"blob unknown to registry: {digest}") from None
    response = web.StreamResponse(status=206 if wanted else 200, headers=headers)
    if wanted is not None:
        response.headers["Content-Range"] = f"bytes {start}-{start + length - 1}/{size}"
    response.headers["ETag"] = f'"{digest}"'
    response.content_length = length
    async with reader:
        await response.prepare(request)
        if request.method != "HEAD":
            async for chunk in reader:
                await response.write(chunk)
    await response.write_eof()
    return response


async def delete_blob(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    digest = _checked_digest(request.match_info["digest"])
    if await services.images.is_layer_referenced(registry_id, name, digest):
        raise OCIError(
            "DENIED",
            403,
            f"blob {digest} is used by an image of {name}: delete the image instead",
        )
    if not await services.uploads.unlink(registry_id, name, digest):
        raise OCIError("BLOB_UNKNOWN", 404, f"blob unknown to registry: {digest}")
    return web.Response(status=202)


async def start_upload(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    await _ensure_repository(services, registry_id, name)
    mount = request.query.get("mount")
    source = request.query.get("from")
    if mount is not None:
        digest = _checked_digest(mount)
        if source and repository_name_is_valid(source):
            mounted = await services.uploads.mount(registry_id, name, digest, source)
            if mounted is not None:
                return _blob_created(name, digest)
    digest_param = request.query.get("digest")
    upload = await services.uploads.start(registry_id, name)
    if digest_param is not None:
        digest = _checked_digest(digest_param)
        await services.uploads.append(registry_id, name, upload.upload_id, _body_chunks(request))
        blob = await services.uploads.complete(
            registry_id,
            name,
            upload.upload_id,
            digest,
            enforce_part_sizes=False,
            fail_if_layer_exists=False,
        )
        return _blob_created(name, blob.digest)
    return web.Response(status=202, headers=_upload_headers(name, upload.upload_id, 0))


def _upload_id(request: web.Request) -> str:
    upload_id = request.match_info["upload_id"]
    if not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", upload_id):
        raise OCIError("BLOB_UPLOAD_UNKNOWN", 404, f"blob upload unknown: {upload_id}")
    return upload_id


async def upload_status(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    upload = await services.uploads.get(registry_id, name, _upload_id(request))
    return web.Response(
        status=204, headers=_upload_headers(name, upload.upload_id, upload.size_bytes)
    )


async def _append_body(
    request: web.Request, services: Services, registry_id: str, name: str, upload_id: str
) -> int:
    """Appends the request body; honours Content-Range (416 when it does not fit)."""
    offset: int | None = None
    content_range = request.headers.get("Content-Range")
    if content_range is not None:
        match = _CONTENT_RANGE.fullmatch(content_range.strip())
        if match is None:
            raise OCIError("BLOB_UPLOAD_INVALID", 416, f"invalid Content-Range: {content_range}")
        start, end = int(match[1]), int(match[2])
        length = request.content_length
        if end < start or (length is not None and end - start + 1 != length):
            raise OCIError("BLOB_UPLOAD_INVALID", 416, f"invalid Content-Range: {content_range}")
        offset = start
    try:
        upload = await services.uploads.append(
            registry_id, name, upload_id, _body_chunks(request), offset=offset
        )
    except UploadOffsetMismatch as mismatch:
        raise OCIError(
            "BLOB_UPLOAD_INVALID",
            416,
            f"the chunk does not start at the end of the upload ({mismatch.current_size})",
            headers=_upload_headers(name, upload_id, mismatch.current_size),
        ) from None
    return upload.size_bytes


async def patch_upload(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    upload_id = _upload_id(request)
    size = await _append_body(request, services, registry_id, name, upload_id)
    return web.Response(status=202, headers=_upload_headers(name, upload_id, size))


async def finish_upload(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    upload_id = _upload_id(request)
    digest = _checked_digest(request.query.get("digest", ""))
    await services.uploads.get(registry_id, name, upload_id)
    if request.content_length or request.headers.get("Transfer-Encoding") == "chunked":
        await _append_body(request, services, registry_id, name, upload_id)
    blob = await services.uploads.complete(
        registry_id, name, upload_id, digest, enforce_part_sizes=False, fail_if_layer_exists=False
    )
    return _blob_created(name, blob.digest)


async def cancel_upload(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    await services.uploads.cancel(registry_id, name, _upload_id(request))
    return web.Response(status=204)


async def unmatched(
    request: web.Request, services: Services, registry_id: str, name: str
) -> web.Response:
    """Any other /v2/ request: an invalid repository name, a method an endpoint does not
    support, or no endpoint at all."""
    shaped = _ENDPOINT_SHAPE.match(request.path)
    if shaped is not None and not repository_name_is_valid(shaped["name"]):
        raise OCIError("NAME_INVALID", 400, f"invalid repository name: {shaped['name']!r}")
    if shaped is not None:
        raise OCIError("UNSUPPORTED", 405, f"{request.method} is not supported on {request.path}")
    raise OCIError("NAME_UNKNOWN", 404, f"no such endpoint: {request.path}")


def add_oci_routes(app: web.Application) -> None:
    app[_TOKEN_CACHE] = TokenCache()
    r = app.router
    r.add_get("/v2/", _registry_route(base))
    r.add_get("/v2", _registry_route(base))
    r.add_get("/v2/_catalog", _registry_route(catalog))
    manifests = f"/v2/{_NAME}/manifests/{{reference}}"
    r.add_get(manifests, _registry_route(get_manifest))  # GET also answers HEAD
    r.add_put(manifests, _registry_route(put_manifest))
    r.add_delete(manifests, _registry_route(delete_manifest))
    r.add_get(f"/v2/{_NAME}/tags/list", _registry_route(list_tags))
    r.add_get(f"/v2/{_NAME}/referrers/{{digest}}", _registry_route(referrers))
    uploads = f"/v2/{_NAME}/blobs/uploads/"
    r.add_post(uploads, _registry_route(start_upload))
    upload = uploads + "{upload_id}"
    r.add_get(upload, _registry_route(upload_status), allow_head=False)
    r.add_patch(upload, _registry_route(patch_upload))
    r.add_put(upload, _registry_route(finish_upload))
    r.add_delete(upload, _registry_route(cancel_upload))
    blobs = f"/v2/{_NAME}/blobs/{{digest}}"
    r.add_get(blobs, _registry_route(get_blob))
    r.add_delete(blobs, _registry_route(delete_blob))
    r.add_route("*", "/v2/{tail:.*}", _registry_route(unmatched))
