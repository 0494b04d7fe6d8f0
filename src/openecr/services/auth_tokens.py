"""Registry tokens: what GetAuthorizationToken hands out and the /v2/ API accepts.

A token is ``<claims>.<mac>``: base64url JSON claims (account, access key, expiry) and an
HMAC-SHA256 over them with a key kept in the database, so every replica can check every
token without shared memory. The Docker password is the token; the ECR
``authorizationToken`` is ``base64("AWS:" + token)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from openecr.storage.metadata.store import DuplicateKeyError, MetadataStore

__all__ = ["TOKEN_LIFETIME_SECONDS", "InvalidTokenError", "RegistryTokens", "TokenClaims"]

TOKEN_LIFETIME_SECONDS = 12 * 3600
_SECRET_NAME = "registry-token-key"


class InvalidTokenError(Exception):
    """The token is forged, damaged or expired."""


@dataclass(frozen=True, slots=True)
class TokenClaims:
    account_id: str
    access_key_id: str | None
    expires_at: float


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class RegistryTokens:
    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    async def load(cls, store: MetadataStore) -> RegistryTokens:
        """Loads the signing key, creating it on the very first start."""
        async with store.read() as session:
            existing = await session.get_server_secret(_SECRET_NAME)
        if existing is None:
            try:
                async with store.write() as session:
                    await session.add_server_secret(_SECRET_NAME, secrets.token_hex(32))
            except DuplicateKeyError:
                pass  # another replica created it first; use theirs
            async with store.read() as session:
                existing = await session.get_server_secret(_SECRET_NAME)
        assert existing is not None
        return cls(bytes.fromhex(existing))

    def _mac(self, claims: str) -> str:
        return _b64(hmac.new(self._key, claims.encode(), hashlib.sha256).digest()[:24])

    def issue(self, *, account_id: str, access_key_id: str | None, now: float) -> TokenClaims:
        return TokenClaims(account_id, access_key_id, round(now + TOKEN_LIFETIME_SECONDS, 3))

    def encode(self, claims: TokenClaims) -> str:
        body = json.dumps(
            {"a": claims.account_id, "k": claims.access_key_id, "e": claims.expires_at},
            separators=(",", ":"),
        )
        encoded = _b64(body.encode())
        return f"{encoded}.{self._mac(encoded)}"

    def verify(self, token: str, *, now: float) -> TokenClaims:
        encoded, _, mac = token.partition(".")
        if not mac or not hmac.compare_digest(mac, self._mac(encoded)):
            raise InvalidTokenError("token signature does not match")
        try:
            body = json.loads(_unb64(encoded))
            claims = TokenClaims(str(body["a"]), body.get("k"), float(body["e"]))
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise InvalidTokenError("token is malformed") from exc
        if claims.expires_at <= now:
            raise InvalidTokenError("token has expired")
        return claims

    def sign_download(self, path: str, expires_at: int) -> str:
        """A signature that lets ``path`` (a blob URL) be fetched until ``expires_at``."""
        message = f"download\n{path}\n{expires_at}".encode()
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def download_is_valid(self, path: str, expires_at: int, signature: str, *, now: float) -> bool:
        if expires_at <= now:
            return False
        return hmac.compare_digest(signature, self.sign_download(path, expires_at))
