"""The server's strict request decoder and the shared wire models."""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from typing import Any

import msgspec
import pytest

from openecr.ecr_api._validation import _LINEAR_EQUIVALENTS, decode_request
from openecr.errors import InvalidParameterError, SerializationError, UnknownOperationError
from openecr.models import (
    OPERATIONS,
    REQUEST_TYPES,
    RESPONSE_TYPES,
    SHAPES,
    BatchGetImageRequest,
    CreateRepositoryRequest,
    DescribeImagesResponse,
    DescribeRepositoriesRequest,
    EncryptionConfiguration,
    ImageIdentifier,
    ImageScanningConfiguration,
    PutImageRequest,
    PutRegistryScanningConfigurationRequest,
    PutReplicationConfigurationRequest,
    Repository,
    Tag,
    TagResourceRequest,
    UploadLayerPartRequest,
)

UPLOAD_ID = "12345678-1234-1234-1234-123456789abc"
REPO_PATTERN = SHAPES["RepositoryName"].pattern


def decode(operation: str, body: Any) -> msgspec.Struct:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return decode_request(operation, raw)


def invalid(operation: str, body: Any) -> str:
    """The message of the InvalidParameterError the body must raise."""
    with pytest.raises(InvalidParameterError) as info:
        decode(operation, body)
    return info.value.message


def malformed(operation: str, body: Any) -> str:
    """The message of the SerializationError the body must raise."""
    with pytest.raises(SerializationError) as info:
        decode(operation, body)
    return info.value.message


def constraint(path: str, detail: str) -> str:
    return f"Invalid parameter at '{path}' failed to satisfy constraint: '{detail}'"


# -- valid bodies -------------------------------------------------------------------------


def test_create_repository_decodes_to_struct_with_snake_case_attributes() -> None:
    request = decode(
        "CreateRepository",
        {
            "registryId": "123456789012",
            "repositoryName": "team/app",
            "tags": [{"Key": "env", "Value": "prod"}],
            "imageTagMutability": "IMMUTABLE",
            "imageScanningConfiguration": {"scanOnPush": True},
            "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": "alias/x"},
        },
    )
    assert isinstance(request, CreateRepositoryRequest)
    assert request.registry_id == "123456789012"
    assert request.repository_name == "team/app"
    assert request.tags == [Tag(key="env", value="prod")]
    assert request.image_tag_mutability == "IMMUTABLE"
    assert request.image_scanning_configuration == ImageScanningConfiguration(scan_on_push=True)
    assert request.encryption_configuration == EncryptionConfiguration(
        encryption_type="KMS", kms_key="alias/x"
    )
    assert request.image_tag_mutability_exclusion_filters is None


def test_batch_get_image_decodes_nested_lists() -> None:
    request = decode(
        "BatchGetImage",
        {
            "repositoryName": "app",
            "imageIds": [{"imageTag": "latest"}, {"imageDigest": "sha256:" + "a" * 64}],
            "acceptedMediaTypes": ["application/vnd.oci.image.manifest.v1+json"],
        },
    )
    assert isinstance(request, BatchGetImageRequest)
    assert request.image_ids == [
        ImageIdentifier(image_tag="latest"),
        ImageIdentifier(image_digest="sha256:" + "a" * 64),
    ]
    assert request.accepted_media_types == ["application/vnd.oci.image.manifest.v1+json"]


def test_put_image_and_tag_resource_decode() -> None:
    put = decode(
        "PutImage",
        {"repositoryName": "app", "imageManifest": '{"schemaVersion": 2}', "imageTag": "v1"},
    )
    assert isinstance(put, PutImageRequest)
    assert put.image_manifest == '{"schemaVersion": 2}'
    assert put.image_tag == "v1"
    tag = decode(
        "TagResource",
        {
            "resourceArn": "arn:aws:ecr:us-east-1:1:repository/a",
            "tags": [{"Key": "k", "Value": ""}],
        },
    )
    assert isinstance(tag, TagResourceRequest)
    assert tag.tags == [Tag(key="k", value="")]


