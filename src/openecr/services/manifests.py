"""Manifests: parsing, validation and the small rules both APIs share about them.

Pure domain code (no I/O). Both wire faces use it: the OCI ``PUT /v2/<name>/manifests/<ref>``
handler passes the request body and its ``Content-Type``; ECR ``PutImage`` passes the
UTF-8 bytes of ``imageManifest`` and ``imageManifestMediaType``. Whatever is rejected here
is rejected the same way through both APIs.

Formats understood (spec/ecr-api.md §10.4): Docker image manifest v2 schema 2 and manifest
list, OCI image manifest and image index (1.0 and 1.1: ``artifactType``, ``subject``), and
the legacy Docker v2 schema 1 (plain and signed).

Decisions, with the reason for each:

* **The manifest is never rewritten.** Its digest is ``sha256:`` + the hex SHA-256 of exactly
  the bytes received (whitespace included), because both ECR and the distribution spec
  serve manifests byte-for-byte.
* **Media type resolution.** The ``Content-Type`` / ``imageManifestMediaType`` is
  normalised (parameters dropped, lower-cased, since RFC 9110 makes both insignificant);
  ``application/json`` and the empty string say nothing about the kind of manifest and
  count as absent. The body's ``mediaType`` field, when present, must be *exactly* one of
  the manifest media types (clients compare the pulled ``Content-Type`` with it) and must
  equal the declared type when one is declared (distribution spec: the client MUST set
  ``Content-Type`` to the ``mediaType`` field). With neither, the type is inferred:
  ``schemaVersion`` 1 is Docker schema 1 (the signed variant when it has ``signatures``);
  a document with ``manifests`` and no ``config``/``layers`` is an OCI index; one with
  ``config`` and no ``manifests`` is an OCI image manifest; anything else is invalid.
  Inference follows the OCI rule that ``mediaType`` is optional in OCI documents; ECR's
  PutImage instead requires a type, so its handler passes ``infer_media_type=False``.
* **Ambiguous documents are invalid.** An image manifest carrying ``manifests`` or an index
  carrying ``config``/``layers`` is refused (the fix registries made for CVE-2021-41190:
  one set of bytes must not be read as two kinds of document).
* **Duplicate JSON object keys are invalid.** Different JSON parsers keep different
  duplicates, so a client could pull layers other than the ones this registry checked.
* **Docker schema 1 is accepted** (ECR still accepts it, and pulling old images through
  a pull-through cache can produce it). ``fsLayers[].blobSum`` become ``layers`` in base-first
  order (schema 1 lists the top layer first), with the schema 1 layer media type and size
  0 because schema 1 does not record sizes. Signatures are not verified: they were
  self-signed keys with no trust anchor and ECR does not verify them either.
* **Lenient where the specs tell implementations to be.** Unknown config/layer/index-entry
  media types, an empty ``layers`` list (``FROM scratch`` images and OCI 1.1 artifacts), an
  empty-config manifest without ``artifactType`` and a Docker manifest without ``mediaType``
  are all accepted. Descriptor media types must still look like ``type/subtype`` (RFC 6838
  characters, parameters allowed). Optional fields set to JSON ``null`` count as absent,
  as in the Go implementations.
* **Digests** in descriptors must be ``sha256:<64 lowercase hex>`` or
  ``sha512:<128 lowercase hex>`` (the registered OCI algorithms this registry can verify).
* **Image size** (ECR ``imageSizeInBytes``, see :func:`image_size`): the sum of the sizes of
  the distinct layer blobs; the config blob is *not* counted (spec/ecr-api.md: "in practice
  the sum of the layer blob sizes"; it is also what ``docker manifest inspect`` tooling
  reports as the compressed image size); an index is the largest of its images.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

__all__ = [
    "DOCKER_CONFIG",
    "DOCKER_FOREIGN_LAYER",
    "DOCKER_LAYER",
    "DOCKER_LAYER_UNCOMPRESSED",
    "DOCKER_MANIFEST_LIST",
    "DOCKER_MANIFEST_V1",
    "DOCKER_MANIFEST_V1_SIGNED",
    "DOCKER_MANIFEST_V2",
    "DOCKER_PLUGIN_CONFIG",
    "DOCKER_SCHEMA1_LAYER",
    "IMAGE_MANIFEST_MEDIA_TYPES",
    "INDEX_MEDIA_TYPES",
    "MANIFEST_MEDIA_TYPES",
    "MAX_MANIFEST_BYTES",
    "NON_DISTRIBUTABLE_LAYER_MEDIA_TYPES",
    "OCI_CONFIG",
    "OCI_EMPTY",
    "OCI_EMPTY_DIGEST",
    "OCI_EMPTY_SIZE",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE",
    "OCI_LAYER_NONDISTRIBUTABLE_GZIP",
    "OCI_LAYER_NONDISTRIBUTABLE_ZSTD",
    "OCI_LAYER_ZSTD",
    "OCI_MANIFEST",
    "SCHEMA1_MEDIA_TYPES",
    "Descriptor",
    "ManifestInvalid",
    "ManifestTooLarge",
    "ParsedManifest",
    "compute_digest",
    "digest_is_valid",
    "ecr_accepts_media_type",
    "ecr_tag_is_valid",
    "image_size",
    "matches_accept",
    "normalize_media_type",
    "parse_manifest",
    "parse_manifest_text",
    "referrer_descriptor",
    "repository_name_is_valid",
    "tag_is_valid",
]

MAX_MANIFEST_BYTES = 4 * 1024 * 1024

# Manifest media types.
DOCKER_MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"

# Config and layer media types.
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_PLUGIN_CONFIG = "application/vnd.docker.plugin.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_UNCOMPRESSED = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
# What distribution reports for schema 1 layers, which carry no media type of their own.
DOCKER_SCHEMA1_LAYER = "application/vnd.docker.container.image.rootfs.diff+x-gtar"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDISTRIBUTABLE = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDISTRIBUTABLE_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDISTRIBUTABLE_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

# The OCI 1.1 empty JSON descriptor: the blob ``{}``.
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_EMPTY_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
OCI_EMPTY_SIZE = 2

SCHEMA1_MEDIA_TYPES = frozenset({DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED})
IMAGE_MANIFEST_MEDIA_TYPES = frozenset({DOCKER_MANIFEST_V2, OCI_MANIFEST})
INDEX_MEDIA_TYPES = frozenset({DOCKER_MANIFEST_LIST, OCI_INDEX})
MANIFEST_MEDIA_TYPES = SCHEMA1_MEDIA_TYPES | IMAGE_MANIFEST_MEDIA_TYPES | INDEX_MEDIA_TYPES
# Layers that registries are not expected to hold (Windows base layers and the like).
NON_DISTRIBUTABLE_LAYER_MEDIA_TYPES = frozenset(
    {
        DOCKER_FOREIGN_LAYER,
        OCI_LAYER_NONDISTRIBUTABLE,
        OCI_LAYER_NONDISTRIBUTABLE_GZIP,
        OCI_LAYER_NONDISTRIBUTABLE_ZSTD,
    }
)

_MAX_INT64 = 2**63 - 1
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
# RFC 6838 restricted names for type and subtype, as the OCI JSON schema checks them;
# parameters are tolerated because some artifact tools put a version there.
_MEDIA_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r"(?:[ \t]*;[ \t]*[!-~][ -~]*)?"
)
_OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_ECR_TAG = re.compile(r"[A-Za-z0-9_.-]{1,300}")
# spec/ecr-api.md §10.1, the current ECR model's pattern.
_REPOSITORY_NAME = re.compile(
    r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*"
)
# A JSON escape that may decode to half of a surrogate pair.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Declared types that name no particular manifest format.
_GENERIC_TYPES = frozenset({"", "application/json"})


class ManifestInvalid(Exception):
    """The bytes are not an acceptable manifest.

    OCI: ``400 MANIFEST_INVALID``; ECR: ``InvalidParameterException``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ManifestTooLarge(ManifestInvalid):
    """The manifest exceeds :data:`MAX_MANIFEST_BYTES`.

    A subclass of :class:`ManifestInvalid` so ECR can treat both alike, while the OCI
    handler answers ``413 Payload Too Large`` as the distribution spec recommends.
    """

    def __init__(self, size: int, limit: int = MAX_MANIFEST_BYTES) -> None:
        super().__init__(f"manifest is {size} bytes, more than the limit of {limit} bytes")
        self.size = size
        self.limit = limit


