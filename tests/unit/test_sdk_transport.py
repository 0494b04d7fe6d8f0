"""The SDK clients on the wire, against a scripted stand-in for a remote ECR endpoint.

A healthy openecr server cannot throttle, fail with 5xx, reset connections, stall, answer
with error codes nobody has heard of, or send enum values and fields from a newer model. A
tiny real HTTP server (``ScriptedServer``, ``http.server`` on a loopback port, in a thread)
answers with scripted responses and records every request it receives, so the tests count
attempts, measure backoff between them and verify the SigV4 signatures there. Nothing of
openecr is mocked: the clients talk real HTTP over real sockets.

``ScriptedServer`` and ``client_for`` are imported by the other ``test_sdk_*`` unit modules.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from openecr import (
    ECR,
    AsyncECR,
    ECRError,
    EndpointConnectionError,
    RequestTimeoutError,
    TransportError,
)
from openecr import models as m
from openecr.auth.sigv4 import VerifiedRequest, verify_request
from openecr.errors import (
    ECR_ERRORS_BY_CODE,
    AccessDeniedError,
    InvalidLayerPartError,
    InvalidParameterError,
    KmsError,
    RepositoryNotFoundError,
    ServerError,
    ThrottlingError,
)

ACCESS_KEY = "AKIASCRIPTEDSERVER01"
SECRET_KEY = "scripted/server/secret/0000000000000000000"
REGION = "eu-central-1"
TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
JSON_TYPE = "application/x-amz-json-1.1"


# --- the scripted stand-in ----------------------------------------------------------------


@dataclass
class Reply:
    """One scripted answer. ``hang`` never answers; ``drop`` resets the connection."""

    status: int = 200
    body: Any = None  # a JSON-able value, or raw bytes
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: bool = False
    drop: bool = False
    request_id: str | None = None  # default: "req-<n>"


def ok(body: Any = None, **kwargs: Any) -> Reply:
    return Reply(200, {} if body is None else body, **kwargs)


def error(
    code: str,
    message: str = "scripted",
    status: int = 400,
    *,
    request_id: str | None = None,
    **extra: Any,
) -> Reply:
    """An AWS JSON 1.1 error answer; ``extra`` are the error's modelled members."""
    return Reply(status, {"__type": code, "message": message, **extra}, request_id=request_id)


@dataclass
class Seen:
    """One request as the stand-in received it."""

    number: int
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    raw_headers: list[tuple[str, str]]
    body: bytes
    at: float
    client_port: int

    @property
    def operation(self) -> str:
        return self.headers.get("x-amz-target", "").removeprefix(TARGET_PREFIX)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    def verify(self, secrets: dict[str, str] | None = None) -> VerifiedRequest:
        """Checks the request's SigV4 signature the way a real endpoint would."""
        path, _, query = self.path.partition("?")
        return verify_request(
            method=self.method,
            path=path,
            query_string=query,
            headers=dict(self.raw_headers),
            body=self.body,
            lookup_secret=(secrets or {ACCESS_KEY: SECRET_KEY}).get,
            now=datetime.now(UTC),
            expected_service="ecr",
        )


Responder = Callable[[Seen], Reply]


