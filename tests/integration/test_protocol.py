"""The AWS JSON 1.1 protocol over raw HTTP: SigV4, targets, bodies, errors, credentials."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4QueryAuth
from ecr_helpers import (
    JSON_CONTENT_TYPE,
    TARGET_PREFIX,
    assert_error,
    make_ecr_client,
    presigned_call,
    raises_ecr,
    raw_call,
    repository_policy,
    signed_headers,
    unique_name,
    utc_now,
)
from harness import TEST_ACCESS_KEY, TEST_ACCOUNT, TEST_SECRET_KEY, ServerProcess, postgres_database


@pytest.fixture(autouse=True)
def server_still_serves(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test sent to the session server, it answers a normal request afterwards."""
    if "server" not in request.fixturenames:
        yield
        return
    server: ServerProcess = request.getfixturevalue("server")
    yield
    response = raw_call(server.url, "DescribeRegistry", {})
    assert response.status_code == 200, response.text
    assert response.json()["registryId"] == TEST_ACCOUNT


def assert_exact_error(response: httpx.Response, code: str, status: int = 400) -> str:
    """An error body with exactly ``__type`` and ``message``; returns the message."""
    document = assert_error(response, code, status)
    assert set(document) == {"__type", "message"}, document
    assert response.headers.get("x-amzn-ErrorType") == code
    return str(document["message"])


def repository_exists(server: ServerProcess, name: str) -> bool:
    response = raw_call(server.url, "DescribeRepositories", {"repositoryNames": [name]})
    if response.status_code == 200:
        return True
    assert_exact_error(response, "RepositoryNotFoundException")
    return False


# --- successful requests -------------------------------------------------------------------


def test_success_has_request_id_and_content_type(server: ServerProcess) -> None:
    first = raw_call(server.url, "DescribeRegistry", {})
    second = raw_call(server.url, "DescribeRegistry", {})
    for response in (first, second):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(JSON_CONTENT_TYPE)
        assert response.headers["x-amzn-RequestId"]
    assert first.headers["x-amzn-RequestId"] != second.headers["x-amzn-RequestId"]


def test_request_id_reaches_boto3(ecr: Any) -> None:
    metadata = ecr.describe_registry()["ResponseMetadata"]
    assert metadata["RequestId"] == metadata["HTTPHeaders"]["x-amzn-requestid"]
    assert metadata["RequestId"]


def test_empty_body_counts_as_empty_object(server: ServerProcess) -> None:
    response = raw_call(server.url, "DescribeRegistry", body=b"")
    assert response.status_code == 200
    assert response.json()["registryId"] == TEST_ACCOUNT


