"""Registry-wide operations through boto3: policy, scanning, replication, PTC rules, tokens.

The registry settings are shared by every test on a session server, so each test that
changes them starts from, and restores, the defaults (``clean_registry``).
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from ecr_helpers import make_ecr_client, raises_ecr, raw_call, registry_policy, unique_name
from harness import TEST_ACCOUNT, TEST_REGION, ServerProcess

REGISTRY_POLICY_INVALID = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: "
    "'Invalid registry policy provided'"
)
OTHER_ACCOUNT = "210987654321"
SECRET_ARN = f"arn:aws:secretsmanager:{TEST_REGION}:{TEST_ACCOUNT}:secret:ecr-pullthroughcache/hub"


def reset_registry(ecr: Any) -> None:
    with contextlib.suppress(ecr.exceptions.RegistryPolicyNotFoundException):
        ecr.delete_registry_policy()
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[])
    ecr.put_replication_configuration(replicationConfiguration={"rules": []})


@pytest.fixture
def clean_registry(ecr: Any) -> Iterator[Any]:
    reset_registry(ecr)
    yield ecr
    reset_registry(ecr)


def ptc_prefix() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


# --- registry policy -----------------------------------------------------------------------


def test_registry_policy_round_trip(clean_registry: Any) -> None:
    ecr = clean_registry
    not_found = f"Registry policy does not exist in the registry with id '{TEST_ACCOUNT}'"
    with raises_ecr("RegistryPolicyNotFoundException", not_found):
        ecr.get_registry_policy()
    with raises_ecr("RegistryPolicyNotFoundException", not_found):
        ecr.delete_registry_policy()

    policy = registry_policy()
    put = ecr.put_registry_policy(policyText=policy)
    assert put["registryId"] == TEST_ACCOUNT
    assert json.loads(put["policyText"]) == json.loads(policy)
    got = ecr.get_registry_policy()
    assert got["registryId"] == TEST_ACCOUNT
    assert json.loads(got["policyText"]) == json.loads(policy)

    # V2 scope: any ecr: action may appear.
    replacement = registry_policy(actions=("ecr:*", "ecr:BatchImportUpstreamImage"))
    ecr.put_registry_policy(policyText=replacement)
    assert json.loads(ecr.get_registry_policy()["policyText"]) == json.loads(replacement)

    deleted = ecr.delete_registry_policy()
    assert deleted["registryId"] == TEST_ACCOUNT
    assert json.loads(deleted["policyText"]) == json.loads(replacement)
    with raises_ecr("RegistryPolicyNotFoundException"):
        ecr.get_registry_policy()


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*", "Action": "ecr:*"}]}),
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "iam:PassRole"}],
            }
        ),
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Robot": "x"}, "Action": "*"}],
            }
        ),
        "",
    ],
    ids=["not-json", "no-version", "foreign-action", "bad-principal", "empty"],
)
def test_invalid_registry_policies(clean_registry: Any, text: str) -> None:
    ecr = clean_registry
    original = registry_policy()
    ecr.put_registry_policy(policyText=original)
    with raises_ecr("InvalidParameterException", REGISTRY_POLICY_INVALID):
        ecr.put_registry_policy(policyText=text)
    assert ecr.get_registry_policy()["policyText"] == original


# --- registry scanning configuration -------------------------------------------------------


def test_default_scanning_configuration(clean_registry: Any) -> None:
    got = clean_registry.get_registry_scanning_configuration()
    assert got["registryId"] == TEST_ACCOUNT
    assert got["scanningConfiguration"] == {"scanType": "BASIC", "rules": []}


def test_put_and_get_scanning_configuration_keys(
    clean_registry: Any, server: ServerProcess
) -> None:
    ecr = clean_registry
    rules = [
        {
            "scanFrequency": "CONTINUOUS_SCAN",
            "repositoryFilters": [{"filter": "prod*", "filterType": "WILDCARD"}],
        },
        {
            "scanFrequency": "SCAN_ON_PUSH",
            "repositoryFilters": [
                {"filter": "*", "filterType": "WILDCARD"},
                {"filter": "team/a*b", "filterType": "WILDCARD"},
            ],
        },
    ]
    put = ecr.put_registry_scanning_configuration(scanType="ENHANCED", rules=rules)
    assert put["registryScanningConfiguration"] == {"scanType": "ENHANCED", "rules": rules}
    assert "scanningConfiguration" not in put
    got = ecr.get_registry_scanning_configuration()
    assert got["scanningConfiguration"] == {"scanType": "ENHANCED", "rules": rules}
    assert "registryScanningConfiguration" not in got

    # The same asymmetry on the wire.
    raw_put = raw_call(
        server.url, "PutRegistryScanningConfiguration", {"scanType": "BASIC", "rules": []}
    )
    assert raw_put.json() == {"registryScanningConfiguration": {"scanType": "BASIC", "rules": []}}
    raw_get = raw_call(server.url, "GetRegistryScanningConfiguration", {})
    assert raw_get.json() == {
        "registryId": TEST_ACCOUNT,
        "scanningConfiguration": {"scanType": "BASIC", "rules": []},
    }


def test_scanning_configuration_is_replaced_not_merged(clean_registry: Any) -> None:
    ecr = clean_registry
    on_push = {
        "scanFrequency": "SCAN_ON_PUSH",
        "repositoryFilters": [{"filter": "a", "filterType": "WILDCARD"}],
    }
    ecr.put_registry_scanning_configuration(scanType="BASIC", rules=[on_push])
    ecr.put_registry_scanning_configuration(scanType="ENHANCED", rules=[])
    got = ecr.get_registry_scanning_configuration()["scanningConfiguration"]
    assert got == {"scanType": "ENHANCED", "rules": []}


@pytest.mark.parametrize(
    ("scan_type", "rules"),
    [
        ("SOMETIMES", []),
        (
            "BASIC",
            [
                {
                    "scanFrequency": "SCAN_ON_PUSH",
                    "repositoryFilters": [{"filter": "UPPER", "filterType": "WILDCARD"}],
                }
            ],
        ),
        (
            "BASIC",
            [
                {
                    "scanFrequency": "SCAN_ON_PUSH",
                    "repositoryFilters": [{"filter": "a", "filterType": "PREFIX_MATCH"}],
                }
            ],
        ),
        (
            "BASIC",
            [
                {
                    "scanFrequency": "WEEKLY",
                    "repositoryFilters": [{"filter": "a", "filterType": "WILDCARD"}],
                }
            ],
        ),
        (
            "ENHANCED",
            [
                {
                    "scanFrequency": f,
                    "repositoryFilters": [{"filter": "a", "filterType": "WILDCARD"}],
                }
                for f in ("SCAN_ON_PUSH", "CONTINUOUS_SCAN", "SCAN_ON_PUSH")
            ],
        ),
        (
            "BASIC",
            [
                {
                    "scanFrequency": "SCAN_ON_PUSH",
                    "repositoryFilters": [
                        {"filter": f"f{i}", "filterType": "WILDCARD"} for i in range(101)
                    ],
                }
            ],
        ),
        (
            "BASIC",
            [
                {
                    "scanFrequency": "SCAN_ON_PUSH",
                    "repositoryFilters": [{"filter": "x" * 256, "filterType": "WILDCARD"}],
                }
            ],
        ),
    ],
    ids=[
        "bad-scan-type",
        "upper-case-filter",
        "bad-filter-type",
        "bad-frequency",
        "three-rules",
        "101-filters",
        "filter-too-long",
    ],
)
def test_invalid_scanning_configurations(
    clean_registry: Any, scan_type: str, rules: list[dict[str, Any]]
) -> None:
    with raises_ecr("InvalidParameterException", "Invalid parameter at"):
        clean_registry.put_registry_scanning_configuration(scanType=scan_type, rules=rules)
    assert clean_registry.get_registry_scanning_configuration()["scanningConfiguration"] == {
        "scanType": "BASIC",
        "rules": [],
    }


def test_continuous_scan_needs_enhanced(clean_registry: Any) -> None:
    rule = {
        "scanFrequency": "CONTINUOUS_SCAN",
        "repositoryFilters": [{"filter": "*", "filterType": "WILDCARD"}],
    }
    with pytest.raises(clean_registry.exceptions.ClientError) as info:
        clean_registry.put_registry_scanning_configuration(scanType="BASIC", rules=[rule])
    assert info.value.response["Error"]["Code"] in {
        "InvalidParameterException",
        "ValidationException",
    }
    clean_registry.put_registry_scanning_configuration(scanType="ENHANCED", rules=[rule])


# --- BatchGetRepositoryScanningConfiguration ------------------------------------------------

# Spec §7.5: rows are filters, columns repositories, "prod" standing for a unique word.
WILDCARD_TABLE = {
    "{w}": [True, True, True, True, True],
    "*{w}": [True, True, False, False, False],
    "{w}*": [True, False, True, False, True],
    "*{w}*": [True, True, True, True, True],
    "{w}*repo": [False, False, True, False, True],
}
WILDCARD_REPOSITORIES = ["{w}", "repo-{w}", "{w}-repo", "repo-{w}-repo", "{w}repo"]


def test_scanning_filters_match_as_documented(clean_registry: Any) -> None:
    ecr = clean_registry
    word = f"prod{uuid.uuid4().hex[:8]}"
    names = [pattern.format(w=word) for pattern in WILDCARD_REPOSITORIES]
    for name in names:
        ecr.create_repository(repositoryName=name)

    for row, expected in WILDCARD_TABLE.items():
        filter_value = row.format(w=word)
        applied = [{"filter": filter_value, "filterType": "WILDCARD"}]
        ecr.put_registry_scanning_configuration(
            scanType="BASIC",
            rules=[{"scanFrequency": "SCAN_ON_PUSH", "repositoryFilters": applied}],
        )
        response = ecr.batch_get_repository_scanning_configuration(repositoryNames=names)
        assert response.get("failures", []) == []
        by_name = {c["repositoryName"]: c for c in response["scanningConfigurations"]}
        assert set(by_name) == set(names)
        for name, matches in zip(names, expected, strict=True):
            configuration = by_name[name]
            assert configuration["repositoryArn"] == (
                f"arn:aws:ecr:{TEST_REGION}:{TEST_ACCOUNT}:repository/{name}"
            )
            if matches:
                assert configuration["scanFrequency"] == "SCAN_ON_PUSH", (filter_value, name)
                assert configuration["scanOnPush"] is True
                assert configuration["appliedScanFilters"] == applied
            else:
                assert configuration["scanFrequency"] == "MANUAL", (filter_value, name)
                assert configuration["scanOnPush"] is False
                assert configuration.get("appliedScanFilters", []) == []


def test_batch_get_reports_missing_repositories(clean_registry: Any) -> None:
    ecr = clean_registry
    present = unique_name("scan")
    missing = unique_name("scan-missing")
    ecr.create_repository(repositoryName=present)
    response = ecr.batch_get_repository_scanning_configuration(repositoryNames=[missing, present])
    assert [c["repositoryName"] for c in response["scanningConfigurations"]] == [present]
    assert len(response["failures"]) == 1
    failure = response["failures"][0]
    assert failure["repositoryName"] == missing
    assert failure["failureCode"] == "REPOSITORY_NOT_FOUND"
    assert failure["failureReason"]

    only_missing = ecr.batch_get_repository_scanning_configuration(repositoryNames=[missing])
    assert only_missing.get("scanningConfigurations", []) == []
    assert [f["repositoryName"] for f in only_missing["failures"]] == [missing]


def test_batch_get_defaults_and_legacy_scan_on_push(clean_registry: Any) -> None:
    ecr = clean_registry
    manual = unique_name("manual")
    legacy = unique_name("legacy")
    ecr.create_repository(repositoryName=manual)
    ecr.create_repository(repositoryName=legacy, imageScanningConfiguration={"scanOnPush": True})

    response = ecr.batch_get_repository_scanning_configuration(repositoryNames=[manual, legacy])
    by_name = {c["repositoryName"]: c for c in response["scanningConfigurations"]}
    assert by_name[manual]["scanOnPush"] is False
    assert by_name[manual]["scanFrequency"] == "MANUAL"
    assert by_name[manual].get("appliedScanFilters", []) == []
    assert by_name[legacy]["scanOnPush"] is True
    assert by_name[legacy]["scanFrequency"] == "SCAN_ON_PUSH"

    # Switching the legacy flag off through PutImageScanningConfiguration is seen at once.
    ecr.put_image_scanning_configuration(
        repositoryName=legacy, imageScanningConfiguration={"scanOnPush": False}
    )
    again = ecr.batch_get_repository_scanning_configuration(repositoryNames=[legacy])
    assert again["scanningConfigurations"][0]["scanFrequency"] == "MANUAL"


def test_continuous_scan_wins_over_scan_on_push(clean_registry: Any) -> None:
    ecr = clean_registry
    word = f"both{uuid.uuid4().hex[:8]}"
    name = f"{word}/service"
    ecr.create_repository(repositoryName=name)
    continuous = [{"filter": f"{word}*", "filterType": "WILDCARD"}]
    ecr.put_registry_scanning_configuration(
        scanType="ENHANCED",
        rules=[
            {
                "scanFrequency": "SCAN_ON_PUSH",
                "repositoryFilters": [{"filter": word, "filterType": "WILDCARD"}],
            },
            {"scanFrequency": "CONTINUOUS_SCAN", "repositoryFilters": continuous},
        ],
    )
    configuration = ecr.batch_get_repository_scanning_configuration(repositoryNames=[name])[
        "scanningConfigurations"
    ][0]
    assert configuration["scanFrequency"] == "CONTINUOUS_SCAN"
    assert configuration["appliedScanFilters"] == continuous


def test_batch_get_limits(ecr: Any) -> None:
    names = [unique_name("many") for _ in range(26)]
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'repositoryNames'"):
        ecr.batch_get_repository_scanning_configuration(repositoryNames=names)
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'repositoryNames.1.member'"):
        ecr.batch_get_repository_scanning_configuration(repositoryNames=["Not/Valid"])
    response = ecr.batch_get_repository_scanning_configuration(repositoryNames=names[:25])
    assert len(response["failures"]) == 25


def test_batch_get_arn_follows_the_signing_region(server: ServerProcess) -> None:
    name = unique_name("scanregion")
    client = make_ecr_client(server.url, region="ap-southeast-2")
    client.create_repository(repositoryName=name)
    configuration = client.batch_get_repository_scanning_configuration(repositoryNames=[name])
    assert configuration["scanningConfigurations"][0]["repositoryArn"] == (
        f"arn:aws:ecr:ap-southeast-2:{TEST_ACCOUNT}:repository/{name}"
    )


# --- replication ---------------------------------------------------------------------------


def test_describe_registry_default(clean_registry: Any) -> None:
    described = clean_registry.describe_registry()
    assert described["registryId"] == TEST_ACCOUNT
    assert described["replicationConfiguration"] == {"rules": []}


def test_put_replication_configuration_echo(clean_registry: Any) -> None:
    ecr = clean_registry
    configuration = {
        "rules": [
            {
                "destinations": [
                    {"region": "eu-west-1", "registryId": TEST_ACCOUNT},
                    {"region": TEST_REGION, "registryId": OTHER_ACCOUNT},
                ],
                "repositoryFilters": [{"filter": "prod", "filterType": "PREFIX_MATCH"}],
            },
            {"destinations": [{"region": "ap-northeast-1", "registryId": TEST_ACCOUNT}]},
        ]
    }
    put = ecr.put_replication_configuration(replicationConfiguration=configuration)
    assert put["replicationConfiguration"] == configuration
    described = ecr.describe_registry()
    assert described["registryId"] == TEST_ACCOUNT
    assert described["replicationConfiguration"] == configuration

    cleared = ecr.put_replication_configuration(replicationConfiguration={"rules": []})
    assert cleared["replicationConfiguration"] == {"rules": []}
    assert ecr.describe_registry()["replicationConfiguration"] == {"rules": []}


def test_replication_to_the_source_registry_is_rejected(
    clean_registry: Any, server: ServerProcess
) -> None:
    ecr = clean_registry
    message = (
        "Invalid parameter at 'replicationConfiguration' failed to satisfy constraint: "
        "'Replication destination cannot be the same as the source registry'"
    )
    to_self = {"rules": [{"destinations": [{"region": TEST_REGION, "registryId": TEST_ACCOUNT}]}]}
    with raises_ecr("InvalidParameterException", message):
        ecr.put_replication_configuration(replicationConfiguration=to_self)
    assert ecr.describe_registry()["replicationConfiguration"] == {"rules": []}

    # The source region is the one the request was signed for.
    frankfurt = make_ecr_client(server.url, region="eu-central-1")
    frankfurt.put_replication_configuration(replicationConfiguration=to_self)
    assert ecr.describe_registry()["replicationConfiguration"] == to_self
    to_frankfurt = {
        "rules": [{"destinations": [{"region": "eu-central-1", "registryId": TEST_ACCOUNT}]}]
    }
    with raises_ecr("InvalidParameterException", message):
        frankfurt.put_replication_configuration(replicationConfiguration=to_frankfurt)
    assert ecr.describe_registry()["replicationConfiguration"] == to_self


@pytest.mark.parametrize(
    "configuration",
    [
        {"rules": [{"destinations": [{"region": "EU_WEST_1", "registryId": TEST_ACCOUNT}]}]},
        {"rules": [{"destinations": [{"region": "eu-west-1", "registryId": "12345"}]}]},
        {
            "rules": [
                {
                    "destinations": [{"region": "eu-west-1", "registryId": TEST_ACCOUNT}],
                    "repositoryFilters": [{"filter": "prod", "filterType": "SUFFIX_MATCH"}],
                }
            ]
        },
        {
            "rules": [
                {
                    "destinations": [{"region": "eu-west-1", "registryId": TEST_ACCOUNT}],
                    "repositoryFilters": [{"filter": "Prod", "filterType": "PREFIX_MATCH"}],
                }
            ]
        },
        {
            "rules": [
                {"destinations": [{"region": "eu-west-1", "registryId": TEST_ACCOUNT}]}
                for _ in range(26)
            ]
        },
        {
            "rules": [
                {
                    "destinations": [
                        {"region": "eu-west-1", "registryId": f"{i:012d}"} for i in range(26)
                    ]
                }
            ]
        },
    ],
    ids=[
        "bad-region",
        "bad-registry-id",
        "bad-filter-type",
        "bad-filter",
        "26-rules",
        "26-destinations",
    ],
)
def test_invalid_replication_configurations(
    clean_registry: Any, configuration: dict[str, Any]
) -> None:
    with raises_ecr("InvalidParameterException", "Invalid parameter at"):
        clean_registry.put_replication_configuration(replicationConfiguration=configuration)
    assert clean_registry.describe_registry()["replicationConfiguration"] == {"rules": []}


# --- pull-through cache rules --------------------------------------------------------------


@pytest.fixture
def ptc_cleanup(ecr: Any) -> Iterator[list[str]]:
    """Prefixes to delete after the test: a registry holds at most 50 rules."""
    created: list[str] = []
    yield created
    for prefix in created:
        with contextlib.suppress(ecr.exceptions.PullThroughCacheRuleNotFoundException):
            ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)


@pytest.mark.parametrize(
    ("url", "upstream"),
    [("public.ecr.aws", "ecr-public"), ("quay.io", "quay"), ("registry.k8s.io", "k8s")],
)
def test_create_pull_through_cache_rule(
    ecr: Any, ptc_cleanup: list[str], url: str, upstream: str
) -> None:
    prefix = ptc_prefix()
    before = time.time()
    created = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix=prefix, upstreamRegistryUrl=url
    )
    ptc_cleanup.append(prefix)
    assert created["ecrRepositoryPrefix"] == prefix
    assert created["upstreamRegistryUrl"] == url
    assert created["registryId"] == TEST_ACCOUNT
    assert created["upstreamRegistry"] == upstream
    assert before - 2 <= created["createdAt"].timestamp() <= time.time() + 2

    described = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])
    [rule] = described["pullThroughCacheRules"]
    assert rule["ecrRepositoryPrefix"] == prefix
    assert rule["upstreamRegistryUrl"] == url
    assert rule["registryId"] == TEST_ACCOUNT
    assert rule["createdAt"] == created["createdAt"]


def test_rule_with_credentials(ecr: Any, ptc_cleanup: list[str]) -> None:
    prefix = ptc_prefix()
    created = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix=prefix,
        upstreamRegistryUrl="registry-1.docker.io",
        upstreamRegistry="docker-hub",
        credentialArn=SECRET_ARN,
    )
    ptc_cleanup.append(prefix)
    assert created["upstreamRegistry"] == "docker-hub"
    assert created["credentialArn"] == SECRET_ARN
    [rule] = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])[
        "pullThroughCacheRules"
    ]
    assert rule["credentialArn"] == SECRET_ARN


@pytest.mark.parametrize(
    ("url", "declared"),
    [
        ("registry.example.com", None),
        ("evil.quay.io.example.com", None),
        ("public.ecr.aws", "quay"),
        ("localhost:5000", None),
    ],
    ids=["unknown-host", "lookalike-host", "url-does-not-match-declared", "localhost"],
)
def test_unsupported_upstreams(
    ecr: Any, ptc_cleanup: list[str], url: str, declared: str | None
) -> None:
    prefix = ptc_prefix()
    ptc_cleanup.append(prefix)
    extra = {"upstreamRegistry": declared} if declared else {}
    with raises_ecr("UnsupportedUpstreamRegistryException"):
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix, upstreamRegistryUrl=url, **extra
        )
    with raises_ecr("PullThroughCacheRuleNotFoundException"):
        ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])


def test_duplicate_rule(ecr: Any, ptc_cleanup: list[str]) -> None:
    prefix = ptc_prefix()
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io")
    ptc_cleanup.append(prefix)
    with raises_ecr("PullThroughCacheRuleAlreadyExistsException"):
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix, upstreamRegistryUrl="public.ecr.aws"
        )
    # A trailing "/" is implied: "p/" is the same rule as "p".
    with raises_ecr("PullThroughCacheRuleAlreadyExistsException"):
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix + "/", upstreamRegistryUrl="public.ecr.aws"
        )
    [rule] = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])[
        "pullThroughCacheRules"
    ]
    assert rule["upstreamRegistryUrl"] == "quay.io"


def test_delete_rule(ecr: Any, ptc_cleanup: list[str]) -> None:
    prefix = ptc_prefix()
    created = ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix=prefix, upstreamRegistryUrl="public.ecr.aws"
    )
    ptc_cleanup.append(prefix)
    deleted = ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
    assert deleted["ecrRepositoryPrefix"] == prefix
    assert deleted["upstreamRegistryUrl"] == "public.ecr.aws"
    assert deleted["registryId"] == TEST_ACCOUNT
    assert deleted["createdAt"] == created["createdAt"]

    with raises_ecr("PullThroughCacheRuleNotFoundException"):
        ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix=prefix)
    with raises_ecr("PullThroughCacheRuleNotFoundException"):
        ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefix])
    listed = ecr.get_paginator("describe_pull_through_cache_rules").paginate()
    assert prefix not in [
        r["ecrRepositoryPrefix"] for p in listed for r in p["pullThroughCacheRules"]
    ]

    # The prefix can be used again.
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io")


def test_describe_rules_by_prefixes(ecr: Any, ptc_cleanup: list[str]) -> None:
    prefixes = [ptc_prefix() for _ in range(3)]
    for prefix in prefixes:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix, upstreamRegistryUrl="public.ecr.aws"
        )
        ptc_cleanup.append(prefix)
    found = ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=prefixes[:2])
    assert sorted(r["ecrRepositoryPrefix"] for r in found["pullThroughCacheRules"]) == sorted(
        prefixes[:2]
    )
    assert "nextToken" not in found

    missing = ptc_prefix()
    with raises_ecr("PullThroughCacheRuleNotFoundException"):
        ecr.describe_pull_through_cache_rules(ecrRepositoryPrefixes=[prefixes[0], missing])


def test_describe_rules_pagination(ecr: Any, ptc_cleanup: list[str]) -> None:
    prefixes = {ptc_prefix() for _ in range(5)}
    for prefix in prefixes:
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io"
        )
        ptc_cleanup.append(prefix)

    everything = ecr.describe_pull_through_cache_rules()["pullThroughCacheRules"]
    complete = [r["ecrRepositoryPrefix"] for r in everything]
    assert prefixes <= set(complete)

    pages = list(
        ecr.get_paginator("describe_pull_through_cache_rules").paginate(
            PaginationConfig={"PageSize": 2}
        )
    )
    assert all(len(page["pullThroughCacheRules"]) <= 2 for page in pages)
    paged = [r["ecrRepositoryPrefix"] for page in pages for r in page["pullThroughCacheRules"]]
    assert paged == complete

    first = ecr.describe_pull_through_cache_rules(maxResults=1)
    assert len(first["pullThroughCacheRules"]) == 1 and first["nextToken"]
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'nextToken'"):
        ecr.describe_pull_through_cache_rules(nextToken="not-a-token")
    # A token from another listing is not accepted here.
    repositories = ecr.describe_repositories(maxResults=1)
    if "nextToken" in repositories:
        with raises_ecr("InvalidParameterException"):
            ecr.describe_pull_through_cache_rules(nextToken=repositories["nextToken"])


@pytest.mark.parametrize(
    "prefix",
    ["UPPER", "p" * 31, "a//b", "-dash", "has space"],
    ids=["upper", "too-long", "double-slash", "leading-dash", "space"],
)
def test_invalid_rule_prefixes(ecr: Any, prefix: str) -> None:
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'ecrRepositoryPrefix'"):
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io"
        )


def test_rule_limit(ecr: Any, ptc_cleanup: list[str]) -> None:
    existing = len(
        [
            rule
            for page in ecr.get_paginator("describe_pull_through_cache_rules").paginate()
            for rule in page["pullThroughCacheRules"]
        ]
    )
    for _ in range(50 - existing):
        prefix = ptc_prefix()
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=prefix, upstreamRegistryUrl="quay.io"
        )
        ptc_cleanup.append(prefix)
    one_more = ptc_prefix()
    ptc_cleanup.append(one_more)
    with raises_ecr("LimitExceededException"):
        ecr.create_pull_through_cache_rule(
            ecrRepositoryPrefix=one_more, upstreamRegistryUrl="quay.io"
        )


# --- GetAuthorizationToken -----------------------------------------------------------------


def _check_authorization_data(entry: dict[str, Any], server: ServerProcess) -> str:
    token = entry["authorizationToken"]
    assert re.fullmatch(r"\S+", token), token
    decoded = base64.b64decode(token, validate=True).decode()
    user, _, password = decoded.partition(":")
    assert user == "AWS"
    assert password and re.fullmatch(r"\S+", password)
    assert abs(entry["expiresAt"].timestamp() - (time.time() + 12 * 3600)) < 120
    assert entry["proxyEndpoint"] == server.url
    return password


def test_get_authorization_token(ecr: Any, server: ServerProcess) -> None:
    response = ecr.get_authorization_token()
    [entry] = response["authorizationData"]
    _check_authorization_data(entry, server)


def test_authorization_token_per_registry_id(ecr: Any, server: ServerProcess) -> None:
    response = ecr.get_authorization_token(registryIds=[TEST_ACCOUNT, OTHER_ACCOUNT])
    entries = response["authorizationData"]
    assert len(entries) == 2
    for entry in entries:
        _check_authorization_data(entry, server)


def test_authorization_token_on_the_wire(server: ServerProcess) -> None:
    response = raw_call(server.url, "GetAuthorizationToken", {})
    assert response.status_code == 200
    [entry] = response.json()["authorizationData"]
    assert set(entry) == {"authorizationToken", "expiresAt", "proxyEndpoint"}
    assert isinstance(entry["expiresAt"], int | float)
    assert abs(entry["expiresAt"] - (time.time() + 12 * 3600)) < 120


def test_authorization_token_invalid_registry_ids(ecr: Any) -> None:
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'registryIds'"):
        ecr.get_authorization_token(registryIds=[f"{i:012d}" for i in range(11)])
    with raises_ecr("InvalidParameterException", "Invalid parameter at 'registryIds.1.member'"):
        ecr.get_authorization_token(registryIds=["not-an-id"])