class ScriptedServer:
    """An HTTP/1.1 server on 127.0.0.1 answering each request from a script.

    ``script(*replies)`` queues answers (the last one repeats once the queue is used up);
    ``respond_with(fn)`` answers each request with ``fn(seen)`` instead.
    """

    def __init__(self) -> None:
        self.requests: list[Seen] = []
        self._queue: deque[Reply] = deque()
        self._last: Reply = ok()
        self._responder: Responder | None = None
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def handle(self) -> None:
                with suppress(OSError, ValueError):  # a dropped connection
                    super().handle()

            def finish(self) -> None:
                with suppress(OSError, ValueError):
                    super().finish()

            def do_POST(self) -> None:
                outer._serve(self)

            do_GET = do_POST

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    # scripting

    def script(self, *replies: Reply) -> ScriptedServer:
        with self._lock:
            self._responder = None
            self._queue = deque(replies)
            self._last = replies[-1]
        return self

    def respond_with(self, responder: Responder) -> ScriptedServer:
        with self._lock:
            self._responder = responder
        return self

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()

    # observations

    def operations(self) -> list[str]:
        return [seen.operation for seen in self.requests]

    def gaps(self) -> list[float]:
        """Seconds between consecutive requests."""
        times = [seen.at for seen in self.requests]
        return [b - a for a, b in itertools.pairwise(times)]

    # serving

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            seen = Seen(
                number=len(self.requests) + 1,
                method=handler.command,
                path=handler.path,
                headers={k.lower(): v for k, v in handler.headers.items()},
                raw_headers=list(handler.headers.items()),
                body=body,
                at=time.monotonic(),
                client_port=int(handler.client_address[1]),
            )
            self.requests.append(seen)
            responder = self._responder
            if responder is None:
                reply = self._queue.popleft() if self._queue else self._last
        if responder is not None:
            reply = responder(seen)
        if reply.delay:
            self.stopping.wait(reply.delay)
        if reply.hang:
            self.stopping.wait(60)
            handler.close_connection = True
            return
        if reply.drop:
            # SO_LINGER 0: close() sends a TCP reset instead of an orderly FIN.
            handler.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            handler.connection.close()
            handler.close_connection = True
            return
        if isinstance(reply.body, bytes):
            payload = reply.body
        elif reply.body is None:
            payload = b""
        else:
            payload = json.dumps(reply.body).encode()
        handler.send_response(reply.status)
        headers = {"Content-Type": JSON_TYPE, "x-amzn-RequestId": f"req-{seen.number}"}
        if reply.request_id is not None:
            headers["x-amzn-RequestId"] = reply.request_id
        headers.update(reply.headers)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextmanager
def scripted_server() -> Iterator[ScriptedServer]:
    server = ScriptedServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def stub() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


def client_for(server: ScriptedServer | str, **options: Any) -> ECR:
    url = server if isinstance(server, str) else server.url
    options.setdefault("region", REGION)
    options.setdefault("access_key_id", ACCESS_KEY)
    options.setdefault("secret_access_key", SECRET_KEY)
    return ECR(endpoint_url=url, **options)


def async_client_for(server: ScriptedServer | str, **options: Any) -> AsyncECR:
    url = server if isinstance(server, str) else server.url
    options.setdefault("region", REGION)
    options.setdefault("access_key_id", ACCESS_KEY)
    options.setdefault("secret_access_key", SECRET_KEY)
    return AsyncECR(endpoint_url=url, **options)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the stand-in itself --------------------------------------------------------------------


def test_stand_in_records_requests_and_answers_from_the_script(stub: ScriptedServer) -> None:
    stub.script(ok({"a": 1}), error("ThrottlingException", status=400))
    first = httpx.post(stub.url + "/", content=b"{}", headers={"X-Amz-Target": "X.Op"})
    second = httpx.post(stub.url + "/", content=b"{}")
    third = httpx.post(stub.url + "/", content=b"{}")
    assert (first.status_code, first.json()) == (200, {"a": 1})
    assert first.headers["x-amzn-RequestId"] == "req-1"
    assert second.status_code == third.status_code == 400  # the last reply repeats
    assert [seen.number for seen in stub.requests] == [1, 2, 3]
    assert stub.requests[0].headers["x-amz-target"] == "X.Op"


# --- what goes on the wire --------------------------------------------------------------------