def test_nulls_and_unknown_members_are_ignored(server: ServerProcess) -> None:
    name = unique_name("nulls")
    response = raw_call(
        server.url,
        "CreateRepository",
        {"repositoryName": name, "tags": None, "registryId": None, "notAMember": [1, 2]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["repository"]["repositoryName"] == name


def test_other_paths_still_carry_a_request_id(server: ServerProcess) -> None:
    for response in (httpx.get(server.url + "/nope"), httpx.get(server.url + "/")):
        assert 400 <= response.status_code < 500
        assert response.headers.get("x-amzn-RequestId")


def test_healthz(server: ServerProcess) -> None:
    response = httpx.get(server.url + "/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["status"] == "ok"


# --- malformed requests --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"repositoryName": ', b"\xff\xfe", b"   ", b"[" * 100_000, b"{}{}"],
    ids=["garbage", "truncated", "not-utf8", "whitespace", "deep-nesting", "two-objects"],
)
def test_malformed_json(server: ServerProcess, body: bytes) -> None:
    response = raw_call(server.url, "CreateRepository", body=body)
    assert_exact_error(response, "SerializationException")


@pytest.mark.parametrize(
    ("operation", "payload"),
    [
        ("CreateRepository", None),
        ("CreateRepository", []),
        ("CreateRepository", "a string"),
        ("CreateRepository", {"repositoryName": 5}),
        ("CreateRepository", {"repositoryName": ["a", "b"]}),
        ("CreateRepository", {"repositoryName": "ok-name", "tags": {"Key": "k", "Value": "v"}}),
        ("CreateRepository", {"repositoryName": "ok-name", "tags": [{"Key": 1, "Value": "v"}]}),
        ("CreateRepository", {"repositoryName": "ok-name", "imageScanningConfiguration": True}),
        (
            "CreateRepository",
            {"repositoryName": "ok-name", "imageScanningConfiguration": {"scanOnPush": "yes"}},
        ),
        ("DescribeRepositories", {"maxResults": "10"}),
        ("DescribeRepositories", {"maxResults": 2.5}),
        ("DescribeRepositories", {"maxResults": True}),
        ("DescribeRepositories", {"maxResults": 10**30}),
        ("DescribeRepositories", {"repositoryNames": "just-one"}),
        ("DeleteRepository", {"repositoryName": "ok-name", "force": "true"}),
        # A type error wins over a constraint violation elsewhere in the body.
        ("CreateRepository", {"repositoryName": "X" * 300, "tags": "oops"}),
    ],
    ids=[
        "null-body",
        "list-body",
        "string-body",
        "number-for-string",
        "list-for-string",
        "object-for-list",
        "number-tag-key",
        "bool-for-structure",
        "string-for-bool",
        "string-for-integer",
        "fraction-for-integer",
        "bool-for-integer",
        "huge-integer",
        "string-for-list",
        "string-for-force",
        "type-error-wins",
    ],
)
def test_wrong_member_types(server: ServerProcess, operation: str, payload: Any) -> None:
    response = raw_call(server.url, operation, body=json.dumps(payload).encode())
    assert_exact_error(response, "SerializationException")
    assert not repository_exists(server, "ok-name")


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        TARGET_PREFIX + "Bogus",
        TARGET_PREFIX + "createRepository",
        TARGET_PREFIX + "ListImageReferrers",
        TARGET_PREFIX,
        "AmazonEC2ContainerRegistry_V20150921",
        "DynamoDB_20120810.CreateRepository",
        "CreateRepository",
    ],
    ids=[
        "missing",
        "empty",
        "bogus",
        "wrong-case",
        "newer-operation",
        "prefix-only",
        "no-dot",
        "other-service",
        "bare-name",
    ],
)
def test_unknown_operation(server: ServerProcess, target: str | None) -> None:
    name = unique_name("target")
    response = raw_call(server.url, None, {"repositoryName": name}, target=target)
    assert_exact_error(response, "UnknownOperationException")
    assert not repository_exists(server, name)


# --- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("target", [TARGET_PREFIX + "DescribeRegistry", TARGET_PREFIX + "Bogus"])
def test_missing_authentication(server: ServerProcess, target: str) -> None:
    # The signature is checked before the operation name.
    response = raw_call(server.url, None, {}, target=target, sign=False)
    assert response.status_code in (400, 403)
    assert_exact_error(response, "MissingAuthenticationTokenException", response.status_code)


def test_unknown_access_key(server: ServerProcess) -> None:
    response = raw_call(server.url, "DescribeRegistry", {}, access_key="AKIAUNKNOWNKEY000000")
    message = assert_exact_error(response, "UnrecognizedClientException")
    assert message == "The security token included in the request is invalid."


def test_unknown_access_key_through_boto3(server: ServerProcess) -> None:
    client = make_ecr_client(server.url, access_key="AKIAUNKNOWNKEY000000")
    with raises_ecr("UnrecognizedClientException"):
        client.describe_registry()


def test_wrong_secret(server: ServerProcess) -> None:
    response = raw_call(server.url, "DescribeRegistry", {}, secret_key="not-the-secret")
    assert response.status_code in (400, 403)
    message = assert_exact_error(response, "InvalidSignatureException", response.status_code)
    assert message.startswith("The request signature we calculated does not match")


def test_wrong_secret_through_boto3(server: ServerProcess) -> None:
    client = make_ecr_client(server.url, secret_key="not-the-secret")
    with pytest.raises(client.exceptions.ClientError) as info:
        client.describe_registry()
    assert info.value.response["Error"]["Code"] == "InvalidSignatureException"


def test_body_changed_after_signing(server: ServerProcess) -> None:
    name = unique_name("tamper")
    signed_body = json.dumps({"repositoryName": name}).encode()
    headers = signed_headers(server.url, signed_body, target=TARGET_PREFIX + "CreateRepository")
    other = json.dumps({"repositoryName": name + "-evil"}).encode()
    response = httpx.post(server.url + "/", content=other, headers=headers)
    assert_exact_error(response, "InvalidSignatureException", response.status_code)
    assert not repository_exists(server, name + "-evil")


