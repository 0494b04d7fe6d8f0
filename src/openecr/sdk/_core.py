"""The I/O-free part of the clients: building signed requests, decoding answers, retrying.

``ECR`` and ``AsyncECR`` differ only in how they send a request and how they sleep; every
decision (what to sign, what a response means, whether to retry and when) lives here.
"""

from __future__ import annotations

import platform
import random
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
import msgspec

from openecr.auth.sigv4 import sign_request
from openecr.errors import (
    ECRError,
    EndpointConnectionError,
    OpenECRError,
    RequestTimeoutError,
    TransportError,
    error_class_for_code,
)
from openecr.models import TARGET_PREFIX, ResponseMetadata
from openecr.sdk._config import ResolvedConfig
from openecr.version import __version__

__all__ = ["ClientCore", "ClientOptions", "StructT"]

StructT = TypeVar("StructT", bound=msgspec.Struct)

CONTENT_TYPE = "application/x-amz-json-1.1"
SIGNING_SERVICE = "ecr"
# Error codes AWS SDKs treat as throttling, hence retryable.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = f"openecr/{__version__} python/{platform.python_version()}"
DEFAULT_HTTPX_AGENT = f"python-httpx/{httpx.__version__}"
_BACKOFF_BASE_SECONDS = 0.1
_BACKOFF_CAP_SECONDS = 20.0


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Per-client settings that ``with_options`` can override."""

    timeout: float = 60.0
    max_attempts: int = 3


class ClientCore:
    def __init__(self, config: ResolvedConfig, options: ClientOptions) -> None:
        self.config = config
        self.options = options
        self._encoder = msgspec.json.Encoder()

    def with_options(self, **changes: Any) -> ClientCore:
        config_changes = {k: changes.pop(k) for k in ("region", "endpoint_url") if k in changes}
        config = replace(self.config, **config_changes) if config_changes else self.config
        if "endpoint_url" in config_changes:
            config = replace(config, endpoint_url=config.endpoint_url.rstrip("/"))
        return ClientCore(config, replace(self.options, **changes))

    def build_request(
        self, http: httpx.Client | httpx.AsyncClient, operation: str, request: msgspec.Struct
    ) -> httpx.Request:
        """The signed HTTP request for one attempt (signed anew for every retry).

        Built by ``http`` so that a client the user brought keeps its own default headers,
        cookies and extensions; only the headers below are signed.
        """
        body = self._encoder.encode(request)
        url = self.config.endpoint_url + "/"
        headers = sign_request(
            method="POST",
            url=url,
            headers={
                "Content-Type": CONTENT_TYPE,
                "X-Amz-Target": f"{TARGET_PREFIX}.{operation}",
                "User-Agent": USER_AGENT,
            },
            body=body,
            credentials=self.config.credentials,
            region=self.config.region,
            service=SIGNING_SERVICE,
            now=datetime.now(UTC),
        )
        if "User-Agent" in http.headers and http.headers["User-Agent"] != DEFAULT_HTTPX_AGENT:
            headers.pop("User-Agent", None)  # the user's own agent string wins
        return http.build_request(
            "POST", url, headers=headers, content=body, timeout=self.options.timeout
        )

    def decode(
        self, response: httpx.Response, response_type: type[StructT], retries: int
    ) -> StructT:
        """The response struct of a 200 answer, or the ECR error the answer carries."""
        request_id = response.headers.get("x-amzn-RequestId")
        if response.status_code != 200:
            raise self.error_from(response, request_id)
        try:
            result = msgspec.json.decode(response.content or b"{}", type=response_type)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ECRError(
                f"Could not decode the {response_type.__name__}: {exc}",
                request_id=request_id,
                status=response.status_code,
                code="ResponseDecodeError",
            ) from None
        result.response_metadata = ResponseMetadata(  # type: ignore[attr-defined]
            request_id=request_id,
            http_status_code=response.status_code,
            headers=dict(response.headers),
            retry_attempts=retries,
            raw_response=response,
        )
        return result

    @staticmethod
    def error_from(response: httpx.Response, request_id: str | None) -> ECRError:
        body: dict[str, Any] = {}
        text = ""
        try:
            decoded = msgspec.json.decode(response.content) if response.content else {}
            if isinstance(decoded, dict):
                body = decoded
        except msgspec.DecodeError:
            text = response.text  # not JSON: the body itself is the message, as in botocore
        if response.status_code >= 500 and (not text.strip() or text.lstrip().startswith("<")):
            text = response.reason_phrase  # a proxy's HTML or empty 5xx page says nothing
        elif not response.content and response.status_code >= 500:
            text = response.reason_phrase
        raw_code = str(body.get("__type") or response.headers.get("x-amzn-ErrorType") or "")
        # "com.amazonaws.ecr#RepositoryNotFoundException" and "Code:detail" forms occur.
        code = raw_code.rsplit("#", 1)[-1].split(":", 1)[0] or str(response.status_code)
        message = str(body.get("message") or body.get("Message") or text)
        extra = {k: v for k, v in body.items() if k not in ("__type", "message", "Message")}
        cls = error_class_for_code(code)
        return cls(
            message,
            extra=extra,
            request_id=request_id,
            status=response.status_code,
            code=code if cls is ECRError else None,
        )

    @staticmethod
    def transport_error(exc: httpx.HTTPError) -> TransportError:
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimeoutError(f"The request timed out: {exc}")
        return EndpointConnectionError(f"Could not connect to the endpoint: {exc}")

    def should_retry(self, error: OpenECRError, attempt: int) -> bool:
        """Whether to try again after ``attempt`` (1-based) failed with ``error``."""
        if attempt >= self.options.max_attempts:
            return False
        if isinstance(error, TransportError):
            return True
        if isinstance(error, ECRError):
            return error.code in THROTTLING_CODES or error.http_status in RETRYABLE_STATUSES
        return False

    @staticmethod
    def backoff_seconds(attempt: int) -> float:
        """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        return random.uniform(0, min(_BACKOFF_CAP_SECONDS, _BACKOFF_BASE_SECONDS * 2**attempt))
