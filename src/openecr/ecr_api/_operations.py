"""The table from ECR operation name to its handler.

A handler decodes nothing and touches no storage: it receives the validated request
struct, calls one service method and returns the response struct.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec

from openecr.server.services import Services
from openecr.services.context import CallerContext

__all__ = ["HANDLERS", "Handler", "operation"]

Handler = Callable[[Services, CallerContext, Any], Awaitable[msgspec.Struct]]
HANDLERS: dict[str, Handler] = {}

F = TypeVar("F", bound=Callable[..., Awaitable[msgspec.Struct]])


def operation(name: str) -> Callable[[F], F]:
    """Registers the decorated coroutine as the handler of ECR operation ``name``."""

    def register(handler: F) -> F:
        if name in HANDLERS:
            raise RuntimeError(f"two handlers for {name}")
        HANDLERS[name] = handler
        return handler

    return register