def test_upload_layer_part_blob_is_base64_decoded() -> None:
    request = decode(
        "UploadLayerPart",
        {
            "repositoryName": "app",
            "uploadId": UPLOAD_ID,
            "partFirstByte": 0,
            "partLastByte": 4,
            "layerPartBlob": base64.b64encode(b"hello").decode(),
        },
    )
    assert isinstance(request, UploadLayerPartRequest)
    assert request.layer_part_blob == b"hello"
    assert request.part_first_byte == 0 and request.part_last_byte == 4


def test_empty_body_counts_as_empty_object() -> None:
    assert decode_request("DescribeRepositories", b"") == DescribeRepositoriesRequest()
    assert (
        decode_request("GetAuthorizationToken", b"{}") == REQUEST_TYPES["GetAuthorizationToken"]()
    )
    assert "'repositoryName'" in invalid("CreateRepository", b"")


def test_deep_replication_configuration_decodes() -> None:
    request = decode(
        "PutReplicationConfiguration",
        {
            "replicationConfiguration": {
                "rules": [
                    {
                        "destinations": [{"region": "eu-west-1", "registryId": "123456789012"}],
                        "repositoryFilters": [{"filter": "team/", "filterType": "PREFIX_MATCH"}],
                    }
                ]
            }
        },
    )
    assert isinstance(request, PutReplicationConfigurationRequest)
    assert request.replication_configuration is not None
    rules = request.replication_configuration.rules
    assert rules is not None and rules[0].destinations is not None
    assert rules[0].destinations[0].region == "eu-west-1"
    assert rules[0].repository_filters is not None
    assert rules[0].repository_filters[0].filter_type == "PREFIX_MATCH"


def test_registry_scanning_configuration_decodes() -> None:
    request = decode(
        "PutRegistryScanningConfiguration",
        {
            "scanType": "ENHANCED",
            "rules": [
                {
                    "scanFrequency": "CONTINUOUS_SCAN",
                    "repositoryFilters": [{"filter": "prod-*", "filterType": "WILDCARD"}],
                }
            ],
        },
    )
    assert isinstance(request, PutRegistryScanningConfigurationRequest)
    assert request.scan_type == "ENHANCED"
    assert request.rules is not None and request.rules[0].repository_filters is not None
    assert request.rules[0].repository_filters[0].filter == "prod-*"


def test_unknown_members_are_ignored() -> None:
    request = decode(
        "DescribeRepositories",
        {"maxResults": 5, "somethingNew": {"deep": [1, 2, {"x": None}]}, "max_results": "x"},
    )
    assert request == DescribeRepositoriesRequest(max_results=5)


def test_null_means_absent() -> None:
    request = decode("DescribeRepositories", {"registryId": None, "repositoryNames": None})
    assert request == DescribeRepositoriesRequest()
    assert invalid("CreateRepository", {"repositoryName": None}) == constraint(
        "repositoryName", "Member must not be null"
    )


def test_integral_float_is_accepted_for_integer() -> None:
    assert decode("DescribeRepositories", b'{"maxResults": 5.0}') == DescribeRepositoriesRequest(
        max_results=5
    )


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_every_operation_checks_its_required_members(operation: str) -> None:
    shape = SHAPES[OPERATIONS[operation].input]
    if not shape.required:
        assert isinstance(decode_request(operation, b"{}"), REQUEST_TYPES[operation])
        return
    first = next(m.wire for m in shape.members if m.wire in shape.required)
    assert invalid(operation, {}) == constraint(first, "Member must not be null")


def test_unknown_operation() -> None:
    with pytest.raises(UnknownOperationError):
        decode_request("CreateImage", b"{}")


