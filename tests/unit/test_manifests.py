"""Manifest parsing and validation (services/manifests.py)."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openecr.services import manifests as m
from openecr.services.manifests import (
    Descriptor,
    ManifestInvalid,
    ManifestTooLarge,
    ParsedManifest,
    parse_manifest,
)


def _d(n: int) -> str:
    """A distinct well-formed sha256 digest."""
    return "sha256:" + hashlib.sha256(str(n).encode()).hexdigest()


def _encode(document: Any) -> bytes:
    return json.dumps(document, indent=3).encode()


DOCKER_V2: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": m.DOCKER_MANIFEST_V2,
    "config": {"mediaType": m.DOCKER_CONFIG, "size": 7023, "digest": _d(1)},
    "layers": [
        {"mediaType": m.DOCKER_LAYER, "size": 32654, "digest": _d(2)},
        {"mediaType": m.DOCKER_LAYER, "size": 16724, "digest": _d(3)},
        {"mediaType": m.DOCKER_LAYER, "size": 73109, "digest": _d(4)},
    ],
}

DOCKER_LIST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": m.DOCKER_MANIFEST_LIST,
    "manifests": [
        {
            "mediaType": m.DOCKER_MANIFEST_V2,
            "size": 7143,
            "digest": _d(10),
            "platform": {"architecture": "ppc64le", "os": "linux"},
        },
        {
            "mediaType": m.DOCKER_MANIFEST_V2,
            "size": 7682,
            "digest": _d(11),
            "platform": {"architecture": "arm", "os": "linux", "variant": "v7", "features": []},
        },
    ],
}

OCI_MANIFEST: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": m.OCI_MANIFEST,
    "config": {"mediaType": m.OCI_CONFIG, "digest": _d(20), "size": 7023},
    "layers": [
        {"mediaType": m.OCI_LAYER_GZIP, "digest": _d(21), "size": 32654},
        {"mediaType": m.OCI_LAYER_ZSTD, "digest": _d(22), "size": 16724},
    ],
    "annotations": {
        "org.opencontainers.image.created": "2024-01-02T03:04:05Z",
        "com.example.key": "value",
    },
}

OCI_INDEX: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": m.OCI_INDEX,
    "manifests": [
        {
            "mediaType": m.OCI_MANIFEST,
            "digest": _d(30),
            "size": 1234,
            "platform": {"architecture": "amd64", "os": "linux"},
        },
        {
            "mediaType": m.OCI_MANIFEST,
            "digest": _d(31),
            "size": 1235,
            "platform": {
                "architecture": "amd64",
                "os": "windows",
                "os.version": "10.0.17763.1040",
                "os.features": ["win32k"],
            },
        },
        {
            # A buildx provenance attestation.
            "mediaType": m.OCI_MANIFEST,
            "digest": _d(32),
            "size": 840,
            "annotations": {
                "vnd.docker.reference.digest": _d(30),
                "vnd.docker.reference.type": "attestation-manifest",
            },
            "platform": {"architecture": "unknown", "os": "unknown"},
        },
        {"mediaType": m.OCI_INDEX, "digest": _d(33), "size": 300},
    ],
    "annotations": {"org.opencontainers.image.ref.name": "1.0"},
}

ARTIFACT: dict[str, Any] = {
    "schemaVersion": 2,
    "mediaType": m.OCI_MANIFEST,
    "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
    "config": {"mediaType": m.OCI_EMPTY, "digest": m.OCI_EMPTY_DIGEST, "size": 2, "data": "e30="},
    "layers": [
        {
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": _d(40),
            "size": 241,
            "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
        }
    ],
    "subject": {"mediaType": m.OCI_MANIFEST, "digest": _d(41), "size": 1024},
    "annotations": {"org.opencontainers.image.created": "2024-05-06T07:08:09Z"},
}

SCHEMA1: dict[str, Any] = {
    "schemaVersion": 1,
    "name": "library/hello",
    "tag": "latest",
    "architecture": "amd64",
    "fsLayers": [{"blobSum": _d(50)}, {"blobSum": _d(51)}, {"blobSum": _d(50)}],
    "history": [
        {"v1Compatibility": '{"id":"c"}'},
        {"v1Compatibility": '{"id":"b"}'},
        {"v1Compatibility": '{"id":"a"}'},
    ],
}

SCHEMA1_SIGNED: dict[str, Any] = {
    **SCHEMA1,
    "signatures": [
        {
            "header": {"jwk": {"crv": "P-256", "kty": "EC", "x": "a", "y": "b"}, "alg": "ES256"},
            "signature": "c2ln",
            "protected": "cHJvdA",
        }
    ],
}


def _parse(document: Any, declared: str | None = None, **kwargs: Any) -> ParsedManifest:
    return parse_manifest(_encode(document), declared, **kwargs)


def _rejects(document: Any, declared: str | None = None, match: str | None = None) -> None:
    with pytest.raises(ManifestInvalid, match=match):
        _parse(document, declared)


def _with(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy with the item at ``path`` replaced (``...`` deletes it)."""
    changed = copy.deepcopy(document)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


