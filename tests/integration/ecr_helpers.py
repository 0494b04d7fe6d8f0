"""Helpers shared by the integration tests: clients, error assertions, raw signed HTTP."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
import httpx
import pytest
from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from harness import TEST_ACCESS_KEY, TEST_ACCOUNT, TEST_REGION, TEST_SECRET_KEY

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"
NAME_CONSTRAINT = "Invalid parameter at 'repositoryName' failed to satisfy constraint"
LIFECYCLE_FAILURE = (
    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
    "'Lifecycle policy validation failure:"
)


def make_ecr_client(
    url: str,
    *,
    region: str = TEST_REGION,
    access_key: str = TEST_ACCESS_KEY,
    secret_key: str = TEST_SECRET_KEY,
) -> Any:
    return boto3.client(
        "ecr",
        endpoint_url=url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(retries={"max_attempts": 1, "mode": "standard"}),
    )


def unique_name(prefix: str = "it") -> str:
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


@contextmanager
def raises_ecr(code: str, message: str | None = None) -> Iterator[pytest.ExceptionInfo[Any]]:
    """Expects a boto3 ``ClientError`` with this ECR error code (and message prefix)."""
    with pytest.raises(ClientError) as info:
        yield info
    error = info.value.response["Error"]
    assert error["Code"] == code, info.value.response
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    if message is not None:
        assert error["Message"].startswith(message), error["Message"]


# --- policies -----------------------------------------------------------------------------


def repository_policy(
    *, effect: str = "Allow", actions: Any = ("ecr:BatchGetImage",), sid: str = "stmt"
) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": sid,
                    "Effect": effect,
                    "Principal": {"AWS": f"arn:aws:iam::{TEST_ACCOUNT}:root"},
                    "Action": list(actions) if not isinstance(actions, str) else actions,
                }
            ],
        }
    )


def registry_policy(actions: Any = ("ecr:ReplicateImage", "ecr:CreateRepository")) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "replication",
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::210987654321:root"},
                    "Action": list(actions),
                    "Resource": f"arn:aws:ecr:{TEST_REGION}:{TEST_ACCOUNT}:repository/*",
                }
            ],
        }
    )


def lifecycle_text(*rules: dict[str, Any]) -> str:
    """A lifecycle policy document, padded with JSON whitespace to boto3's 100-char minimum."""
    return json.dumps({"rules": list(rules)}).ljust(100)


def expire_untagged_rule(priority: int = 1, days: int = 14) -> dict[str, Any]:
    return {
        "rulePriority": priority,
        "description": "Expire untagged images",
        "selection": {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": days,
        },
        "action": {"type": "expire"},
    }


def keep_tagged_rule(priority: int = 2, prefixes: tuple[str, ...] = ("v",)) -> dict[str, Any]:
    return {
        "rulePriority": priority,
        "selection": {
            "tagStatus": "tagged",
            "tagPrefixList": list(prefixes),
            "countType": "imageCountMoreThan",
            "countNumber": 10,
        },
        "action": {"type": "expire"},
    }


# --- raw HTTP -----------------------------------------------------------------------------


class _DatedSigV4Auth(SigV4Auth):
    """botocore's SigV4 signer, stamping a chosen moment instead of the current time."""

    def __init__(self, credentials: Credentials, service: str, region: str, when: datetime):
        super().__init__(credentials, service, region)
        self._when = when

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._when.astimezone(UTC).strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        to_sign = self.string_to_sign(request, canonical)
        self._inject_signature_to_request(request, self.signature(to_sign, request))


def signed_headers(
    url: str,
    body: bytes,
    *,
    target: str | None,
    region: str = TEST_REGION,
    access_key: str = TEST_ACCESS_KEY,
    secret_key: str = TEST_SECRET_KEY,
    service: str = "ecr",
    when: datetime | None = None,
) -> dict[str, str]:
    """Headers of a ``POST /`` signed with botocore's own SigV4 signer."""
    headers = {"Content-Type": JSON_CONTENT_TYPE}
    if target is not None:
        headers["X-Amz-Target"] = target
    request = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
    credentials = Credentials(access_key, secret_key)
    if when is None:
        SigV4Auth(credentials, service, region).add_auth(request)
    else:
        _DatedSigV4Auth(credentials, service, region, when).add_auth(request)
    return dict(request.headers.items())


def raw_call(
    url: str,
    operation: str | None,
    payload: Any = None,
    *,
    body: bytes | None = None,
    target: str | None = None,
    sign: bool = True,
    **sign_options: Any,
) -> httpx.Response:
    """POSTs one ECR request; ``payload`` is JSON-encoded unless ``body`` is given."""
    if body is None:
        body = json.dumps({} if payload is None else payload).encode()
    if target is None and operation is not None:
        target = TARGET_PREFIX + operation
    if sign:
        headers = signed_headers(url, body, target=target, **sign_options)
    else:
        headers = {"Content-Type": JSON_CONTENT_TYPE}
        if target is not None:
            headers["X-Amz-Target"] = target
    return httpx.post(url + "/", content=body, headers=headers, timeout=10)


class JsonQueryAuth(SigV4QueryAuth):
    """botocore's presigner, minus its query-protocol habit of moving the body into the URL.

    ``SigV4QueryAuth`` turns ``request.data`` into query parameters (right for the AWS query
    protocol); a JSON-protocol request keeps its body, whose SHA-256 is then signed.
    """

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        data, request.data = request.data, b""
        super()._modify_request_before_signing(request)
        request.data = data


def presigned_call(
    url: str,
    operation: str,
    payload: Any = None,
    *,
    expires: int = 300,
    auth_class: type[SigV4QueryAuth] = JsonQueryAuth,
    secret_key: str = TEST_SECRET_KEY,
) -> httpx.Response:
    """The request authenticated by SigV4 query parameters instead of a header."""
    body = b"" if payload is None else json.dumps(payload).encode()
    headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": TARGET_PREFIX + operation}
    request = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
    auth_class(
        Credentials(TEST_ACCESS_KEY, secret_key), "ecr", TEST_REGION, expires=expires
    ).add_auth(request)
    assert "Authorization" not in request.headers
    assert "X-Amz-Signature=" in request.url
    return httpx.post(
        request.url, content=request.body or b"", headers=dict(request.headers.items()), timeout=10
    )


def assert_error(response: httpx.Response, code: str, status: int = 400) -> dict[str, Any]:
    """Checks an ECR error response; returns its JSON body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers.get("x-amzn-RequestId"), dict(response.headers)
    assert response.headers["content-type"].startswith(JSON_CONTENT_TYPE)
    document: dict[str, Any] = response.json()
    assert document["__type"] == code, document
    assert isinstance(document["message"], str) and document["message"], document
    return document


def utc_now() -> datetime:
    return datetime.now(UTC)
