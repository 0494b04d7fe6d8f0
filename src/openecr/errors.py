"""The ECR error taxonomy, shared by the server and the SDK.

Every ECR exception name has exactly one class here. The server raises them from its
services and renders them as ``{"__type": code, "message": ...}``; the SDK raises the same
classes when a response carries that ``__type``. ``code`` is the wire name, ``http_status``
the status AWS uses for it (all modelled client errors are 400, ``ServerException`` is 500).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ECR_ERRORS_BY_CODE",
    "AccessDeniedError",
    "ECRError",
    "EmptyUploadError",
    "EndpointConnectionError",
    "ExpiredTokenError",
    "ImageAlreadyExistsError",
    "ImageDigestDoesNotMatchError",
    "ImageNotFoundError",
    "ImageTagAlreadyExistsError",
    "IncompleteSignatureError",
    "InvalidLayerError",
    "InvalidLayerPartError",
    "InvalidParameterError",
    "InvalidSignatureError",
    "InvalidTagParameterError",
    "KmsError",
    "LayerAlreadyExistsError",
    "LayerInaccessibleError",
    "LayerPartTooSmallError",
    "LayersNotFoundError",
    "LifecyclePolicyNotFoundError",
    "LifecyclePolicyPreviewInProgressError",
    "LifecyclePolicyPreviewNotFoundError",
    "LimitExceededError",
    "MissingAuthenticationTokenError",
    "OpenECRError",
    "PullThroughCacheRuleAlreadyExistsError",
    "PullThroughCacheRuleNotFoundError",
    "ReferencedImagesNotFoundError",
    "RegistryPolicyNotFoundError",
    "RepositoryAlreadyExistsError",
    "RepositoryNotEmptyError",
    "RepositoryNotFoundError",
    "RepositoryPolicyNotFoundError",
    "RequestTimeoutError",
    "ScanNotFoundError",
    "SecretNotFoundError",
    "SerializationError",
    "ServerError",
    "ThrottlingError",
    "TooManyTagsError",
    "TransportError",
    "UnableToAccessSecretError",
    "UnableToDecryptSecretValueError",
    "UnableToGetUpstreamImageError",
    "UnableToGetUpstreamLayerError",
    "UnknownOperationError",
    "UnrecognizedClientError",
    "UnsupportedImageTypeError",
    "UnsupportedUpstreamRegistryError",
    "UploadNotFoundError",
    "ValidationError",
    "WaiterError",
    "error_class_for_code",
]


class OpenECRError(Exception):
    """Base of every error openecr raises: service errors and client-side failures."""


class TransportError(OpenECRError):
    """The request did not get an HTTP answer (the SDK retries these)."""


class EndpointConnectionError(TransportError):
    """Could not connect to the endpoint."""


class RequestTimeoutError(TransportError):
    """The endpoint did not answer in time."""


class WaiterError(OpenECRError):
    """A waiter gave up: a failure state, an error response, or too many attempts."""

    def __init__(self, message: str, *, last_response: object | None = None) -> None:
        super().__init__(message)
        self.last_response = last_response


class ECRError(OpenECRError):
    """Base of every error the ECR API can answer with.

    ``extra`` holds the error's modelled members beyond ``message`` (for example
    ``lastValidByteReceived`` of ``InvalidLayerPartException``), keyed by wire name.
    ``request_id`` is filled in by the SDK from the response's ``x-amzn-RequestId``.
    """

    code: str = "ECRError"
    http_status: int = 400

    def __init__(
        self,
        message: str,
        *,
        extra: dict[str, Any] | None = None,
        request_id: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.extra: dict[str, Any] = dict(extra or {})
        self.request_id = request_id
        # An SDK that meets a code it has no class for keeps the real code and status here.
        if code is not None:
            self.code = code
        if status is not None:
            self.http_status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


# The modelled ECR exceptions (botocore's ECR model) ...
class ServerError(ECRError):
    code = "ServerException"
    http_status = 500


class InvalidParameterError(ECRError):
    code = "InvalidParameterException"


class ValidationError(ECRError):
    code = "ValidationException"


class RepositoryNotFoundError(ECRError):
    code = "RepositoryNotFoundException"


class RepositoryAlreadyExistsError(ECRError):
    code = "RepositoryAlreadyExistsException"


class RepositoryNotEmptyError(ECRError):
    code = "RepositoryNotEmptyException"


class RepositoryPolicyNotFoundError(ECRError):
    code = "RepositoryPolicyNotFoundException"


class RegistryPolicyNotFoundError(ECRError):
    code = "RegistryPolicyNotFoundException"


class LifecyclePolicyNotFoundError(ECRError):
    code = "LifecyclePolicyNotFoundException"


class LifecyclePolicyPreviewInProgressError(ECRError):
    code = "LifecyclePolicyPreviewInProgressException"


class LifecyclePolicyPreviewNotFoundError(ECRError):
    code = "LifecyclePolicyPreviewNotFoundException"


class ImageNotFoundError(ECRError):
    code = "ImageNotFoundException"


class ImageAlreadyExistsError(ECRError):
    code = "ImageAlreadyExistsException"


class ImageTagAlreadyExistsError(ECRError):
    code = "ImageTagAlreadyExistsException"


class ImageDigestDoesNotMatchError(ECRError):
    code = "ImageDigestDoesNotMatchException"


class LayersNotFoundError(ECRError):
    code = "LayersNotFoundException"


class LayerAlreadyExistsError(ECRError):
    code = "LayerAlreadyExistsException"


class LayerInaccessibleError(ECRError):
    code = "LayerInaccessibleException"


class LayerPartTooSmallError(ECRError):
    code = "LayerPartTooSmallException"


class InvalidLayerError(ECRError):
    code = "InvalidLayerException"


class InvalidLayerPartError(ECRError):
    code = "InvalidLayerPartException"


class EmptyUploadError(ECRError):
    code = "EmptyUploadException"


class UploadNotFoundError(ECRError):
    code = "UploadNotFoundException"


class ReferencedImagesNotFoundError(ECRError):
    code = "ReferencedImagesNotFoundException"


class LimitExceededError(ECRError):
    code = "LimitExceededException"


class TooManyTagsError(ECRError):
    code = "TooManyTagsException"


class InvalidTagParameterError(ECRError):
    code = "InvalidTagParameterException"


class KmsError(ECRError):
    code = "KmsException"


class ScanNotFoundError(ECRError):
    code = "ScanNotFoundException"


class UnsupportedImageTypeError(ECRError):
    code = "UnsupportedImageTypeException"


class PullThroughCacheRuleAlreadyExistsError(ECRError):
    code = "PullThroughCacheRuleAlreadyExistsException"


class PullThroughCacheRuleNotFoundError(ECRError):
    code = "PullThroughCacheRuleNotFoundException"


class UnsupportedUpstreamRegistryError(ECRError):
    code = "UnsupportedUpstreamRegistryException"


class SecretNotFoundError(ECRError):
    code = "SecretNotFoundException"


class UnableToAccessSecretError(ECRError):
    code = "UnableToAccessSecretException"


class UnableToDecryptSecretValueError(ECRError):
    code = "UnableToDecryptSecretValueException"


class UnableToGetUpstreamImageError(ECRError):
    code = "UnableToGetUpstreamImageException"


class UnableToGetUpstreamLayerError(ECRError):
    code = "UnableToGetUpstreamLayerException"


# ... and the protocol-level errors every AWS JSON service answers with.
class SerializationError(ECRError):
    code = "SerializationException"


class UnknownOperationError(ECRError):
    code = "UnknownOperationException"


class MissingAuthenticationTokenError(ECRError):
    code = "MissingAuthenticationTokenException"
    http_status = 403


class IncompleteSignatureError(ECRError):
    code = "IncompleteSignatureException"


class InvalidSignatureError(ECRError):
    code = "InvalidSignatureException"
    http_status = 403


class UnrecognizedClientError(ECRError):
    code = "UnrecognizedClientException"


class ExpiredTokenError(ECRError):
    code = "ExpiredTokenException"


class AccessDeniedError(ECRError):
    code = "AccessDeniedException"


class ThrottlingError(ECRError):
    code = "ThrottlingException"


ECR_ERRORS_BY_CODE: dict[str, type[ECRError]] = {
    cls.code: cls
    for cls in list(globals().values())
    if isinstance(cls, type) and issubclass(cls, ECRError) and cls is not ECRError
}


def error_class_for_code(code: str) -> type[ECRError]:
    """The class for a wire error code; unknown codes map to the base class."""
    return ECR_ERRORS_BY_CODE.get(code, ECRError)