# -- every kind, parsed ----------------------------------------------------------------


def test_docker_v2_manifest() -> None:
    data = _encode(DOCKER_V2)
    parsed = parse_manifest(data, m.DOCKER_MANIFEST_V2)
    assert parsed.media_type == m.DOCKER_MANIFEST_V2
    assert parsed.digest == "sha256:" + hashlib.sha256(data).hexdigest()
    assert parsed.size == len(data)
    assert parsed.schema_version == 2
    assert parsed.config == Descriptor(m.DOCKER_CONFIG, _d(1), 7023)
    assert [layer.digest for layer in parsed.layers] == [_d(2), _d(3), _d(4)]
    assert [layer.size for layer in parsed.layers] == [32654, 16724, 73109]
    assert parsed.manifests == ()
    assert parsed.subject is None
    assert parsed.artifact_type == m.DOCKER_CONFIG
    assert parsed.artifact_media_type == m.DOCKER_CONFIG
    assert parsed.annotations == {}
    assert not parsed.is_index
    assert not parsed.is_schema1
    assert parsed.referenced_blob_digests == (_d(1), _d(2), _d(3), _d(4))
    assert parsed.required_blob_digests == parsed.referenced_blob_digests
    assert parsed.referenced_manifest_digests == ()
    assert m.image_size(parsed) == 32654 + 16724 + 73109


def test_docker_manifest_list() -> None:
    parsed = _parse(DOCKER_LIST, m.DOCKER_MANIFEST_LIST)
    assert parsed.media_type == m.DOCKER_MANIFEST_LIST
    assert parsed.is_index
    assert parsed.config is None
    assert parsed.layers == ()
    assert [entry.digest for entry in parsed.manifests] == [_d(10), _d(11)]
    assert parsed.manifests[0].platform == {"architecture": "ppc64le", "os": "linux"}
    assert parsed.manifests[1].platform is not None
    assert parsed.manifests[1].platform["variant"] == "v7"
    assert parsed.referenced_manifest_digests == (_d(10), _d(11))
    assert parsed.referenced_blob_digests == ()
    assert parsed.artifact_type is None
    assert parsed.artifact_media_type is None
    assert m.image_size(parsed) == 0
    assert m.image_size(parsed, manifest_sizes={_d(10): 500, _d(11): 900, _d(99): 10**9}) == 900


def test_oci_manifest_with_and_without_declared_type() -> None:
    for declared in (m.OCI_MANIFEST, None, "application/vnd.oci.image.manifest.v1+json; x=y"):
        parsed = _parse(OCI_MANIFEST, declared)
        assert parsed.media_type == m.OCI_MANIFEST
        assert parsed.annotations == OCI_MANIFEST["annotations"]
        assert parsed.artifact_type == m.OCI_CONFIG
        assert [layer.media_type for layer in parsed.layers] == [m.OCI_LAYER_GZIP, m.OCI_LAYER_ZSTD]


def test_oci_index() -> None:
    parsed = _parse(OCI_INDEX, m.OCI_INDEX)
    assert parsed.is_index
    assert parsed.annotations == {"org.opencontainers.image.ref.name": "1.0"}
    assert parsed.referenced_manifest_digests == (_d(30), _d(31), _d(32), _d(33))
    windows = parsed.manifests[1]
    assert windows.platform is not None
    assert windows.platform["os.features"] == ["win32k"]
    assert parsed.manifests[2].annotations["vnd.docker.reference.type"] == "attestation-manifest"
    assert parsed.manifests[3].platform is None
    assert parsed.artifact_type is None


def test_index_entries_that_are_not_manifests_are_blob_references() -> None:
    index = _with(
        OCI_INDEX, ("manifests", 3), {"mediaType": "text/plain", "digest": _d(34), "size": 5}
    )
    parsed = _parse(index)
    assert parsed.referenced_manifest_digests == (_d(30), _d(31), _d(32))
    assert parsed.referenced_blob_digests == (_d(34),)


def test_index_with_artifact_type_and_subject() -> None:
    index = {
        **OCI_INDEX,
        "artifactType": "application/vnd.example.sbom.bundle",
        "subject": {"mediaType": m.OCI_INDEX, "digest": _d(35), "size": 99},
    }
    parsed = _parse(index)
    assert parsed.artifact_type == "application/vnd.example.sbom.bundle"
    assert parsed.subject_digest == _d(35)
    assert _d(35) not in parsed.referenced_manifest_digests


