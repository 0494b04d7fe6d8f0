"""Small file-system helpers shared by the image layouts, ``docker_login`` and the
credential helper: digests, blob paths and atomic, private writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path

__all__ = ["DIGEST_RE", "blob_name", "is_digest", "sha256_digest", "write_atomically"]

# Only digests of this form ever become file names, so no path can escape a layout.
DIGEST_RE = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")


def is_digest(text: str) -> bool:
    return DIGEST_RE.fullmatch(text) is not None


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_name(digest: str) -> str:
    """``blobs/<algorithm>/<hex>``: where an OCI image layout keeps the blob."""
    if not is_digest(digest):
        raise ValueError(f"not a supported digest: {digest!r}")
    algorithm, encoded = digest.split(":", 1)
    return f"blobs/{algorithm}/{encoded}"


def write_atomically(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replaces ``path`` with ``data``: a temporary file in the same directory (created with
    ``mode``, so a secret is never readable by others, not even briefly), flushed to disk,
    then renamed over the target. A symlink at ``path`` is followed, not replaced."""
    target = Path(os.path.realpath(path))
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode != 0o600:  # mkstemp made it 0600
            os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
