"""Who may use /v2/: HTTP Basic with user ``AWS`` and a GetAuthorizationToken token.

Checked tokens are cached (until shortly before they expire), so after the first request
of a client, authentication costs one dictionary lookup.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections import OrderedDict

from aiohttp import web

from openecr.oci.errors import OCIError
from openecr.server.services import Services
from openecr.services.auth_tokens import InvalidTokenError, TokenClaims

__all__ = ["TokenCache", "authenticate_registry_request", "challenge_headers"]

_CACHE_SIZE = 4096


class TokenCache:
    def __init__(self) -> None:
        self._claims: OrderedDict[str, TokenClaims] = OrderedDict()

    def get(self, header: str, now: float) -> TokenClaims | None:
        claims = self._claims.get(header)
        if claims is None:
            return None
        if claims.expires_at <= now:
            del self._claims[header]
            return None
        self._claims.move_to_end(header)
        return claims

    def put(self, header: str, claims: TokenClaims) -> None:
        self._claims[header] = claims
        if len(self._claims) > _CACHE_SIZE:
            self._claims.popitem(last=False)


def challenge_headers(services: Services) -> dict[str, str]:
    return {
        "WWW-Authenticate": (f'Basic realm="{services.public_url}/",service="ecr.amazonaws.com"'),
        "Docker-Distribution-API-Version": "registry/2.0",
    }


def _unauthorized(services: Services, message: str) -> OCIError:
    return OCIError("UNAUTHORIZED", 401, message, headers=challenge_headers(services))


def authenticate_registry_request(
    services: Services, cache: TokenCache, request: web.Request
) -> TokenClaims:
    """The token claims of the request's Basic credentials, or a 401 with a challenge."""
    header = request.headers.get("Authorization")
    now = time.time()
    if not header:
        raise _unauthorized(services, "authentication required")
    cached = cache.get(header, now)
    if cached is not None:
        return cached
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise _unauthorized(services, "Basic authentication with an ECR token is required")
    try:
        user, _, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _unauthorized(services, "malformed Basic credentials") from None
    if user != "AWS":
        raise _unauthorized(services, "the user name must be AWS")
    try:
        claims = services.tokens.verify(password, now=now)
    except InvalidTokenError as exc:
        raise _unauthorized(services, f"invalid authorization token: {exc}") from None
    cache.put(header, claims)
    return claims