def test_oci_artifact_with_subject_and_empty_config() -> None:
    parsed = _parse(ARTIFACT, m.OCI_MANIFEST)
    assert parsed.artifact_type == "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert parsed.artifact_media_type == m.OCI_EMPTY
    assert parsed.subject == Descriptor(m.OCI_MANIFEST, _d(41), 1024)
    assert parsed.subject_digest == _d(41)
    assert parsed.layers[0].annotations == {"dev.cosignproject.cosign/signature": "MEUCIQ=="}
    # The subject is a weak reference: never required to exist.
    assert parsed.referenced_blob_digests == (m.OCI_EMPTY_DIGEST, _d(40))
    assert _d(41) not in parsed.referenced_blob_digests + parsed.referenced_manifest_digests
    assert m.referrer_descriptor(parsed) == {
        "mediaType": m.OCI_MANIFEST,
        "digest": parsed.digest,
        "size": parsed.size,
        "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
        "annotations": {"org.opencontainers.image.created": "2024-05-06T07:08:09Z"},
    }


def test_artifact_with_no_layers_at_all() -> None:
    artifact = {**ARTIFACT, "layers": []}
    parsed = _parse(artifact)
    assert parsed.layers == ()
    assert parsed.referenced_blob_digests == (m.OCI_EMPTY_DIGEST,)
    assert m.image_size(parsed) == 0


def test_artifact_type_falls_back_to_config_media_type() -> None:
    # Older artifacts (ORAS 0.x, Helm) carry their type in the config media type only.
    helm = {
        "schemaVersion": 2,
        "config": {
            "mediaType": "application/vnd.cncf.helm.config.v1+json",
            "digest": _d(60),
            "size": 117,
        },
        "layers": [
            {
                "mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
                "digest": _d(61),
                "size": 3000,
            }
        ],
    }
    parsed = _parse(helm)
    assert parsed.media_type == m.OCI_MANIFEST
    assert parsed.artifact_type == "application/vnd.cncf.helm.config.v1+json"
    # An empty artifactType counts as missing.
    assert (
        _parse({**helm, "artifactType": ""}).artifact_type
        == "application/vnd.cncf.helm.config.v1+json"
    )
    # The empty config without artifactType is tolerated; the referrers rule still applies.
    bare = {**ARTIFACT}
    del bare["artifactType"]
    assert _parse(bare).artifact_type == m.OCI_EMPTY


def test_referrer_descriptor_leaves_out_what_is_absent() -> None:
    parsed = _parse(OCI_INDEX)
    entry = m.referrer_descriptor(parsed)
    assert entry == {
        "mediaType": m.OCI_INDEX,
        "digest": parsed.digest,
        "size": parsed.size,
        "annotations": OCI_INDEX["annotations"],
    }


def test_windows_foreign_layers_are_not_required() -> None:
    windows = _with(
        DOCKER_V2,
        ("layers", 0),
        {
            "mediaType": m.DOCKER_FOREIGN_LAYER,
            "size": 1_718_332_879,
            "digest": _d(70),
            "urls": ["https://mcr.microsoft.com/v2/windows/servercore/blobs/" + _d(70)],
        },
    )
    parsed = _parse(windows)
    assert parsed.layers[0].urls == (
        "https://mcr.microsoft.com/v2/windows/servercore/blobs/" + _d(70),
    )
    assert parsed.layers[0].is_non_distributable
    assert _d(70) in parsed.referenced_blob_digests
    assert parsed.required_blob_digests == (_d(1), _d(3), _d(4))


def test_a_digest_used_both_ways_stays_required() -> None:
    doubled = _with(
        DOCKER_V2,
        ("layers", 1),
        {"mediaType": m.DOCKER_FOREIGN_LAYER, "size": 32654, "digest": _d(2)},
    )
    parsed = _parse(doubled)
    assert _d(2) in parsed.required_blob_digests


@pytest.mark.parametrize(
    ("document", "declared", "expected"),
    [
        (SCHEMA1, None, m.DOCKER_MANIFEST_V1),
        (SCHEMA1, m.DOCKER_MANIFEST_V1, m.DOCKER_MANIFEST_V1),
        (SCHEMA1_SIGNED, None, m.DOCKER_MANIFEST_V1_SIGNED),
        (SCHEMA1_SIGNED, m.DOCKER_MANIFEST_V1_SIGNED, m.DOCKER_MANIFEST_V1_SIGNED),
        (SCHEMA1_SIGNED, m.DOCKER_MANIFEST_V1, m.DOCKER_MANIFEST_V1),
        (SCHEMA1, "application/json", m.DOCKER_MANIFEST_V1),
    ],
)
def test_schema1(document: dict[str, Any], declared: str | None, expected: str) -> None:
    parsed = _parse(document, declared)
    assert parsed.media_type == expected
    assert parsed.is_schema1
    assert parsed.schema_version == 1
    assert parsed.config is None
    assert parsed.artifact_type is None
    # Base layer first, duplicates kept in layers and collapsed in the references.
    assert [layer.digest for layer in parsed.layers] == [_d(50), _d(51), _d(50)]
    assert {layer.media_type for layer in parsed.layers} == {m.DOCKER_SCHEMA1_LAYER}
    assert parsed.referenced_blob_digests == (_d(50), _d(51))
    assert m.image_size(parsed) == 0
    assert m.image_size(parsed, blob_sizes={_d(50): 32, _d(51): 1000}) == 1032


# -- digests and sizes -------------------------------------------------------------------