def test_requests_are_json_1_1_posts_with_camel_case_bodies(stub: ScriptedServer) -> None:
    stub.script(ok())
    with client_for(stub) as ecr:
        ecr.describe_registry()
        ecr.create_repository(
            repository_name="team/app",
            tags=[m.Tag(key="k", value="v")],
            image_scanning_configuration=m.ImageScanningConfiguration(scan_on_push=True),
        )
        ecr.upload_layer_part(
            repository_name="team/app",
            upload_id="u-1",
            part_first_byte=0,
            part_last_byte=4,
            layer_part_blob=b"\x00\x01bin",
        )
    no_input, create, upload = stub.requests
    for seen in stub.requests:
        assert (seen.method, seen.path) == ("POST", "/")
        assert seen.headers["content-type"] == JSON_TYPE
        assert seen.headers["host"] == f"127.0.0.1:{stub.port}"
    assert no_input.operation == "DescribeRegistry"
    assert no_input.body == b"{}"  # operations without input members still send {}
    assert create.operation == "CreateRepository"
    # Unset optional members are omitted, never sent as null.
    assert create.json == {
        "repositoryName": "team/app",
        "tags": [{"Key": "k", "Value": "v"}],
        "imageScanningConfiguration": {"scanOnPush": True},
    }
    assert upload.json["layerPartBlob"] == base64.b64encode(b"\x00\x01bin").decode()
    assert upload.json["partFirstByte"] == 0 and upload.json["partLastByte"] == 4


def test_every_request_is_signed_and_verifies(stub: ScriptedServer) -> None:
    stub.script(ok())
    with client_for(stub) as ecr:
        ecr.describe_repositories(repository_names=["a", "b"])
        ecr.get_authorization_token()
        ecr.tag_resource(resource_arn="arn", tags=[m.Tag(key="owner", value="Grüße ✓ 東京")])
    assert stub.requests[-1].json["tags"] == [{"Key": "owner", "Value": "Grüße ✓ 東京"}]
    for seen in stub.requests:
        verified = seen.verify()
        assert verified.access_key_id == ACCESS_KEY
        assert (verified.region, verified.service) == (REGION, "ecr")
        assert verified.session_token is None
        assert "x-amz-security-token" not in seen.headers
        signed = seen.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
        assert {"host", "x-amz-date", "x-amz-target", "content-type"} <= set(signed.split(";"))


def test_session_token_is_sent_as_security_token_and_signed(stub: ScriptedServer) -> None:
    stub.script(ok())
    with client_for(stub, session_token="FQoGZXIvYXdzEXAMPLE//token==") as ecr:
        ecr.describe_registry()
    seen = stub.requests[0]
    assert seen.headers["x-amz-security-token"] == "FQoGZXIvYXdzEXAMPLE//token=="
    assert "x-amz-security-token" in seen.headers["authorization"]
    verified = seen.verify()
    assert verified.session_token == "FQoGZXIvYXdzEXAMPLE//token=="
    assert verified.access_key_id == ACCESS_KEY


def test_a_wrong_secret_does_not_verify(stub: ScriptedServer) -> None:
    """Proves the signature checks above can fail."""
    stub.script(ok())
    with client_for(stub, secret_access_key="not-the-secret") as ecr:
        ecr.describe_registry()
    with pytest.raises(ECRError, match="signature"):
        stub.requests[0].verify()


# --- typed results and response metadata ---------------------------------------------------------


def test_results_carry_request_id_retry_count_and_the_raw_response(stub: ScriptedServer) -> None:
    stub.script(
        ok(
            {"registryId": "123456789012", "replicationConfiguration": {"rules": []}},
            request_id="abc-123",
        )
    )
    with client_for(stub) as ecr:
        result = ecr.describe_registry()
    assert isinstance(result, m.DescribeRegistryResponse)
    assert result.registry_id == "123456789012"
    assert result.replication_configuration == m.ReplicationConfiguration(rules=[])
    metadata = result.response_metadata
    assert metadata is not None
    assert metadata.request_id == "abc-123"
    assert metadata.http_status_code == 200
    assert metadata.retry_attempts == 0
    assert isinstance(metadata.raw_response, httpx.Response)
    assert metadata.raw_response.headers["x-amzn-RequestId"] == "abc-123"