def test_expired_signature(server: ServerProcess) -> None:
    response = raw_call(server.url, "DescribeRegistry", {}, when=utc_now() - timedelta(minutes=20))
    assert response.status_code in (400, 403)
    message = assert_exact_error(response, "InvalidSignatureException", response.status_code)
    assert message.startswith("Signature expired")


def test_signature_from_the_future(server: ServerProcess) -> None:
    response = raw_call(server.url, "DescribeRegistry", {}, when=utc_now() + timedelta(minutes=20))
    message = assert_exact_error(response, "InvalidSignatureException", response.status_code)
    assert message.startswith("Signature not yet current")


def test_small_clock_skew_is_accepted(server: ServerProcess) -> None:
    for skew in (timedelta(minutes=-10), timedelta(minutes=10)):
        response = raw_call(server.url, "DescribeRegistry", {}, when=utc_now() + skew)
        assert response.status_code == 200, response.text


def test_signature_for_another_service(server: ServerProcess) -> None:
    response = raw_call(server.url, "DescribeRegistry", {}, service="s3")
    assert_exact_error(response, "InvalidSignatureException", response.status_code)


def test_presigned_query_request(server: ServerProcess) -> None:
    name = unique_name("presigned")
    created = presigned_call(server.url, "CreateRepository", {"repositoryName": name})
    assert created.status_code == 200, created.text
    assert created.headers["x-amzn-RequestId"]
    assert created.json()["repository"]["repositoryName"] == name
    assert repository_exists(server, name)

    # botocore's presigner exactly as shipped: it signs an empty body.
    stock = presigned_call(server.url, "DescribeRegistry", auth_class=SigV4QueryAuth)
    assert stock.status_code == 200, stock.text
    assert stock.json()["registryId"] == TEST_ACCOUNT


def test_presigned_query_request_with_wrong_secret(server: ServerProcess) -> None:
    response = presigned_call(server.url, "DescribeRegistry", {}, secret_key="wrong")
    assert_exact_error(response, "InvalidSignatureException", response.status_code)


# --- constraint violations -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "payload", "message"),
    [
        (
            "CreateRepository",
            {"repositoryName": "r" * 300},
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            "'Member must have length less than or equal to 256'",
        ),
        (
            "CreateRepository",
            {"repositoryName": "r"},
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            "'Member must have length greater than or equal to 2'",
        ),
        (
            "CreateRepository",
            {},
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: "
            "'Member must not be null'",
        ),
        (
            "CreateRepository",
            {"repositoryName": "fine-name", "imageTagMutability": "mutable"},
            "Invalid parameter at 'imageTagMutability' failed to satisfy constraint: "
            "'Member must satisfy enum value set:",
        ),
        (
            "CreateRepository",
            {"repositoryName": "fine-name", "registryId": "abc"},
            "Invalid parameter at 'registryId' failed to satisfy constraint: "
            "'must satisfy regular expression '[0-9]{12}''",
        ),
        (
            "DescribeRepositories",
            {"maxResults": 1001},
            "Invalid parameter at 'maxResults' failed to satisfy constraint: "
            "'Member must have value less than or equal to 1000'",
        ),
        (
            "DescribeRepositories",
            {"maxResults": 0},
            "Invalid parameter at 'maxResults' failed to satisfy constraint: "
            "'Member must have value greater than or equal to 1'",
        ),
        (
            "DescribeRepositories",
            {"repositoryNames": [f"repo-{i}" for i in range(101)]},
            "Invalid parameter at 'repositoryNames' failed to satisfy constraint: "
            "'Member must have length less than or equal to 100'",
        ),
        (
            "DescribeRepositories",
            {"repositoryNames": []},
            "Invalid parameter at 'repositoryNames' failed to satisfy constraint: "
            "'Member must have length greater than or equal to 1'",
        ),
        (
            "PutLifecyclePolicy",
            {"repositoryName": "fine-name", "lifecyclePolicyText": '{"rules": []}'},
            "Invalid parameter at 'lifecyclePolicyText' failed to satisfy constraint: "
            "'Member must have length greater than or equal to 100'",
        ),
        (
            "SetRepositoryPolicy",
            {"repositoryName": "fine-name", "policyText": "x" * 10241},
            "Invalid parameter at 'policyText' failed to satisfy constraint: "
            "'Member must have length less than or equal to 10240'",
        ),
        (
            "BatchGetRepositoryScanningConfiguration",
            {"repositoryNames": ["ok-name", "Bad Name"]},
            "Invalid parameter at 'repositoryNames.2.member' failed to satisfy constraint:",
        ),
    ],
    ids=[
        "name-300-chars",
        "name-1-char",
        "name-missing",
        "enum",
        "registry-id",
        "max-results-1001",
        "max-results-0",
        "101-names",
        "no-names",
        "short-lifecycle-text",
        "long-policy-text",
        "list-member-path",
    ],
)
def test_constraint_violations(
    server: ServerProcess, operation: str, payload: dict[str, Any], message: str
) -> None:
    response = raw_call(server.url, operation, payload)
    actual = assert_exact_error(response, "InvalidParameterException")
    assert actual.startswith(message), actual
    assert not repository_exists(server, "fine-name")