def test_digest_covers_the_exact_bytes() -> None:
    compact = json.dumps(OCI_MANIFEST, separators=(",", ":")).encode()
    variants = [
        compact,
        compact + b"\n",
        json.dumps(OCI_MANIFEST, indent=2).encode(),
        b" " + compact,
    ]
    digests = {parse_manifest(data, None).digest for data in variants}
    assert len(digests) == len(variants)
    for data in variants:
        assert parse_manifest(data, None).digest == "sha256:" + hashlib.sha256(data).hexdigest()
        assert parse_manifest(data, None).size == len(data)


def test_compute_digest() -> None:
    assert m.compute_digest(b"{}") == m.OCI_EMPTY_DIGEST
    assert m.compute_digest(b"{}", "sha512") == "sha512:" + hashlib.sha512(b"{}").hexdigest()
    with pytest.raises(ValueError):
        m.compute_digest(b"{}", "md5")


def test_image_size_counts_distinct_layers_and_not_the_config() -> None:
    repeated = _with(DOCKER_V2, ("layers", 2), DOCKER_V2["layers"][0])
    assert m.image_size(_parse(repeated)) == 32654 + 16724


def test_size_limit() -> None:
    document = _encode(OCI_MANIFEST)
    at_limit = document + b" " * (m.MAX_MANIFEST_BYTES - len(document))
    assert len(at_limit) == m.MAX_MANIFEST_BYTES
    assert parse_manifest(at_limit, None).size == m.MAX_MANIFEST_BYTES
    with pytest.raises(ManifestTooLarge) as caught:
        parse_manifest(at_limit + b" ", None)
    assert isinstance(caught.value, ManifestInvalid)
    assert caught.value.size == m.MAX_MANIFEST_BYTES + 1


def test_text_entry_point() -> None:
    text = json.dumps(OCI_MANIFEST, ensure_ascii=False)
    assert m.parse_manifest_text(text, None).digest == m.compute_digest(text.encode())
    with pytest.raises(ManifestInvalid):
        m.parse_manifest_text('{"schemaVersion": 2, "x": "\ud800"}', None)


# -- media type resolution ---------------------------------------------------------------


def test_declared_type_is_normalised() -> None:
    assert (
        _parse(
            DOCKER_V2, " Application/VND.docker.distribution.manifest.v2+JSON ;charset=utf-8"
        ).media_type
        == m.DOCKER_MANIFEST_V2
    )


def test_missing_media_type_field_takes_the_declared_type() -> None:
    docker = _with(DOCKER_V2, ("mediaType",), ...)
    assert _parse(docker, m.DOCKER_MANIFEST_V2).media_type == m.DOCKER_MANIFEST_V2
    index = _with(OCI_INDEX, ("mediaType",), ...)
    assert _parse(index, m.OCI_INDEX).media_type == m.OCI_INDEX
    assert _parse(index, None).media_type == m.OCI_INDEX
    assert _parse(index, "application/json").media_type == m.OCI_INDEX
    assert _parse(docker, None).media_type == m.OCI_MANIFEST


def test_ecr_mode_requires_a_media_type() -> None:
    bare = _with(OCI_MANIFEST, ("mediaType",), ...)
    with pytest.raises(ManifestInvalid, match="no mediaType"):
        _parse(bare, None, infer_media_type=False)
    assert _parse(bare, m.OCI_MANIFEST, infer_media_type=False).media_type == m.OCI_MANIFEST
    assert _parse(OCI_MANIFEST, None, infer_media_type=False).media_type == m.OCI_MANIFEST
    with pytest.raises(ManifestInvalid):
        _parse(SCHEMA1, None, infer_media_type=False)


@pytest.mark.parametrize(
    ("document", "declared"),
    [
        (DOCKER_V2, m.OCI_MANIFEST),
        (OCI_MANIFEST, m.DOCKER_MANIFEST_V2),
        (OCI_INDEX, m.DOCKER_MANIFEST_LIST),
        (DOCKER_LIST, m.OCI_INDEX),
        (OCI_MANIFEST, m.OCI_INDEX),
    ],
)
def test_media_type_field_must_match_the_declared_type(
    document: dict[str, Any], declared: str
) -> None:
    _rejects(document, declared, match="does not match")


@pytest.mark.parametrize(
    "declared",
    [
        m.OCI_CONFIG,
        m.OCI_LAYER_GZIP,
        "text/plain",
        "application/vnd.oci.artifact.manifest.v1+json",  # dropped before OCI 1.1 final
        "garbage",
    ],
)
def test_declared_type_must_be_a_manifest_type(declared: str) -> None:
    _rejects(_with(OCI_MANIFEST, ("mediaType",), ...), declared, match="not a supported")


@pytest.mark.parametrize(
    "field_value",
    [
        m.OCI_CONFIG,
        "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
        m.OCI_MANIFEST.upper(),
        2,
        ["x"],
        "",
    ],
)
def test_media_type_field_must_be_exactly_a_manifest_type(field_value: Any) -> None:
    _rejects(_with(OCI_MANIFEST, ("mediaType",), field_value))


