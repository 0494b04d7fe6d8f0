"""``ECR`` and ``AsyncECR``: the typed clients. The 41 operation methods are generated
(``_operations.py``); this module holds what they call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Self, TypeVar

import httpx
import msgspec

from openecr import models as m
from openecr.errors import ECRError, OpenECRError, WaiterError
from openecr.sdk._config import resolve_config
from openecr.sdk._core import ClientCore, ClientOptions, StructT
from openecr.sdk._operations import AsyncOperations, SyncOperations

__all__ = ["ECR", "AsyncECR"]

ItemT = TypeVar("ItemT")

# Scan statuses after which waiting longer cannot lead to COMPLETE.
_SCAN_DEAD_ENDS = frozenset(
    {
        "FAILED",
        "UNSUPPORTED_IMAGE",
        "FINDINGS_UNAVAILABLE",
        "SCAN_ELIGIBILITY_EXPIRED",
        "LIMIT_EXCEEDED",
        "IMAGE_ARCHIVED",
        "IMAGE_SIZE_EXCEEDED",
    }
)
# ACTIVE is enhanced (continuous) scanning with findings available: as good as COMPLETE.
_SCAN_DONE = frozenset({"COMPLETE", "ACTIVE"})
_PREVIEW_DEAD_ENDS = frozenset({"FAILED", "EXPIRED"})


def _split(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)] or [[]]


def _merge(responses: list[StructT], list_fields: Sequence[str]) -> StructT:
    """One response holding the concatenated lists of several batch responses."""
    merged = responses[-1]
    if len(responses) == 1:
        return merged
    for name in list_fields:
        parts = [getattr(r, name) for r in responses]
        if any(part is not None for part in parts):  # absent everywhere stays absent
            setattr(merged, name, [item for part in parts for item in part or []])
    return merged


def _scan_status(response: m.DescribeImageScanFindingsResponse) -> str | None:
    return response.image_scan_status.status if response.image_scan_status else None


def _preview_status(response: m.GetLifecyclePolicyPreviewResponse) -> str | None:
    return response.status


class _Common:
    _core: ClientCore

    @property
    def region(self) -> str:
        return self._core.config.region

    @property
    def endpoint_url(self) -> str:
        return self._core.config.endpoint_url

    @staticmethod
    def _core_from(
        region: str | None,
        endpoint_url: str | None,
        access_key_id: str | None,
        secret_access_key: str | None,
        session_token: str | None,
        profile: str | None,
        timeout: float,
        max_attempts: int,
    ) -> ClientCore:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        config = resolve_config(
            region=region,
            endpoint_url=endpoint_url,
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            session_token=session_token,
            profile=profile,
        )
        return ClientCore(config, ClientOptions(timeout=timeout, max_attempts=max_attempts))


class ECR(_Common, SyncOperations):
    """Synchronous ECR client. Works against AWS ECR and against an openecr server.

    Every argument is optional and resolved the way the AWS SDKs resolve it (see
    ``openecr.sdk._config``). ``http_client`` lets you bring a configured ``httpx.Client``
    (proxies, TLS, transports); the client does not close a client it did not create.
    """

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 3,
        http_client: httpx.Client | None = None,
    ) -> None:
        self._core = self._core_from(
            region,
            endpoint_url,
            access_key_id,
            secret_access_key,
            session_token,
            profile,
            timeout,
            max_attempts,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client()

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_attempts: int | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> ECR:
        """A client sharing this one's connections with some settings changed
        (``timeout``, ``max_attempts``, ``region``, ``endpoint_url``)."""
        options = {
            "timeout": timeout,
            "max_attempts": max_attempts,
            "region": region,
            "endpoint_url": endpoint_url,
        }
        clone = object.__new__(ECR)
        clone._core = self._core.with_options(
            **{key: value for key, value in options.items() if value is not None}
        )
        clone._http = self._http
        clone._owns_http = False
        return clone

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _invoke(
        self, operation: str, request: msgspec.Struct, response_type: type[StructT]
    ) -> StructT:
        core = self._core
        attempt = 0
        while True:
            attempt += 1
            error: OpenECRError
            try:
                response = self._http.send(core.build_request(self._http, operation, request))
                return core.decode(response, response_type, attempt - 1)
            except httpx.HTTPError as exc:
                error = core.transport_error(exc)
            except ECRError as exc:
                error = exc
            if not core.should_retry(error, attempt):
                raise error
            time.sleep(core.backoff_seconds(attempt))

    def _invoke_batched(
        self,
        operation: str,
        request: msgspec.Struct,
        response_type: type[StructT],
        batch_field: str,
        batch_size: int,
        list_fields: Sequence[str],
    ) -> StructT:
        items = getattr(request, batch_field) or []
        responses = [
            self._invoke(
                operation, msgspec.structs.replace(request, **{batch_field: chunk}), response_type
            )
            for chunk in _split(items, batch_size)
        ]
        return _merge(responses, list_fields)

    def _pages(
        self, operation: str, request: msgspec.Struct, response_type: type[StructT]
    ) -> Iterator[StructT]:
        token = getattr(request, "next_token", None)
        seen: set[str] = set()
        while True:
            page = self._invoke(
                operation, msgspec.structs.replace(request, next_token=token), response_type
            )
            yield page
            token = getattr(page, "next_token", None)
            if not token:
                return
            if token in seen:
                raise ECRError(
                    f"{operation} returned the same nextToken twice", code="PaginationError"
                )
            seen.add(token)

    def _items(
        self,
        operation: str,
        request: msgspec.Struct,
        response_type: type[StructT],
        items_of: Callable[[StructT], Sequence[ItemT] | None],
    ) -> Iterator[ItemT]:
        for page in self._pages(operation, request, response_type):
            yield from items_of(page) or []

    def _wait(
        self,
        poll: Callable[[], StructT],
        status_of: Callable[[StructT], str | None],
        done: frozenset[str],
        dead_ends: frozenset[str],
        delay: float,
        max_attempts: int,
        what: str,
    ) -> StructT:
        last: StructT | None = None
        for attempt in range(1, max_attempts + 1):
            try:
                last = poll()
            except ECRError as exc:
                raise WaiterError(f"Waiter {what} failed: {exc}", last_response=exc) from exc
            status = status_of(last)
            if status in done:
                return last
            if status in dead_ends:
                raise WaiterError(f"Waiter {what} failed: status {status}", last_response=last)
            if attempt < max_attempts:
                time.sleep(delay)
        raise WaiterError(
            f"Waiter {what} gave up after {max_attempts} attempts", last_response=last
        )

    def wait_for_image_scan_complete(
        self,
        *,
        repository_name: str,
        image_id: m.ImageIdentifier,
        registry_id: str | None = None,
        delay: float = 5.0,
        max_attempts: int = 60,
    ) -> m.DescribeImageScanFindingsResponse:
        """Polls DescribeImageScanFindings until the scan is COMPLETE (botocore's
        ``image_scan_complete``); a status that can never become COMPLETE fails at once."""
        return self._wait(
            lambda: self.describe_image_scan_findings(
                repository_name=repository_name, image_id=image_id, registry_id=registry_id
            ),
            _scan_status,
            _SCAN_DONE,
            _SCAN_DEAD_ENDS,
            delay,
            max_attempts,
            "ImageScanComplete",
        )

    def wait_for_lifecycle_policy_preview_complete(
        self,
        *,
        repository_name: str,
        registry_id: str | None = None,
        delay: float = 5.0,
        max_attempts: int = 20,
    ) -> m.GetLifecyclePolicyPreviewResponse:
        """Polls GetLifecyclePolicyPreview until COMPLETE (botocore's
        ``lifecycle_policy_preview_complete``); FAILED or EXPIRED fail at once."""
        return self._wait(
            lambda: self.get_lifecycle_policy_preview(
                repository_name=repository_name, registry_id=registry_id
            ),
            _preview_status,
            frozenset({"COMPLETE"}),
            _PREVIEW_DEAD_ENDS,
            delay,
            max_attempts,
            "LifecyclePolicyPreviewComplete",
        )


class AsyncECR(_Common, AsyncOperations):
    """Asynchronous ECR client, the twin of ``ECR`` (``await`` every operation)."""

    def __init__(
        self,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        profile: str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 3,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self._core = self._core_from(
            region,
            endpoint_url,
            access_key_id,
            secret_access_key,
            session_token,
            profile,
            timeout,
            max_attempts,
        )
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient()

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_attempts: int | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
    ) -> AsyncECR:
        """A client sharing this one's connections with some settings changed."""
        options = {
            "timeout": timeout,
            "max_attempts": max_attempts,
            "region": region,
            "endpoint_url": endpoint_url,
        }
        clone = object.__new__(AsyncECR)
        clone._core = self._core.with_options(
            **{key: value for key, value in options.items() if value is not None}
        )
        clone._http = self._http
        clone._owns_http = False
        return clone

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _invoke(
        self, operation: str, request: msgspec.Struct, response_type: type[StructT]
    ) -> StructT:
        core = self._core
        attempt = 0
        while True:
            attempt += 1
            error: OpenECRError
            try:
                response = await self._http.send(core.build_request(self._http, operation, request))
                return core.decode(response, response_type, attempt - 1)
            except httpx.HTTPError as exc:
                error = core.transport_error(exc)
            except ECRError as exc:
                error = exc
            if not core.should_retry(error, attempt):
                raise error
            await asyncio.sleep(core.backoff_seconds(attempt))

    async def _invoke_batched(
        self,
        operation: str,
        request: msgspec.Struct,
        response_type: type[StructT],
        batch_field: str,
        batch_size: int,
        list_fields: Sequence[str],
    ) -> StructT:
        items = getattr(request, batch_field) or []
        responses = [
            await self._invoke(
                operation, msgspec.structs.replace(request, **{batch_field: chunk}), response_type
            )
            for chunk in _split(items, batch_size)
        ]
        return _merge(responses, list_fields)

    async def _pages(
        self, operation: str, request: msgspec.Struct, response_type: type[StructT]
    ) -> AsyncIterator[StructT]:
        token = getattr(request, "next_token", None)
        seen: set[str] = set()
        while True:
            page = await self._invoke(
                operation, msgspec.structs.replace(request, next_token=token), response_type
            )
            yield page
            token = getattr(page, "next_token", None)
            if not token:
                return
            if token in seen:
                raise ECRError(
                    f"{operation} returned the same nextToken twice", code="PaginationError"
                )
            seen.add(token)

    async def _items(
        self,
        operation: str,
        request: msgspec.Struct,
        response_type: type[StructT],
        items_of: Callable[[StructT], Sequence[ItemT] | None],
    ) -> AsyncIterator[ItemT]:
        async for page in self._pages(operation, request, response_type):
            for item in items_of(page) or []:
                yield item

    async def _wait(
        self,
        poll: Callable[[], Awaitable[StructT]],
        status_of: Callable[[StructT], str | None],
        done: frozenset[str],
        dead_ends: frozenset[str],
        delay: float,
        max_attempts: int,
        what: str,
    ) -> StructT:
        last: StructT | None = None
        for attempt in range(1, max_attempts + 1):
            try:
                last = await poll()
            except ECRError as exc:
                raise WaiterError(f"Waiter {what} failed: {exc}", last_response=exc) from exc
            status = status_of(last)
            if status in done:
                return last
            if status in dead_ends:
                raise WaiterError(f"Waiter {what} failed: status {status}", last_response=last)
            if attempt < max_attempts:
                await asyncio.sleep(delay)
        raise WaiterError(
            f"Waiter {what} gave up after {max_attempts} attempts", last_response=last
        )

    async def wait_for_image_scan_complete(
        self,
        *,
        repository_name: str,
        image_id: m.ImageIdentifier,
        registry_id: str | None = None,
        delay: float = 5.0,
        max_attempts: int = 60,
    ) -> m.DescribeImageScanFindingsResponse:
        """Async twin of ``ECR.wait_for_image_scan_complete``."""
        return await self._wait(
            lambda: self.describe_image_scan_findings(
                repository_name=repository_name, image_id=image_id, registry_id=registry_id
            ),
            _scan_status,
            _SCAN_DONE,
            _SCAN_DEAD_ENDS,
            delay,
            max_attempts,
            "ImageScanComplete",
        )

    async def wait_for_lifecycle_policy_preview_complete(
        self,
        *,
        repository_name: str,
        registry_id: str | None = None,
        delay: float = 5.0,
        max_attempts: int = 20,
    ) -> m.GetLifecyclePolicyPreviewResponse:
        """Async twin of ``ECR.wait_for_lifecycle_policy_preview_complete``."""
        return await self._wait(
            lambda: self.get_lifecycle_policy_preview(
                repository_name=repository_name, registry_id=registry_id
            ),
            _preview_status,
            frozenset({"COMPLETE"}),
            _PREVIEW_DEAD_ENDS,
            delay,
            max_attempts,
            "LifecyclePolicyPreviewComplete",
        )