# --- errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "cls"),
    sorted(ECR_ERRORS_BY_CODE.items()),
    ids=sorted(ECR_ERRORS_BY_CODE),
)
def test_every_error_code_maps_to_its_class(
    stub: ScriptedServer, code: str, cls: type[ECRError]
) -> None:
    status = 500 if code == "ServerException" else 400
    stub.script(error(code, f"about {code}", status=status, request_id="rid-9"))
    with client_for(stub, max_attempts=1) as ecr, pytest.raises(ECRError) as info:
        ecr.describe_registry()
    assert type(info.value) is cls
    assert (info.value.code, info.value.message) == (code, f"about {code}")
    assert (info.value.http_status, info.value.request_id) == (status, "rid-9")
    assert str(info.value) == f"{code}: about {code}"


def test_modelled_extras_are_kept(stub: ScriptedServer) -> None:
    stub.script(
        error(
            "InvalidLayerPartException",
            "bad part",
            registryId="123456789012",
            repositoryName="team/app",
            uploadId="u-1",
            lastValidByteReceived=5242879,
        ),
        error("KmsException", "kms says no", kmsError="KMS_KEY_DISABLED"),
    )
    with client_for(stub) as ecr:
        with pytest.raises(InvalidLayerPartError) as part:
            ecr.upload_layer_part(
                repository_name="team/app",
                upload_id="u-1",
                part_first_byte=0,
                part_last_byte=0,
                layer_part_blob=b"x",
            )
        with pytest.raises(KmsError) as kms:
            ecr.describe_registry()
    assert part.value.extra == {
        "registryId": "123456789012",
        "repositoryName": "team/app",
        "uploadId": "u-1",
        "lastValidByteReceived": 5242879,
    }
    assert kms.value.extra == {"kmsError": "KMS_KEY_DISABLED"}


@pytest.mark.parametrize(
    "raw_code",
    [
        "com.amazonaws.ecr#RepositoryNotFoundException",
        "RepositoryNotFoundException:http://internal.amazon.com/coral/com.amazonaws.ecr/",
    ],
)
def test_namespaced_and_suffixed_codes_are_normalised(stub: ScriptedServer, raw_code: str) -> None:
    stub.script(error(raw_code, "gone"))
    with client_for(stub) as ecr, pytest.raises(RepositoryNotFoundError) as info:
        ecr.describe_registry()
    assert info.value.code == "RepositoryNotFoundException"


def test_error_type_header_is_used_when_the_body_has_no_type(stub: ScriptedServer) -> None:
    stub.script(
        Reply(
            400,
            {"Message": "denied"},
            headers={"x-amzn-ErrorType": "AccessDeniedException:http://internal/"},
        )
    )
    with client_for(stub) as ecr, pytest.raises(AccessDeniedError) as info:
        ecr.describe_registry()
    assert info.value.message == "denied"


def test_unknown_error_code_maps_to_the_base_class_with_that_code(stub: ScriptedServer) -> None:
    stub.script(error("BrandNewFutureException", "not in any model", status=409, hint="extra", n=3))
    with client_for(stub) as ecr, pytest.raises(ECRError) as info:
        ecr.describe_registry()
    assert type(info.value) is ECRError
    assert info.value.code == "BrandNewFutureException"
    assert info.value.message == "not in any model"
    assert info.value.http_status == 409
    assert info.value.request_id == "req-1"
    assert info.value.extra == {"hint": "extra", "n": 3}
    assert len(stub.requests) == 1  # 409 is not retryable


def test_error_without_a_body_uses_the_status_as_code(stub: ScriptedServer) -> None:
    stub.script(Reply(500, b"<html><body>Internal Server Error</body></html>"))
    with client_for(stub, max_attempts=1) as ecr, pytest.raises(ECRError) as info:
        ecr.describe_registry()
    assert type(info.value) is ECRError
    assert (info.value.code, info.value.http_status) == ("500", 500)


def test_an_undecodable_success_body_is_an_ecr_error(stub: ScriptedServer) -> None:
    stub.script(Reply(200, b"<html>captive portal</html>"))
    with client_for(stub) as ecr, pytest.raises(ECRError) as info:
        ecr.describe_registry()
    assert info.value.code == "ResponseDecodeError"
    assert info.value.request_id == "req-1"


