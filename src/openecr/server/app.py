"""The aiohttp application: one port for the ECR API and the OCI /v2/ API."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from aiohttp import web

from openecr.ecr_api.dispatch import handle_ecr_request
from openecr.oci.routes import add_oci_routes
from openecr.server.services import MAX_BODY, SERVICES, Services

__all__ = ["MAX_REQUEST_BODY", "build_app"]

access_log = logging.getLogger("openecr.access")

# UploadLayerPart carries up to 20 MiB base64-encoded in JSON (~27 MiB), the largest body.
MAX_REQUEST_BODY = 32 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_id_and_log(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gives every response a request id and writes one structured log line per request."""
    request_id = str(uuid.uuid4())
    request["request_id"] = request_id
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["x-amzn-RequestId"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["x-amzn-RequestId"] = request_id
        raise
    finally:
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                json.dumps(
                    {
                        "request_id": request_id,
                        "remote": request.remote,
                        "method": request.method,
                        "path": request.path,
                        "operation": request.get("operation"),
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    },
                    separators=(",", ":"),
                )
            )


async def health(request: web.Request) -> web.Response:
    """Liveness and readiness: answers 200 only while the metadata database answers."""
    services = request.app[SERVICES]
    try:
        async with services.store.read() as session:
            await session.ping()
    except (sa.exc.SQLAlchemyError, OSError) as exc:
        return web.json_response({"status": "unavailable", "error": type(exc).__name__}, status=503)
    return web.json_response({"status": "ok", "database": services.store.backend})


def build_app(services: Services) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BODY, middlewares=[request_id_and_log])
    app[SERVICES] = services
    app[MAX_BODY] = MAX_REQUEST_BODY
    app.router.add_post("/", handle_ecr_request)
    app.router.add_get("/healthz", health)
    add_oci_routes(app)
    return app
