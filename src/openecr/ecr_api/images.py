"""ECR operations on images and layers: the API side of pushing and pulling."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

from openecr import models as m
from openecr.ecr_api._operations import operation
from openecr.errors import InvalidParameterError, LayerInaccessibleError, LayersNotFoundError
from openecr.server.services import Services
from openecr.services.context import CallerContext
from openecr.services.images import ImageFailure, ImageId
from openecr.services.pagination import (
    DEFAULT_PAGE_SIZE,
    decode_next_token,
    page_with_token,
)
from openecr.services.repositories import check_registry_access
from openecr.services.uploads import ECR_PART_SIZE
from openecr.storage.blobs import InvalidDigest, parse_digest

__all__ = ["DOWNLOAD_URL_LIFETIME_SECONDS"]

DOWNLOAD_URL_LIFETIME_SECONDS = 3600
_LAYER_DIGEST = re.compile(r"[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+")


def _image_ids(ids: list[m.ImageIdentifier] | None) -> list[ImageId]:
    return [ImageId(i.image_digest, i.image_tag) for i in ids or []]


def _failures(failures: list[ImageFailure]) -> list[m.ImageFailure]:
    return [
        m.ImageFailure(
            image_id=m.ImageIdentifier(image_digest=f.image_id.digest, image_tag=f.image_id.tag),
            failure_code=f.code,
            failure_reason=f.reason,
        )
        for f in failures
    ]


@operation("PutImage")
async def put_image(
    services: Services, caller: CallerContext, request: m.PutImageRequest
) -> m.PutImageResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    try:
        manifest = (request.image_manifest or "").encode()
    except UnicodeEncodeError:
        raise InvalidParameterError(
            "Invalid parameter at 'imageManifest' failed to satisfy constraint: "
            "'Invalid JSON syntax: the manifest is not valid UTF-8'"
        ) from None
    image = await services.images.put_image(
        registry_id,
        request.repository_name or "",
        manifest,
        media_type=request.image_manifest_media_type,
        tag=request.image_tag,
        expected_digest=request.image_digest,
        repush_is_error=True,
        infer_media_type=False,
    )
    return m.PutImageResponse(
        image=m.Image(
            registry_id=registry_id,
            repository_name=request.repository_name,
            image_id=m.ImageIdentifier(image_digest=image.digest, image_tag=request.image_tag),
            image_manifest=request.image_manifest,
            image_manifest_media_type=image.media_type,
        )
    )


@operation("BatchGetImage")
async def batch_get_image(
    services: Services, caller: CallerContext, request: m.BatchGetImageRequest
) -> m.BatchGetImageResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    result = await services.images.batch_get(
        registry_id,
        request.repository_name or "",
        _image_ids(request.image_ids),
        request.accepted_media_types,
    )
    return m.BatchGetImageResponse(
        images=[
            m.Image(
                registry_id=registry_id,
                repository_name=request.repository_name,
                image_id=m.ImageIdentifier(image_digest=image.digest, image_tag=tag),
                image_manifest=image.manifest.decode(),
                image_manifest_media_type=image.media_type,
            )
            for image, tag in result.images
        ],
        failures=_failures(result.failures),
    )


@operation("BatchDeleteImage")
async def batch_delete_image(
    services: Services, caller: CallerContext, request: m.BatchDeleteImageRequest
) -> m.BatchDeleteImageResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    result = await services.images.batch_delete(
        registry_id, request.repository_name or "", _image_ids(request.image_ids)
    )
    return m.BatchDeleteImageResponse(
        image_ids=[
            m.ImageIdentifier(image_digest=i.digest, image_tag=i.tag) for i in result.deleted
        ],
        failures=_failures(result.failures),
    )


@operation("ListImages")
async def list_images(
    services: Services, caller: CallerContext, request: m.ListImagesRequest
) -> m.ListImagesResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    limit = request.max_results or DEFAULT_PAGE_SIZE
    after_key = decode_next_token("images", request.next_token)
    after = tuple(after_key.split(" ", 1)) if after_key is not None else None
    ids = await services.images.list_image_ids(
        registry_id,
        request.repository_name or "",
        after=(after[0], after[1]) if after is not None and len(after) == 2 else None,
        limit=limit + 1,
        tag_status=request.filter.tag_status if request.filter else None,
    )
    ids, token = page_with_token(ids, limit, "images", lambda id_: f"{id_[0]} {id_[1] or ''}")
    return m.ListImagesResponse(
        image_ids=[m.ImageIdentifier(image_digest=d, image_tag=t) for d, t in ids],
        next_token=token,
    )


@operation("DescribeImages")
async def describe_images(
    services: Services, caller: CallerContext, request: m.DescribeImagesRequest
) -> m.DescribeImagesResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    if request.image_ids and (request.next_token is not None or request.max_results is not None):
        raise InvalidParameterError(
            "Invalid parameter at 'imageIds' failed to satisfy constraint: 'nextToken and "
            "maxResults cannot be used with imageIds'"
        )
    limit = request.max_results or DEFAULT_PAGE_SIZE
    described = await services.images.describe(
        registry_id,
        request.repository_name or "",
        image_ids=_image_ids(request.image_ids) or None,
        after_digest=decode_next_token("image-details", request.next_token),
        limit=limit + 1,
        tag_status=request.filter.tag_status if request.filter else None,
    )
    token = None
    if not request.image_ids:
        described, token = page_with_token(
            described, limit, "image-details", lambda d: d.image.digest
        )
    return m.DescribeImagesResponse(
        image_details=[
            m.ImageDetail(
                registry_id=d.image.registry_id,
                repository_name=d.image.repository_name,
                image_digest=d.image.digest,
                image_tags=d.tags or None,
                image_size_in_bytes=d.image.size_bytes,
                image_pushed_at=d.image.pushed_at,
                image_manifest_media_type=d.image.media_type,
                artifact_media_type=d.image.artifact_media_type,
                last_recorded_pull_time=d.image.last_pulled_at,
                subject_manifest_digest=d.image.subject_digest,
            )
            for d in described
        ],
        next_token=token,
    )


@operation("BatchCheckLayerAvailability")
async def batch_check_layer_availability(
    services: Services, caller: CallerContext, request: m.BatchCheckLayerAvailabilityRequest
) -> m.BatchCheckLayerAvailabilityResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    repository = request.repository_name or ""
    digests = list(dict.fromkeys(request.layer_digests or []))
    valid = [d for d in digests if _LAYER_DIGEST.fullmatch(d)]
    found = await services.uploads.find_layers(registry_id, repository, valid)
    await services.uploads.renew_links(registry_id, repository, found)
    layers: list[m.Layer] = []
    failures: list[m.LayerFailure] = []
    for digest in digests:
        layer = found.get(digest)
        if digest not in valid:
            failures.append(
                m.LayerFailure(
                    layer_digest=digest,
                    failure_code="InvalidLayerDigest",
                    failure_reason="Invalid layer digest",
                )
            )
        elif layer is None:
            failures.append(
                m.LayerFailure(
                    layer_digest=digest,
                    failure_code="MissingLayerDigest",
                    failure_reason="Could not find layer",
                )
            )
        else:
            layers.append(
                m.Layer(
                    layer_digest=digest,
                    layer_availability="AVAILABLE",
                    layer_size=layer.size_bytes,
                    media_type=layer.media_type,
                )
            )
    return m.BatchCheckLayerAvailabilityResponse(layers=layers, failures=failures)


@operation("InitiateLayerUpload")
async def initiate_layer_upload(
    services: Services, caller: CallerContext, request: m.InitiateLayerUploadRequest
) -> m.InitiateLayerUploadResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    upload = await services.uploads.start(registry_id, request.repository_name or "")
    return m.InitiateLayerUploadResponse(upload_id=upload.upload_id, part_size=ECR_PART_SIZE)


@operation("UploadLayerPart")
async def upload_layer_part(
    services: Services, caller: CallerContext, request: m.UploadLayerPartRequest
) -> m.UploadLayerPartResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    last = await services.uploads.upload_part(
        registry_id,
        request.repository_name or "",
        request.upload_id or "",
        first_byte=request.part_first_byte or 0,
        last_byte=request.part_last_byte or 0,
        data=request.layer_part_blob or b"",
    )
    return m.UploadLayerPartResponse(
        registry_id=registry_id,
        repository_name=request.repository_name,
        upload_id=request.upload_id,
        last_byte_received=last,
    )


@operation("CompleteLayerUpload")
async def complete_layer_upload(
    services: Services, caller: CallerContext, request: m.CompleteLayerUploadRequest
) -> m.CompleteLayerUploadResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    # ECR takes a list but completes one layer: the first digest is the one verified.
    digest = (request.layer_digests or [""])[0]
    blob = await services.uploads.complete(
        registry_id,
        request.repository_name or "",
        request.upload_id or "",
        digest,
        enforce_part_sizes=True,
        fail_if_layer_exists=True,
    )
    return m.CompleteLayerUploadResponse(
        registry_id=registry_id,
        repository_name=request.repository_name,
        upload_id=request.upload_id,
        layer_digest=blob.digest,
    )


@operation("GetDownloadUrlForLayer")
async def get_download_url_for_layer(
    services: Services, caller: CallerContext, request: m.GetDownloadUrlForLayerRequest
) -> m.GetDownloadUrlForLayerResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    repository = request.repository_name or ""
    digest = request.layer_digest or ""
    try:
        parse_digest(digest)
    except InvalidDigest:
        raise InvalidParameterError(
            "Invalid parameter at 'layerDigest' failed to satisfy constraint: "
            f"'Invalid layer digest: {digest}'"
        ) from None
    layer = (await services.uploads.find_layers(registry_id, repository, [digest])).get(digest)
    if layer is None:
        raise LayersNotFoundError(
            f"The layer with digest '{digest}' does not exist in the repository with name "
            f"'{repository}' in the registry with id '{registry_id}'"
        )
    if not await services.images.is_layer_referenced(registry_id, repository, digest):
        raise LayerInaccessibleError(
            f"The layer with digest '{digest}' is not referenced by any image in the "
            f"repository with name '{repository}' in the registry with id '{registry_id}'"
        )
    direct = await services.presigned_blob_url(digest, DOWNLOAD_URL_LIFETIME_SECONDS)
    if direct is not None:
        return m.GetDownloadUrlForLayerResponse(download_url=direct, layer_digest=digest)
    path = f"/v2/{repository}/blobs/{digest}"
    expires_at = int(time.time()) + DOWNLOAD_URL_LIFETIME_SECONDS
    signature = services.tokens.sign_download(path, expires_at)
    url = (
        f"{services.public_url}{quote(path)}?X-Openecr-Expires={expires_at}"
        f"&X-Openecr-Signature={signature}"
    )
    return m.GetDownloadUrlForLayerResponse(download_url=url, layer_digest=digest)