# -- SerializationError -------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"a": 1,}', b"\xff\xfe", b" "])
def test_invalid_json(body: bytes) -> None:
    malformed("DescribeRepositories", body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "Start of list found where not expected."),
        (b'"x"', "STRING_VALUE can not be converted to a Structure"),
        (b"1", "NUMBER_VALUE can not be converted to a Structure"),
        (b"null", "NULL_VALUE can not be converted to a Structure"),
    ],
)
def test_top_level_must_be_an_object(body: bytes, message: str) -> None:
    assert malformed("DescribeRepositories", body) == message


@pytest.mark.parametrize(
    ("operation", "body", "message"),
    [
        (
            "CreateRepository",
            {"repositoryName": 5},
            "NUMBER_VALUE can not be converted to a String",
        ),
        (
            "CreateRepository",
            {"repositoryName": 5.5},
            "NUMBER_VALUE can not be converted to a String",
        ),
        (
            "CreateRepository",
            {"repositoryName": True},
            "BOOLEAN_VALUE can not be converted to a String",
        ),
        (
            "CreateRepository",
            {"repositoryName": {"a": 1}},
            "Start of structure or map found where not expected.",
        ),
        ("CreateRepository", {"repositoryName": ["a"]}, "Start of list found where not expected."),
        (
            "DescribeRepositories",
            {"maxResults": "10"},
            "STRING_VALUE can not be converted to an Integer",
        ),
        (
            "DescribeRepositories",
            {"maxResults": True},
            "BOOLEAN_VALUE can not be converted to an Integer",
        ),
        (
            "DescribeRepositories",
            {"maxResults": 1.5},
            "NUMBER_VALUE can not be converted to an Integer",
        ),
        (
            "DescribeRepositories",
            {"repositoryNames": {"a": "b"}},
            "Start of structure or map found where not expected.",
        ),
        (
            "DescribeRepositories",
            {"repositoryNames": "app"},
            "STRING_VALUE can not be converted to a List",
        ),
        (
            "DescribeRepositories",
            {"repositoryNames": ["app", 7]},
            "NUMBER_VALUE can not be converted to a String",
        ),
        (
            "DeleteRepository",
            {"repositoryName": "app", "force": "true"},
            "STRING_VALUE can not be converted to a Boolean",
        ),
        (
            "DeleteRepository",
            {"repositoryName": "app", "force": 1},
            "NUMBER_VALUE can not be converted to a Boolean",
        ),
        (
            "CreateRepository",
            {"repositoryName": "app", "imageScanningConfiguration": "yes"},
            "STRING_VALUE can not be converted to a Structure",
        ),
        (
            "CreateRepository",
            {"repositoryName": "app", "imageScanningConfiguration": [True]},
            "Start of list found where not expected.",
        ),
        (
            "CreateRepository",
            {"repositoryName": "app", "imageScanningConfiguration": {"scanOnPush": "yes"}},
            "STRING_VALUE can not be converted to a Boolean",
        ),
        (
            "CreateRepository",
            {"repositoryName": "app", "tags": [{"Key": "k", "Value": 1}]},
            "NUMBER_VALUE can not be converted to a String",
        ),
    ],
)
def test_wrong_json_types(operation: str, body: Any, message: str) -> None:
    assert malformed(operation, body) == message


@pytest.mark.parametrize(
    "body",
    [
        b'{"maxResults": 2147483648}',  # beyond a 32-bit integer
        b'{"maxResults": 123456789012345678901234567890}',
        b'{"maxResults": -99999999999999999999}',
        b'{"maxResults": 1e30}',
        b'{"maxResults": 1e400}',
    ],
)
def test_integers_out_of_range(body: bytes) -> None:
    malformed("DescribeRepositories", body)


def test_long_beyond_64_bits() -> None:
    base = {"repositoryName": "a1", "uploadId": UPLOAD_ID, "layerPartBlob": ""}
    ok = decode("UploadLayerPart", {**base, "partFirstByte": 2**63 - 1, "partLastByte": 0})
    assert isinstance(ok, UploadLayerPartRequest) and ok.part_first_byte == 2**63 - 1
    message = malformed("UploadLayerPart", {**base, "partFirstByte": 2**64, "partLastByte": 0})
    assert message == "NUMBER_VALUE can not be converted to a Long"