def test_connection_refused_is_an_endpoint_connection_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    attempts: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [attempts.append]})
    started = time.monotonic()
    with (
        client_for(url, max_attempts=3, http_client=http) as ecr,
        pytest.raises(EndpointConnectionError),
    ):
        ecr.describe_registry()
    # retried (connection errors are retryable) with bounded backoff: 0.2 s + 0.4 s at most
    assert len(attempts) == 3
    assert time.monotonic() - started < 3.0
    http.close()


def test_a_server_that_never_answers_is_a_request_timeout(stub: ScriptedServer) -> None:
    stub.script(Reply(hang=True))
    started = time.monotonic()
    with (
        client_for(stub, timeout=0.3, max_attempts=1) as ecr,
        pytest.raises(RequestTimeoutError) as info,
    ):
        ecr.describe_registry()
    elapsed = time.monotonic() - started
    assert isinstance(info.value, TransportError)
    assert 0.25 <= elapsed < 3.0
    assert len(stub.requests) == 1


def test_async_connection_refused_and_timeout(stub: ScriptedServer) -> None:
    stub.script(Reply(hang=True))

    async def run() -> None:
        async with async_client_for(f"http://127.0.0.1:{free_port()}", max_attempts=1) as ecr:
            with pytest.raises(EndpointConnectionError):
                await ecr.describe_registry()
        async with async_client_for(stub, timeout=0.3, max_attempts=2) as ecr:
            with pytest.raises(RequestTimeoutError):
                await ecr.describe_registry()

    asyncio.run(run())
    assert len(stub.requests) == 2  # timeouts are retried too


def test_async_errors_map_like_sync_ones(stub: ScriptedServer) -> None:
    stub.script(error("InvalidParameterException", "bad", request_id="r-async"))

    async def run() -> InvalidParameterError:
        async with async_client_for(stub) as ecr:
            with pytest.raises(InvalidParameterError) as info:
                await ecr.describe_repositories(repository_names=["x"])
        return info.value

    raised = asyncio.run(run())
    assert (raised.code, raised.http_status, raised.request_id) == (
        "InvalidParameterException",
        400,
        "r-async",
    )


# --- retries -------------------------------------------------------------------------------------


def test_throttling_is_retried_until_it_succeeds(stub: ScriptedServer) -> None:
    stub.script(
        error("ThrottlingException", "Rate exceeded"),
        error("ThrottlingException", "Rate exceeded"),
        ok({"registryId": "123456789012"}),
    )
    with client_for(stub, max_attempts=3) as ecr:
        result = ecr.describe_registry()
    assert result.registry_id == "123456789012"
    assert result.response_metadata is not None
    assert result.response_metadata.retry_attempts == 2
    assert result.response_metadata.request_id == "req-3"
    assert stub.operations() == ["DescribeRegistry"] * 3
    # every attempt is signed anew and verifies
    for seen in stub.requests:
        seen.verify()


@pytest.mark.parametrize("max_attempts", [1, 2, 4])
def test_throttling_gives_up_after_max_attempts(stub: ScriptedServer, max_attempts: int) -> None:
    stub.script(error("ThrottlingException", "Rate exceeded"))
    with (
        client_for(stub, max_attempts=max_attempts) as ecr,
        pytest.raises(ThrottlingError) as info,
    ):
        ecr.describe_registry()
    assert info.value.request_id == f"req-{max_attempts}"  # the last attempt's error
    assert len(stub.requests) == max_attempts


@pytest.mark.parametrize(
    "reply",
    [
        error("ServerException", "boom", status=500),
        Reply(500, b""),
        Reply(502, b"<html>Bad Gateway</html>"),
        error("ServiceUnavailable", "later", status=503),
        Reply(504, b""),
        error("SomeOtherThrottledException", "slow down", status=429),
    ],
    ids=["500-ServerException", "500-empty", "502-html", "503", "504", "429"],
)
def test_server_errors_are_retried(stub: ScriptedServer, reply: Reply) -> None:
    stub.script(reply, reply, ok({"registryId": "1"}))
    with client_for(stub, max_attempts=3) as ecr:
        result = ecr.describe_registry()
    assert result.response_metadata is not None
    assert result.response_metadata.retry_attempts == 2
    assert len(stub.requests) == 3