@dataclass(frozen=True, slots=True)
class Descriptor:
    """A reference to content by media type, digest and size (OCI descriptor).

    ``platform`` is only read for the entries of an index or manifest list.
    The dict fields take no part in hashing, so descriptors can live in sets.
    """

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, hash=False)
    platform: dict[str, Any] | None = field(default=None, hash=False)
    artifact_type: str | None = None
    urls: tuple[str, ...] = ()

    @property
    def is_non_distributable(self) -> bool:
        """A layer the registry is not expected to hold (fetched from ``urls`` instead)."""
        return self.media_type in NON_DISTRIBUTABLE_LAYER_MEDIA_TYPES


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    """A validated manifest and what the registry needs to know about it.

    ``layers`` is base-first for every format; ``manifests`` holds the entries of an index
    or manifest list. ``artifact_type`` follows the referrers API rule: the ``artifactType``
    field, else (image manifests only) the config media type.
    """

    media_type: str
    digest: str
    size: int
    schema_version: int
    config: Descriptor | None
    layers: tuple[Descriptor, ...]
    manifests: tuple[Descriptor, ...]
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def is_index(self) -> bool:
        """An OCI index or Docker manifest list."""
        return self.media_type in INDEX_MEDIA_TYPES

    @property
    def is_schema1(self) -> bool:
        return self.media_type in SCHEMA1_MEDIA_TYPES

    @property
    def artifact_media_type(self) -> str | None:
        """ECR ``DescribeImages`` ``artifactMediaType``: the config descriptor's media type."""
        return self.config.media_type if self.config is not None else None

    @property
    def subject_digest(self) -> str | None:
        return self.subject.digest if self.subject is not None else None

    @property
    def referenced_blob_digests(self) -> tuple[str, ...]:
        """Every blob this manifest references: config, layers, and index entries that are
        not manifests. Distinct, in document order. What garbage collection must keep."""
        found: dict[str, None] = {}
        if self.config is not None:
            found[self.config.digest] = None
        for layer in self.layers:
            found[layer.digest] = None
        for entry in self.manifests:
            if entry.media_type not in MANIFEST_MEDIA_TYPES:
                found[entry.digest] = None
        return tuple(found)

    @property
    def required_blob_digests(self) -> tuple[str, ...]:
        """The blobs that must already exist in the repository for a push to succeed:
        :attr:`referenced_blob_digests` without non-distributable layers."""
        skipped = {layer.digest for layer in self.layers if layer.is_non_distributable}
        skipped.difference_update(
            layer.digest for layer in self.layers if not layer.is_non_distributable
        )
        if self.config is not None:
            skipped.discard(self.config.digest)
        return tuple(d for d in self.referenced_blob_digests if d not in skipped)

    @property
    def referenced_manifest_digests(self) -> tuple[str, ...]:
        """The manifests an index or manifest list points at (distinct, in order). The
        ``subject`` is deliberately not included: it is a weak reference that may be pushed
        later."""
        found: dict[str, None] = {}
        for entry in self.manifests:
            if entry.media_type in MANIFEST_MEDIA_TYPES:
                found[entry.digest] = None
        return tuple(found)


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    """``<algorithm>:<lowercase hex>`` of exactly ``data`` (``sha256`` or ``sha512``)."""
    if algorithm not in ("sha256", "sha512"):
        raise ValueError(f"unsupported digest algorithm {algorithm!r}")
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