@pytest.mark.parametrize("blob", ["not base64!", "aGVsbG8", "aGVsbG8=\n", "é"])
def test_bad_base64(blob: str) -> None:
    body = {
        "repositoryName": "app",
        "uploadId": UPLOAD_ID,
        "partFirstByte": 0,
        "partLastByte": 1,
        "layerPartBlob": blob,
    }
    assert malformed("UploadLayerPart", body).startswith("Failed to decode STRING_VALUE as base64")


def test_blob_of_wrong_type() -> None:
    body = {"repositoryName": "a1", "uploadId": UPLOAD_ID, "partFirstByte": 0, "partLastByte": 1}
    message = malformed("UploadLayerPart", {**body, "layerPartBlob": 12})
    assert message == "NUMBER_VALUE can not be converted to a Blob"


def test_type_error_wins_over_an_earlier_constraint_violation() -> None:
    # repositoryName violates its pattern first in member order, but AWS deserializes the
    # whole body before validating it.
    body = {
        "repositoryName": "UPPER",
        "imageScanningConfiguration": {"scanOnPush": "yes"},
    }
    assert malformed("CreateRepository", body) == "STRING_VALUE can not be converted to a Boolean"
    blob_body = {
        "registryId": "x",
        "repositoryName": "a1",
        "uploadId": UPLOAD_ID,
        "partFirstByte": 0,
        "partLastByte": 1,
        "layerPartBlob": "***",
    }
    assert malformed("UploadLayerPart", blob_body).startswith("Failed to decode")


def test_type_error_after_a_decoded_blob_and_a_violation() -> None:
    # The blob is decoded before the violation; the types-only pass must accept it.
    body = {
        "repositoryName": "a1",
        "uploadId": "not-a-uuid",
        "partFirstByte": 0,
        "partLastByte": 1,
        "layerPartBlob": "aGk=",
    }
    assert invalid("UploadLayerPart", body).startswith(
        "Invalid parameter at 'uploadId' failed to satisfy constraint: 'must satisfy"
    )


def test_deep_nesting_is_a_serialization_error() -> None:
    body = b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    malformed("DescribeRepositories", body)


# -- InvalidParameterError ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["ab", "a__b", "a--b/c.d", "a1/b2/c3", "a.b_c-d", "x" * 256])
def test_repository_name_accepted(name: str) -> None:
    assert decode("CreateRepository", {"repositoryName": name}) == CreateRepositoryRequest(
        repository_name=name
    )


@pytest.mark.parametrize("name", ["AB", "-a", "a//b", "a/", "/a", "a_", "a___b", "a..b", "a b"])
def test_repository_name_pattern_rejected(name: str) -> None:
    assert invalid("CreateRepository", {"repositoryName": name}) == constraint(
        "repositoryName", f"must satisfy regular expression '{REPO_PATTERN}'"
    )


def test_repository_name_length_is_checked_before_pattern() -> None:
    assert invalid("CreateRepository", {"repositoryName": "A"}) == constraint(
        "repositoryName", "Member must have length greater than or equal to 2"
    )
    assert invalid("CreateRepository", {"repositoryName": "A" * 257}) == constraint(
        "repositoryName", "Member must have length less than or equal to 256"
    )


def test_string_length_counts_characters() -> None:
    # 128 non-ASCII characters are 256 UTF-8 bytes but satisfy a max of 128.
    body = {
        "repositoryName": "app",
        "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "é" * 129}],
    }
    assert invalid("CreateRepository", body) == constraint(
        "imageTagMutabilityExclusionFilters.1.member.filter",
        "Member must have length less than or equal to 128",
    )