def test_declared_type_cannot_turn_a_manifest_into_an_index() -> None:
    bare = _with(OCI_MANIFEST, ("mediaType",), ...)
    _rejects(bare, m.OCI_INDEX, match="must not have config or layers")
    _rejects({"schemaVersion": 2}, m.OCI_INDEX, match="manifests must be a list")
    _rejects(_with(OCI_INDEX, ("mediaType",), ...), m.OCI_MANIFEST, match="must not have manifests")


def test_uninferable_documents() -> None:
    _rejects({"schemaVersion": 2}, None, match="cannot tell")
    _rejects({"schemaVersion": 2, "layers": []}, None, match="cannot tell")
    _rejects(
        {"schemaVersion": 2, "config": OCI_MANIFEST["config"], "layers": [], "manifests": []}, None
    )


# -- invalid documents ------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xfe{}",
        '{"schemaVersion": 2, "k": "caf\u00e9"}'.encode("latin-1"),
        b"\xef\xbb\xbf" + _encode(OCI_MANIFEST),  # UTF-8 byte order mark
        _encode(OCI_MANIFEST).decode().encode("utf-16"),
        b"{",
        b"not json",
        _encode(OCI_MANIFEST) + b"{}",
        b"[]",
        b"null",
        b"2",
        b'"manifest"',
        b'{"schemaVersion": NaN}',
        b'{"schemaVersion": 2, "size": Infinity}',
        b'{"schemaVersion": ' + b"9" * 5000 + b"}",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"schemaVersion": 2, "mediaType": "a", "mediaType": "b"}',
        b'{"schemaVersion": 2, "annotations": {"\\ud800": "x"}, "config": {}}',
    ],
)
def test_not_a_json_object(data: bytes) -> None:
    with pytest.raises(ManifestInvalid):
        parse_manifest(data, None)


def test_duplicate_keys_are_refused_anywhere() -> None:
    text = _encode(OCI_MANIFEST).decode()
    doubled = text.replace('"size": 32654', '"size": 32654, "size": 1', 1)
    assert doubled != text
    with pytest.raises(ManifestInvalid, match="duplicate key 'size'"):
        parse_manifest(doubled.encode(), None)


def test_paired_surrogate_escapes_are_fine() -> None:
    data = _encode(_with(OCI_MANIFEST, ("annotations", "emoji"), "x")).replace(
        b'"x"', b'"\\ud83d\\ude00"'
    )
    assert parse_manifest(data, None).annotations["emoji"] == "\U0001f600"


@pytest.mark.parametrize("version", [1, 3, 0, -2, "2", 2.0, True, None, [2]])
def test_schema_version_must_be_2(version: Any) -> None:
    _rejects(_with(OCI_MANIFEST, ("schemaVersion",), version), m.OCI_MANIFEST)
    _rejects(_with(DOCKER_LIST, ("schemaVersion",), version))


def test_schema_version_is_required() -> None:
    _rejects(_with(OCI_MANIFEST, ("schemaVersion",), ...))


@pytest.mark.parametrize("version", [2, 3, "1", True])
def test_schema1_must_say_version_1(version: Any) -> None:
    _rejects(_with(SCHEMA1, ("schemaVersion",), version), m.DOCKER_MANIFEST_V1)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("fsLayers",), ...),
        (("fsLayers",), []),
        (("fsLayers",), {"blobSum": _d(1)}),
        (("fsLayers", 0), "sha256:..."),
        (("fsLayers", 0, "blobSum"), ...),
        (("fsLayers", 0, "blobSum"), "sha256:abc"),
        (("fsLayers", 0, "blobSum"), 5),
        (("history",), ...),
        (("history",), [{}]),
        (("history", 0), "v1"),
        (("signatures",), {"header": {}}),
    ],
)
def test_schema1_invalid(path: tuple[Any, ...], value: Any) -> None:
    _rejects(_with(SCHEMA1_SIGNED, path, value))


# Descriptors are checked the same way wherever they appear.
DESCRIPTOR_PLACES: list[tuple[dict[str, Any], tuple[Any, ...]]] = [
    (OCI_MANIFEST, ("config",)),
    (OCI_MANIFEST, ("layers", 1)),
    (DOCKER_V2, ("config",)),
    (DOCKER_V2, ("layers", 0)),
    (OCI_INDEX, ("manifests", 0)),
    (DOCKER_LIST, ("manifests", 1)),
    (ARTIFACT, ("subject",)),
]

