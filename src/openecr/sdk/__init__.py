"""The openecr SDK: typed sync and async clients for the 41 ECR operations."""

from openecr.sdk._client import ECR, AsyncECR
from openecr.sdk._config import ConfigurationError

__all__ = ["ECR", "AsyncECR", "ConfigurationError"]