def test_first_violation_in_member_order() -> None:
    # registryId comes before repositoryName in the model.
    body = {"repositoryName": "BAD", "registryId": "1"}
    assert invalid("CreateRepository", body) == constraint(
        "registryId", "must satisfy regular expression '[0-9]{12}'"
    )


def test_enum_violation() -> None:
    assert invalid(
        "CreateRepository", {"repositoryName": "app", "imageTagMutability": "mutable"}
    ) == constraint(
        "imageTagMutability",
        f"Member must satisfy enum value set: [{', '.join(SHAPES['ImageTagMutability'].enum)}]",
    )
    assert invalid(
        "CreateRepository",
        {"repositoryName": "app", "encryptionConfiguration": {"encryptionType": "DES"}},
    ) == constraint(
        "encryptionConfiguration.encryptionType",
        f"Member must satisfy enum value set: [{', '.join(SHAPES['EncryptionType'].enum)}]",
    )


def test_nested_required_member() -> None:
    assert invalid("PutImageScanningConfiguration", {"repositoryName": "app"}) == constraint(
        "imageScanningConfiguration", "Member must not be null"
    )
    assert invalid(
        "CreateRepository", {"repositoryName": "app", "encryptionConfiguration": {}}
    ) == constraint("encryptionConfiguration.encryptionType", "Member must not be null")


def test_list_item_paths_are_one_based() -> None:
    body = {
        "repositoryName": "app",
        "imageIds": [{"imageTag": "ok"}, {"imageTag": "x" * 301}],
    }
    assert invalid("BatchDeleteImage", body) == constraint(
        "imageIds.2.member.imageTag", "Member must have length less than or equal to 300"
    )
    assert invalid("DescribeRepositories", {"repositoryNames": ["ok", "no!"]}) == constraint(
        "repositoryNames.2.member", f"must satisfy regular expression '{REPO_PATTERN}'"
    )


def test_null_list_item() -> None:
    assert invalid("DescribeRepositories", {"repositoryNames": ["ok", None]}) == constraint(
        "repositoryNames.2.member", "Member must not be null"
    )


def test_list_sizes() -> None:
    ids = [{"imageTag": f"t{i}"} for i in range(101)]
    assert invalid("BatchGetImage", {"repositoryName": "app", "imageIds": ids}) == constraint(
        "imageIds", "Member must have length less than or equal to 100"
    )
    assert invalid("BatchGetImage", {"repositoryName": "app", "imageIds": []}) == constraint(
        "imageIds", "Member must have length greater than or equal to 1"
    )
    tokens = {"registryIds": ["123456789012"] * 11}
    assert invalid("GetAuthorizationToken", tokens) == constraint(
        "registryIds", "Member must have length less than or equal to 10"
    )


def test_number_ranges() -> None:
    assert invalid("DescribeRepositories", {"maxResults": 1001}) == constraint(
        "maxResults", "Member must have value less than or equal to 1000"
    )
    assert invalid("DescribeRepositories", {"maxResults": 0}) == constraint(
        "maxResults", "Member must have value greater than or equal to 1"
    )
    assert invalid(
        "GetLifecyclePolicyPreview", {"repositoryName": "app", "maxResults": 101}
    ) == constraint("maxResults", "Member must have value less than or equal to 100")
    body = {
        "repositoryName": "app",
        "uploadId": UPLOAD_ID,
        "partFirstByte": -1,
        "partLastByte": 0,
        "layerPartBlob": "",
    }
    assert invalid("UploadLayerPart", body) == constraint(
        "partFirstByte", "Member must have value greater than or equal to 0"
    )


def test_lifecycle_policy_min_length() -> None:
    body = {"repositoryName": "app", "lifecyclePolicyText": "{}"}
    assert invalid("PutLifecyclePolicy", body) == constraint(
        "lifecyclePolicyText", "Member must have length greater than or equal to 100"
    )