def test_server_exception_surfaces_after_max_attempts(stub: ScriptedServer) -> None:
    stub.script(error("ServerException", "boom", status=500))
    with client_for(stub, max_attempts=3) as ecr, pytest.raises(ServerError) as info:
        ecr.describe_registry()
    assert info.value.http_status == 500
    assert len(stub.requests) == 3


@pytest.mark.parametrize(
    "code",
    [
        "RepositoryNotFoundException",
        "InvalidParameterException",
        "AccessDeniedException",
        "InvalidSignatureException",
        "LimitExceededException",
        "ValidationException",
    ],
)
def test_client_errors_are_not_retried(stub: ScriptedServer, code: str) -> None:
    stub.script(error(code), ok())
    with client_for(stub, max_attempts=5) as ecr, pytest.raises(ECRError) as info:
        ecr.describe_registry()
    assert info.value.code == code
    assert len(stub.requests) == 1


def test_connection_resets_are_retried(stub: ScriptedServer) -> None:
    stub.script(Reply(drop=True), Reply(drop=True), ok({"registryId": "1"}))
    with client_for(stub, max_attempts=3) as ecr:
        result = ecr.describe_registry()
    assert result.response_metadata is not None
    assert result.response_metadata.retry_attempts == 2
    assert len(stub.requests) == 3


def test_connection_resets_give_up_as_endpoint_connection_error(stub: ScriptedServer) -> None:
    stub.script(Reply(drop=True))
    with client_for(stub, max_attempts=2) as ecr, pytest.raises(EndpointConnectionError):
        ecr.describe_registry()
    assert len(stub.requests) == 2


def test_backoff_is_bounded_and_not_zero(stub: ScriptedServer) -> None:
    """Five attempts: four sleeps of at most 0.2, 0.4, 0.8, 1.6 s (full jitter)."""
    stub.script(error("ThrottlingException"))
    started = time.monotonic()
    with client_for(stub, max_attempts=5) as ecr, pytest.raises(ThrottlingError):
        ecr.describe_registry()
    elapsed = time.monotonic() - started
    gaps = stub.gaps()
    assert len(gaps) == 4
    slack = 0.25  # request round trip and scheduling
    for attempt, gap in enumerate(gaps, start=1):
        assert gap <= 0.1 * 2**attempt + slack, gaps
    assert elapsed < 3.0 + 5 * slack
    # Four uniform sleeps summing to under 20 ms has probability ~1e-7: backoff happened.
    assert sum(gaps) > 0.02, gaps


def test_async_retries_throttling_5xx_and_resets(stub: ScriptedServer) -> None:
    stub.script(
        error("ThrottlingException"),
        Reply(503, b""),
        Reply(drop=True),
        ok({"registryId": "1"}),
        error("RepositoryNotFoundException"),
    )

    async def run() -> m.DescribeRegistryResponse:
        async with async_client_for(stub, max_attempts=4) as ecr:
            result = await ecr.describe_registry()
            with pytest.raises(RepositoryNotFoundError):
                await ecr.describe_registry()
            return result

    result = asyncio.run(run())
    assert result.response_metadata is not None
    assert result.response_metadata.retry_attempts == 3
    assert len(stub.requests) == 5


# --- lenient decoding -----------------------------------------------------------------------------


