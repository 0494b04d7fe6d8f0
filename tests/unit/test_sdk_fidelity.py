"""Fidelity with boto3: the SDK speaks ECR exactly as boto3 does.

For every one of the 41 operations (several with more than one call), boto3 and ``ECR`` make
the same call against the scripted stand-in of ``test_sdk_transport``, which records both
requests and answers both with the same scripted body. Then:

* requests: the ``X-Amz-Target``, the ``Content-Type`` and the parsed JSON bodies are equal
  (boto3 sends ``{}`` for no input; unset optional members are omitted by both). The bytes
  differ on purpose and are not compared: boto3 writes ``json.dumps`` output (``", "`` and
  ``": "`` separators, non-ASCII escaped as ``\\uXXXX``) while we write compact UTF-8. Key
  order: boto3 writes members in the order its caller passed them, we write them in the
  model's member order; given its arguments in model order, boto3's key order equals ours.
* responses: ``msgspec.to_builtins`` of our result equals boto3's parsed dict field by field
  (``ResponseMetadata`` dropped from both; boto3's ``datetime`` values as epoch floats).
* errors: the same error answer gives boto3's ``Error.Code``/``Error.Message`` and modelled
  members equal to our ``code``/``message``/``extra`` (and the same status and request id).

Both clients run with retries off. boto3 is the reference; nothing of openecr is mocked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import boto3
import botocore.session
import msgspec
import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.model import Shape
from test_sdk_transport import (
    ACCESS_KEY,
    JSON_TYPE,
    REGION,
    SECRET_KEY,
    TARGET_PREFIX,
    Reply,
    ScriptedServer,
    Seen,
    client_for,
    error,
    ok,
    scripted_server,
)

from openecr import ECR, ECRError
from openecr import models as m

SERVICE_MODEL = botocore.session.get_session().get_service_model("ecr")

# --- realistic values ---------------------------------------------------------------------

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
REPO = "team/app"
REPO_ARN = f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{REPO}"
REPO_URI = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPO}"
KMS_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SECRET_ARN = (
    f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
)
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/ecr-pull-through-cache"
DIGEST = "sha256:" + "a" * 64
DIGEST_2 = "sha256:" + "b" * 64
LAYER = "sha256:" + "c" * 64
LAYER_2 = "sha256:" + "d" * 64
UPLOAD_ID = "e5bd1f8e-0b8d-4b0a-9d3c-6f1f1a2b3c4d"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# Epoch seconds as ECR sends them: whole, fractional and with millisecond precision.
T_CREATED = 1700000000
T_PUSHED = 1700003600.5
T_SCANNED = 1712345678.123
T_UPDATED = 1718000000.25
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": DIGEST_2,
            "size": 1469,
        },
        "layers": [{"mediaType": OCI_LAYER, "digest": LAYER, "size": 3370706}],
        "annotations": {"org.opencontainers.image.title": "Grüße ✓ 東京"},
    },
    ensure_ascii=False,
)
POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AllowPull",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            }
        ],
    }
)
REGISTRY_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Replicate",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
                "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
                "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/*",
            }
        ],
    }
)
LIFECYCLE = json.dumps(
    {
        "rules": [
            {
                "rulePriority": 1,
                "description": "expire untagged after 14 days",
                "selection": {
                    "tagStatus": "untagged",
                    "countType": "sinceImagePushed",
                    "countUnit": "days",
                    "countNumber": 14,
                },
                "action": {"type": "expire"},
            }
        ]
    }
)
TOKEN = "QVdTOmV5SndZWGxzYjJGa0lqb2lZbUZ6WlRZMEluMD0="
NEXT_TOKEN = "ukD72mdD/mC8b5xV3susmJzzaTgp3hKwR9nRUW1yZZ6dSgzXXyEHZNzr4t6DZg="

REPOSITORY = {
    "repositoryArn": REPO_ARN,
    "registryId": ACCOUNT,
    "repositoryName": REPO,
    "repositoryUri": REPO_URI,
    "createdAt": T_CREATED,
    "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
    "imageTagMutabilityExclusionFilters": [
        {"filterType": "WILDCARD", "filter": "latest"},
        {"filterType": "WILDCARD", "filter": "dev-*"},
    ],
    "imageScanningConfiguration": {"scanOnPush": True},
    "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": KMS_KEY},
}
PLAIN_REPOSITORY = {
    "repositoryArn": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/team/api",
    "registryId": ACCOUNT,
    "repositoryName": "team/api",
    "repositoryUri": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/team/api",
    "createdAt": T_PUSHED,
    "imageTagMutability": "MUTABLE",
    "imageScanningConfiguration": {"scanOnPush": False},
    "encryptionConfiguration": {"encryptionType": "AES256"},
}
SCAN_FILTERS = [{"filter": "prod-*", "filterType": "WILDCARD"}]
REGISTRY_SCANNING = {
    "scanType": "ENHANCED",
    "rules": [
        {"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": SCAN_FILTERS},
        {
            "scanFrequency": "SCAN_ON_PUSH",
            "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}],
        },
    ],
}
REPLICATION = {
    "rules": [
        {
            "destinations": [
                {"region": "eu-west-1", "registryId": ACCOUNT},
                {"region": "us-east-1", "registryId": OTHER_ACCOUNT},
            ],
            "repositoryFilters": [{"filter": "team/", "filterType": "PREFIX_MATCH"}],
        },
        {"destinations": [{"region": "ap-south-1", "registryId": ACCOUNT}]},
    ]
}
SEVERITY_COUNTS = {"CRITICAL": 1, "HIGH": 3, "MEDIUM": 12, "LOW": 40, "INFORMATIONAL": 2}
ENHANCED_FINDING = {
    "awsAccountId": ACCOUNT,
    "description": "A heap overflow in libfoo allows remote code execution.",
    "findingArn": f"arn:aws:inspector2:{REGION}:{ACCOUNT}:finding/0123456789abcdef",
    "firstObservedAt": T_PUSHED,
    "lastObservedAt": T_SCANNED,
    "packageVulnerabilityDetails": {
        "cvss": [
            {
                "baseScore": 9.8,
                "scoringVector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                "source": "NVD",
                "version": "3.1",
            },
            {"baseScore": 7, "scoringVector": "AV:N/AC:L/Au:N/C:P/I:P/A:P", "version": "2.0"},
        ],
        "referenceUrls": ["https://nvd.nist.gov/vuln/detail/CVE-2024-0001"],
        "relatedVulnerabilities": [],
        "source": "NVD",
        "sourceUrl": "https://nvd.nist.gov/vuln/detail/CVE-2024-0001",
        "vendorCreatedAt": T_CREATED,
        "vendorSeverity": "CRITICAL",
        "vendorUpdatedAt": T_UPDATED,
        "vulnerabilityId": "CVE-2024-0001",
        "vulnerablePackages": [
            {
                "arch": "x86_64",
                "epoch": 0,
                "filePath": "usr/lib/libfoo.so.1",
                "name": "libfoo",
                "packageManager": "OS",
                "release": "1.el9",
                "sourceLayerHash": LAYER,
                "version": "1.2.3",
                "fixedInVersion": "1.2.4",
            }
        ],
    },
    "remediation": {
        "recommendation": {"url": "https://example.com/fix", "text": "Upgrade libfoo to 1.2.4"}
    },
    "resources": [
        {
            "details": {
                "awsEcrContainerImage": {
                    "architecture": "amd64",
                    "author": "ops@example.com",
                    "imageHash": DIGEST,
                    "imageTags": ["v1", "latest"],
                    "platform": "AMAZON_LINUX_2023",
                    "pushedAt": T_PUSHED,
                    "lastInUseAt": T_UPDATED,
                    "inUseCount": 4,
                    "registry": ACCOUNT,
                    "repositoryName": REPO,
                }
            },
            "id": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{REPO}/{DIGEST}",
            "tags": {"team": "platform", "env": "prod"},
            "type": "AWS_ECR_CONTAINER_IMAGE",
        }
    ],
    "score": 9.8,
    "scoreDetails": {
        "cvss": {
            "adjustments": [{"metric": "AV", "reason": "network isolation"}],
            "score": 9.8,
            "scoreSource": "NVD",
            "scoringVector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "version": "3.1",
        }
    },
    "severity": "CRITICAL",
    "status": "ACTIVE",
    "title": "CVE-2024-0001 - libfoo",
    "type": "PACKAGE_VULNERABILITY",
    "updatedAt": T_UPDATED,
    "fixAvailable": "YES",
    "exploitAvailable": "NO",
}


# --- the calls ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One call made the boto3 way and the SDK way, and the answer scripted for both."""

    operation: str
    sdk: dict[str, Any]
    boto: dict[str, Any]
    response: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    @property
    def id(self) -> str:
        return f"{self.operation}-{self.name}" if self.name else self.operation

    @property
    def method(self) -> str:
        return str(xform_name(self.operation))


