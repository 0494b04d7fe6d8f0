"""The openecr SDK: typed sync and async clients for the 41 ECR operations."""

from openecr.sdk._client import ECR, AsyncECR
from openecr.sdk._config import ConfigurationError
from openecr.sdk.docker_auth import adocker_login, docker_login
from openecr.sdk.images import (
    BlobDigestMismatchError,
    ImageSource,
    ImageSourceError,
    ProgressCallback,
    ProgressEvent,
    ProgressState,
    PullResult,
    PushResult,
    apull_image,
    apush_image,
    open_image_source,
    pull_image,
    push_image,
)

__all__ = [
    "ECR",
    "AsyncECR",
    "BlobDigestMismatchError",
    "ConfigurationError",
    "ImageSource",
    "ImageSourceError",
    "ProgressCallback",
    "ProgressEvent",
    "ProgressState",
    "PullResult",
    "PushResult",
    "adocker_login",
    "apull_image",
    "apush_image",
    "docker_login",
    "open_image_source",
    "pull_image",
    "push_image",
]