def test_blob_length_is_the_decoded_length() -> None:
    limit = SHAPES["LayerPartBlob"].max
    assert limit is not None
    body = {
        "repositoryName": "app",
        "uploadId": UPLOAD_ID,
        "partFirstByte": 0,
        "partLastByte": limit,
        "layerPartBlob": base64.b64encode(bytes(limit + 1)).decode(),
    }
    assert invalid("UploadLayerPart", body) == constraint(
        "layerPartBlob", f"Member must have length less than or equal to {limit}"
    )
    body["layerPartBlob"] = base64.b64encode(bytes(limit)).decode()
    request = decode("UploadLayerPart", body)
    assert isinstance(request, UploadLayerPartRequest)
    assert request.layer_part_blob is not None and len(request.layer_part_blob) == limit


def test_replication_configuration_deep_paths() -> None:
    def body(rule: dict[str, Any]) -> dict[str, Any]:
        return {"replicationConfiguration": {"rules": [rule]}}

    prefix = "replicationConfiguration.rules.1.member"
    assert invalid("PutReplicationConfiguration", {"replicationConfiguration": {}}) == (
        constraint("replicationConfiguration.rules", "Member must not be null")
    )
    assert invalid("PutReplicationConfiguration", body({})) == constraint(
        f"{prefix}.destinations", "Member must not be null"
    )
    destination = {"region": "eu-west-1", "registryId": "123456789012"}
    assert invalid(
        "PutReplicationConfiguration",
        body({"destinations": [destination, {"region": "EU", "registryId": "123456789012"}]}),
    ) == constraint(
        f"{prefix}.destinations.2.member.region",
        "must satisfy regular expression '[0-9a-z-]{2,25}'",
    )
    assert invalid(
        "PutReplicationConfiguration",
        body({"destinations": [{"region": "eu-west-1"}]}),
    ) == constraint(f"{prefix}.destinations.1.member.registryId", "Member must not be null")
    assert invalid(
        "PutReplicationConfiguration",
        body(
            {
                "destinations": [destination],
                "repositoryFilters": [{"filter": "team", "filterType": "SUFFIX_MATCH"}],
            }
        ),
    ) == constraint(
        f"{prefix}.repositoryFilters.1.member.filterType",
        "Member must satisfy enum value set: [PREFIX_MATCH]",
    )
    limit = SHAPES["ReplicationRuleList"].max
    assert limit is not None
    rules = [{"destinations": [destination]}] * (limit + 1)
    assert invalid(
        "PutReplicationConfiguration", {"replicationConfiguration": {"rules": rules}}
    ) == constraint(
        "replicationConfiguration.rules", f"Member must have length less than or equal to {limit}"
    )


def test_registry_scanning_configuration_deep_paths() -> None:
    def body(filters: list[Any], frequency: str = "SCAN_ON_PUSH") -> dict[str, Any]:
        return {"rules": [{"scanFrequency": frequency, "repositoryFilters": filters}]}

    prefix = "rules.1.member.repositoryFilters"
    good = {"filter": "*", "filterType": "WILDCARD"}
    assert invalid("PutRegistryScanningConfiguration", body([good, {"filter": "a"}])) == (
        constraint(f"{prefix}.2.member.filterType", "Member must not be null")
    )
    pattern = SHAPES["ScanningRepositoryFilterValue"].pattern
    assert invalid(
        "PutRegistryScanningConfiguration",
        body([{"filter": "a//b", "filterType": "WILDCARD"}]),
    ) == constraint(f"{prefix}.1.member.filter", f"must satisfy regular expression '{pattern}'")
    assert invalid("PutRegistryScanningConfiguration", body([good], "DAILY")) == constraint(
        "rules.1.member.scanFrequency",
        "Member must satisfy enum value set: [SCAN_ON_PUSH, CONTINUOUS_SCAN, MANUAL]",
    )
    assert invalid("PutRegistryScanningConfiguration", {"scanType": "NONE"}) == constraint(
        "scanType", "Member must satisfy enum value set: [BASIC, ENHANCED]"
    )
    too_many = {"rules": [body([good])["rules"][0]] * 3}
    assert invalid("PutRegistryScanningConfiguration", too_many) == constraint(
        "rules", "Member must have length less than or equal to 2"
    )


