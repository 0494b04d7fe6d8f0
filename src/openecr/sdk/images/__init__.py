"""Image workflows on the ECR API: push from and pull to disk, without a Docker engine.

``push_image``/``pull_image`` take an ``ECR`` client, ``apush_image``/``apull_image`` an
``AsyncECR``; both run the same workflows (``_workflow``).
"""

from openecr.sdk.images.layout import (
    BlobDigestMismatchError,
    DockerArchiveSource,
    ImageSource,
    ImageSourceError,
    ManifestInfo,
    OCILayoutSource,
    OCILayoutWriter,
    open_image_source,
)
from openecr.sdk.images.progress import ProgressCallback, ProgressEvent, ProgressState
from openecr.sdk.images.pull import PullResult, apull_image, pull_image
from openecr.sdk.images.push import PushResult, apush_image, push_image

__all__ = [
    "BlobDigestMismatchError",
    "DockerArchiveSource",
    "ImageSource",
    "ImageSourceError",
    "ManifestInfo",
    "OCILayoutSource",
    "OCILayoutWriter",
    "ProgressCallback",
    "ProgressEvent",
    "ProgressState",
    "PullResult",
    "PushResult",
    "apull_image",
    "apush_image",
    "open_image_source",
    "pull_image",
    "push_image",
]
