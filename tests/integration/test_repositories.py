"""Repositories through boto3: create/describe/delete, settings, policies, lifecycle, tags."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from botocore.exceptions import ClientError
from ecr_helpers import (
    LIFECYCLE_FAILURE,
    NAME_CONSTRAINT,
    expire_untagged_rule,
    keep_tagged_rule,
    lifecycle_text,
    make_ecr_client,
    raises_ecr,
    raw_call,
    repository_policy,
    unique_name,
)
from harness import TEST_ACCOUNT, TEST_REGION, ServerProcess

REPOSITORY_POLICY_INVALID = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: "
    "'Invalid repository policy provided'"
)


def arn_of(name: str, region: str = TEST_REGION) -> str:
    return f"arn:aws:ecr:{region}:{TEST_ACCOUNT}:repository/{name}"


def tags_of(ecr: Any, name: str) -> dict[str, str]:
    tags = ecr.list_tags_for_resource(resourceArn=arn_of(name))["tags"]
    assert len(tags) == len({t["Key"] for t in tags}), tags
    return {t["Key"]: t["Value"] for t in tags}


def all_repository_names(ecr: Any) -> list[str]:
    pages = ecr.get_paginator("describe_repositories").paginate()
    return [r["repositoryName"] for page in pages for r in page["repositories"]]


# --- CreateRepository ----------------------------------------------------------------------


def test_create_repository_defaults(ecr: Any, server: ServerProcess, repo_name: str) -> None:
    before = time.time()
    repository = ecr.create_repository(repositoryName=repo_name)["repository"]
    after = time.time()

    assert repository["repositoryName"] == repo_name
    assert repository["registryId"] == TEST_ACCOUNT
    assert repository["repositoryArn"] == arn_of(repo_name)
    assert repository["repositoryUri"] == f"127.0.0.1:{server.port}/{repo_name}"
    assert repository["imageTagMutability"] == "MUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repository["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert before - 2 <= repository["createdAt"].timestamp() <= after + 2
    assert "imageTagMutabilityExclusionFilters" not in repository
    assert tags_of(ecr, repo_name) == {}

    described = ecr.describe_repositories(repositoryNames=[repo_name])["repositories"]
    assert described == [repository]


def test_create_repository_echoes_every_setting(ecr: Any, repo_name: str) -> None:
    tags = [{"Key": "team", "Value": "platform"}, {"Key": "cost-center", "Value": ""}]
    repository = ecr.create_repository(
        repositoryName=repo_name,
        tags=tags,
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "AES256"},
    )["repository"]
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert tags_of(ecr, repo_name) == {"team": "platform", "cost-center": ""}
    assert ecr.describe_repositories(repositoryNames=[repo_name])["repositories"] == [repository]


def test_create_repository_with_kms_encryption(ecr: Any) -> None:
    key = f"arn:aws:kms:{TEST_REGION}:{TEST_ACCOUNT}:key/0b1e2d3c-4f5a-6b7c-8d9e-0f1a2b3c4d5e"
    name = unique_name("kms")
    repository = ecr.create_repository(
        repositoryName=name, encryptionConfiguration={"encryptionType": "KMS", "kmsKey": key}
    )["repository"]
    assert repository["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key}
    described = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    assert described["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key}

    managed = ecr.create_repository(
        repositoryName=unique_name("kms"), encryptionConfiguration={"encryptionType": "KMS"}
    )["repository"]
    assert managed["encryptionConfiguration"]["encryptionType"] == "KMS"


def test_kms_key_with_aes256_is_rejected(ecr: Any, repo_name: str) -> None:
    with raises_ecr("InvalidParameterException", "Invalid parameter at"):
        ecr.create_repository(
            repositoryName=repo_name,
            encryptionConfiguration={"encryptionType": "AES256", "kmsKey": "alias/mine"},
        )
    with raises_ecr("RepositoryNotFoundException"):
        ecr.describe_repositories(repositoryNames=[repo_name])


def test_create_repository_with_explicit_own_registry_id(ecr: Any, repo_name: str) -> None:
    repository = ecr.create_repository(registryId=TEST_ACCOUNT, repositoryName=repo_name)
    assert repository["repository"]["registryId"] == TEST_ACCOUNT


def test_created_at_is_epoch_seconds_on_the_wire(server: ServerProcess, repo_name: str) -> None:
    response = raw_call(server.url, "CreateRepository", {"repositoryName": repo_name})
    assert response.status_code == 200, response.text
    created_at = response.json()["repository"]["createdAt"]
    assert isinstance(created_at, int | float) and not isinstance(created_at, bool)
    assert abs(created_at - time.time()) < 60


def test_repository_arn_uses_the_region_of_the_signature(server: ServerProcess) -> None:
    name = unique_name("region")
    frankfurt = make_ecr_client(server.url, region="eu-central-1")
    oregon = make_ecr_client(server.url, region="us-west-2")

    created = frankfurt.create_repository(repositoryName=name)["repository"]
    assert created["repositoryArn"] == arn_of(name, "eu-central-1")

    seen_from_oregon = oregon.describe_repositories(repositoryNames=[name])["repositories"][0]
    assert seen_from_oregon["repositoryArn"] == arn_of(name, "us-west-2")
    seen_from_frankfurt = frankfurt.describe_repositories(repositoryNames=[name])
    assert seen_from_frankfurt["repositories"][0]["repositoryArn"] == arn_of(name, "eu-central-1")

    frankfurt.tag_resource(
        resourceArn=arn_of(name, "eu-central-1"), tags=[{"Key": "k", "Value": "v"}]
    )
    assert oregon.list_tags_for_resource(resourceArn=arn_of(name))["tags"] == [
        {"Key": "k", "Value": "v"}
    ]


def test_create_existing_repository_fails(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name, tags=[{"Key": "a", "Value": "1"}])
    with raises_ecr(
        "RepositoryAlreadyExistsException",
        f"The repository with name '{repo_name}' already exists in the registry with id "
        f"'{TEST_ACCOUNT}'",
    ):
        ecr.create_repository(
            repositoryName=repo_name,
            imageTagMutability="IMMUTABLE",
            tags=[{"Key": "b", "Value": "2"}],
        )
    repository = ecr.describe_repositories(repositoryNames=[repo_name])["repositories"][0]
    assert repository["imageTagMutability"] == "MUTABLE"
    assert tags_of(ecr, repo_name) == {"a": "1"}


@pytest.mark.parametrize(
    "tag",
    [
        {"Key": "aws:reserved", "Value": "x"},
        {"Key": "k" * 129, "Value": "x"},
        {"Key": "key", "Value": "v" * 257},
        {"Key": "", "Value": "x"},
    ],
    ids=["aws-prefix", "key-too-long", "value-too-long", "empty-key"],
)
def test_create_repository_with_invalid_tag(ecr: Any, repo_name: str, tag: dict[str, str]) -> None:
    with raises_ecr("InvalidTagParameterException"):
        ecr.create_repository(repositoryName=repo_name, tags=[{"Key": "ok", "Value": "1"}, tag])
    with raises_ecr("RepositoryNotFoundException"):
        ecr.describe_repositories(repositoryNames=[repo_name])


def test_create_repository_with_longest_allowed_tags(ecr: Any, repo_name: str) -> None:
    tags = [{"Key": "k" * 128, "Value": "v" * 256}]
    ecr.create_repository(repositoryName=repo_name, tags=tags)
    assert tags_of(ecr, repo_name) == {"k" * 128: "v" * 256}


def test_create_repository_with_too_many_tags(ecr: Any, repo_name: str) -> None:
    tags = [{"Key": f"key-{i}", "Value": str(i)} for i in range(51)]
    with raises_ecr("TooManyTagsException"):
        ecr.create_repository(repositoryName=repo_name, tags=tags)
    with raises_ecr("RepositoryNotFoundException"):
        ecr.describe_repositories(repositoryNames=[repo_name])

    ecr.create_repository(repositoryName=repo_name, tags=tags[:50])
    assert len(tags_of(ecr, repo_name)) == 50


@pytest.mark.parametrize(
    "name",
    [
        "Upper/Case",
        "a//b",
        "x" * 257,
        "-leading-dash",
        "trailing-dash-",
        "trailing/slash/",
        "/leading-slash",
        "has space",
        "dot..dot",
        "caf\u00e9",
    ],
    ids=[
        "upper-case",
        "double-slash",
        "too-long",
        "leading-dash",
        "trailing-dash",
        "trailing-slash",
        "leading-slash",
        "space",
        "double-dot",
        "non-ascii",
    ],
)
def test_invalid_repository_names(ecr: Any, name: str) -> None:
    with raises_ecr("InvalidParameterException", NAME_CONSTRAINT):
        ecr.create_repository(repositoryName=name)
    # The same constraint guards every operation that names a repository.
    with raises_ecr(
        "InvalidParameterException",
        "Invalid parameter at 'repositoryNames.1.member' failed to satisfy constraint",
    ):
        ecr.describe_repositories(repositoryNames=[name])
    with raises_ecr("InvalidParameterException", NAME_CONSTRAINT):
        ecr.delete_repository(repositoryName=name)


def test_pattern_message_quotes_the_regular_expression(ecr: Any) -> None:
    with raises_ecr("InvalidParameterException") as info:
        ecr.create_repository(repositoryName="Bad//Name")
    message = info.value.response["Error"]["Message"]
    assert message.startswith(f"{NAME_CONSTRAINT}: 'must satisfy regular expression '")


def test_name_length_limits(ecr: Any) -> None:
    base = unique_name("long") + "/"
    longest = base + "b" * (256 - len(base))
    assert len(longest) == 256
    ecr.create_repository(repositoryName=longest)
    described = ecr.describe_repositories(repositoryNames=[longest])["repositories"]
    assert described[0]["repositoryName"] == longest
    ecr.delete_repository(repositoryName=longest)
    with raises_ecr(
        "InvalidParameterException",
        f"{NAME_CONSTRAINT}: 'Member must have length less than or equal to 256'",
    ):
        ecr.create_repository(repositoryName=longest + "c")


@pytest.mark.parametrize(
    "suffix", ["a.b", "a_b", "a__b", "a-b", "a---b", "a/b/c", "0-9", "x.y-z_w/v"]
)
def test_valid_repository_names(ecr: Any, suffix: str) -> None:
    name = f"{unique_name('ok')}-{suffix}"
    assert ecr.create_repository(repositoryName=name)["repository"]["repositoryName"] == name


# --- DescribeRepositories ------------------------------------------------------------------


def test_describe_by_names_keeps_the_requested_order(ecr: Any) -> None:
    names = [unique_name("order") for _ in range(3)]
    for name in names:
        ecr.create_repository(repositoryName=name)
    wanted = [names[2], names[0], names[1]]
    found = ecr.describe_repositories(repositoryNames=wanted)["repositories"]
    assert sorted(r["repositoryName"] for r in found) == sorted(wanted)
    assert "nextToken" not in ecr.describe_repositories(repositoryNames=wanted)


def test_describe_with_a_missing_name_fails_the_whole_call(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    missing = unique_name("missing")
    with raises_ecr(
        "RepositoryNotFoundException",
        f"The repository with name '{missing}' does not exist in the registry with id "
        f"'{TEST_ACCOUNT}'",
    ):
        ecr.describe_repositories(repositoryNames=[repo_name, missing])


def test_describe_names_with_max_results_is_invalid(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    with raises_ecr("InvalidParameterException", "Invalid parameter at"):
        ecr.describe_repositories(repositoryNames=[repo_name], maxResults=5)
    page = ecr.describe_repositories(maxResults=1)
    with raises_ecr("InvalidParameterException", "Invalid parameter at"):
        ecr.describe_repositories(repositoryNames=[repo_name], nextToken=page["nextToken"])


def test_describe_all_includes_new_repositories(ecr: Any) -> None:
    names = {unique_name("all") for _ in range(3)}
    for name in names:
        ecr.create_repository(repositoryName=name)
    listed = all_repository_names(ecr)
    assert names <= set(listed)
    assert len(listed) == len(set(listed))


def test_paginator_with_small_pages(ecr: Any) -> None:
    names = {unique_name("page") for _ in range(5)}
    for name in names:
        ecr.create_repository(repositoryName=name)
    complete = all_repository_names(ecr)

    paginator = ecr.get_paginator("describe_repositories")
    pages = list(paginator.paginate(PaginationConfig={"PageSize": 2}))
    assert all(len(page["repositories"]) <= 2 for page in pages)
    assert all("nextToken" in page for page in pages[:-1])
    assert "nextToken" not in pages[-1]
    paged = [r["repositoryName"] for page in pages for r in page["repositories"]]
    assert paged == complete
    assert names <= set(paged)

    limited = paginator.paginate(PaginationConfig={"PageSize": 2, "MaxItems": 3})
    assert len(limited.build_full_result()["repositories"]) == 3


def test_pagination_by_hand(ecr: Any) -> None:
    for _ in range(3):
        ecr.create_repository(repositoryName=unique_name("hand"))
    complete = all_repository_names(ecr)
    assert len(complete) >= 3

    collected: list[str] = []
    tokens: set[str] = set()
    request: dict[str, Any] = {"maxResults": 3}
    while True:
        page = ecr.describe_repositories(**request)
        assert 1 <= len(page["repositories"]) <= 3
        collected += [r["repositoryName"] for r in page["repositories"]]
        token = page.get("nextToken")
        if not token:
            break
        assert token not in tokens
        tokens.add(token)
        request["nextToken"] = token
    assert collected == complete

    # The default page size is 100, and maxResults=1000 returns everything at once.
    everything = ecr.describe_repositories(maxResults=1000)
    assert [r["repositoryName"] for r in everything["repositories"]] == complete
    assert "nextToken" not in everything


def test_pagination_survives_creates_and_deletes_between_pages(ecr: Any) -> None:
    base = unique_name("mutate")
    ours = [f"{base}-{i}" for i in range(8)]
    for name in ours:
        ecr.create_repository(repositoryName=name)

    seen: list[str] = []
    deleted: set[str] = set()
    created: set[str] = set()
    mutated = False
    request: dict[str, Any] = {"maxResults": 2}
    while True:
        page = ecr.describe_repositories(**request)
        seen += [r["repositoryName"] for r in page["repositories"]]
        if not mutated and ours[2] in seen:
            # Delete one repository already listed and two not listed yet; add two more,
            # one sorting before the cursor and one after it.
            for name in (ours[0], ours[4], ours[6]):
                ecr.delete_repository(repositoryName=name)
                deleted.add(name)
            for name in (f"{base}-0a", f"{base}-5a"):
                ecr.create_repository(repositoryName=name)
                created.add(name)
            mutated = True
        if "nextToken" not in page:
            break
        request["nextToken"] = page["nextToken"]

    assert mutated
    assert len(seen) == len(set(seen)), "a repository was listed twice"
    survivors = set(ours) - deleted
    for name in survivors:
        assert seen.count(name) == 1, f"survivor {name} skipped"
    assert ours[4] not in seen and ours[6] not in seen
    assert seen.index(ours[1]) < seen.index(ours[2]) < seen.index(ours[3])


@pytest.mark.parametrize(
    "token",
    ["garbage", "AAAA", "eyJsIjoicHVsbC10aHJvdWdoLWNhY2hlLXJ1bGVzIiwiayI6ImEifQ", "!!!"],
    ids=["garbage", "base64-noise", "token-of-another-listing", "punctuation"],
)
def test_invalid_next_token(ecr: Any, token: str) -> None:
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'nextToken'"):
        ecr.describe_repositories(nextToken=token)


def test_max_results_bounds(ecr: Any) -> None:
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'maxResults'"):
        ecr.describe_repositories(maxResults=1001)


# --- DeleteRepository ----------------------------------------------------------------------


def test_delete_repository_returns_it(ecr: Any, repo_name: str) -> None:
    created = ecr.create_repository(
        repositoryName=repo_name,
        imageTagMutability="IMMUTABLE",
        tags=[{"Key": "k", "Value": "v"}],
    )["repository"]
    ecr.set_repository_policy(repositoryName=repo_name, policyText=repository_policy())
    deleted = ecr.delete_repository(repositoryName=repo_name)["repository"]
    assert deleted == created

    with raises_ecr("RepositoryNotFoundException"):
        ecr.describe_repositories(repositoryNames=[repo_name])
    assert repo_name not in all_repository_names(ecr)
    with raises_ecr(
        "RepositoryNotFoundException",
        f"The repository with name '{repo_name}' does not exist in the registry with id "
        f"'{TEST_ACCOUNT}'",
    ):
        ecr.delete_repository(repositoryName=repo_name)

    # A new repository of the same name starts from scratch.
    ecr.create_repository(repositoryName=repo_name)
    assert tags_of(ecr, repo_name) == {}
    with raises_ecr("RepositoryPolicyNotFoundException"):
        ecr.get_repository_policy(repositoryName=repo_name)


def test_delete_empty_repository_with_force(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    deleted = ecr.delete_repository(repositoryName=repo_name, force=True)["repository"]
    assert deleted["repositoryName"] == repo_name


# --- PutImageTagMutability / PutImageScanningConfiguration ----------------------------------


def test_put_image_tag_mutability(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    response = ecr.put_image_tag_mutability(
        repositoryName=repo_name, imageTagMutability="IMMUTABLE"
    )
    assert response["registryId"] == TEST_ACCOUNT
    assert response["repositoryName"] == repo_name
    assert response["imageTagMutability"] == "IMMUTABLE"
    described = ecr.describe_repositories(repositoryNames=[repo_name])["repositories"][0]
    assert described["imageTagMutability"] == "IMMUTABLE"

    back = ecr.put_image_tag_mutability(repositoryName=repo_name, imageTagMutability="MUTABLE")
    assert back["imageTagMutability"] == "MUTABLE"

    with raises_ecr("InvalidParameterException", "Invalid parameter at 'imageTagMutability'"):
        ecr.put_image_tag_mutability(repositoryName=repo_name, imageTagMutability="SOMETIMES")
    with raises_ecr("RepositoryNotFoundException"):
        ecr.put_image_tag_mutability(
            repositoryName=unique_name("missing"), imageTagMutability="IMMUTABLE"
        )


def test_put_image_scanning_configuration(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    response = ecr.put_image_scanning_configuration(
        repositoryName=repo_name, imageScanningConfiguration={"scanOnPush": True}
    )
    assert response["registryId"] == TEST_ACCOUNT
    assert response["repositoryName"] == repo_name
    assert response["imageScanningConfiguration"] == {"scanOnPush": True}
    described = ecr.describe_repositories(repositoryNames=[repo_name])["repositories"][0]
    assert described["imageScanningConfiguration"] == {"scanOnPush": True}

    off = ecr.put_image_scanning_configuration(
        repositoryName=repo_name, imageScanningConfiguration={"scanOnPush": False}
    )
    assert off["imageScanningConfiguration"] == {"scanOnPush": False}
    with raises_ecr("RepositoryNotFoundException"):
        ecr.put_image_scanning_configuration(
            repositoryName=unique_name("missing"), imageScanningConfiguration={"scanOnPush": True}
        )


def test_tag_mutability_exclusion_filters(ecr: Any, repo_name: str) -> None:
    filters = [{"filterType": "WILDCARD", "filter": "latest*"}]
    created = ecr.create_repository(
        repositoryName=repo_name,
        imageTagMutability="IMMUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=filters,
    )["repository"]
    assert created["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert created["imageTagMutabilityExclusionFilters"] == filters

    changed = ecr.put_image_tag_mutability(
        repositoryName=repo_name,
        imageTagMutability="MUTABLE_WITH_EXCLUSION",
        imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "v1.*"}],
    )
    assert changed["imageTagMutabilityExclusionFilters"] == [
        {"filterType": "WILDCARD", "filter": "v1.*"}
    ]
    with raises_ecr("InvalidParameterException"):
        ecr.put_image_tag_mutability(
            repositoryName=repo_name, imageTagMutability="IMMUTABLE_WITH_EXCLUSION"
        )
    with raises_ecr("InvalidParameterException"):
        ecr.put_image_tag_mutability(
            repositoryName=repo_name,
            imageTagMutability="MUTABLE",
            imageTagMutabilityExclusionFilters=filters,
        )
    plain = ecr.put_image_tag_mutability(repositoryName=repo_name, imageTagMutability="MUTABLE")
    assert "imageTagMutabilityExclusionFilters" not in plain
    described = ecr.describe_repositories(repositoryNames=[repo_name])["repositories"][0]
    assert described["imageTagMutability"] == "MUTABLE"
    assert "imageTagMutabilityExclusionFilters" not in described


def test_foreign_registry_is_refused(ecr: Any, repo_name: str) -> None:
    with raises_ecr("AccessDeniedException"):
        ecr.create_repository(registryId="210987654321", repositoryName=repo_name)
    with raises_ecr("RepositoryNotFoundException"):
        ecr.describe_repositories(repositoryNames=[repo_name])


def test_concurrent_creates_of_one_name(server: ServerProcess, repo_name: str) -> None:
    clients = [make_ecr_client(server.url) for _ in range(8)]

    def create(client: Any) -> str:
        try:
            client.create_repository(repositoryName=repo_name)
        except ClientError as error:
            return str(error.response["Error"]["Code"])
        return "created"

    with ThreadPoolExecutor(len(clients)) as pool:
        outcomes = list(pool.map(create, clients))
    assert outcomes.count("created") == 1, outcomes
    assert outcomes.count("RepositoryAlreadyExistsException") == 7, outcomes


def test_concurrent_tagging_loses_nothing(server: ServerProcess, ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    clients = [make_ecr_client(server.url) for _ in range(8)]

    def tag(item: tuple[int, Any]) -> None:
        index, client = item
        client.tag_resource(
            resourceArn=arn_of(repo_name), tags=[{"Key": f"key-{index}", "Value": str(index)}]
        )

    with ThreadPoolExecutor(len(clients)) as pool:
        list(pool.map(tag, enumerate(clients)))
    assert tags_of(ecr, repo_name) == {f"key-{i}": str(i) for i in range(8)}


# --- repository policies -------------------------------------------------------------------


def test_repository_policy_round_trip(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    with raises_ecr(
        "RepositoryPolicyNotFoundException",
        f"Repository policy does not exist for the repository with name '{repo_name}' in the "
        f"registry with id '{TEST_ACCOUNT}'",
    ):
        ecr.get_repository_policy(repositoryName=repo_name)

    policy = repository_policy()
    response = ecr.set_repository_policy(repositoryName=repo_name, policyText=policy)
    assert response["registryId"] == TEST_ACCOUNT
    assert response["repositoryName"] == repo_name
    assert json.loads(response["policyText"]) == json.loads(policy)

    fetched = ecr.get_repository_policy(repositoryName=repo_name)
    assert fetched["repositoryName"] == repo_name
    assert fetched["registryId"] == TEST_ACCOUNT
    assert json.loads(fetched["policyText"]) == json.loads(policy)

    replacement = repository_policy(actions=("ecr:*",), sid="all")
    ecr.set_repository_policy(repositoryName=repo_name, policyText=replacement)
    fetched = ecr.get_repository_policy(repositoryName=repo_name)
    assert json.loads(fetched["policyText"]) == json.loads(replacement)

    deleted = ecr.delete_repository_policy(repositoryName=repo_name)
    assert json.loads(deleted["policyText"]) == json.loads(replacement)
    assert deleted["repositoryName"] == repo_name
    with raises_ecr("RepositoryPolicyNotFoundException"):
        ecr.get_repository_policy(repositoryName=repo_name)
    with raises_ecr("RepositoryPolicyNotFoundException"):
        ecr.delete_repository_policy(repositoryName=repo_name)


@pytest.mark.parametrize(
    "document",
    [
        {
            "Version": "2008-10-17",
            "Statement": {
                "Effect": "Allow",
                "Principal": "*",
                "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            },
        },
        {
            "Version": "2012-10-17",
            "Id": "policy-id",
            "Statement": [
                {
                    "Sid": "same",
                    "Effect": "Allow",
                    "Principal": {"Service": "codebuild.amazonaws.com"},
                    "Action": "ecr:Batch*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": TEST_ACCOUNT}},
                },
                {"Sid": "same", "Effect": "Deny", "NotPrincipal": {"AWS": ["*"]}, "Action": "*"},
            ],
        },
    ],
    ids=["2008-single-statement", "conditions-duplicate-sids"],
)
def test_valid_repository_policies(ecr: Any, repo_name: str, document: dict[str, Any]) -> None:
    ecr.create_repository(repositoryName=repo_name)
    ecr.set_repository_policy(repositoryName=repo_name, policyText=json.dumps(document))
    fetched = ecr.get_repository_policy(repositoryName=repo_name)["policyText"]
    assert json.loads(fetched) == document


@pytest.mark.parametrize(
    "text",
    [
        "this is not json",
        "[]",
        json.dumps({"Version": "2012-10-17"}),
        json.dumps({"Version": "2012-10-17", "Statement": []}),
        json.dumps(
            {
                "Version": "2020-01-01",
                "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}],
            }
        ),
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "ecr:*"}],
            }
        ),
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject"}],
            }
        ),
        json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*"}]}),
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": "*", "Action": "*", "Bogus": "field"}
                ],
            }
        ),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "no-statement",
        "empty-statement-list",
        "bad-version",
        "bad-effect",
        "foreign-action",
        "no-principal",
        "unknown-element",
    ],
)
def test_invalid_repository_policies(ecr: Any, repo_name: str, text: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    original = repository_policy()
    ecr.set_repository_policy(repositoryName=repo_name, policyText=original)
    with raises_ecr("InvalidParameterException", REPOSITORY_POLICY_INVALID):
        ecr.set_repository_policy(repositoryName=repo_name, policyText=text)
    # The failed call left the previous policy in place.
    assert ecr.get_repository_policy(repositoryName=repo_name)["policyText"] == original


def test_repository_policy_on_missing_repository(ecr: Any) -> None:
    missing = unique_name("missing")
    with raises_ecr("RepositoryNotFoundException"):
        ecr.set_repository_policy(repositoryName=missing, policyText=repository_policy())
    with raises_ecr("RepositoryNotFoundException"):
        ecr.get_repository_policy(repositoryName=missing)
    with raises_ecr("RepositoryNotFoundException"):
        ecr.delete_repository_policy(repositoryName=missing)


def test_lockout_policy_needs_force(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    lockout = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "lockout",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": ["ecr:SetRepositoryPolicy"],
                }
            ],
        }
    )
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'PolicyText'"):
        ecr.set_repository_policy(repositoryName=repo_name, policyText=lockout)
    with raises_ecr("InvalidParameterException"):
        ecr.set_repository_policy(repositoryName=repo_name, policyText=lockout, force=False)
    with raises_ecr("RepositoryPolicyNotFoundException"):
        ecr.get_repository_policy(repositoryName=repo_name)

    forced = ecr.set_repository_policy(repositoryName=repo_name, policyText=lockout, force=True)
    assert forced["policyText"] == lockout
    assert ecr.get_repository_policy(repositoryName=repo_name)["policyText"] == lockout


def test_wildcard_deny_is_also_a_lockout(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    deny_all = repository_policy(effect="Deny", actions=("ecr:*",)).replace(
        f'{{"AWS": "arn:aws:iam::{TEST_ACCOUNT}:root"}}', '"*"'
    )
    assert '"Principal": "*"' in deny_all
    with raises_ecr("InvalidParameterException"):
        ecr.set_repository_policy(repositoryName=repo_name, policyText=deny_all)
    ecr.set_repository_policy(repositoryName=repo_name, policyText=deny_all, force=True)


def test_deny_of_other_actions_needs_no_force(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    deny_delete = repository_policy(effect="Deny", actions=("ecr:DeleteRepository",))
    ecr.set_repository_policy(repositoryName=repo_name, policyText=deny_delete)
    assert ecr.get_repository_policy(repositoryName=repo_name)["policyText"] == deny_delete


LOCKOUT_PRINCIPALS = {
    "star": "*",
    "aws-star": {"AWS": "*"},
    "own-account-id": {"AWS": TEST_ACCOUNT},
    "own-root-arn": {"AWS": f"arn:aws:iam::{TEST_ACCOUNT}:root"},
}
LOCKOUT_ACTIONS = {
    "exact": "ecr:SetRepositoryPolicy",
    "wildcard-in-list": ["ecr:GetDownloadUrlForLayer", "ecr:Set*"],
    "star": "*",
}


def _deny(principal: Any, action: Any) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Deny", "Principal": principal, "Action": action}],
        }
    )


@pytest.mark.parametrize("principal", LOCKOUT_PRINCIPALS.values(), ids=LOCKOUT_PRINCIPALS)
@pytest.mark.parametrize("action", LOCKOUT_ACTIONS.values(), ids=LOCKOUT_ACTIONS)
def test_lockout_variants_need_force(ecr: Any, repo_name: str, principal: Any, action: Any) -> None:
    ecr.create_repository(repositoryName=repo_name)
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'PolicyText'"):
        ecr.set_repository_policy(repositoryName=repo_name, policyText=_deny(principal, action))
    ecr.set_repository_policy(
        repositoryName=repo_name, policyText=_deny(principal, action), force=True
    )


@pytest.mark.parametrize(
    "principal",
    [{"AWS": ["*"]}, {"AWS": ["arn:aws:iam::210987654321:root", TEST_ACCOUNT]}],
    ids=["aws-star-in-list", "own-account-among-others"],
)
def test_lockout_with_principal_list_needs_force(
    ecr: Any, repo_name: str, principal: dict[str, list[str]]
) -> None:
    ecr.create_repository(repositoryName=repo_name)
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'PolicyText'"):
        ecr.set_repository_policy(
            repositoryName=repo_name, policyText=_deny(principal, "ecr:SetRepositoryPolicy")
        )


# --- lifecycle policies --------------------------------------------------------------------


def test_lifecycle_policy_round_trip(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    with raises_ecr(
        "LifecyclePolicyNotFoundException",
        f"Lifecycle policy does not exist for the repository with name '{repo_name}' in the "
        f"registry with id '{TEST_ACCOUNT}'",
    ):
        ecr.get_lifecycle_policy(repositoryName=repo_name)
    with raises_ecr("LifecyclePolicyNotFoundException"):
        ecr.delete_lifecycle_policy(repositoryName=repo_name)

    text = lifecycle_text(expire_untagged_rule(1), keep_tagged_rule(2))
    put = ecr.put_lifecycle_policy(repositoryName=repo_name, lifecyclePolicyText=text)
    assert put["registryId"] == TEST_ACCOUNT
    assert put["repositoryName"] == repo_name
    assert put["lifecyclePolicyText"] == text

    got = ecr.get_lifecycle_policy(repositoryName=repo_name)
    assert got["registryId"] == TEST_ACCOUNT
    assert got["repositoryName"] == repo_name
    assert got["lifecyclePolicyText"] == text

    replacement = lifecycle_text(expire_untagged_rule(5, days=30))
    ecr.put_lifecycle_policy(repositoryName=repo_name, lifecyclePolicyText=replacement)
    assert ecr.get_lifecycle_policy(repositoryName=repo_name)["lifecyclePolicyText"] == replacement

    deleted = ecr.delete_lifecycle_policy(repositoryName=repo_name)
    assert deleted["lifecyclePolicyText"] == replacement
    assert deleted["repositoryName"] == repo_name
    assert deleted["registryId"] == TEST_ACCOUNT
    with raises_ecr("LifecyclePolicyNotFoundException"):
        ecr.get_lifecycle_policy(repositoryName=repo_name)


VALID_LIFECYCLE_POLICIES = {
    "any-last": [
        keep_tagged_rule(1, ("prod",)),
        {
            "rulePriority": 9,
            "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 5},
            "action": {"type": "expire"},
        },
    ],
    "patterns": [
        {
            "rulePriority": 3,
            "description": "keep the last 3 release candidates",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["*rc*1*2*3", "release-*"],
                "countType": "imageCountMoreThan",
                "countNumber": 3,
            },
            "action": {"type": "expire"},
        }
    ],
    "untagged-and-any": [
        expire_untagged_rule(1),
        {
            "rulePriority": 2,
            "selection": {
                "tagStatus": "any",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 365,
            },
            "action": {"type": "expire"},
        },
    ],
    "explicit-standard-storage": [
        {
            "rulePriority": 1,
            "selection": {
                "tagStatus": "untagged",
                "storageClass": "standard",
                "countType": "imageCountMoreThan",
                "countNumber": 1,
            },
            "action": {"type": "expire"},
        }
    ],
}


@pytest.mark.parametrize("rules", VALID_LIFECYCLE_POLICIES.values(), ids=VALID_LIFECYCLE_POLICIES)
def test_valid_lifecycle_policies(ecr: Any, repo_name: str, rules: list[dict[str, Any]]) -> None:
    ecr.create_repository(repositoryName=repo_name)
    text = lifecycle_text(*rules)
    ecr.put_lifecycle_policy(repositoryName=repo_name, lifecyclePolicyText=text)
    assert ecr.get_lifecycle_policy(repositoryName=repo_name)["lifecyclePolicyText"] == text


def _selection(**changes: Any) -> dict[str, Any]:
    """The untagged rule with its selection changed; a None value removes that key."""
    rule = expire_untagged_rule(1)
    selection = rule["selection"] | changes
    rule["selection"] = {key: value for key, value in selection.items() if value is not None}
    return rule


INVALID_LIFECYCLE_POLICIES: dict[str, tuple[str, str]] = {
    "not-json": ("this is not JSON at all".ljust(100), "Could not map policyString"),
    "array": (json.dumps([expire_untagged_rule()]).ljust(100), "Could not map policyString"),
    "no-rules": (json.dumps({"policy": []}).ljust(100), "object instance has properties"),
    "missing-rules": (
        json.dumps({}).ljust(100),
        'object has missing required properties (["rules"])',
    ),
    "missing-action": (
        lifecycle_text({k: v for k, v in expire_untagged_rule().items() if k != "action"}),
        'object has missing required properties (["action"])',
    ),
    "bad-tag-status": (
        lifecycle_text(_selection(tagStatus="bogus")),
        'instance value ("bogus") not found in enum',
    ),
    "tagged-without-list": (
        lifecycle_text(_selection(tagStatus="tagged")),
        "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED.",
    ),
    "count-number-zero": (
        lifecycle_text(_selection(countNumber=0)),
        "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
    ),
    "count-unit-with-image-count": (
        lifecycle_text(_selection(countType="imageCountMoreThan")),
        "instance failed to match exactly one schema (matched 0 out of 2)",
    ),
    "since-pushed-without-unit": (
        lifecycle_text(_selection(countUnit=None)),
        "instance failed to match exactly one schema (matched 0 out of 2)",
    ),
    "bad-action": (
        lifecycle_text(expire_untagged_rule() | {"action": {"type": "delete"}}),
        'instance value ("delete") not found in enum',
    ),
    "two-untagged-rules": (
        lifecycle_text(expire_untagged_rule(1), expire_untagged_rule(2)),
        "Only one rule can select Untagged images.",
    ),
    "any-not-last": (
        lifecycle_text(
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "any",
                    "countType": "imageCountMoreThan",
                    "countNumber": 5,
                },
                "action": {"type": "expire"},
            },
            keep_tagged_rule(2),
        ),
        "Rule for tagStatus=ANY must have the lowest priority",
    ),
    "duplicate-priority": (
        lifecycle_text(keep_tagged_rule(1, ("a",)), keep_tagged_rule(1, ("b",))),
        "",
    ),
    "too-many-wildcards": (
        lifecycle_text(
            {
                "rulePriority": 1,
                "selection": {
                    "tagStatus": "tagged",
                    "tagPatternList": ["test*1*2*3*4*5*6"],
                    "countType": "imageCountMoreThan",
                    "countNumber": 1,
                },
                "action": {"type": "expire"},
            }
        ),
        "",
    ),
    "prefix-list-on-untagged": (lifecycle_text(_selection(tagPrefixList=["v"])), ""),
    "no-rules-at-all": (lifecycle_text(), ""),
    "too-many-rules": (
        lifecycle_text(*(keep_tagged_rule(i, (f"p{i}",)) for i in range(1, 52))),
        "",
    ),
}


@pytest.mark.parametrize(
    ("text", "detail"), INVALID_LIFECYCLE_POLICIES.values(), ids=INVALID_LIFECYCLE_POLICIES
)
def test_invalid_lifecycle_policies(ecr: Any, repo_name: str, text: str, detail: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    original = lifecycle_text(expire_untagged_rule())
    ecr.put_lifecycle_policy(repositoryName=repo_name, lifecyclePolicyText=original)
    with raises_ecr("InvalidParameterException", f"{LIFECYCLE_FAILURE} {detail}"):
        ecr.put_lifecycle_policy(repositoryName=repo_name, lifecyclePolicyText=text)
    assert ecr.get_lifecycle_policy(repositoryName=repo_name)["lifecyclePolicyText"] == original


def test_lifecycle_policy_on_missing_repository(ecr: Any) -> None:
    missing = unique_name("missing")
    text = lifecycle_text(expire_untagged_rule())
    with raises_ecr("RepositoryNotFoundException"):
        ecr.put_lifecycle_policy(repositoryName=missing, lifecyclePolicyText=text)
    with raises_ecr("RepositoryNotFoundException"):
        ecr.get_lifecycle_policy(repositoryName=missing)
    with raises_ecr("RepositoryNotFoundException"):
        ecr.delete_lifecycle_policy(repositoryName=missing)


def test_lifecycle_policy_text_too_long(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'lifecyclePolicyText'"):
        ecr.put_lifecycle_policy(
            repositoryName=repo_name,
            lifecyclePolicyText=lifecycle_text(expire_untagged_rule()).ljust(30721),
        )


# --- resource tags -------------------------------------------------------------------------


def test_tag_resource_merges_and_overwrites(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name, tags=[{"Key": "a", "Value": "1"}])
    arn = arn_of(repo_name)
    assert ecr.tag_resource(resourceArn=arn, tags=[{"Key": "b", "Value": "2"}])
    assert tags_of(ecr, repo_name) == {"a": "1", "b": "2"}

    ecr.tag_resource(
        resourceArn=arn, tags=[{"Key": "a", "Value": "changed"}, {"Key": "c", "Value": ""}]
    )
    assert tags_of(ecr, repo_name) == {"a": "changed", "b": "2", "c": ""}

    ecr.untag_resource(resourceArn=arn, tagKeys=["b", "not-there"])
    assert tags_of(ecr, repo_name) == {"a": "changed", "c": ""}
    ecr.untag_resource(resourceArn=arn, tagKeys=["a", "c"])
    assert tags_of(ecr, repo_name) == {}


def test_tag_responses_are_empty(server: ServerProcess, repo_name: str) -> None:
    assert raw_call(server.url, "CreateRepository", {"repositoryName": repo_name}).is_success
    arn = arn_of(repo_name)
    tagged = raw_call(server.url, "TagResource", {"resourceArn": arn, "tags": []})
    assert tagged.status_code == 200 and tagged.json() == {}
    untagged = raw_call(server.url, "UntagResource", {"resourceArn": arn, "tagKeys": ["x"]})
    assert untagged.status_code == 200 and untagged.json() == {}


def test_tags_are_case_sensitive(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    ecr.tag_resource(
        resourceArn=arn_of(repo_name),
        tags=[{"Key": "Env", "Value": "prod"}, {"Key": "env", "Value": "dev"}],
    )
    assert tags_of(ecr, repo_name) == {"Env": "prod", "env": "dev"}


@pytest.mark.parametrize(
    "arn",
    [
        "not-an-arn",
        f"arn:aws:ecr:{TEST_REGION}:{TEST_ACCOUNT}:image/x",
        f"arn:aws:s3:::{TEST_ACCOUNT}",
        f"arn:aws:ecr:{TEST_REGION}:12345:repository/x",
        f"arn:aws:ecr:{TEST_REGION}:{TEST_ACCOUNT}:repository/",
        "",
    ],
    ids=["garbage", "not-a-repository", "other-service", "short-account", "no-name", "empty"],
)
def test_bad_arns(ecr: Any, arn: str) -> None:
    message = "Invalid parameter at 'resourceArn' failed to satisfy constraint"
    with raises_ecr("InvalidParameterException", message):
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": "k", "Value": "v"}])
    with raises_ecr("InvalidParameterException", message):
        ecr.untag_resource(resourceArn=arn, tagKeys=["k"])
    with raises_ecr("InvalidParameterException", message):
        ecr.list_tags_for_resource(resourceArn=arn)


def test_tags_of_unknown_repository(ecr: Any) -> None:
    arn = arn_of(unique_name("missing"))
    with raises_ecr("RepositoryNotFoundException"):
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": "k", "Value": "v"}])
    with raises_ecr("RepositoryNotFoundException"):
        ecr.untag_resource(resourceArn=arn, tagKeys=["k"])
    with raises_ecr("RepositoryNotFoundException"):
        ecr.list_tags_for_resource(resourceArn=arn)


def test_tag_limits(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(
        repositoryName=repo_name, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(45)]
    )
    arn = arn_of(repo_name)
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": f"k{i}", "Value": "w"} for i in range(40, 50)])
    assert len(tags_of(ecr, repo_name)) == 50

    with raises_ecr("TooManyTagsException"):
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": "one-more", "Value": "v"}])
    # Overwriting an existing key does not add a tag.
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "k0", "Value": "new"}])
    tags = tags_of(ecr, repo_name)
    assert len(tags) == 50 and tags["k0"] == "new" and "one-more" not in tags

    with raises_ecr("InvalidTagParameterException"):
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": "k" * 129, "Value": "v"}])
    with raises_ecr("InvalidTagParameterException"):
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": "k0", "Value": "v" * 257}])
    with raises_ecr("InvalidTagParameterException"):
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": "aws:owner", "Value": "v"}])
    with raises_ecr("InvalidTagParameterException"):
        ecr.untag_resource(resourceArn=arn, tagKeys=["aws:owner"])
    assert tags_of(ecr, repo_name) == tags

    ecr.untag_resource(resourceArn=arn, tagKeys=["k1"])
    ecr.tag_resource(resourceArn=arn, tags=[{"Key": "one-more", "Value": "v"}])
    assert len(tags_of(ecr, repo_name)) == 50


def test_failed_tag_call_changes_nothing(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name, tags=[{"Key": "keep", "Value": "1"}])
    with raises_ecr("InvalidTagParameterException"):
        ecr.tag_resource(
            resourceArn=arn_of(repo_name),
            tags=[{"Key": "keep", "Value": "2"}, {"Key": "aws:bad", "Value": "x"}],
        )
    assert tags_of(ecr, repo_name) == {"keep": "1"}
