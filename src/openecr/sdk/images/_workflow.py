"""One implementation of push and pull for the sync and the async client.

A workflow is a generator that never does I/O itself: it yields an *effect* (call an ECR
operation, run blocking file work, sleep, report progress, stream a download, run several
workflows at once) and is sent the effect's result, or has the effect's exception thrown
into it. ``SyncDriver`` performs effects with ``ECR``, ``httpx.Client`` and threads;
``AsyncDriver`` with ``AsyncECR``, ``httpx.AsyncClient``, worker threads for blocking file
work and tasks. Every decision (what to upload, part sizes, retries, resuming, verifying)
lives in the workflows, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import httpx

from openecr.sdk.images.progress import ProgressCallback, ProgressEvent

if TYPE_CHECKING:
    from openecr.sdk._client import ECR, AsyncECR

__all__ = [
    "AsyncDriver",
    "Blocking",
    "Call",
    "CloseStream",
    "Gather",
    "OpenStream",
    "Progress",
    "ReadStream",
    "Sleep",
    "SyncDriver",
    "Workflow",
]

T = TypeVar("T")

DOWNLOAD_CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Call:
    """Calls the client method ``operation`` (``"initiate_layer_upload"``) with ``kwargs``."""

    operation: str
    kwargs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Blocking:
    """Runs blocking local work (file I/O, hashing); a worker thread under asyncio."""

    function: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class Progress:
    """Reports an event to the progress callback, if any (serialized)."""

    event: ProgressEvent


@dataclass(frozen=True, slots=True)
class OpenStream:
    """GETs ``url`` as a stream; the result is a handle for ``ReadStream``/``CloseStream``.
    A non-2xx answer raises ``httpx.HTTPStatusError``."""

    url: str


@dataclass(frozen=True, slots=True)
class ReadStream:
    """The next chunk of a stream, ``b""`` at its end."""

    stream: Any


@dataclass(frozen=True, slots=True)
class CloseStream:
    stream: Any


@dataclass(frozen=True, slots=True)
class Gather:
    """Runs workflows concurrently (at most the driver's concurrency at once); the result is
    the list of their results. The first failure aborts the others and is raised."""

    workflows: Sequence[Workflow[Any]] = field(default_factory=list)


Effect: TypeAlias = (
    Call | Blocking | Sleep | Progress | OpenStream | ReadStream | CloseStream | Gather
)
Workflow: TypeAlias = Generator[Effect, Any, T]


class Aborted(Exception):
    """Thrown into a workflow whose sibling in a ``Gather`` failed."""


def _timeout(client: ECR | AsyncECR) -> httpx.Timeout:
    return httpx.Timeout(client._core.options.timeout)


@dataclass(slots=True)
class _SyncStream:
    response: httpx.Response
    chunks: Iterator[bytes]


@dataclass(slots=True)
class _AsyncStream:
    response: httpx.Response
    chunks: AsyncIterator[bytes]


class _AbortFlag:
    """Set when a sibling failed; a nested gather also sees its parent's flag."""

    def __init__(self, parent: _AbortFlag | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set() or (self._parent is not None and self._parent.is_set())


class SyncDriver:
    """Runs workflows with the sync client; ``Gather`` uses a thread per workflow (bounded)."""

    def __init__(self, client: ECR, *, concurrency: int, progress: ProgressCallback | None) -> None:
        self._client = client
        self._http: httpx.Client = client._http
        self._concurrency = concurrency
        self._progress = progress
        self._progress_lock = threading.Lock()

    def run(self, workflow: Workflow[T], abort: _AbortFlag | None = None) -> T:
        send: Any = None
        error: BaseException | None = None
        try:
            with ExitStack() as streams:
                while True:
                    if error is None and abort is not None and abort.is_set():
                        error = Aborted()
                    try:
                        effect = workflow.send(send) if error is None else workflow.throw(error)
                    except StopIteration as stop:
                        result: T = stop.value
                        return result
                    send, error = None, None
                    try:
                        send = self._perform(effect, streams, abort)
                    except Exception as exc:
                        error = exc
        finally:
            workflow.close()

    def _perform(self, effect: Effect, streams: ExitStack, abort: _AbortFlag | None) -> Any:
        match effect:
            case Call(operation, kwargs):
                return getattr(self._client, operation)(**kwargs)
            case Blocking(function, args):
                return function(*args)
            case Sleep(seconds):
                time.sleep(seconds)
                return None
            case Progress(event):
                if self._progress is not None:
                    with self._progress_lock:
                        self._progress(event)
                return None
            case OpenStream(url):
                request = self._http.build_request("GET", url, timeout=_timeout(self._client))
                response = self._http.send(request, stream=True)
                streams.callback(response.close)
                if response.status_code // 100 != 2:
                    response.close()
                    response.raise_for_status()
                return _SyncStream(response, response.iter_bytes(DOWNLOAD_CHUNK))
            case ReadStream(stream):
                return next(stream.chunks, b"")
            case CloseStream(stream):
                stream.response.close()
                return None
            case Gather(workflows):
                return self._gather(workflows, abort)
        raise TypeError(f"unknown effect {effect!r}")

    def _gather(self, workflows: Sequence[Workflow[Any]], parent: _AbortFlag | None) -> list[Any]:
        if self._concurrency <= 1 or len(workflows) <= 1:
            return [self.run(workflow, parent) for workflow in workflows]
        abort = _AbortFlag(parent)
        workers = min(self._concurrency, len(workflows))
        futures: list[Future[Any]] = []
        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="openecr-images") as pool:
                futures = [pool.submit(self.run, workflow, abort) for workflow in workflows]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                if any(future.exception() is not None for future in done):
                    abort.set()
        finally:
            abort.set()  # also on KeyboardInterrupt: the workers stop at their next effect
        return _results(futures)


def _results(futures: Sequence[Future[Any] | asyncio.Task[Any]]) -> list[Any]:
    """The results in order, or the first real failure (not a sibling's ``Aborted``)."""
    failures = [
        exc
        for future in futures
        if not future.cancelled() and (exc := future.exception()) is not None
    ]
    if failures:
        raise next((exc for exc in failures if not isinstance(exc, Aborted)), failures[0])
    return [future.result() for future in futures]


class AsyncDriver:
    """Runs workflows with the async client; ``Gather`` uses tasks (bounded)."""

    def __init__(
        self, client: AsyncECR, *, concurrency: int, progress: ProgressCallback | None
    ) -> None:
        self._client = client
        self._http: httpx.AsyncClient = client._http
        self._concurrency = concurrency
        self._progress = progress

    async def run(self, workflow: Workflow[T]) -> T:
        send: Any = None
        error: BaseException | None = None
        try:
            async with AsyncExitStack() as streams:
                while True:
                    try:
                        effect = workflow.send(send) if error is None else workflow.throw(error)
                    except StopIteration as stop:
                        result: T = stop.value
                        return result
                    send, error = None, None
                    try:
                        send = await self._perform(effect, streams)
                    except Exception as exc:
                        error = exc
        finally:
            workflow.close()

    async def _perform(self, effect: Effect, streams: AsyncExitStack) -> Any:
        match effect:
            case Call(operation, kwargs):
                return await getattr(self._client, operation)(**kwargs)
            case Blocking(function, args):
                return await asyncio.to_thread(function, *args)
            case Sleep(seconds):
                await asyncio.sleep(seconds)
                return None
            case Progress(event):
                if self._progress is not None:
                    self._progress(event)
                return None
            case OpenStream(url):
                request = self._http.build_request("GET", url, timeout=_timeout(self._client))
                response = await self._http.send(request, stream=True)
                streams.push_async_callback(response.aclose)
                if response.status_code // 100 != 2:
                    await response.aclose()
                    response.raise_for_status()
                return _AsyncStream(response, response.aiter_bytes(DOWNLOAD_CHUNK))
            case ReadStream(stream):
                return await anext(stream.chunks, b"")
            case CloseStream(stream):
                await stream.response.aclose()
                return None
            case Gather(workflows):
                return await self._gather(workflows)
        raise TypeError(f"unknown effect {effect!r}")

    async def _gather(self, workflows: Sequence[Workflow[Any]]) -> list[Any]:
        semaphore = asyncio.Semaphore(max(self._concurrency, 1))

        async def bounded(workflow: Workflow[Any]) -> Any:
            async with semaphore:
                return await self.run(workflow)

        tasks = [asyncio.create_task(bounded(workflow)) for workflow in workflows]
        if not tasks:
            return []
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()  # no-op for finished ones
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
        return _results(tasks)