CALLS: list[Call] = [
    Call(
        "BatchCheckLayerAvailability",
        sdk={"repository_name": REPO, "layer_digests": [LAYER, LAYER_2], "registry_id": ACCOUNT},
        boto={"registryId": ACCOUNT, "repositoryName": REPO, "layerDigests": [LAYER, LAYER_2]},
        response={
            "layers": [
                {
                    "layerDigest": LAYER,
                    "layerAvailability": "AVAILABLE",
                    "layerSize": 3370706,
                    "mediaType": OCI_LAYER,
                },
                {"layerDigest": LAYER_2, "layerAvailability": "ARCHIVED", "layerSize": 0},
            ],
            "failures": [
                {
                    "layerDigest": "sha256:zz",
                    "failureCode": "InvalidLayerDigest",
                    "failureReason": "Invalid layer digest",
                }
            ],
        },
    ),
    Call(
        "BatchDeleteImage",
        sdk={
            "repository_name": REPO,
            "image_ids": [
                m.ImageIdentifier(image_tag="v1"),
                m.ImageIdentifier(image_digest=DIGEST),
            ],
        },
        boto={"repositoryName": REPO, "imageIds": [{"imageTag": "v1"}, {"imageDigest": DIGEST}]},
        response={
            "imageIds": [{"imageDigest": DIGEST, "imageTag": "v1"}],
            "failures": [
                {
                    "imageId": {"imageDigest": DIGEST},
                    "failureCode": "ImageNotFound",
                    "failureReason": "Requested image not found",
                }
            ],
        },
    ),
    Call(
        "BatchGetImage",
        sdk={
            "repository_name": REPO,
            "image_ids": [m.ImageIdentifier(image_digest=DIGEST, image_tag="v1")],
            "registry_id": ACCOUNT,
            "accepted_media_types": [OCI_MANIFEST, DOCKER_MANIFEST],
        },
        boto={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "imageIds": [{"imageDigest": DIGEST, "imageTag": "v1"}],
            "acceptedMediaTypes": [OCI_MANIFEST, DOCKER_MANIFEST],
        },
        response={
            "images": [
                {
                    "registryId": ACCOUNT,
                    "repositoryName": REPO,
                    "imageId": {"imageDigest": DIGEST, "imageTag": "v1"},
                    "imageManifest": MANIFEST,
                    "imageManifestMediaType": OCI_MANIFEST,
                }
            ],
            "failures": [],
        },
    ),
    Call(
        "BatchGetRepositoryScanningConfiguration",
        sdk={"repository_names": [REPO, "team/missing"]},
        boto={"repositoryNames": [REPO, "team/missing"]},
        response={
            "scanningConfigurations": [
                {
                    "repositoryArn": REPO_ARN,
                    "repositoryName": REPO,
                    "scanOnPush": True,
                    "scanFrequency": "CONTINUOUS_SCAN",
                    "appliedScanFilters": SCAN_FILTERS,
                }
            ],
            "failures": [
                {
                    "repositoryName": "team/missing",
                    "failureCode": "REPOSITORY_NOT_FOUND",
                    "failureReason": "REPOSITORY_NOT_FOUND",
                }
            ],
        },
    ),
    Call(
        "CompleteLayerUpload",
        sdk={"repository_name": REPO, "upload_id": UPLOAD_ID, "layer_digests": [LAYER]},
        boto={"repositoryName": REPO, "uploadId": UPLOAD_ID, "layerDigests": [LAYER]},
        response={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "uploadId": UPLOAD_ID,
            "layerDigest": LAYER,
        },
    ),
    Call(
        "CreatePullThroughCacheRule",
        sdk={
            "ecr_repository_prefix": "docker-hub",
            "upstream_registry_url": "registry-1.docker.io",
            "registry_id": ACCOUNT,
            "upstream_registry": "docker-hub",
            "credential_arn": SECRET_ARN,
            "custom_role_arn": ROLE_ARN,
            "upstream_repository_prefix": "library",
        },
        boto={
            "ecrRepositoryPrefix": "docker-hub",
            "upstreamRegistryUrl": "registry-1.docker.io",
            "registryId": ACCOUNT,
            "upstreamRegistry": "docker-hub",
            "credentialArn": SECRET_ARN,
            "customRoleArn": ROLE_ARN,
            "upstreamRepositoryPrefix": "library",
        },
        response={
            "ecrRepositoryPrefix": "docker-hub",
            "upstreamRegistryUrl": "registry-1.docker.io",
            "createdAt": T_PUSHED,
            "registryId": ACCOUNT,
            "upstreamRegistry": "docker-hub",
            "credentialArn": SECRET_ARN,
            "customRoleArn": ROLE_ARN,
            "upstreamRepositoryPrefix": "library",
        },
    ),
    Call(
        "CreateRepository",
        name="everything",
        sdk={
            "repository_name": REPO,
            "registry_id": ACCOUNT,
            "tags": [m.Tag(key="team", value="platform"), m.Tag(key="owner", value="Grüße ✓")],
            "image_tag_mutability": "IMMUTABLE_WITH_EXCLUSION",
            "image_tag_mutability_exclusion_filters": [
                m.ImageTagMutabilityExclusionFilter(filter_type="WILDCARD", filter="latest"),
                m.ImageTagMutabilityExclusionFilter(filter_type="WILDCARD", filter="dev-*"),
            ],
            "image_scanning_configuration": m.ImageScanningConfiguration(scan_on_push=True),
            "encryption_configuration": m.EncryptionConfiguration(
                encryption_type="KMS", kms_key=KMS_KEY
            ),
        },
        boto={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "tags": [{"Key": "team", "Value": "platform"}, {"Key": "owner", "Value": "Grüße ✓"}],
            "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [
                {"filterType": "WILDCARD", "filter": "latest"},
                {"filterType": "WILDCARD", "filter": "dev-*"},
            ],
            "imageScanningConfiguration": {"scanOnPush": True},
            "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": KMS_KEY},
        },
        response={"repository": REPOSITORY},
    ),
    Call(
        "CreateRepository",
        name="minimal-false",
        # False is a value, not an omission: it must be on the wire.
        sdk={
            "repository_name": "team/api",
            "image_scanning_configuration": m.ImageScanningConfiguration(scan_on_push=False),
        },
        boto={"repositoryName": "team/api", "imageScanningConfiguration": {"scanOnPush": False}},
        response={"repository": PLAIN_REPOSITORY},
    ),
    Call(
        "DeleteLifecyclePolicy",
        sdk={"repository_name": REPO, "registry_id": ACCOUNT},
        boto={"registryId": ACCOUNT, "repositoryName": REPO},
        response={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "lifecyclePolicyText": LIFECYCLE,
            "lastEvaluatedAt": T_SCANNED,
        },
    ),
    Call(
        "DeletePullThroughCacheRule",
        sdk={"ecr_repository_prefix": "quay"},
        boto={"ecrRepositoryPrefix": "quay"},
        response={
            "ecrRepositoryPrefix": "quay",
            "upstreamRegistryUrl": "quay.io",
            "createdAt": T_CREATED,
            "registryId": ACCOUNT,
        },
    ),
    Call(
        "DeleteRegistryPolicy",
        sdk={},
        boto={},
        response={"registryId": ACCOUNT, "policyText": REGISTRY_POLICY},
    ),
    Call(
        "DeleteRepository",
        sdk={"repository_name": REPO, "force": True},
        boto={"repositoryName": REPO, "force": True},
        response={"repository": REPOSITORY},
    ),
    Call(
        "DeleteRepositoryPolicy",
        sdk={"repository_name": REPO},
        boto={"repositoryName": REPO},
        response={"registryId": ACCOUNT, "repositoryName": REPO, "policyText": POLICY},
    ),
    Call(
        "DescribeImageReplicationStatus",
        sdk={"repository_name": REPO, "image_id": m.ImageIdentifier(image_tag="v1")},
        boto={"repositoryName": REPO, "imageId": {"imageTag": "v1"}},
        response={
            "repositoryName": REPO,
            "imageId": {"imageDigest": DIGEST, "imageTag": "v1"},
            "replicationStatuses": [
                {"region": "eu-west-1", "registryId": ACCOUNT, "status": "COMPLETE"},
                {
                    "region": "us-east-1",
                    "registryId": OTHER_ACCOUNT,
                    "status": "FAILED",
                    "failureCode": "PERMISSION_DENIED",
                },
            ],
        },
    ),
    Call(
        "DescribeImageScanFindings",
        sdk={
            "repository_name": REPO,
            "image_id": m.ImageIdentifier(image_digest=DIGEST),
            "registry_id": ACCOUNT,
            "next_token": NEXT_TOKEN,
            "max_results": 50,
        },
        boto={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "imageId": {"imageDigest": DIGEST},
            "nextToken": NEXT_TOKEN,
            "maxResults": 50,
        },
        response={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "imageId": {"imageDigest": DIGEST, "imageTag": "v1"},
            "imageScanStatus": {"status": "ACTIVE", "description": "Continuous scan is selected"},
            "imageScanFindings": {
                "imageScanCompletedAt": T_SCANNED,
                "vulnerabilitySourceUpdatedAt": T_UPDATED,
                "findingSeverityCounts": SEVERITY_COUNTS,
                "findings": [
                    {
                        "name": "CVE-2019-5188",
                        "description": "A code execution vulnerability exists in e2fsprogs.",
                        "uri": "https://security-tracker.debian.org/tracker/CVE-2019-5188",
                        "severity": "MEDIUM",
                        "attributes": [
                            {"key": "package_version", "value": "1.44.5-1+deb10u1"},
                            {"key": "package_name", "value": "e2fsprogs"},
                            {"key": "CVSS2_SCORE", "value": "4.6"},
                            {"key": "no_value"},
                        ],
                    }
                ],
                "enhancedFindings": [ENHANCED_FINDING],
            },
            "nextToken": NEXT_TOKEN,
        },
    ),
    Call(
        "DescribeImages",
        sdk={
            "repository_name": REPO,
            "image_ids": [m.ImageIdentifier(image_tag="v1")],
            "max_results": 100,
            "filter": m.DescribeImagesFilter(tag_status="TAGGED", image_status="ANY"),
        },
        boto={
            "repositoryName": REPO,
            "imageIds": [{"imageTag": "v1"}],
            "maxResults": 100,
            "filter": {"tagStatus": "TAGGED", "imageStatus": "ANY"},
        },
        response={
            "imageDetails": [
                {
                    "registryId": ACCOUNT,
                    "repositoryName": REPO,
                    "imageDigest": DIGEST,
                    "imageTags": ["v1", "latest"],
                    "imageSizeInBytes": 52428800123,
                    "imagePushedAt": T_PUSHED,
                    "imageScanStatus": {"status": "COMPLETE", "description": "The scan was ok"},
                    "imageScanFindingsSummary": {
                        "imageScanCompletedAt": T_SCANNED,
                        "vulnerabilitySourceUpdatedAt": T_UPDATED,
                        "findingSeverityCounts": SEVERITY_COUNTS,
                    },
                    "imageManifestMediaType": OCI_MANIFEST,
                    "artifactMediaType": "application/vnd.oci.image.config.v1+json",
                    "lastRecordedPullTime": T_UPDATED,
                    "imageStatus": "ACTIVE",
                },
                {
                    "registryId": ACCOUNT,
                    "repositoryName": REPO,
                    "imageDigest": DIGEST_2,
                    "imageSizeInBytes": 1024,
                    "imagePushedAt": T_CREATED,
                    "subjectManifestDigest": DIGEST,
                    "imageStatus": "ARCHIVED",
                    "lastArchivedAt": T_SCANNED,
                    "lastActivatedAt": T_UPDATED,
                },
            ],
            "nextToken": NEXT_TOKEN,
        },
    ),
    Call(
        "DescribePullThroughCacheRules",
        sdk={"registry_id": ACCOUNT, "ecr_repository_prefixes": ["docker-hub", "ecr-public"]},
        boto={"registryId": ACCOUNT, "ecrRepositoryPrefixes": ["docker-hub", "ecr-public"]},
        response={
            "pullThroughCacheRules": [
                {
                    "ecrRepositoryPrefix": "docker-hub",
                    "upstreamRegistryUrl": "registry-1.docker.io",
                    "createdAt": T_CREATED,
                    "registryId": ACCOUNT,
                    "credentialArn": SECRET_ARN,
                    "upstreamRegistry": "docker-hub",
                    "updatedAt": T_UPDATED,
                },
                {
                    "ecrRepositoryPrefix": "ecr-public",
                    "upstreamRegistryUrl": "public.ecr.aws",
                    "createdAt": T_PUSHED,
                    "registryId": ACCOUNT,
                    "upstreamRegistry": "ecr-public",
                },
            ]
        },
    ),
    Call(
        "DescribeRegistry",
        sdk={},
        boto={},
        response={"registryId": ACCOUNT, "replicationConfiguration": REPLICATION},
    ),
    Call(
        "DescribeRepositories",
        name="no-input",
        sdk={},
        boto={},
        response={"repositories": [REPOSITORY, PLAIN_REPOSITORY], "nextToken": NEXT_TOKEN},
    ),
    Call(
        "DescribeRepositories",
        name="paged",
        sdk={"registry_id": ACCOUNT, "next_token": NEXT_TOKEN, "max_results": 1000},
        boto={"registryId": ACCOUNT, "nextToken": NEXT_TOKEN, "maxResults": 1000},
        response={"repositories": []},
    ),
    Call(
        "GetAuthorizationToken",
        name="no-input",
        sdk={},
        boto={},
        response={
            "authorizationData": [
                {
                    "authorizationToken": TOKEN,
                    "expiresAt": T_SCANNED,
                    "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
                }
            ]
        },
    ),
    Call(
        "GetAuthorizationToken",
        name="registry-ids",
        sdk={"registry_ids": [ACCOUNT, OTHER_ACCOUNT]},
        boto={"registryIds": [ACCOUNT, OTHER_ACCOUNT]},
        response={
            "authorizationData": [
                {
                    "authorizationToken": TOKEN,
                    "expiresAt": T_UPDATED,
                    "proxyEndpoint": f"https://{account}.dkr.ecr.{REGION}.amazonaws.com",
                }
                for account in (ACCOUNT, OTHER_ACCOUNT)
            ]
        },
    ),
    Call(
        "GetDownloadUrlForLayer",
        sdk={"repository_name": REPO, "layer_digest": LAYER},
        boto={"repositoryName": REPO, "layerDigest": LAYER},
        response={
            "downloadUrl": "https://prod-eu-central-1-starport-layer-bucket.s3.amazonaws.com/"
            "x/y?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature=abc",
            "layerDigest": LAYER,
        },
    ),
    Call(
        "GetLifecyclePolicy",
        sdk={"repository_name": REPO},
        boto={"repositoryName": REPO},
        response={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "lifecyclePolicyText": LIFECYCLE,
            "lastEvaluatedAt": T_CREATED,
        },
    ),
    Call(
        "GetLifecyclePolicyPreview",
        sdk={
            "repository_name": REPO,
            "image_ids": [m.ImageIdentifier(image_digest=DIGEST)],
            "max_results": 10,
            "filter": m.LifecyclePolicyPreviewFilter(tag_status="UNTAGGED"),
        },
        boto={
            "repositoryName": REPO,
            "imageIds": [{"imageDigest": DIGEST}],
            "maxResults": 10,
            "filter": {"tagStatus": "UNTAGGED"},
        },
        response={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "lifecyclePolicyText": LIFECYCLE,
            "status": "COMPLETE",
            "nextToken": NEXT_TOKEN,
            "previewResults": [
                {
                    "imageTags": [],
                    "imageDigest": DIGEST,
                    "imagePushedAt": T_PUSHED,
                    "action": {"type": "EXPIRE"},
                    "appliedRulePriority": 1,
                    "storageClass": "STANDARD",
                },
                {
                    "imageTags": ["old"],
                    "imageDigest": DIGEST_2,
                    "imagePushedAt": T_CREATED,
                    "action": {"type": "TRANSITION", "targetStorageClass": "ARCHIVE"},
                    "appliedRulePriority": 2,
                    "storageClass": "STANDARD",
                },
            ],
            "summary": {
                "expiringImageTotalCount": 1,
                "transitioningImageTotalCounts": [
                    {"targetStorageClass": "ARCHIVE", "imageTotalCount": 1}
                ],
            },
        },
    ),
    Call(
        "GetRegistryPolicy",
        sdk={},
        boto={},
        response={"registryId": ACCOUNT, "policyText": REGISTRY_POLICY},
    ),
    Call(
        "GetRegistryScanningConfiguration",
        sdk={},
        boto={},
        response={"registryId": ACCOUNT, "scanningConfiguration": REGISTRY_SCANNING},
    ),
    Call(
        "GetRepositoryPolicy",
        sdk={"repository_name": REPO, "registry_id": ACCOUNT},
        boto={"registryId": ACCOUNT, "repositoryName": REPO},
        response={"registryId": ACCOUNT, "repositoryName": REPO, "policyText": POLICY},
    ),
    Call(
        "InitiateLayerUpload",
        sdk={"repository_name": REPO},
        boto={"repositoryName": REPO},
        response={"uploadId": UPLOAD_ID, "partSize": 10485760},
    ),
    Call(
        "ListImages",
        sdk={
            "repository_name": REPO,
            "next_token": NEXT_TOKEN,
            "max_results": 1000,
            "filter": m.ListImagesFilter(tag_status="UNTAGGED", image_status="ACTIVE"),
        },
        boto={
            "repositoryName": REPO,
            "nextToken": NEXT_TOKEN,
            "maxResults": 1000,
            "filter": {"tagStatus": "UNTAGGED", "imageStatus": "ACTIVE"},
        },
        response={
            "imageIds": [{"imageDigest": DIGEST}, {"imageDigest": DIGEST_2, "imageTag": "v2"}],
            "nextToken": NEXT_TOKEN,
        },
    ),
    Call(
        "ListTagsForResource",
        sdk={"resource_arn": REPO_ARN},
        boto={"resourceArn": REPO_ARN},
        response={
            "tags": [{"Key": "team", "Value": "platform"}, {"Key": "owner", "Value": "Grüße ✓"}]
        },
    ),
    Call(
        "PutImage",
        sdk={
            "repository_name": REPO,
            "image_manifest": MANIFEST,
            "image_manifest_media_type": OCI_MANIFEST,
            "image_tag": "v1",
            "image_digest": DIGEST,
        },
        boto={
            "repositoryName": REPO,
            "imageManifest": MANIFEST,
            "imageManifestMediaType": OCI_MANIFEST,
            "imageTag": "v1",
            "imageDigest": DIGEST,
        },
        response={
            "image": {
                "registryId": ACCOUNT,
                "repositoryName": REPO,
                "imageId": {"imageDigest": DIGEST, "imageTag": "v1"},
                "imageManifest": MANIFEST,
                "imageManifestMediaType": OCI_MANIFEST,
            }
        },
    ),
    Call(
        "PutImageScanningConfiguration",
        sdk={
            "repository_name": REPO,
            "image_scanning_configuration": m.ImageScanningConfiguration(scan_on_push=False),
        },
        boto={"repositoryName": REPO, "imageScanningConfiguration": {"scanOnPush": False}},
        response={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "imageScanningConfiguration": {"scanOnPush": False},
        },
    ),
    Call(
        "PutImageTagMutability",
        sdk={
            "repository_name": REPO,
            "image_tag_mutability": "MUTABLE_WITH_EXCLUSION",
            "image_tag_mutability_exclusion_filters": [
                m.ImageTagMutabilityExclusionFilter(filter_type="WILDCARD", filter="release-*")
            ],
        },
        boto={
            "repositoryName": REPO,
            "imageTagMutability": "MUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [
                {"filterType": "WILDCARD", "filter": "release-*"}
            ],
        },
        response={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "imageTagMutability": "MUTABLE_WITH_EXCLUSION",
            "imageTagMutabilityExclusionFilters": [
                {"filterType": "WILDCARD", "filter": "release-*"}
            ],
        },
    ),
    Call(
        "PutLifecyclePolicy",
        sdk={"repository_name": REPO, "lifecycle_policy_text": LIFECYCLE},
        boto={"repositoryName": REPO, "lifecyclePolicyText": LIFECYCLE},
        response={"registryId": ACCOUNT, "repositoryName": REPO, "lifecyclePolicyText": LIFECYCLE},
    ),
    Call(
        "PutRegistryPolicy",
        sdk={"policy_text": REGISTRY_POLICY},
        boto={"policyText": REGISTRY_POLICY},
        response={"registryId": ACCOUNT, "policyText": REGISTRY_POLICY},
    ),
    Call(
        "PutRegistryScanningConfiguration",
        sdk={
            "scan_type": "ENHANCED",
            "rules": [
                m.RegistryScanningRule(
                    scan_frequency="CONTINUOUS_SCAN",
                    repository_filters=[
                        m.ScanningRepositoryFilter(filter="prod-*", filter_type="WILDCARD")
                    ],
                ),
                m.RegistryScanningRule(
                    scan_frequency="SCAN_ON_PUSH",
                    repository_filters=[
                        m.ScanningRepositoryFilter(filter="*", filter_type="WILDCARD")
                    ],
                ),
            ],
        },
        boto=dict(REGISTRY_SCANNING),
        response={"registryScanningConfiguration": REGISTRY_SCANNING},
    ),
    Call(
        "PutReplicationConfiguration",
        sdk={
            "replication_configuration": m.ReplicationConfiguration(
                rules=[
                    m.ReplicationRule(
                        destinations=[
                            m.ReplicationDestination(region="eu-west-1", registry_id=ACCOUNT),
                            m.ReplicationDestination(region="us-east-1", registry_id=OTHER_ACCOUNT),
                        ],
                        repository_filters=[
                            m.RepositoryFilter(filter="team/", filter_type="PREFIX_MATCH")
                        ],
                    ),
                    m.ReplicationRule(
                        destinations=[
                            m.ReplicationDestination(region="ap-south-1", registry_id=ACCOUNT)
                        ]
                    ),
                ]
            )
        },
        boto={"replicationConfiguration": REPLICATION},
        response={"replicationConfiguration": REPLICATION},
    ),
    Call(
        "SetRepositoryPolicy",
        sdk={"repository_name": REPO, "policy_text": POLICY, "force": False},
        boto={"repositoryName": REPO, "policyText": POLICY, "force": False},
        response={"registryId": ACCOUNT, "repositoryName": REPO, "policyText": POLICY},
    ),
    Call(
        "StartImageScan",
        sdk={
            "repository_name": REPO,
            "image_id": m.ImageIdentifier(image_digest=DIGEST),
            "registry_id": ACCOUNT,
        },
        boto={"registryId": ACCOUNT, "repositoryName": REPO, "imageId": {"imageDigest": DIGEST}},
        response={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "imageId": {"imageDigest": DIGEST, "imageTag": "v1"},
            "imageScanStatus": {"status": "IN_PROGRESS"},
        },
    ),
    Call(
        "StartLifecyclePolicyPreview",
        sdk={"repository_name": REPO, "lifecycle_policy_text": LIFECYCLE},
        boto={"repositoryName": REPO, "lifecyclePolicyText": LIFECYCLE},
        response={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "lifecyclePolicyText": LIFECYCLE,
            "status": "IN_PROGRESS",
        },
    ),
    Call(
        "TagResource",
        sdk={
            "resource_arn": REPO_ARN,
            "tags": [m.Tag(key="owner", value="Grüße ✓ 東京"), m.Tag(key="empty", value="")],
        },
        boto={
            "resourceArn": REPO_ARN,
            "tags": [{"Key": "owner", "Value": "Grüße ✓ 東京"}, {"Key": "empty", "Value": ""}],
        },
        response={},
    ),
    Call(
        "UntagResource",
        sdk={"resource_arn": REPO_ARN, "tag_keys": ["owner", "empty"]},
        boto={"resourceArn": REPO_ARN, "tagKeys": ["owner", "empty"]},
        response={},
    ),
    Call(
        "UploadLayerPart",
        sdk={
            "repository_name": REPO,
            "upload_id": UPLOAD_ID,
            "part_first_byte": 5242880,
            "part_last_byte": 5243135,
            "layer_part_blob": bytes(range(256)),
            "registry_id": ACCOUNT,
        },
        boto={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "uploadId": UPLOAD_ID,
            "partFirstByte": 5242880,
            "partLastByte": 5243135,
            "layerPartBlob": bytes(range(256)),
        },
        response={
            "registryId": ACCOUNT,
            "repositoryName": REPO,
            "uploadId": UPLOAD_ID,
            "lastByteReceived": 5243135,
        },
    ),
]


