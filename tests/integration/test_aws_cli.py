"""The real AWS CLI (``aws ecr ... --endpoint-url``) against the server.

Each CLI call starts a Python process (~0.4 s), so calls are grouped into a few workflows,
and they run against the SQLite session server only: the CLI tests check the wire format,
which does not depend on the metadata backend (the boto3 tests cover both backends).
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ecr_helpers import (
    expire_untagged_rule,
    lifecycle_text,
    make_ecr_client,
    registry_policy,
    repository_policy,
    unique_name,
)
from harness import TEST_ACCOUNT, TEST_REGION, ServerProcess

Cli = Callable[..., Any]

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_repository_workflow(aws_cli: Cli, tmp_path: Path) -> None:
    name = unique_name("cli")
    arn = f"arn:aws:ecr:{TEST_REGION}:{TEST_ACCOUNT}:repository/{name}"

    created = aws_cli(
        "create-repository",
        "--repository-name", name,
        "--tags", "Key=team,Value=platform", "Key=env,Value=dev",
        "--image-tag-mutability", "IMMUTABLE",
        "--image-scanning-configuration", "scanOnPush=true",
        "--encryption-configuration", '{"encryptionType": "AES256"}',
    )["repository"]  # fmt: skip
    assert created["repositoryName"] == name
    assert created["repositoryArn"] == arn
    assert created["registryId"] == TEST_ACCOUNT
    assert created["imageTagMutability"] == "IMMUTABLE"
    assert created["imageScanningConfiguration"] == {"scanOnPush": True}
    assert created["encryptionConfiguration"] == {"encryptionType": "AES256"}

    described = aws_cli("describe-repositories", "--repository-names", name)["repositories"]
    assert [r["repositoryName"] for r in described] == [name]
    assert described[0]["repositoryUri"] == created["repositoryUri"]

    mutability = aws_cli(
        "put-image-tag-mutability", "--repository-name", name, "--image-tag-mutability", "MUTABLE"
    )
    assert mutability == {
        "registryId": TEST_ACCOUNT,
        "repositoryName": name,
        "imageTagMutability": "MUTABLE",
    }
    scanning = aws_cli(
        "put-image-scanning-configuration",
        "--repository-name", name,
        "--image-scanning-configuration", "scanOnPush=false",
    )  # fmt: skip
    assert scanning["imageScanningConfiguration"] == {"scanOnPush": False}

    assert aws_cli("tag-resource", "--resource-arn", arn, "--tags", "Key=env,Value=prod") is None
    assert aws_cli("untag-resource", "--resource-arn", arn, "--tag-keys", "team") is None
    tags = aws_cli("list-tags-for-resource", "--resource-arn", arn)["tags"]
    assert tags == [{"Key": "env", "Value": "prod"}]

    policy_file = tmp_path / "policy.json"
    policy_file.write_text(repository_policy())
    set_policy = aws_cli(
        "set-repository-policy", "--repository-name", name, "--policy-text", f"file://{policy_file}"
    )
    assert json.loads(set_policy["policyText"]) == json.loads(repository_policy())
    got_policy = aws_cli("get-repository-policy", "--repository-name", name)
    assert got_policy["repositoryName"] == name
    assert json.loads(got_policy["policyText"]) == json.loads(repository_policy())
    deleted_policy = aws_cli("delete-repository-policy", "--repository-name", name)
    assert json.loads(deleted_policy["policyText"]) == json.loads(repository_policy())

    lifecycle_file = tmp_path / "lifecycle.json"
    lifecycle_file.write_text(lifecycle_text(expire_untagged_rule()))
    put_lifecycle = aws_cli(
        "put-lifecycle-policy",
        "--repository-name", name,
        "--lifecycle-policy-text", f"file://{lifecycle_file}",
    )  # fmt: skip
    assert put_lifecycle["repositoryName"] == name
    got_lifecycle = aws_cli("get-lifecycle-policy", "--repository-name", name)
    assert json.loads(got_lifecycle["lifecyclePolicyText"]) == json.loads(
        lifecycle_text(expire_untagged_rule())
    )
    deleted_lifecycle = aws_cli("delete-lifecycle-policy", "--repository-name", name)
    assert deleted_lifecycle["repositoryName"] == name

    deleted = aws_cli("delete-repository", "--repository-name", name, "--force")["repository"]
    assert deleted["repositoryName"] == name
    missing = aws_cli("describe-repositories", "--repository-names", name, check=False)
    assert missing.returncode != 0
    assert "RepositoryNotFoundException" in missing.stderr


def test_registry_workflow(aws_cli: Cli, server: ServerProcess, tmp_path: Path) -> None:
    ecr = make_ecr_client(server.url)
    with contextlib.suppress(ecr.exceptions.RegistryPolicyNotFoundException):
        ecr.delete_registry_policy()
    repository = unique_name("cliscan")
    ecr.create_repository(repositoryName=repository)
    try:
        policy_file = tmp_path / "registry-policy.json"
        policy_file.write_text(registry_policy())
        put = aws_cli("put-registry-policy", "--policy-text", f"file://{policy_file}")
        assert put["registryId"] == TEST_ACCOUNT
        got = aws_cli("get-registry-policy")
        assert json.loads(got["policyText"]) == json.loads(registry_policy())
        deleted = aws_cli("delete-registry-policy")
        assert json.loads(deleted["policyText"]) == json.loads(registry_policy())

        default = aws_cli("get-registry-scanning-configuration")
        assert default["registryId"] == TEST_ACCOUNT
        assert default["scanningConfiguration"] == {"scanType": "BASIC", "rules": []}
        rules = [
            {
                "scanFrequency": "SCAN_ON_PUSH",
                "repositoryFilters": [{"filter": "cliscan*", "filterType": "WILDCARD"}],
            }
        ]
        configured = aws_cli(
            "put-registry-scanning-configuration",
            "--scan-type", "BASIC",
            "--rules", json.dumps(rules),
        )  # fmt: skip
        assert configured["registryScanningConfiguration"] == {"scanType": "BASIC", "rules": rules}

        batch = aws_cli(
            "batch-get-repository-scanning-configuration",
            "--repository-names", repository, "cli-missing-repository",
        )  # fmt: skip
        [configuration] = batch["scanningConfigurations"]
        assert configuration["repositoryName"] == repository
        assert configuration["scanFrequency"] == "SCAN_ON_PUSH"
        assert configuration["appliedScanFilters"] == rules[0]["repositoryFilters"]
        assert [f["failureCode"] for f in batch["failures"]] == ["REPOSITORY_NOT_FOUND"]

        replication = {
            "rules": [{"destinations": [{"region": "eu-west-1", "registryId": TEST_ACCOUNT}]}]
        }
        put_replication = aws_cli(
            "put-replication-configuration", "--replication-configuration", json.dumps(replication)
        )
        assert put_replication["replicationConfiguration"] == replication
        described = aws_cli("describe-registry")
        assert described == {"registryId": TEST_ACCOUNT, "replicationConfiguration": replication}
    finally:
        ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])
        ecr.put_replication_configuration(replicationConfiguration={"rules": []})


def test_pull_through_cache_workflow(aws_cli: Cli) -> None:
    prefix = f"cli{uuid.uuid4().hex[:10]}"
    created = aws_cli(
        "create-pull-through-cache-rule",
        "--ecr-repository-prefix", prefix,
        "--upstream-registry-url", "public.ecr.aws",
    )  # fmt: skip
    assert created["ecrRepositoryPrefix"] == prefix
    assert created["upstreamRegistryUrl"] == "public.ecr.aws"
    assert created["registryId"] == TEST_ACCOUNT

    described = aws_cli("describe-pull-through-cache-rules", "--ecr-repository-prefixes", prefix)
    [rule] = described["pullThroughCacheRules"]
    assert rule["ecrRepositoryPrefix"] == prefix

    deleted = aws_cli("delete-pull-through-cache-rule", "--ecr-repository-prefix", prefix)
    assert deleted["ecrRepositoryPrefix"] == prefix

    again = aws_cli(
        "delete-pull-through-cache-rule", "--ecr-repository-prefix", prefix, check=False
    )
    assert again.returncode != 0
    assert "PullThroughCacheRuleNotFoundException" in again.stderr


def test_authorization_token_and_login_password(aws_cli: Cli, server: ServerProcess) -> None:
    [data] = aws_cli("get-authorization-token")["authorizationData"]
    assert data["proxyEndpoint"] == server.url
    assert abs(float(data["expiresAt"]) - (time.time() + 12 * 3600)) < 300
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS" and password

    login = aws_cli("get-login-password", check=False)
    assert login.returncode == 0, login.stderr
    printed = login.stdout.strip()
    assert printed and " " not in printed and "\n" not in printed
    assert not printed.startswith("AWS:")


def test_errors_show_the_ecr_code(aws_cli: Cli) -> None:
    missing = unique_name("cli-missing")
    result = aws_cli("describe-repositories", "--repository-names", missing, check=False)
    assert result.returncode != 0
    assert result.stdout.strip() == ""
    assert "An error occurred (RepositoryNotFoundException)" in result.stderr
    assert "DescribeRepositories" in result.stderr
    assert missing in result.stderr

    invalid = aws_cli("create-repository", "--repository-name", "Not//Valid", check=False)
    assert invalid.returncode != 0
    assert "(InvalidParameterException)" in invalid.stderr
    assert "Invalid parameter at 'repositoryName'" in invalid.stderr

    existing = unique_name("cli-dup")
    aws_cli("create-repository", "--repository-name", existing)
    duplicate = aws_cli("create-repository", "--repository-name", existing, check=False)
    assert duplicate.returncode != 0
    assert "(RepositoryAlreadyExistsException)" in duplicate.stderr