def digest_is_valid(digest: str) -> bool:
    """``sha256:<64 lowercase hex>`` or ``sha512:<128 lowercase hex>``."""
    return _DIGEST.fullmatch(digest) is not None


def normalize_media_type(value: str) -> str:
    """A media type without parameters, surrounding whitespace or upper case."""
    return value.split(";", 1)[0].strip().lower()


def parse_manifest(
    data: bytes,
    declared_media_type: str | None,
    *,
    infer_media_type: bool = True,
) -> ParsedManifest:
    """Validates a manifest and returns what it says.

    ``declared_media_type`` is the ``Content-Type`` of an OCI PUT or ECR's
    ``imageManifestMediaType`` (``None`` when absent). With ``infer_media_type=False``
    (ECR PutImage), a manifest without a ``mediaType`` field and without a declared type
    is invalid instead of having its type inferred.

    Raises :class:`ManifestTooLarge` over :data:`MAX_MANIFEST_BYTES`, otherwise
    :class:`ManifestInvalid` for anything unacceptable; never any other exception.
    """
    data = bytes(data)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestTooLarge(len(data))
    if not data:
        _invalid("manifest is empty")
    document = _decode_json(data)
    if not isinstance(document, dict):
        _invalid("manifest must be a JSON object")

    schema_version = document.get("schemaVersion")
    if type(schema_version) is not int:
        _invalid("schemaVersion must be an integer")
    media_type = _resolve_media_type(document, declared_media_type, infer_media_type)
    expected_version = 1 if media_type in SCHEMA1_MEDIA_TYPES else 2
    if schema_version != expected_version:
        _invalid(f"schemaVersion must be {expected_version} for {media_type}")

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    if media_type in SCHEMA1_MEDIA_TYPES:
        return ParsedManifest(
            media_type=media_type,
            digest=digest,
            size=len(data),
            schema_version=1,
            config=None,
            layers=_schema1_layers(document),
            manifests=(),
            subject=None,
            artifact_type=None,
            annotations={},
        )

    annotations = _optional_string_map(document.get("annotations"), "annotations")
    subject = None
    if document.get("subject") is not None:
        subject = _descriptor(document["subject"], "subject")
    own_artifact_type = _optional_artifact_type(document.get("artifactType"), "artifactType")

    if media_type in INDEX_MEDIA_TYPES:
        if document.get("config") is not None or document.get("layers") is not None:
            _invalid("an index must not have config or layers")
        entries = document.get("manifests")
        if not isinstance(entries, list):
            _invalid("manifests must be a list")
        manifests = tuple(
            _descriptor(entry, f"manifests[{i}]", with_platform=True)
            for i, entry in enumerate(entries)
        )
        return ParsedManifest(
            media_type=media_type,
            digest=digest,
            size=len(data),
            schema_version=2,
            config=None,
            layers=(),
            manifests=manifests,
            subject=subject,
            artifact_type=own_artifact_type,
            annotations=annotations,
        )

    if document.get("manifests") is not None:
        _invalid("an image manifest must not have manifests")
    if document.get("config") is None:
        _invalid("an image manifest requires config")
    config = _descriptor(document["config"], "config")
    raw_layers = document.get("layers")
    if not isinstance(raw_layers, list):
        _invalid("layers must be a list")
    layers = tuple(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(raw_layers))
    return ParsedManifest(
        media_type=media_type,
        digest=digest,
        size=len(data),
        schema_version=2,
        config=config,
        layers=layers,
        manifests=(),
        subject=subject,
        artifact_type=own_artifact_type or config.media_type,
        annotations=annotations,
    )


