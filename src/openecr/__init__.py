"""openecr: an Amazon ECR-compatible registry server and a typed Python SDK for the ECR API.

The SDK::

    from openecr import ECR

    ecr = ECR(region="us-east-1")  # credentials, region, endpoint as the AWS SDKs find them
    for repository in ecr.iter_describe_repositories():
        print(repository.repository_uri)
"""

from openecr import errors, models
from openecr.errors import (
    ECRError,
    EndpointConnectionError,
    OpenECRError,
    RequestTimeoutError,
    TransportError,
    WaiterError,
)
from openecr.sdk import (
    ECR,
    AsyncECR,
    BlobDigestMismatchError,
    ConfigurationError,
    ImageSource,
    ImageSourceError,
    ProgressCallback,
    ProgressEvent,
    ProgressState,
    PullResult,
    PushResult,
    adocker_login,
    apull_image,
    apush_image,
    docker_login,
    open_image_source,
    pull_image,
    push_image,
)
from openecr.version import __version__

__all__ = [
    "ECR",
    "AsyncECR",
    "BlobDigestMismatchError",
    "ConfigurationError",
    "ECRError",
    "EndpointConnectionError",
    "ImageSource",
    "ImageSourceError",
    "OpenECRError",
    "ProgressCallback",
    "ProgressEvent",
    "ProgressState",
    "PullResult",
    "PushResult",
    "RequestTimeoutError",
    "TransportError",
    "WaiterError",
    "__version__",
    "adocker_login",
    "apull_image",
    "apush_image",
    "docker_login",
    "errors",
    "models",
    "open_image_source",
    "pull_image",
    "push_image",
]
