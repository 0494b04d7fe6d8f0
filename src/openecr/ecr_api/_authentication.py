"""Who signed an ECR API request: SigV4 verification against the stored access keys."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from openecr.auth.sigv4 import read_unverified_scope, verify_request
from openecr.server.services import Services
from openecr.services.context import CallerContext
from openecr.storage.metadata.records import AccessKeyRecord

__all__ = ["authenticate"]

SIGNING_SERVICE = "ecr"


async def authenticate(services: Services, request: web.Request, body: bytes) -> CallerContext:
    """The caller of ``request``, or the ECR error that rejects it.

    With ``insecure_accept_any_credentials`` any well-formed signature is accepted and
    mapped to the default account; the region is still read from its credential scope.
    """
    path, _, query = request.raw_path.partition("?")
    scope = read_unverified_scope(request.headers, query)
    settings = services.settings
    if settings.insecure_accept_any_credentials and scope is not None:
        access_key_id, _, region, _ = scope
        return CallerContext(settings.account_id, region, access_key_id)

    key: AccessKeyRecord | None = None
    if scope is not None:
        key = await services.access_keys.find(scope[0])

    def lookup_secret(access_key_id: str) -> str | None:
        if key is not None and key.access_key_id == access_key_id:
            return key.secret_access_key
        return None

    verified = verify_request(
        method=request.method,
        path=path,
        query_string=query,
        headers=request.headers,
        body=body,
        lookup_secret=lookup_secret,
        now=datetime.now(UTC),
        expected_service=SIGNING_SERVICE,
    )
    assert key is not None  # verify_request fails on unknown keys
    return CallerContext(key.account_id, verified.region, key.access_key_id)