def parse_manifest_text(
    text: str,
    declared_media_type: str | None,
    *,
    infer_media_type: bool = True,
) -> ParsedManifest:
    """:func:`parse_manifest` for ECR's ``imageManifest`` string (hashed as UTF-8)."""
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        _invalid("manifest is not valid Unicode text")
    return parse_manifest(data, declared_media_type, infer_media_type=infer_media_type)


def image_size(
    parsed: ParsedManifest,
    *,
    manifest_sizes: Mapping[str, int] | None = None,
    blob_sizes: Mapping[str, int] | None = None,
) -> int:
    """ECR ``imageSizeInBytes``.

    * image manifest: the sum of the sizes of its distinct layer digests (the config blob
      is not counted, see the module notes);
    * index or manifest list: the largest ``manifest_sizes[d]`` over the manifests it
      references (the caller supplies the stored sizes of those images; 0 without them);
    * schema 1: the manifest records no sizes, so the distinct layers are summed from
      ``blob_sizes`` (the stored blob sizes; unknown digests count 0).
    """
    if parsed.is_index:
        known = manifest_sizes or {}
        return max((known.get(d, 0) for d in parsed.referenced_manifest_digests), default=0)
    sizes: dict[str, int] = {}
    for layer in parsed.layers:
        sizes.setdefault(layer.digest, layer.size)
    if parsed.is_schema1:
        known = blob_sizes or {}
        return sum(known.get(d, 0) for d in sizes)
    return sum(sizes.values())