# --- nothing half-written ------------------------------------------------------------------


def test_create_with_51_tags_leaves_nothing_behind(server: ServerProcess) -> None:
    name = unique_name("tags51")
    tags = [{"Key": f"k{i}", "Value": "v"} for i in range(51)]
    response = raw_call(server.url, "CreateRepository", {"repositoryName": name, "tags": tags})
    assert_exact_error(response, "TooManyTagsException")
    assert not repository_exists(server, name)

    bad_tag = [*tags[:3], {"Key": "aws:reserved", "Value": "v"}]
    response = raw_call(server.url, "CreateRepository", {"repositoryName": name, "tags": bad_tag})
    assert_exact_error(response, "InvalidTagParameterException")
    assert not repository_exists(server, name)

    ok = raw_call(server.url, "CreateRepository", {"repositoryName": name, "tags": tags[:50]})
    assert ok.status_code == 200


def test_failed_set_repository_policy_keeps_the_old_one(server: ServerProcess) -> None:
    name = unique_name("policy")
    assert raw_call(server.url, "CreateRepository", {"repositoryName": name}).is_success
    original = repository_policy()
    set_ok = raw_call(
        server.url, "SetRepositoryPolicy", {"repositoryName": name, "policyText": original}
    )
    assert set_ok.status_code == 200

    lockout = repository_policy(effect="Deny", actions=("ecr:SetRepositoryPolicy",)).replace(
        f'{{"AWS": "arn:aws:iam::{TEST_ACCOUNT}:root"}}', '"*"'
    )
    for text in ("{broken", json.dumps({"Version": "2012-10-17"}), lockout):
        response = raw_call(
            server.url, "SetRepositoryPolicy", {"repositoryName": name, "policyText": text}
        )
        assert_exact_error(response, "InvalidParameterException")
        current = raw_call(server.url, "GetRepositoryPolicy", {"repositoryName": name})
        assert current.json()["policyText"] == original

    # A wrongly typed force flag is rejected before anything is stored.
    response = raw_call(
        server.url,
        "SetRepositoryPolicy",
        {"repositoryName": name, "policyText": lockout, "force": "yes"},
    )
    assert_exact_error(response, "SerializationException")
    current = raw_call(server.url, "GetRepositoryPolicy", {"repositoryName": name})
    assert current.json()["policyText"] == original


def test_modelled_not_found_errors_have_exact_bodies(server: ServerProcess) -> None:
    missing = unique_name("missing")
    for operation, payload, code in [
        ("DescribeRepositories", {"repositoryNames": [missing]}, "RepositoryNotFoundException"),
        ("GetLifecyclePolicy", {"repositoryName": missing}, "RepositoryNotFoundException"),
        (
            "DescribePullThroughCacheRules",
            {"ecrRepositoryPrefixes": ["nope-nope"]},
            "PullThroughCacheRuleNotFoundException",
        ),
    ]:
        assert_exact_error(raw_call(server.url, operation, payload), code)


def test_oversized_body_is_a_client_error(server: ServerProcess) -> None:
    body = b'{"repositoryName": "' + b"x" * (33 * 1024 * 1024) + b'"}'
    response = raw_call(server.url, "CreateRepository", body=body)
    assert response.headers.get("x-amzn-RequestId")
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])


# --- --insecure-accept-any-credentials -----------------------------------------------------


@pytest.fixture(scope="module")
def insecure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    base = tmp_path_factory.mktemp("insecure")
    process = ServerProcess(
        base / "data",
        with_test_credentials=False,
        extra_args=["--insecure-accept-any-credentials"],
    ).start()
    yield process
    process.kill()