BAD_DESCRIPTOR_CHANGES: list[tuple[str, Any]] = [
    ("mediaType", ...),
    ("mediaType", ""),
    ("mediaType", 7),
    ("mediaType", "nonsense"),
    ("mediaType", "application/"),
    ("mediaType", "a/b c"),
    ("digest", ...),
    ("digest", ""),
    ("digest", 12),
    ("digest", "sha256:" + "A" * 64),
    ("digest", "sha256:" + "a" * 63),
    ("digest", "sha256:" + "a" * 65),
    ("digest", "sha256:" + "g" * 64),
    ("digest", "sha512:" + "a" * 64),
    ("digest", "sha384:" + "a" * 96),
    ("digest", "md5:" + "a" * 32),
    ("digest", "SHA256:" + "a" * 64),
    ("digest", "sha256:" + "a" * 64 + "\n"),
    ("digest", " sha256:" + "a" * 64),
    ("size", ...),
    ("size", -1),
    ("size", 1.5),
    ("size", 10.0),
    ("size", "10"),
    ("size", True),
    ("size", None),
    ("size", 2**63),
    ("annotations", ["a"]),
    ("annotations", {"a": 1}),
    ("annotations", "a=b"),
    ("urls", "https://example.com"),
    ("urls", [1]),
    ("artifactType", 5),
    ("artifactType", "not a type"),
    ("data", 5),
]


@pytest.mark.parametrize(("document", "place"), DESCRIPTOR_PLACES)
@pytest.mark.parametrize(("key", "value"), BAD_DESCRIPTOR_CHANGES)
def test_invalid_descriptors(
    document: dict[str, Any], place: tuple[Any, ...], key: str, value: Any
) -> None:
    _rejects(_with(document, (*place, key), value))


@pytest.mark.parametrize(("document", "place"), DESCRIPTOR_PLACES)
@pytest.mark.parametrize("value", ["x", 5, [], ["a"], True])
def test_descriptor_must_be_an_object(
    document: dict[str, Any], place: tuple[Any, ...], value: Any
) -> None:
    _rejects(_with(document, place, value))


def test_descriptor_edge_values_that_are_fine() -> None:
    layer: dict[str, Any] = {
        "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
        "digest": "sha512:" + "0" * 128,
        "size": 0,
        "urls": [],
        "annotations": {},
        "artifactType": "application/vnd.example+type",
        "future-field": {"anything": [1, 2]},
    }
    parsed = _parse(_with(OCI_MANIFEST, ("layers", 0), layer))
    assert parsed.layers[0] == Descriptor(
        layer["mediaType"], layer["digest"], 0, artifact_type="application/vnd.example+type"
    )
    assert _parse(_with(OCI_MANIFEST, ("layers", 0, "size"), 2**63 - 1)).layers[0].size == 2**63 - 1


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("config",), ..., "requires config"),
        (("config",), None, "requires config"),
        (("layers",), ..., "layers must be a list"),
        (("layers",), None, "layers must be a list"),
        (("layers",), {"0": {}}, "layers must be a list"),
        (("layers",), "sha256:x", "layers must be a list"),
        (("manifests",), [], "must not have manifests"),
        (("subject",), "sha256:" + "a" * 64, "subject"),
        (("subject",), [], "subject"),
        (("annotations",), {"k": None}, "annotations"),
        (("annotations",), [], "annotations"),
        (("artifactType",), ["x"], "artifactType"),
        (("artifactType",), "application/", "artifactType"),
    ],
)
def test_invalid_image_manifests(path: tuple[Any, ...], value: Any, message: str) -> None:
    _rejects(_with(OCI_MANIFEST, path, value), match=message)
    _rejects(_with(DOCKER_V2, path, value), match=message)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("manifests",), ..., "manifests must be a list"),
        (("manifests",), None, "manifests must be a list"),
        (("manifests",), {}, "manifests must be a list"),
        (("config",), OCI_MANIFEST["config"], "must not have config or layers"),
        (("layers",), [], "must not have config or layers"),
        (("manifests", 0, "platform"), "linux/amd64", "platform"),
        (("manifests", 0, "platform"), {"os": "linux"}, "architecture"),
        (("manifests", 0, "platform"), {"architecture": "amd64"}, "os"),
        (("manifests", 0, "platform", "os"), 1, "os"),
        (("manifests", 0, "platform", "variant"), 8, "variant"),
        (("manifests", 0, "platform", "os.version"), 10, "os.version"),
        (("manifests", 0, "platform", "os.features"), "win32k", "os.features"),
        (("manifests", 0, "platform", "features"), [1], "features"),
        (("subject",), {"digest": _d(1), "size": 1}, "subject"),
    ],
)
def test_invalid_indexes(path: tuple[Any, ...], value: Any, message: str) -> None:
    _rejects(_with(OCI_INDEX, path, value), match=message)
    _rejects(_with(DOCKER_LIST, path, value), match=message)


def test_empty_lists_are_fine() -> None:
    assert _parse({**OCI_INDEX, "manifests": []}).manifests == ()
    assert _parse({**DOCKER_LIST, "manifests": []}).manifests == ()
    scratch = _parse({**DOCKER_V2, "layers": []})  # FROM scratch + LABEL
    assert scratch.layers == ()
    assert m.image_size(scratch) == 0