def referrer_descriptor(parsed: ParsedManifest) -> dict[str, Any]:
    """The entry for this manifest in a referrers response (distribution spec 1.1): its
    own descriptor with ``artifactType`` (when it has one) and its annotations."""
    entry: dict[str, Any] = {
        "mediaType": parsed.media_type,
        "digest": parsed.digest,
        "size": parsed.size,
    }
    if parsed.artifact_type:
        entry["artifactType"] = parsed.artifact_type
    if parsed.annotations:
        entry["annotations"] = dict(parsed.annotations)
    return entry


def tag_is_valid(tag: str) -> bool:
    """The OCI / Docker reference tag grammar ``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``."""
    return _OCI_TAG.fullmatch(tag) is not None


def ecr_tag_is_valid(tag: str) -> bool:
    """ECR's own ``imageTag`` rule: ``[a-zA-Z0-9-_.]+``, 1..300 characters."""
    return _ECR_TAG.fullmatch(tag) is not None


def repository_name_is_valid(name: str) -> bool:
    """ECR's current repository name pattern (spec/ecr-api.md §10.1), 2..256 characters."""
    return 2 <= len(name) <= 256 and _REPOSITORY_NAME.fullmatch(name) is not None


def matches_accept(media_type: str, accept_header_values: Sequence[str]) -> bool:
    """Whether a response of ``media_type`` satisfies the request's ``Accept`` headers.

    ``accept_header_values`` are the raw header values (a request may repeat the header;
    each value is a comma-separated list). No ``Accept`` at all, or only empty values,
    accepts everything. The most specific matching range decides (exact type, then
    ``type/*``, then ``*/*``), and a range with ``q=0`` refuses; other q-values are parsed
    but do not matter, since the registry has one representation to offer.
    """
    ranges = _accept_ranges(accept_header_values)
    if not ranges:
        return True
    wanted = normalize_media_type(media_type)
    main = wanted.split("/", 1)[0]
    best_rank = -1
    best_q = 0.0
    for media_range, q in ranges:
        if media_range == wanted:
            rank = 2
        elif media_range == f"{main}/*":
            rank = 1
        elif media_range == "*/*":
            rank = 0
        else:
            continue
        if rank > best_rank or (rank == best_rank and q > best_q):
            best_rank, best_q = rank, q
    return best_rank >= 0 and best_q > 0