def test_insecure_mode_accepts_any_key(insecure_server: ServerProcess) -> None:
    name = unique_name("insecure")
    client = make_ecr_client(
        insecure_server.url,
        region="sa-east-1",
        access_key="AKIAANYTHINGGOES0001",
        secret_key="whatever",
    )
    repository = client.create_repository(repositoryName=name)["repository"]
    assert repository["registryId"] == TEST_ACCOUNT
    assert repository["repositoryArn"] == (
        f"arn:aws:ecr:sa-east-1:{TEST_ACCOUNT}:repository/{name}"
    )

    other = make_ecr_client(
        insecure_server.url, access_key="SOMEONEELSE", secret_key="something else"
    )
    described = other.describe_repositories(repositoryNames=[name])["repositories"]
    assert described[0]["registryId"] == TEST_ACCOUNT

    # The test key pair works like any other pair.
    assert make_ecr_client(insecure_server.url).describe_registry()["registryId"] == TEST_ACCOUNT


def test_insecure_mode_still_needs_a_signature(insecure_server: ServerProcess) -> None:
    response = raw_call(insecure_server.url, "DescribeRegistry", {}, sign=False)
    assert_exact_error(response, "MissingAuthenticationTokenException", response.status_code)
    garbage = httpx.post(
        insecure_server.url + "/",
        content=b"{}",
        headers={
            "Content-Type": JSON_CONTENT_TYPE,
            "X-Amz-Target": TARGET_PREFIX + "DescribeRegistry",
            "Authorization": "Basic QVdTOnBhc3N3b3Jk",
        },
    )
    assert garbage.status_code in (400, 403)
    assert garbage.json()["__type"] != "UnknownOperationException"
    assert garbage.json()["__type"] in {
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "InvalidSignatureException",
    }


def test_insecure_mode_warns(insecure_server: ServerProcess) -> None:
    assert "INSECURE MODE" in insecure_server.output()


# --- first-start credential bootstrap ------------------------------------------------------


def _read_output(process: ServerProcess) -> str:
    return Path(process.stdout_path).read_text()


def _exports(text: str) -> dict[str, str]:
    return dict(re.findall(r"^export (AWS_[A-Z_]+)=(\S+)$", text, flags=re.MULTILINE))


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_first_start_bootstraps_admin_credentials(tmp_path: Path, store: str) -> None:
    if store == "postgres":
        with postgres_database() as url:
            _check_bootstrap(tmp_path, url)
    else:
        _check_bootstrap(tmp_path, None)


def _check_bootstrap(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    first = ServerProcess(data_dir, database_url=database_url, with_test_credentials=False)
    first.start()
    try:
        exports = _exports(first.output())
        assert set(exports) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
        assert exports["AWS_ENDPOINT_URL"] == first.url
        key_id, secret = exports["AWS_ACCESS_KEY_ID"], exports["AWS_SECRET_ACCESS_KEY"]

        credentials_file = data_dir / "admin-credentials"
        assert stat.S_IMODE(os.stat(credentials_file).st_mode) == 0o600
        stored = credentials_file.read_text()
        assert f"AWS_ACCESS_KEY_ID={key_id}" in stored
        assert f"AWS_SECRET_ACCESS_KEY={secret}" in stored

        admin = make_ecr_client(first.url, access_key=key_id, secret_key=secret)
        name = unique_name("bootstrap")
        created = admin.create_repository(repositoryName=name)["repository"]
        assert created["registryId"] == TEST_ACCOUNT
        # The harness's test key is not known to this server.
        with raises_ecr("UnrecognizedClientException"):
            make_ecr_client(first.url).describe_registry()
    finally:
        assert first.stop() == 0

    second = ServerProcess(data_dir, database_url=database_url, with_test_credentials=False)
    second.start()
    try:
        assert "AWS_SECRET_ACCESS_KEY" not in second.output()
        assert _exports(second.output()) == {}
        assert (data_dir / "admin-credentials").read_text() == stored
        admin = make_ecr_client(second.url, access_key=key_id, secret_key=secret)
        assert admin.describe_repositories(repositoryNames=[name])["repositories"]
    finally:
        assert second.stop() == 0
    assert TEST_ACCESS_KEY not in _read_output(second)
    assert TEST_SECRET_KEY not in _read_output(first)