# --- the two clients on one stand-in --------------------------------------------------------


@pytest.fixture(scope="module")
def wire() -> Iterator[ScriptedServer]:
    with scripted_server() as server:
        yield server


@pytest.fixture
def stand_in(wire: ScriptedServer) -> ScriptedServer:
    wire.reset()
    return wire


def boto_client(server: ScriptedServer) -> Any:
    return boto3.client(
        "ecr",
        endpoint_url=server.url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"total_max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def boto(wire: ScriptedServer) -> Any:
    return boto_client(wire)


@pytest.fixture(scope="module")
def sdk(wire: ScriptedServer) -> Iterator[ECR]:
    with client_for(wire, max_attempts=1) as client:
        yield client


def call_both(
    server: ScriptedServer, boto: Any, sdk: ECR, call: Call, reply: Reply
) -> tuple[Seen, Seen, dict[str, Any], Any]:
    """Makes ``call`` with boto3, then with the SDK, both answered by ``reply``."""
    server.reset()
    server.script(reply)
    boto_result = getattr(boto, call.method)(**call.boto)
    sdk_result = getattr(sdk, call.method)(**call.sdk)
    boto_seen, sdk_seen = server.requests
    return boto_seen, sdk_seen, boto_result, sdk_result


# --- normalising results and comparing them ---------------------------------------------------


def boto_plain(value: Any) -> Any:
    """boto3's parsed value with ``ResponseMetadata`` dropped and datetimes as epoch floats."""
    if isinstance(value, dict):
        return {k: boto_plain(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, list):
        return [boto_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.timestamp()
    return value  # str, int, float, bool, bytes


def sdk_plain(result: msgspec.Struct) -> Any:
    """Our typed result as builtins (wire names, ``None`` omitted), without metadata."""
    stripped = msgspec.structs.replace(result, response_metadata=None)
    return msgspec.to_builtins(stripped, builtin_types=(bytes,))


def differences(ours: Any, theirs: Any, path: str = "$") -> list[str]:
    """Every field where ``ours`` and ``theirs`` differ, as ``path: ours != theirs``."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        found = []
        for key in [*ours, *(k for k in theirs if k not in ours)]:
            if key not in theirs:
                found.append(f"{path}.{key}: {ours[key]!r} only in ours")
            elif key not in ours:
                found.append(f"{path}.{key}: {theirs[key]!r} only in boto3's")
            else:
                found += differences(ours[key], theirs[key], f"{path}.{key}")
        return found
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return [f"{path}: {len(ours)} items != {len(theirs)} items"]
        return [
            d
            for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
            for d in differences(a, b, f"{path}[{i}]")
        ]
    same_kind = isinstance(ours, bool) == isinstance(theirs, bool)  # True == 1 in Python
    if not same_kind or ours != theirs or type(ours) in (dict, list):
        return [f"{path}: {ours!r} != {theirs!r}"]
    return []


def key_order(value: Any, path: str = "$") -> list[str]:
    """Every object key, depth first, in the order it appears."""
    if isinstance(value, dict):
        return [
            entry
            for key, item in value.items()
            for entry in (f"{path}.{key}", *key_order(item, f"{path}.{key}"))
        ]
    if isinstance(value, list):
        return [entry for i, item in enumerate(value) for entry in key_order(item, f"{path}[{i}]")]
    return []


def in_model_order(value: Any, shape: Shape) -> Any:
    """boto3 keyword arguments rearranged into the order the model lists the members."""
    if shape.type_name == "structure" and isinstance(value, dict):
        members = shape.members
        return {
            name: in_model_order(value[name], members[name]) for name in members if name in value
        }
    if shape.type_name == "list" and isinstance(value, list):
        return [in_model_order(item, shape.member) for item in value]
    return value


def unmodelled(value: Any, shape: Shape, path: str = "$") -> list[str]:
    """Members of a scripted body that the ECR model does not have (typos in the fixtures)."""
    if shape.type_name == "structure":
        found = []
        for key, item in value.items():
            if key not in shape.members:
                found.append(f"{path}.{key}")
            else:
                found += unmodelled(item, shape.members[key], f"{path}.{key}")
        return found
    if shape.type_name == "list":
        return [d for i, item in enumerate(value) for d in unmodelled(item, shape.member, path)]
    if shape.type_name == "map":
        return [d for k, item in value.items() for d in unmodelled(item, shape.value, path)]
    return []


def ids(calls: list[Call]) -> list[str]:
    return [call.id for call in calls]


# --- the set of calls itself --------------------------------------------------------------------


def test_the_calls_cover_every_operation_and_every_kind_of_member() -> None:
    assert {call.operation for call in CALLS} == set(m.OPERATIONS)
    assert len(m.OPERATIONS) == 41
    kinds: set[str] = set()

    def visit(value: Any, shape: Shape) -> None:
        kinds.add(shape.type_name)
        if shape.type_name == "structure":
            for key, item in value.items():
                visit(item, shape.members[key])
        elif shape.type_name == "list":
            for item in value:
                visit(item, shape.member)
        elif shape.type_name == "map":
            for item in value.values():
                visit(item, shape.value)

    for call in CALLS:
        operation = SERVICE_MODEL.operation_model(call.operation)
        visit(call.boto, operation.input_shape)
        visit(call.response, operation.output_shape)
        assert hasattr(ECR, call.method), call.method
    assert {"structure", "list", "map", "boolean", "integer", "long", "double"} <= kinds
    assert {"timestamp", "blob", "string"} <= kinds


@pytest.mark.parametrize("call", CALLS, ids=ids(CALLS))
def test_scripted_responses_use_only_modelled_members(call: Call) -> None:
    """Guards the fixtures: a misspelt member would be dropped by both clients unnoticed."""
    shape = SERVICE_MODEL.operation_model(call.operation).output_shape
    assert unmodelled(call.response, shape) == []
    assert unmodelled(call.boto, SERVICE_MODEL.operation_model(call.operation).input_shape) == []


# --- 1. requests -----------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS, ids=ids(CALLS))
def test_request_equals_boto3s(stand_in: ScriptedServer, boto: Any, sdk: ECR, call: Call) -> None:
    theirs, ours, _, _ = call_both(stand_in, boto, sdk, call, ok(call.response))
    assert theirs.headers["x-amz-target"] == f"{TARGET_PREFIX}{call.operation}"
    assert ours.headers["x-amz-target"] == theirs.headers["x-amz-target"]
    assert ours.headers["content-type"] == theirs.headers["content-type"] == JSON_TYPE
    assert (ours.method, ours.path) == (theirs.method, theirs.path) == ("POST", "/")
    assert differences(ours.json, theirs.json) == []
    assert ours.json == theirs.json
    if not call.boto:
        assert theirs.json == ours.json == {}  # no input: both send {}
    ours.verify()  # and ours is a valid SigV4 request for the same credentials
    theirs.verify()


@pytest.mark.parametrize("call", CALLS, ids=ids(CALLS))
def test_request_key_order_equals_boto3s_given_model_order(
    stand_in: ScriptedServer, boto: Any, sdk: ECR, call: Call
) -> None:
    """boto3 writes members in its caller's order; ours are in model order. Given its
    arguments in model order, boto3's body has the same keys in the same order as ours."""
    input_shape = SERVICE_MODEL.operation_model(call.operation).input_shape
    ordered = Call(call.operation, call.sdk, in_model_order(call.boto, input_shape))
    theirs, ours, _, _ = call_both(stand_in, boto, sdk, ordered, ok(call.response))
    assert key_order(ours.json) == key_order(theirs.json)


def test_the_blob_is_sent_as_boto3_sends_it(stand_in: ScriptedServer, boto: Any, sdk: ECR) -> None:
    """Standard base64 with padding, of every byte value (and of an empty part)."""
    upload = next(call for call in CALLS if call.operation == "UploadLayerPart")
    for blob in (bytes(range(256)), b"\xff\xfe\xfd", b""):
        call = Call(
            upload.operation,
            {**upload.sdk, "layer_part_blob": blob},
            {**upload.boto, "layerPartBlob": blob},
        )
        theirs, ours, _, _ = call_both(stand_in, boto, sdk, call, ok(upload.response))
        assert ours.json["layerPartBlob"] == theirs.json["layerPartBlob"]
        assert ours.json == theirs.json


# --- 2. responses ------------------------------------------------------------------------------


@pytest.mark.parametrize("call", CALLS, ids=ids(CALLS))
def test_response_decodes_like_boto3s(
    stand_in: ScriptedServer, boto: Any, sdk: ECR, call: Call
) -> None:
    _, _, boto_result, sdk_result = call_both(stand_in, boto, sdk, call, ok(call.response))
    assert type(sdk_result) is m.RESPONSE_TYPES[call.operation]
    theirs, ours = boto_plain(boto_result), sdk_plain(sdk_result)
    assert differences(ours, theirs) == []
    assert ours == theirs
    # Every scripted member made it through (the scripted bodies are fully modelled).
    assert len(key_order(theirs)) == len(key_order(call.response))


LENIENT: list[Call] = [
    Call(
        "DescribeRepositories",
        name="nulls-unknowns-new-enums",
        sdk={},
        boto={},
        response={
            "repositories": [
                {
                    **PLAIN_REPOSITORY,
                    "createdAt": 1700000000,  # an integer timestamp
                    "imageTagMutability": "IMMUTABLE_SOMEDAY",  # an enum value from the future
                    "encryptionConfiguration": {
                        "encryptionType": "KMS_POST_QUANTUM",
                        "kmsKey": None,
                        "keyRotation": {"enabled": True},  # a member from the future
                    },
                    "imageTagMutabilityExclusionFilters": [],
                    "brandNewMember": [1, 2, {"deep": None}],
                }
            ],
            "nextToken": None,
            "someFutureTopLevelField": {"a": "b"},
        },
    ),
    Call(
        "DescribeImageScanFindings",
        name="empty-collections",
        sdk={"repository_name": REPO, "image_id": m.ImageIdentifier(image_tag="v1")},
        boto={"repositoryName": REPO, "imageId": {"imageTag": "v1"}},
        response={
            "imageScanStatus": {"status": "FINDINGS_REVISED", "description": None},
            "imageScanFindings": {
                "findingSeverityCounts": {},
                "findings": [],
                "enhancedFindings": [{"score": 0, "resources": [{"tags": {}}]}],
                "imageScanCompletedAt": 0,
            },
        },
    ),
    Call(
        "GetAuthorizationToken",
        name="empty-body",
        sdk={},
        boto={},
        response={},
    ),
]


@pytest.mark.parametrize("call", LENIENT, ids=ids(LENIENT))
def test_nulls_unknowns_and_empty_collections_decode_like_boto3s(
    stand_in: ScriptedServer, boto: Any, sdk: ECR, call: Call
) -> None:
    """Null members are absent for both, unknown members are dropped by both, unknown enum
    values are kept as strings by both, and empty lists and maps stay empty (not absent)."""
    _, _, boto_result, sdk_result = call_both(stand_in, boto, sdk, call, ok(call.response))
    theirs, ours = boto_plain(boto_result), sdk_plain(sdk_result)
    assert differences(ours, theirs) == []
    assert ours == theirs


BATCH_WITHOUT_FAILURES = Call(
    "BatchGetImage",
    name="no-failures-member",
    sdk={"repository_name": REPO, "image_ids": [m.ImageIdentifier(image_tag="v1")]},
    boto={"repositoryName": REPO, "imageIds": [{"imageTag": "v1"}]},
    response={
        "images": [
            {
                "registryId": ACCOUNT,
                "repositoryName": REPO,
                "imageId": {"imageDigest": DIGEST, "imageTag": "v1"},
                "imageManifest": MANIFEST,
                "imageManifestMediaType": OCI_MANIFEST,
            }
        ]
    },
)


def test_a_batch_response_without_a_list_decodes_like_boto3s(
    stand_in: ScriptedServer, boto: Any, sdk: ECR
) -> None:
    call = BATCH_WITHOUT_FAILURES
    _, _, boto_result, sdk_result = call_both(stand_in, boto, sdk, call, ok(call.response))
    theirs, ours = boto_plain(boto_result), sdk_plain(sdk_result)
    assert differences(ours, theirs) == []


# --- 3. errors ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """An error answer and the call it answers."""

    name: str
    reply: Reply
    operation: str = "DescribeRepositories"
    # boto3 parses an HTML or empty 5xx as a generic error and leaves its request id out.
    generic: bool = False

    @property
    def call(self) -> Call:
        return next(call for call in CALLS if call.operation == self.operation)


FAILURES: list[Failure] = [
    Failure(
        "RepositoryNotFound",
        error(
            "RepositoryNotFoundException",
            f"The repository with name '{REPO}' does not exist in the registry with id '{ACCOUNT}'",
        ),
    ),
    Failure(
        "InvalidLayerPart-all-members",
        error(
            "InvalidLayerPartException",
            "The part is not contiguous with the last part received",
            registryId=ACCOUNT,
            repositoryName=REPO,
            uploadId=UPLOAD_ID,
            lastValidByteReceived=5242879,
        ),
        "UploadLayerPart",
    ),
    Failure(
        "InvalidLayerPart-some-members",
        error("InvalidLayerPartException", "bad part", lastValidByteReceived=0),
        "UploadLayerPart",
    ),
    Failure(
        "Kms",
        error("KmsException", "The KMS key is disabled", kmsError="KMSInvalidStateException"),
        "CreateRepository",
    ),
    Failure(
        "ImageAlreadyExists",
        error("ImageAlreadyExistsException", f"Image with digest '{DIGEST}' already exists"),
        "PutImage",
    ),
    Failure(
        "LayerPartTooSmall",
        error("LayerPartTooSmallException", "Layer part size is less than 5 MiB"),
        "CompleteLayerUpload",
    ),
    Failure(
        "namespaced-code",
        error("com.amazonaws.ecr#ImageNotFoundException", "Requested image not found"),
        "BatchGetImage",
    ),
    Failure(
        "coral-suffixed-code",
        error(
            "LifecyclePolicyNotFoundException:http://internal.amazon.com/coral/com.amazonaws.ecr/",
            "Lifecycle policy does not exist",
        ),
        "GetLifecyclePolicy",
    ),
    Failure(
        "capitalised-Message",
        Reply(
            400,
            {
                "__type": "AccessDeniedException",
                "Message": f"User: arn:aws:iam::{ACCOUNT}:user/ci is not authorized",
            },
        ),
    ),
    Failure("Throttling", error("ThrottlingException", "Rate exceeded")),
    Failure("ServerException", error("ServerException", "Internal failure", status=500)),
    Failure("unknown-code", error("BrandNewFutureException", "not in any model", status=409)),
    Failure("html-502", Reply(502, b"<html><body>Bad Gateway</body></html>"), generic=True),
    Failure("empty-503", Reply(503, b""), generic=True),
    Failure(
        "request-id",
        error("TooManyTagsException", "too many", request_id="7c1d0a55-request-id"),
        "TagResource",
    ),
]


def boto_error(exc: ClientError) -> tuple[str, str, dict[str, Any], int, str | None]:
    """(code, message, modelled members, status, request id) of boto3's error."""
    response = exc.response
    # boto3 puts the error shape's modelled members (message among them) next to "Error".
    extra = {k: v for k, v in response.items() if k not in ("Error", "ResponseMetadata")}
    extra.pop("message", None)
    metadata = response["ResponseMetadata"]
    return (
        response["Error"]["Code"],
        response["Error"]["Message"],
        extra,
        metadata["HTTPStatusCode"],
        metadata.get("RequestId"),
    )


def sdk_error(exc: ECRError) -> tuple[str, str, dict[str, Any], int, str | None]:
    return (exc.code, exc.message, exc.extra, exc.http_status, exc.request_id)


def raise_both(
    server: ScriptedServer, boto: Any, sdk: ECR, call: Call, reply: Reply
) -> tuple[ClientError, ECRError]:
    server.reset()
    # The same request id for both answers (the stand-in numbers them otherwise).
    server.script(replace(reply, request_id=reply.request_id or "4d1a6c2e-fidelity"))
    with pytest.raises(ClientError) as theirs:
        getattr(boto, call.method)(**call.boto)
    with pytest.raises(ECRError) as ours:
        getattr(sdk, call.method)(**call.sdk)
    assert len(server.requests) == 2  # no retries on either side
    return theirs.value, ours.value


@pytest.mark.parametrize("failure", FAILURES, ids=[f.name for f in FAILURES])
def test_error_equals_boto3s(
    stand_in: ScriptedServer, boto: Any, sdk: ECR, failure: Failure
) -> None:
    theirs, ours = raise_both(stand_in, boto, sdk, failure.call, failure.reply)
    if failure.generic:  # ours keeps the x-amzn-RequestId that boto3 drops here
        assert boto_error(theirs)[4] is None
        assert sdk_error(ours)[:4] == boto_error(theirs)[:4]
        assert ours.request_id == "4d1a6c2e-fidelity"
    else:
        assert sdk_error(ours) == boto_error(theirs)
    assert str(ours) == f"{theirs.response['Error']['Code']}: {theirs.response['Error']['Message']}"
    # A code boto3 has a modelled exception class for is one we have a class for too.
    if type(theirs) is not ClientError:
        assert type(theirs).__name__ == type(ours).code == ours.code


def test_modelled_error_members_are_typed_like_boto3s(
    stand_in: ScriptedServer, boto: Any, sdk: ECR
) -> None:
    failure = FAILURES[1]
    theirs, ours = raise_both(stand_in, boto, sdk, failure.call, failure.reply)
    assert ours.extra["lastValidByteReceived"] == theirs.response["lastValidByteReceived"]
    assert type(ours.extra["lastValidByteReceived"]) is int
    assert type(theirs.response["lastValidByteReceived"]) is int


DIVERGING_FAILURES = [
    pytest.param(
        Failure("no-message", Reply(400, {"__type": "RepositoryNotFoundException"})),
        id="no-message",
    ),
    pytest.param(
        Failure("non-json-400", Reply(400, b"Bad request: malformed JSON")),
        id="non-json-400",
    ),
    pytest.param(
        Failure(
            "unmodelled-member",
            error("RepositoryNotFoundException", "gone", hint="check the region"),
        ),
        marks=pytest.mark.xfail(
            strict=True,
            reason="Members not modelled for the error: boto3 keeps only the error shape's "
            "members, ours puts every body member into extra, here {'hint': ...} "
            "(src/openecr/sdk/_core.py, ClientCore.error_from; the ECRError docstring says "
            "'modelled members'). Same for unknown codes, where test_sdk_transport.py asserts "
            "the extras on purpose.",
        ),
        id="unmodelled-member",
    ),
    pytest.param(
        Failure(
            "type-in-header-only",
            Reply(
                400,
                {"message": "denied"},
                headers={"x-amzn-ErrorType": "AccessDeniedException:http://internal/"},
            ),
        ),
        marks=pytest.mark.xfail(
            strict=True,
            reason="No __type in the body, x-amzn-ErrorType header only: boto3's JSON 1.1 "
            "parser ignores the header and reports code '400', ours reads the header and "
            "reports AccessDeniedException (src/openecr/sdk/_core.py, ClientCore.error_from; "
            "deliberate per test_error_type_header_is_used_when_the_body_has_no_type).",
        ),
        id="type-in-header-only",
    ),
]


@pytest.mark.parametrize("failure", DIVERGING_FAILURES)
def test_error_edge_cases_equal_boto3s(
    stand_in: ScriptedServer, boto: Any, sdk: ECR, failure: Failure
) -> None:
    theirs, ours = raise_both(stand_in, boto, sdk, failure.call, failure.reply)
    assert sdk_error(ours) == boto_error(theirs)
