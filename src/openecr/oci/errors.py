"""OCI distribution errors and the one table that maps domain errors onto them."""

from __future__ import annotations

import json

from aiohttp import web

from openecr import errors as ecr

__all__ = ["OCIError", "oci_error_for", "oci_error_response"]


class OCIError(Exception):
    """An error answered in the distribution spec's ``{"errors": [...]}`` format."""

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        *,
        detail: object | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.detail = detail
        self.headers = headers or {}


# Domain (ECR) error -> (OCI code, HTTP status). Errors not listed are server errors.
_OCI_CODES: dict[type[ecr.ECRError], tuple[str, int]] = {
    ecr.RepositoryNotFoundError: ("NAME_UNKNOWN", 404),
    ecr.ImageNotFoundError: ("MANIFEST_UNKNOWN", 404),
    ecr.LayersNotFoundError: ("MANIFEST_BLOB_UNKNOWN", 400),
    ecr.ReferencedImagesNotFoundError: ("MANIFEST_BLOB_UNKNOWN", 400),
    ecr.ImageTagAlreadyExistsError: ("TAG_INVALID", 400),
    ecr.ImageDigestDoesNotMatchError: ("DIGEST_INVALID", 400),
    ecr.InvalidLayerError: ("DIGEST_INVALID", 400),
    ecr.InvalidParameterError: ("MANIFEST_INVALID", 400),
    ecr.UploadNotFoundError: ("BLOB_UPLOAD_UNKNOWN", 404),
    ecr.InvalidLayerPartError: ("BLOB_UPLOAD_INVALID", 400),
    ecr.EmptyUploadError: ("BLOB_UPLOAD_INVALID", 400),
    ecr.LimitExceededError: ("DENIED", 403),
    ecr.AccessDeniedError: ("DENIED", 403),
    ecr.RepositoryAlreadyExistsError: ("DENIED", 403),
}


def oci_error_for(error: ecr.ECRError) -> OCIError:
    code, status = _OCI_CODES.get(type(error), ("UNKNOWN", 500))
    return OCIError(code, status, error.message)


def oci_error_response(error: OCIError, *, head: bool = False) -> web.Response:
    body = {"errors": [{"code": error.code, "message": error.message, "detail": error.detail}]}
    headers = {"Docker-Distribution-API-Version": "registry/2.0", **error.headers}
    if head:  # HEAD answers carry no body
        return web.Response(status=error.status, headers=headers)
    return web.Response(
        status=error.status,
        body=json.dumps(body).encode(),
        content_type="application/json",
        headers=headers,
    )
