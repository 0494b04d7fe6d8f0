"""Who is calling, and where: the facts every service call needs besides its arguments."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CallerContext"]


@dataclass(frozen=True, slots=True)
class CallerContext:
    """The verified caller of one request.

    ``region`` comes from the SigV4 credential scope (or the server's default region on the
    /v2/ API, whose requests carry none); ARNs are built with it.
    """

    account_id: str
    region: str
    access_key_id: str | None = None

    def registry(self, registry_id: str | None) -> str:
        """The registry a request addresses: its ``registryId``, or the caller's own."""
        return registry_id or self.account_id