def ecr_accepts_media_type(
    stored_media_type: str,
    accepted_media_types: Sequence[str] | None,
    *,
    by_digest: bool = False,
) -> bool:
    """Whether ECR ``BatchGetImage`` may return a manifest stored as ``stored_media_type``.

    No ``acceptedMediaTypes`` accepts everything. ECR converts manifests fetched by tag
    when the stored type is not accepted (spec/ecr-api.md §10.4); this registry serves
    manifests verbatim and does not convert, so by tag the stored type itself must be in
    the list (the two schema 1 types count as one). By digest no conversion applies and
    the stored manifest is what the digest names, so it is always returned.
    """
    if by_digest or not accepted_media_types:
        return True
    stored = normalize_media_type(stored_media_type)
    accepted = {normalize_media_type(value) for value in accepted_media_types}
    if stored in SCHEMA1_MEDIA_TYPES:
        return not accepted.isdisjoint(SCHEMA1_MEDIA_TYPES)
    return stored in accepted


# Parsing internals.


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _accept_ranges(header_values: Sequence[str]) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for header in header_values:
        for item in header.split(","):
            media_range, *params = item.split(";")
            media_range = media_range.strip().lower()
            if not media_range:
                continue
            q = 1.0
            for param in params:
                name, _, raw = param.partition("=")
                if name.strip().lower() == "q":
                    try:
                        q = float(raw.strip())
                    except ValueError:
                        q = 1.0  # a malformed weight does not make the range unacceptable
            ranges.append((media_range, q))
    return ranges