def test_null_optional_fields_count_as_absent() -> None:
    parsed = _parse({**ARTIFACT, "subject": None, "annotations": None, "artifactType": None})
    assert parsed.subject is None
    assert parsed.annotations == {}
    assert parsed.artifact_type == m.OCI_EMPTY
    index = _with(OCI_INDEX, ("manifests", 0, "platform"), None)
    assert _parse({**index, "config": None, "layers": None}).manifests[0].platform is None
    assert (
        _parse({**OCI_MANIFEST, "manifests": None, "mediaType": None}).media_type == m.OCI_MANIFEST
    )


# -- hypothesis: garbage in, ManifestInvalid out -------------------------------------------

_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(
        [_d(1), m.OCI_EMPTY_DIGEST, m.OCI_MANIFEST, m.OCI_INDEX, m.DOCKER_MANIFEST_V2]
    ),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=25,
)
_keys = st.sampled_from(
    [
        "schemaVersion",
        "mediaType",
        "config",
        "layers",
        "manifests",
        "subject",
        "annotations",
        "artifactType",
        "fsLayers",
        "history",
        "signatures",
        "digest",
        "size",
        "platform",
        "urls",
        "blobSum",
        "architecture",
        "os",
        "data",
    ]
)
_shaped_values = st.recursive(
    _json_values,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_keys, children, max_size=6),
    max_leaves=30,
)
_declared = (
    st.none()
    | st.sampled_from([*sorted(m.MANIFEST_MEDIA_TYPES), "application/json", ""])
    | st.text(max_size=30)
)


def _only_manifest_errors(data: bytes, declared: str | None, infer: bool) -> None:
    try:
        parsed = parse_manifest(data, declared, infer_media_type=infer)
    except ManifestInvalid:
        return
    # Whatever is accepted is self-consistent.
    assert parsed.media_type in m.MANIFEST_MEDIA_TYPES
    assert parsed.digest == m.compute_digest(data)
    assert all(m.digest_is_valid(d) for d in parsed.referenced_blob_digests)
    assert all(m.digest_is_valid(d) for d in parsed.referenced_manifest_digests)
    assert m.image_size(parsed) >= 0
    json.dumps(m.referrer_descriptor(parsed))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(value=_json_values, declared=_declared, infer=st.booleans())
def test_any_json_is_parsed_or_invalid(value: Any, declared: str | None, infer: bool) -> None:
    _only_manifest_errors(json.dumps(value).encode(), declared, infer)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.dictionaries(_keys, _shaped_values, max_size=8),
    declared=_declared,
    infer=st.booleans(),
)
def test_manifest_shaped_json_is_parsed_or_invalid(
    value: Any, declared: str | None, infer: bool
) -> None:
    _only_manifest_errors(json.dumps(value).encode(), declared, infer)


@settings(max_examples=300)
@given(
    base=st.sampled_from(
        [DOCKER_V2, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, ARTIFACT, SCHEMA1_SIGNED]
    ),
    path_choice=st.integers(min_value=0),
    value=_json_values,
    declared=_declared,
)
def test_mutated_real_manifests_are_parsed_or_invalid(
    base: dict[str, Any], path_choice: int, value: Any, declared: str | None
) -> None:
    paths: list[tuple[Any, ...]] = []
    pending: list[tuple[Any, tuple[Any, ...]]] = [(base, ())]
    while pending:
        node, path = pending.pop()
        keys = (
            list(node)
            if isinstance(node, dict)
            else range(len(node))
            if isinstance(node, list)
            else []
        )
        for key in keys:
            paths.append((*path, key))
            pending.append((node[key], (*path, key)))
    _only_manifest_errors(
        _encode(_with(base, paths[path_choice % len(paths)], value)), declared, True
    )


@settings(max_examples=300)
@given(data=st.binary(max_size=200), declared=_declared)
def test_any_bytes_are_parsed_or_invalid(data: bytes, declared: str | None) -> None:
    _only_manifest_errors(data, declared, True)


# -- names and tags ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    ["latest", "v1.2.3", "_private", "A", "a" * 128, "1.0-rc_1", "sha256-" + "a" * 64 + ".sig"],
)
def test_oci_tags_valid(tag: str) -> None:
    assert m.tag_is_valid(tag)


@pytest.mark.parametrize(
    "tag", ["", ".hidden", "-dash", "a" * 129, "a/b", "a:b", "tag\n", "café", "a b"]
)
def test_oci_tags_invalid(tag: str) -> None:
    assert not m.tag_is_valid(tag)


@pytest.mark.parametrize("tag", ["latest", ".hidden", "-dash", "a" * 300, "__", "1"])
def test_ecr_tags_valid(tag: str) -> None:
    assert m.ecr_tag_is_valid(tag)


@pytest.mark.parametrize("tag", ["", "a" * 301, "a/b", "a:b", "a+b", "tag\n", "é"])
def test_ecr_tags_invalid(tag: str) -> None:
    assert not m.ecr_tag_is_valid(tag)


