"""Progress events of ``push_image`` and ``pull_image``: one per blob state change."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["ProgressCallback", "ProgressEvent", "ProgressState"]


class ProgressState(StrEnum):
    """Where one blob (layer or config) is in a push or a pull."""

    SKIPPED = "skipped"
    """Already in the repository (push) or in the destination layout (pull)."""
    UPLOADING = "uploading"
    """Parts are being sent; ``bytes_done`` is the offset the registry confirmed."""
    DOWNLOADING = "downloading"
    """The blob is streaming to disk; ``bytes_done`` counts the bytes written."""
    DONE = "done"
    """Uploaded and completed (push), or downloaded and verified (pull)."""


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of one blob. ``bytes_done`` never exceeds ``total``; an upload that resumes
    after an interruption reports the offset it resumes from, which may be lower than the
    ``bytes_done`` of an earlier event."""

    digest: str
    media_type: str
    bytes_done: int
    total: int
    state: ProgressState


ProgressCallback = Callable[[ProgressEvent], None]
"""Called with each ``ProgressEvent``. ``push_image``/``pull_image`` call it from their
worker threads (never two calls at once); the async twins call it on the event loop. An
exception it raises aborts the push or pull."""