def test_unknown_fields_and_enum_values_decode(stub: ScriptedServer) -> None:
    stub.script(
        ok(
            {
                "repositories": [
                    {
                        "repositoryArn": "arn:aws:ecr:eu-central-1:123456789012:repository/a",
                        "repositoryName": "a",
                        "createdAt": 1700000000.5,
                        "imageTagMutability": "IMMUTABLE_WITH_SOMETHING_NEW",
                        "encryptionConfiguration": {
                            "encryptionType": "KMS_POST_QUANTUM",
                            "kmsKey": "k",
                            "keyRotation": {"enabled": True},
                        },
                        "imageScanningConfiguration": {"scanOnPush": True, "mode": "X"},
                        "brandNewMember": [1, 2, {"deep": None}],
                    }
                ],
                "nextToken": None,
                "someFutureTopLevelField": {"a": "b"},
            }
        ),
        ok(
            {
                "imageDetails": [
                    {
                        "imageDigest": "sha256:" + "a" * 64,
                        "imageTags": None,
                        "imageScanStatus": {"status": "QUANTUM_SCANNING"},
                        "imageStatus": "FROZEN",
                        "lastRecordedPullTime": 1700000001,
                        "artifactMediaType": "application/x-future",
                    }
                ]
            }
        ),
        ok(
            {
                "images": [],
                "failures": [
                    {
                        "imageId": {"imageTag": "t"},
                        "failureCode": "ImageTeleported",
                        "failureReason": "gone",
                        "retryable": False,
                    }
                ],
            }
        ),
        ok(
            {
                "imageScanStatus": {"status": "FINDINGS_REVISED", "description": "d"},
                "imageScanFindings": {
                    "findingSeverityCounts": {"CATASTROPHIC": 1, "HIGH": 2},
                    "findings": [{"name": "CVE-1", "severity": "CATASTROPHIC", "x": 1}],
                },
            }
        ),
    )
    with client_for(stub) as ecr:
        repositories = ecr.describe_repositories()
        images = ecr.describe_images(repository_name="a")
        batch = ecr.batch_get_image(
            repository_name="a", image_ids=[m.ImageIdentifier(image_tag="t")]
        )
        findings = ecr.describe_image_scan_findings(
            repository_name="a", image_id=m.ImageIdentifier(image_tag="t")
        )
    assert repositories.repositories is not None
    repository = repositories.repositories[0]
    assert repository.repository_name == "a"
    assert repository.created_at == 1700000000.5
    assert repository.image_tag_mutability == "IMMUTABLE_WITH_SOMETHING_NEW"
    assert repository.encryption_configuration == m.EncryptionConfiguration(
        encryption_type="KMS_POST_QUANTUM", kms_key="k"
    )
    assert repositories.next_token is None
    assert images.image_details is not None
    detail = images.image_details[0]
    assert detail.image_tags is None
    assert detail.image_scan_status is not None
    assert detail.image_scan_status.status == "QUANTUM_SCANNING"
    assert batch.failures is not None
    assert batch.failures[0].failure_code == "ImageTeleported"
    assert findings.image_scan_status is not None
    assert findings.image_scan_status.status == "FINDINGS_REVISED"
    assert findings.image_scan_findings is not None
    assert findings.image_scan_findings.finding_severity_counts == {"CATASTROPHIC": 1, "HIGH": 2}
    assert findings.image_scan_findings.findings is not None
    assert findings.image_scan_findings.findings[0].severity == "CATASTROPHIC"


def test_async_lenient_decoding(stub: ScriptedServer) -> None:
    stub.script(
        ok(
            {
                "pullThroughCacheRules": [
                    {"ecrRepositoryPrefix": "p", "upstreamRegistry": "future-hub", "new": 1}
                ],
                "unknown": True,
            }
        )
    )

    async def run() -> m.DescribePullThroughCacheRulesResponse:
        async with async_client_for(stub) as ecr:
            return await ecr.describe_pull_through_cache_rules()

    result = asyncio.run(run())
    assert result.pull_through_cache_rules == [
        m.PullThroughCacheRule(ecr_repository_prefix="p", upstream_registry="future-hub")
    ]


# --- with_options and bring-your-own httpx client ------------------------------------------


def client_port(result: Any) -> int:
    """The local port of the connection a response came over (read while it is open)."""
    stream = result.response_metadata.raw_response.extensions["network_stream"]
    return int(stream.get_extra_info("client_addr")[1])