def _invalid(message: str) -> NoReturn:
    raise ManifestInvalid(message)


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _decode_json(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        _invalid("manifest is not valid UTF-8")
    try:
        document = json.loads(
            text,
            object_pairs_hook=_object_without_duplicates,
            parse_constant=_refuse_constant,
        )
    except _DuplicateKey as exc:
        _invalid(f"manifest has a duplicate key {exc.key!r}")
    except RecursionError:
        _invalid("manifest JSON is nested too deeply")
    except ValueError as exc:  # json.JSONDecodeError, and integers too long to convert
        _invalid(f"manifest is not valid JSON: {exc}")
    if _SURROGATE_ESCAPE.search(text) is not None and _has_lone_surrogate(document):
        _invalid("manifest contains an unpaired UTF-16 surrogate escape")
    return document


def _has_lone_surrogate(document: Any) -> bool:
    # Iterative: the document may be nested as deeply as the decoder allowed.
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            strings = [value]
        elif isinstance(value, dict):
            strings = list(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            strings = []
            pending.extend(value)
        else:
            continue
        for text in strings:
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _resolve_media_type(document: dict[str, Any], declared: str | None, infer: bool) -> str:
    in_body = document.get("mediaType")
    if in_body is not None:
        if not isinstance(in_body, str):
            _invalid("mediaType must be a string")
        if in_body not in MANIFEST_MEDIA_TYPES:
            _invalid(f"mediaType {in_body!r} is not a supported manifest media type")
    header = normalize_media_type(declared) if declared is not None else ""
    if header in _GENERIC_TYPES:
        header = ""
    elif header not in MANIFEST_MEDIA_TYPES:
        _invalid(f"media type {declared!r} is not a supported manifest media type")
    if in_body is not None:
        if header and header != in_body:
            _invalid(f"mediaType {in_body!r} does not match the declared media type {header!r}")
        return in_body
    if header:
        return header
    if not infer:
        _invalid("the manifest has no mediaType field and no media type was given")
    return _infer_media_type(document)


def _infer_media_type(document: dict[str, Any]) -> str:
    if document.get("schemaVersion") == 1:
        if document.get("signatures") is not None:
            return DOCKER_MANIFEST_V1_SIGNED
        return DOCKER_MANIFEST_V1
    has_manifests = document.get("manifests") is not None
    has_image_parts = document.get("config") is not None or document.get("layers") is not None
    if has_manifests and not has_image_parts:
        return OCI_INDEX
    if document.get("config") is not None and not has_manifests:
        return OCI_MANIFEST
    _invalid("cannot tell the manifest's media type: give a mediaType field or Content-Type")


def _schema1_layers(document: dict[str, Any]) -> tuple[Descriptor, ...]:
    fs_layers = document.get("fsLayers")
    if not isinstance(fs_layers, list) or not fs_layers:
        _invalid("a schema 1 manifest requires a non-empty fsLayers list")
    history = document.get("history")
    if not isinstance(history, list) or len(history) != len(fs_layers):
        _invalid("a schema 1 manifest requires one history entry per fsLayers entry")
    if any(not isinstance(entry, dict) for entry in history):
        _invalid("history entries must be objects")
    signatures = document.get("signatures")
    if signatures is not None and not isinstance(signatures, list):
        _invalid("signatures must be a list")
    layers: list[Descriptor] = []
    for i, entry in enumerate(fs_layers):
        if not isinstance(entry, dict):
            _invalid(f"fsLayers[{i}] must be an object")
        blob_sum = entry.get("blobSum")
        if not isinstance(blob_sum, str) or not digest_is_valid(blob_sum):
            _invalid(f"fsLayers[{i}].blobSum must be a valid digest")
        layers.append(Descriptor(media_type=DOCKER_SCHEMA1_LAYER, digest=blob_sum, size=0))
    layers.reverse()  # schema 1 lists the top layer first
    return tuple(layers)


def _descriptor(value: Any, where: str, *, with_platform: bool = False) -> Descriptor:
    if not isinstance(value, dict):
        _invalid(f"{where} must be a descriptor object")
    media_type = value.get("mediaType")
    if not isinstance(media_type, str) or _MEDIA_TYPE.fullmatch(media_type) is None:
        _invalid(f"{where}.mediaType must be a media type")
    digest = value.get("digest")
    if not isinstance(digest, str) or not digest_is_valid(digest):
        _invalid(f"{where}.digest must be sha256:<64 hex> or sha512:<128 hex>, in lower case")
    size = value.get("size")
    if type(size) is not int or not 0 <= size <= _MAX_INT64:
        _invalid(f"{where}.size must be a non-negative integer")
    urls = value.get("urls")
    if urls is not None and (
        not isinstance(urls, list) or not all(isinstance(url, str) for url in urls)
    ):
        _invalid(f"{where}.urls must be a list of strings")
    data = value.get("data")
    if data is not None and not isinstance(data, str):
        _invalid(f"{where}.data must be a base64 string")
    platform = None
    if with_platform and value.get("platform") is not None:
        platform = _platform(value["platform"], f"{where}.platform")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        annotations=_optional_string_map(value.get("annotations"), f"{where}.annotations"),
        platform=platform,
        artifact_type=_optional_artifact_type(value.get("artifactType"), f"{where}.artifactType"),
        urls=tuple(urls or ()),
    )


def _platform(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        _invalid(f"{where} must be an object")
    for key in ("architecture", "os"):
        if not isinstance(value.get(key), str):
            _invalid(f"{where}.{key} must be a string")
    for key in ("os.version", "variant"):
        if value.get(key) is not None and not isinstance(value[key], str):
            _invalid(f"{where}.{key} must be a string")
    for key in ("os.features", "features"):
        listed = value.get(key)
        if listed is not None and (
            not isinstance(listed, list) or not all(isinstance(item, str) for item in listed)
        ):
            _invalid(f"{where}.{key} must be a list of strings")
    return dict(value)


def _optional_string_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        _invalid(f"{where} must map strings to strings")
    return dict(value)


def _optional_artifact_type(value: Any, where: str) -> str | None:
    # The referrers rule treats an empty artifactType like a missing one.
    if value is None or value == "":
        return None
    if not isinstance(value, str) or _MEDIA_TYPE.fullmatch(value) is None:
        _invalid(f"{where} must be a media type")
    return value
