"""openecr: an Amazon ECR-compatible registry server and a typed Python SDK for the ECR API."""

from openecr.errors import ECRError

__all__ = ["ECRError", "__version__"]

__version__ = "0.1.0"
