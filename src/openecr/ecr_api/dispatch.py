"""The ECR JSON 1.1 endpoint: ``POST /`` with ``X-Amz-Target``.

Order of checks, as in AWS: signature, then operation name, then the request body.
Every error, ours or unexpected, leaves as ``{"__type": ..., "message": ...}``.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from aiohttp import web

# Importing the handler modules registers their operations.
from openecr.ecr_api import (  # noqa: F401
    images,
    lifecycle,
    pull_through_cache,
    registry,
    repositories,
    scanning,
)
from openecr.ecr_api._authentication import authenticate
from openecr.ecr_api._operations import HANDLERS
from openecr.ecr_api._validation import decode_request
from openecr.errors import ECRError, SerializationError, ServerError, UnknownOperationError
from openecr.server.services import MAX_BODY, SERVICES

__all__ = ["TARGET_PREFIX", "error_response", "handle_ecr_request"]

log = logging.getLogger("openecr.ecr_api")

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
CONTENT_TYPE = "application/x-amz-json-1.1"
_encoder = msgspec.json.Encoder()


def error_response(error: ECRError) -> web.Response:
    body: dict[str, Any] = {"__type": error.code, "message": error.message, **error.extra}
    return web.Response(
        body=_encoder.encode(body),
        status=error.http_status,
        content_type=CONTENT_TYPE,
        headers={"x-amzn-ErrorType": error.code},
    )


async def handle_ecr_request(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        body = await request.read()
        caller = await authenticate(services, request, body)
        target = request.headers.get("X-Amz-Target", "")
        name = target.removeprefix(TARGET_PREFIX) if target.startswith(TARGET_PREFIX) else ""
        request["operation"] = name or target
        handler = HANDLERS.get(name)
        if handler is None:
            raise UnknownOperationError(
                f"Unknown operation {target!r}" if target else "Missing X-Amz-Target header"
            )
        decoded = decode_request(name, body)
        result = await handler(services, caller, decoded)
        return web.Response(body=_encoder.encode(result), content_type=CONTENT_TYPE)
    except ECRError as error:
        return error_response(error)
    except web.HTTPRequestEntityTooLarge:
        return error_response(
            SerializationError(
                f"The request body exceeds the maximum of {request.app[MAX_BODY]} bytes",
                status=413,
            )
        )
    except Exception:
        log.exception("unexpected error in %s", request.get("operation", "ECR request"))
        return error_response(ServerError("An internal error occurred. Try again later."))
