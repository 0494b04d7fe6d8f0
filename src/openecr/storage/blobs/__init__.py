"""Blob storage: the ``BlobStore`` interface and its backends (see ``base``)."""

from openecr.storage.blobs.base import (
    DIGEST_ALGORITHMS,
    BlobInfo,
    BlobNotFound,
    BlobReader,
    BlobStore,
    BlobStoreError,
    DigestAlgorithm,
    DigestMismatch,
    InvalidDigest,
    InvalidUploadId,
    UploadHashStates,
    UploadNotFound,
    UploadOffsetMismatch,
    UploadTooLarge,
    parse_digest,
    validate_upload_id,
)
from openecr.storage.blobs.filesystem import DEFAULT_CHUNK_SIZE, FilesystemBlobStore

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DIGEST_ALGORITHMS",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobStore",
    "BlobStoreError",
    "DigestAlgorithm",
    "DigestMismatch",
    "FilesystemBlobStore",
    "InvalidDigest",
    "InvalidUploadId",
    "UploadHashStates",
    "UploadNotFound",
    "UploadOffsetMismatch",
    "UploadTooLarge",
    "parse_digest",
    "validate_upload_id",
]