def test_hostile_scanning_filter_is_rejected_quickly() -> None:
    # The model's pattern backtracks exponentially on this input (seconds at 24 chars).
    body = {
        "rules": [
            {
                "scanFrequency": "MANUAL",
                "repositoryFilters": [{"filter": "a" * 254 + "!", "filterType": "WILDCARD"}],
            }
        ]
    }
    start = time.perf_counter()
    invalid("PutRegistryScanningConfiguration", body)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize(("model_pattern", "linear_pattern"), sorted(_LINEAR_EQUIVALENTS.items()))
def test_linear_pattern_equivalents_match_the_same_strings(
    model_pattern: str, linear_pattern: str
) -> None:
    model, linear = re.compile(model_pattern), re.compile(linear_pattern)
    alphabet = "a*./-_A"
    for length in range(8):
        for chars in itertools.product(alphabet, repeat=length):
            text = "".join(chars)
            assert bool(model.fullmatch(text)) == bool(linear.fullmatch(text)), text


def test_every_catalog_pattern_compiles() -> None:
    patterns = [shape.pattern for shape in SHAPES.values() if shape.pattern is not None]
    assert patterns
    for pattern in patterns:
        re.compile(pattern)


# -- the structs on the wire --------------------------------------------------------------


def test_encode_omits_none_and_uses_wire_names() -> None:
    request = CreateRepositoryRequest(
        repository_name="app",
        image_scanning_configuration=ImageScanningConfiguration(scan_on_push=False),
        tags=[Tag(key="team", value="infra")],
    )
    encoded = msgspec.json.encode(request)
    assert json.loads(encoded) == {
        "repositoryName": "app",
        "tags": [{"Key": "team", "Value": "infra"}],
        "imageScanningConfiguration": {"scanOnPush": False},
    }
    assert decode_request("CreateRepository", encoded) == request
    assert msgspec.json.encode(DescribeRepositoriesRequest()) == b"{}"


def test_blob_round_trip() -> None:
    request = UploadLayerPartRequest(
        repository_name="app",
        upload_id=UPLOAD_ID,
        part_first_byte=0,
        part_last_byte=2,
        layer_part_blob=b"\x00\xff\x10",
    )
    encoded = msgspec.json.encode(request)
    assert json.loads(encoded)["layerPartBlob"] == base64.b64encode(b"\x00\xff\x10").decode()
    assert decode_request("UploadLayerPart", encoded) == request


def test_responses_decode_leniently() -> None:
    body = {
        "imageDetails": [
            {
                "imageDigest": "sha256:" + "b" * 64,
                "imageTags": ["v1"],
                "imagePushedAt": 1565128275,
                "imageSizeInBytes": 1234,
                "imageStatus": "SOMETHING_NEW",
                "brandNewField": {"nested": True},
            }
        ],
        "nextToken": None,
    }
    response = msgspec.json.decode(json.dumps(body).encode(), type=DescribeImagesResponse)
    assert response.image_details is not None
    detail = response.image_details[0]
    assert detail.image_pushed_at == 1565128275.0
    assert detail.image_status == "SOMETHING_NEW"
    assert response.next_token is None
    repository = msgspec.json.decode(
        b'{"repositoryName": "a", "createdAt": 1448875853.241, "imageTagMutability": "X"}',
        type=Repository,
    )
    assert repository.created_at == 1448875853.241


def test_request_and_response_tables_cover_the_41_operations() -> None:
    assert len(OPERATIONS) == 41
    assert set(REQUEST_TYPES) == set(RESPONSE_TYPES) == set(OPERATIONS)
    assert "ServerException" in OPERATIONS["CreateRepository"].errors