@pytest.mark.parametrize(
    "name",
    [
        "ab",
        "nginx",
        "project-a/nginx-web-app",
        "a__b",
        "a--b",
        "a.b_c-d/e",
        "a/b/c/d",
        "0x",
        "a" * 256,
    ],
)
def test_repository_names_valid(name: str) -> None:
    assert m.repository_name_is_valid(name)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "a" * 257,
        "Nginx",
        "a//b",
        "/ab",
        "ab/",
        "-ab",
        "ab-",
        "a___b",
        "a..b",
        "a._b",
        "a b",
        "ab\n",
        "é",
    ],
)
def test_repository_names_invalid(name: str) -> None:
    assert not m.repository_name_is_valid(name)


def test_digest_is_valid() -> None:
    assert m.digest_is_valid(_d(1))
    assert m.digest_is_valid("sha512:" + "f" * 128)
    assert not m.digest_is_valid(_d(1) + "\n")
    assert not m.digest_is_valid(_d(1).upper())


# -- content negotiation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("media_type", "accept", "expected"),
    [
        (m.OCI_INDEX, [], True),
        (m.OCI_INDEX, [""], True),
        (m.OCI_INDEX, ["  ,  "], True),
        (m.OCI_INDEX, ["*/*"], True),
        (m.OCI_INDEX, ["application/*"], True),
        (m.OCI_INDEX, ["text/*"], False),
        (m.OCI_INDEX, [m.OCI_MANIFEST], False),
        (m.OCI_INDEX, [f"{m.OCI_MANIFEST}, {m.OCI_INDEX}"], True),
        (m.OCI_INDEX, [m.OCI_MANIFEST, m.OCI_INDEX], True),
        (m.OCI_INDEX, [f"{m.OCI_INDEX};q=0.5"], True),
        (m.OCI_INDEX, [f"{m.OCI_INDEX.upper()} ; q=0.9"], True),
        (m.OCI_INDEX, [f"{m.OCI_INDEX};q=bogus"], True),
        (m.OCI_INDEX, [f"{m.OCI_INDEX};q=0"], False),
        (m.OCI_INDEX, [f"*/*, {m.OCI_INDEX};q=0"], False),
        (m.OCI_INDEX, [f"*/*;q=0, {m.OCI_INDEX}"], True),
        (m.OCI_INDEX, ["application/*;q=0", "*/*"], False),
        (m.OCI_INDEX, [f"{m.OCI_INDEX};q=0", f"{m.OCI_INDEX};q=0.3"], True),
        # What docker 24 sends for a pull.
        (
            m.DOCKER_MANIFEST_V2,
            [
                "application/vnd.docker.distribution.manifest.v2+json, "
                "application/vnd.docker.distribution.manifest.list.v2+json, "
                "application/vnd.oci.image.index.v1+json, "
                "application/vnd.oci.image.manifest.v1+json, "
                "application/vnd.docker.distribution.manifest.v1+prettyjws"
            ],
            True,
        ),
        (m.OCI_MANIFEST, [m.DOCKER_MANIFEST_V2, m.DOCKER_MANIFEST_LIST], False),
        (f"{m.OCI_MANIFEST}; charset=utf-8", [m.OCI_MANIFEST], True),
    ],
)
def test_matches_accept(media_type: str, accept: list[str], expected: bool) -> None:
    assert m.matches_accept(media_type, accept) is expected


@pytest.mark.parametrize(
    ("stored", "accepted", "by_digest", "expected"),
    [
        (m.DOCKER_MANIFEST_V2, None, False, True),
        (m.DOCKER_MANIFEST_V2, [], False, True),
        (m.DOCKER_MANIFEST_V2, [m.DOCKER_MANIFEST_V2], False, True),
        (m.DOCKER_MANIFEST_V2, [m.OCI_MANIFEST], False, False),
        (m.DOCKER_MANIFEST_V2, [m.OCI_MANIFEST], True, True),
        (m.OCI_MANIFEST, [m.DOCKER_MANIFEST_V1, m.OCI_MANIFEST.upper()], False, True),
        (m.DOCKER_MANIFEST_LIST, [m.DOCKER_MANIFEST_V2], False, False),
        (m.DOCKER_MANIFEST_LIST, [m.DOCKER_MANIFEST_LIST], False, True),
        (m.DOCKER_MANIFEST_V1_SIGNED, [m.DOCKER_MANIFEST_V1], False, True),
        (m.DOCKER_MANIFEST_V1, [m.DOCKER_MANIFEST_V1_SIGNED], False, True),
        (m.DOCKER_MANIFEST_V1, [m.DOCKER_MANIFEST_V2], False, False),
        (m.OCI_INDEX, ["*/*"], False, False),
    ],
)
def test_ecr_accepts_media_type(
    stored: str, accepted: list[str] | None, by_digest: bool, expected: bool
) -> None:
    assert m.ecr_accepts_media_type(stored, accepted, by_digest=by_digest) is expected


def test_descriptors_are_hashable() -> None:
    parsed = _parse(OCI_INDEX)
    assert len(set(parsed.manifests)) == 4
    assert hash(parsed) == hash(_parse(OCI_INDEX))
