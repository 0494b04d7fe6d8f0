"""Image scanning and replication status operations.

openecr has no vulnerability scanner and no replication engine yet. These operations check
their inputs completely and then report the truth: no image has been scanned, a scan
cannot be started, and no image has been replicated.
"""

from __future__ import annotations

from openecr import models as m
from openecr.ecr_api._operations import operation
from openecr.errors import ScanNotFoundError, UnsupportedImageTypeError
from openecr.server.services import Services
from openecr.services.context import CallerContext
from openecr.services.images import ImageId
from openecr.services.repositories import check_registry_access
from openecr.services.scanning_filters import prefix_filter_matches

__all__: list[str] = []


def _image_id(identifier: m.ImageIdentifier | None) -> ImageId:
    return ImageId(identifier.image_digest, identifier.image_tag) if identifier else ImageId()


@operation("StartImageScan")
async def start_image_scan(
    services: Services, caller: CallerContext, request: m.StartImageScanRequest
) -> m.StartImageScanResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    await services.images.require_image(
        registry_id, request.repository_name or "", _image_id(request.image_id)
    )
    raise UnsupportedImageTypeError(
        "The operating system and/or package manager are not supported: this registry has "
        "no vulnerability scanner configured"
    )


@operation("DescribeImageScanFindings")
async def describe_image_scan_findings(
    services: Services, caller: CallerContext, request: m.DescribeImageScanFindingsRequest
) -> m.DescribeImageScanFindingsResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    image_id = _image_id(request.image_id)
    image = await services.images.require_image(
        registry_id, request.repository_name or "", image_id
    )
    raise ScanNotFoundError(
        f"Image scan does not exist for the image with '{{imageDigest:'{image.digest}', "
        f"imageTag:'{image_id.tag}'}}' in the repository with name "
        f"'{request.repository_name}' in the registry with id '{registry_id}'"
    )


@operation("DescribeImageReplicationStatus")
async def describe_image_replication_status(
    services: Services, caller: CallerContext, request: m.DescribeImageReplicationStatusRequest
) -> m.DescribeImageReplicationStatusResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    repository = request.repository_name or ""
    image = await services.images.require_image(
        registry_id, repository, _image_id(request.image_id)
    )
    configuration = await services.registry.describe_registry(caller)
    destinations: dict[tuple[str, str], None] = {}
    for rule in configuration["rules"]:
        filters = rule.get("repositoryFilters") or []
        if not filters or any(prefix_filter_matches(f["filter"], repository) for f in filters):
            for destination in rule["destinations"]:
                destinations[(destination["region"], destination["registryId"])] = None
    return m.DescribeImageReplicationStatusResponse(
        repository_name=repository,
        image_id=m.ImageIdentifier(
            image_digest=image.digest,
            image_tag=request.image_id.image_tag if request.image_id else None,
        ),
        replication_statuses=[
            m.ImageReplicationStatus(
                region=region,
                registry_id=destination_registry,
                status="FAILED",
                failure_code="REPLICATION_NOT_AVAILABLE: this server has no replication engine",
            )
            for region, destination_registry in destinations
        ],
    )
