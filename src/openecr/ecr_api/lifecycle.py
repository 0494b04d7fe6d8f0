"""ECR lifecycle policy previews."""

from __future__ import annotations

from openecr import models as m
from openecr.ecr_api._operations import operation
from openecr.errors import InvalidParameterError
from openecr.server.services import Services
from openecr.services.context import CallerContext
from openecr.services.images import ImageId
from openecr.services.pagination import decode_next_token, encode_next_token
from openecr.services.repositories import check_registry_access

__all__: list[str] = []

_DEFAULT_PREVIEW_PAGE = 100


@operation("StartLifecyclePolicyPreview")
async def start_lifecycle_policy_preview(
    services: Services, caller: CallerContext, request: m.StartLifecyclePolicyPreviewRequest
) -> m.StartLifecyclePolicyPreviewResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    preview = await services.lifecycle_previews.start(
        registry_id, request.repository_name or "", request.lifecycle_policy_text
    )
    return m.StartLifecyclePolicyPreviewResponse(
        registry_id=registry_id,
        repository_name=preview.repository_name,
        lifecycle_policy_text=preview.policy_text,
        status=preview.status,
    )


@operation("GetLifecyclePolicyPreview")
async def get_lifecycle_policy_preview(
    services: Services, caller: CallerContext, request: m.GetLifecyclePolicyPreviewRequest
) -> m.GetLifecyclePolicyPreviewResponse:
    registry_id = check_registry_access(caller, request.registry_id)
    if request.image_ids and (request.next_token is not None or request.max_results is not None):
        raise InvalidParameterError(
            "Invalid parameter at 'imageIds' failed to satisfy constraint: 'nextToken and "
            "maxResults cannot be used with imageIds'"
        )
    offset_text = decode_next_token("lifecycle-preview", request.next_token)
    if offset_text is not None and not offset_text.isdigit():
        raise InvalidParameterError(
            "Invalid parameter at 'nextToken' failed to satisfy constraint: 'Invalid NextToken'"
        )
    page = await services.lifecycle_previews.get(
        registry_id,
        request.repository_name or "",
        image_ids=[ImageId(i.image_digest, i.image_tag) for i in request.image_ids or []],
        tag_status=request.filter.tag_status if request.filter else None,
        offset=int(offset_text or 0),
        limit=request.max_results or _DEFAULT_PREVIEW_PAGE,
    )
    complete = page.preview.status == "COMPLETE"
    return m.GetLifecyclePolicyPreviewResponse(
        registry_id=registry_id,
        repository_name=page.preview.repository_name,
        lifecycle_policy_text=page.preview.policy_text,
        status=page.preview.status,
        next_token=(
            encode_next_token("lifecycle-preview", str(page.next_offset))
            if page.next_offset is not None
            else None
        ),
        preview_results=[
            m.LifecyclePolicyPreviewResult(
                image_tags=list(r.image_tags) or None,
                image_digest=r.image_digest,
                image_pushed_at=r.image_pushed_at,
                action=m.LifecyclePolicyRuleAction(type="EXPIRE"),
                applied_rule_priority=r.applied_rule_priority,
            )
            for r in page.results
        ]
        if complete
        else None,
        summary=m.LifecyclePolicyPreviewSummary(expiring_image_total_count=page.expiring_total)
        if complete
        else None,
    )
