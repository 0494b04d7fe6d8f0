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
from openecr.sdk import ECR, AsyncECR, ConfigurationError

__all__ = [
    "ECR",
    "AsyncECR",
    "ConfigurationError",
    "ECRError",
    "EndpointConnectionError",
    "OpenECRError",
    "RequestTimeoutError",
    "TransportError",
    "WaiterError",
    "__version__",
    "errors",
    "models",
]

__version__ = "0.1.0"