def test_with_options_changes_timeout_and_attempts_and_shares_connections(
    stub: ScriptedServer,
) -> None:
    stub.script(ok({"registryId": "1"}))
    with client_for(stub, timeout=5.0, max_attempts=3) as ecr:
        original_port = client_port(ecr.describe_registry())
        patient = ecr.with_options(max_attempts=2)
        # The clone's request goes over the original's kept-alive connection ...
        assert client_port(patient.describe_registry()) == original_port
        patient.close()  # ... and a clone does not own, so does not close, the shared pool.
        assert client_port(ecr.describe_registry()) == original_port
        assert {seen.client_port for seen in stub.requests} == {original_port}

        stub.script(ok({"registryId": "1"}, delay=0.4))
        impatient = ecr.with_options(timeout=0.1, max_attempts=1)
        stub.reset()
        with pytest.raises(RequestTimeoutError):
            impatient.describe_registry()
        assert len(stub.requests) == 1  # max_attempts=1: the timeout is not retried
        assert ecr.describe_registry().registry_id == "1"  # the original keeps timeout=5

        stub.script(error("ThrottlingException"))
        stub.reset()
        with pytest.raises(ThrottlingError):
            ecr.with_options(max_attempts=2).describe_registry()
        assert len(stub.requests) == 2
        stub.reset()
        with pytest.raises(ThrottlingError):
            ecr.describe_registry()
        assert len(stub.requests) == 3


def test_with_options_region_and_endpoint(stub: ScriptedServer) -> None:
    with scripted_server() as other:
        stub.script(ok())
        other.script(ok())
        with client_for(stub) as ecr:
            moved = ecr.with_options(endpoint_url=other.url + "/", region="ap-south-1")
            assert (moved.region, moved.endpoint_url) == ("ap-south-1", other.url)
            assert (ecr.region, ecr.endpoint_url) == (REGION, stub.url)
            moved.describe_registry()
            ecr.describe_registry()
        assert other.requests[0].verify().region == "ap-south-1"
        assert stub.requests[0].verify().region == REGION


def test_a_custom_http_client_is_used_and_not_closed(stub: ScriptedServer) -> None:
    stub.script(ok())
    sent: list[str] = []

    def count(request: httpx.Request) -> None:
        sent.append(request.headers.get("X-Amz-Target", "").removeprefix(TARGET_PREFIX))

    http = httpx.Client(event_hooks={"request": [count]})
    ecr = client_for(stub, http_client=http)
    ecr.describe_registry()
    ecr.with_options(max_attempts=1).get_registry_policy()
    ecr.close()
    assert not http.is_closed
    assert sent == ["DescribeRegistry", "GetRegistryPolicy"]
    assert stub.operations() == sent
    sent.clear()
    assert http.get(stub.url + "/healthz").status_code == 200  # still usable
    http.close()


def test_a_custom_http_clients_default_headers_are_sent(stub: ScriptedServer) -> None:
    stub.script(ok())
    with httpx.Client(headers={"User-Agent": "byo/1.0", "X-Tenant": "blue"}) as http:
        client_for(stub, http_client=http).describe_registry()
    seen = stub.requests[0]
    assert (seen.headers.get("user-agent"), seen.headers.get("x-tenant")) == ("byo/1.0", "blue")
    seen.verify()  # unsigned extra headers leave the signature valid


def test_a_custom_async_http_client_is_used_and_not_closed(stub: ScriptedServer) -> None:
    stub.script(ok())
    sent: list[str] = []

    async def count(request: httpx.Request) -> None:
        sent.append(request.headers["X-Amz-Target"].removeprefix(TARGET_PREFIX))

    async def run() -> bool:
        http = httpx.AsyncClient(event_hooks={"request": [count]})
        async with async_client_for(stub, http_client=http) as ecr:
            await ecr.describe_registry()
            await ecr.with_options(timeout=5.0).describe_registry()
        closed = http.is_closed
        await http.aclose()
        return closed

    assert asyncio.run(run()) is False
    assert sent == ["DescribeRegistry", "DescribeRegistry"]


def test_max_attempts_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        client_for("http://127.0.0.1:1", max_attempts=0)
