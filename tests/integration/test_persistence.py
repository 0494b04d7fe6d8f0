"""Everything the control plane stores survives a restart: clean (SIGTERM) and SIGKILL.

These tests run their own servers (not the session ones) so that they can stop them.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from ecr_helpers import (
    expire_untagged_rule,
    keep_tagged_rule,
    lifecycle_text,
    make_ecr_client,
    registry_policy,
    repository_policy,
)
from harness import TEST_ACCOUNT, TEST_REGION, ServerProcess, postgres_database

SECRET_ARN = f"arn:aws:secretsmanager:{TEST_REGION}:{TEST_ACCOUNT}:secret:ecr-pullthroughcache/x"
KMS_KEY = f"arn:aws:kms:{TEST_REGION}:{TEST_ACCOUNT}:key/11111111-2222-3333-4444-555555555555"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    if request.param == "sqlite":
        yield None
    else:
        with postgres_database() as url:
            yield url


@contextlib.contextmanager
def running(data_dir: Path, database_url: str | None) -> Iterator[ServerProcess]:
    """A server that the block may stop or kill; killed afterwards if still running."""
    process = ServerProcess(data_dir, database_url=database_url).start()
    try:
        yield process
    finally:
        process.kill()


def populate(ecr: Any) -> None:
    """Writes one of everything the control plane stores."""
    ecr.create_repository(
        repositoryName="team/app",
        tags=[{"Key": "team", "Value": "a"}, {"Key": "env", "Value": "prod"}],
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        encryptionConfiguration={"encryptionType": "KMS", "kmsKey": KMS_KEY},
    )
    ecr.create_repository(repositoryName="team/worker")
    ecr.create_repository(repositoryName="team/gone", tags=[{"Key": "x", "Value": "y"}])
    ecr.delete_repository(repositoryName="team/gone")

    app_arn = f"arn:aws:ecr:{TEST_REGION}:{TEST_ACCOUNT}:repository/team/app"
    ecr.tag_resource(resourceArn=app_arn, tags=[{"Key": "owner", "Value": "me"}])
    ecr.untag_resource(resourceArn=app_arn, tagKeys=["env"])
    ecr.put_image_tag_mutability(repositoryName="team/worker", imageTagMutability="IMMUTABLE")
    ecr.put_image_tag_mutability(repositoryName="team/worker", imageTagMutability="MUTABLE")
    ecr.put_image_scanning_configuration(
        repositoryName="team/worker", imageScanningConfiguration={"scanOnPush": True}
    )
    ecr.set_repository_policy(repositoryName="team/app", policyText=repository_policy())
    ecr.set_repository_policy(repositoryName="team/worker", policyText=repository_policy())
    ecr.delete_repository_policy(repositoryName="team/worker")
    ecr.put_lifecycle_policy(
        repositoryName="team/app",
        lifecyclePolicyText=lifecycle_text(expire_untagged_rule(1), keep_tagged_rule(2)),
    )

    ecr.put_registry_policy(policyText=registry_policy())
    ecr.put_registry_scanning_configuration(
        scanType="ENHANCED",
        rules=[
            {
                "scanFrequency": "CONTINUOUS_SCAN",
                "repositoryFilters": [{"filter": "team/app*", "filterType": "WILDCARD"}],
            }
        ],
    )
    ecr.put_replication_configuration(
        replicationConfiguration={
            "rules": [
                {
                    "destinations": [{"region": "eu-west-1", "registryId": TEST_ACCOUNT}],
                    "repositoryFilters": [{"filter": "team", "filterType": "PREFIX_MATCH"}],
                }
            ]
        }
    )
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="ecr-public", upstreamRegistryUrl="public.ecr.aws"
    )
    ecr.create_pull_through_cache_rule(
        ecrRepositoryPrefix="hub",
        upstreamRegistryUrl="registry-1.docker.io",
        credentialArn=SECRET_ARN,
    )
    ecr.create_pull_through_cache_rule(ecrRepositoryPrefix="quay", upstreamRegistryUrl="quay.io")
    ecr.delete_pull_through_cache_rule(ecrRepositoryPrefix="quay")


def _optional(call: Any, missing: type[Exception], key: str, **kwargs: Any) -> Any:
    try:
        return call(**kwargs)[key]
    except missing:
        return None


def snapshot(ecr: Any) -> dict[str, Any]:
    """Everything the API reports about the registry, minus the server's address."""
    repositories = []
    for page in ecr.get_paginator("describe_repositories").paginate():
        for repository in page["repositories"]:
            name = repository["repositoryName"]
            repository = dict(repository)
            repository["repositoryUri"] = repository["repositoryUri"].split("/", 1)[1]
            repository["tags"] = sorted(
                (t["Key"], t["Value"])
                for t in ecr.list_tags_for_resource(resourceArn=repository["repositoryArn"])["tags"]
            )
            repository["policy"] = _optional(
                ecr.get_repository_policy,
                ecr.exceptions.RepositoryPolicyNotFoundException,
                "policyText",
                repositoryName=name,
            )
            repository["lifecycle"] = _optional(
                ecr.get_lifecycle_policy,
                ecr.exceptions.LifecyclePolicyNotFoundException,
                "lifecyclePolicyText",
                repositoryName=name,
            )
            repositories.append(repository)
    rules = [
        rule
        for page in ecr.get_paginator("describe_pull_through_cache_rules").paginate()
        for rule in page["pullThroughCacheRules"]
    ]
    return {
        "repositories": repositories,
        "registry_policy": _optional(
            ecr.get_registry_policy, ecr.exceptions.RegistryPolicyNotFoundException, "policyText"
        ),
        "scanning": ecr.get_registry_scanning_configuration()["scanningConfiguration"],
        "scanning_per_repository": ecr.batch_get_repository_scanning_configuration(
            repositoryNames=["team/app", "team/worker"]
        )["scanningConfigurations"],
        "replication": ecr.describe_registry()["replicationConfiguration"],
        "pull_through_cache_rules": rules,
    }


def check_populated(state: dict[str, Any]) -> None:
    """The snapshot shows exactly what ``populate`` wrote."""
    by_name = {r["repositoryName"]: r for r in state["repositories"]}
    assert set(by_name) == {"team/app", "team/worker"}
    app, worker = by_name["team/app"], by_name["team/worker"]
    assert app["tags"] == [("owner", "me"), ("team", "a")]
    assert app["imageTagMutability"] == "IMMUTABLE"
    assert app["imageScanningConfiguration"] == {"scanOnPush": True}
    assert app["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": KMS_KEY}
    assert json.loads(app["policy"]) == json.loads(repository_policy())
    assert app["lifecycle"] == lifecycle_text(expire_untagged_rule(1), keep_tagged_rule(2))
    assert worker["tags"] == []
    assert worker["imageTagMutability"] == "MUTABLE"
    assert worker["imageScanningConfiguration"] == {"scanOnPush": True}
    assert worker["policy"] is None and worker["lifecycle"] is None
    assert json.loads(state["registry_policy"]) == json.loads(registry_policy())
    assert state["scanning"]["scanType"] == "ENHANCED"
    assert state["replication"]["rules"][0]["destinations"] == [
        {"region": "eu-west-1", "registryId": TEST_ACCOUNT}
    ]
    rules = {r["ecrRepositoryPrefix"]: r for r in state["pull_through_cache_rules"]}
    assert set(rules) == {"ecr-public", "hub"}
    assert rules["hub"]["credentialArn"] == SECRET_ARN


def check_healthz(process: ServerProcess, database_url: str | None) -> None:
    response = httpx.get(f"{process.url}/healthz")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["status"] == "ok"
    assert document["database"] == ("sqlite" if database_url is None else "postgresql")


def concurrent_first_registry_writes(process: ServerProcess) -> None:
    """The first writes to a fresh registry, all at once: each creates the registry row."""
    replication = {
        "rules": [{"destinations": [{"region": "eu-west-3", "registryId": TEST_ACCOUNT}]}]
    }
    calls = [
        lambda c: c.put_registry_policy(policyText=registry_policy()),
        lambda c: c.put_replication_configuration(replicationConfiguration=replication),
        lambda c: c.put_registry_scanning_configuration(scanType="ENHANCED", rules=[]),
    ]
    clients = [make_ecr_client(process.url) for _ in calls]
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call, client) for call, client in zip(calls, clients, strict=True)]
        for future in futures:
            future.result()
    ecr = clients[0]
    assert json.loads(ecr.get_registry_policy()["policyText"]) == json.loads(registry_policy())
    assert ecr.describe_registry()["replicationConfiguration"] == replication
    assert ecr.get_registry_scanning_configuration()["scanningConfiguration"]["scanType"] == (
        "ENHANCED"
    )


def test_clean_restart_keeps_everything(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    with running(data_dir, database_url) as first:
        check_healthz(first, database_url)
        ecr = make_ecr_client(first.url)
        populate(ecr)
        before = snapshot(ecr)
        check_populated(before)
        assert first.stop() == 0, "SIGTERM must shut the server down cleanly"

    with running(data_dir, database_url) as second:
        ecr = make_ecr_client(second.url)
        after = snapshot(ecr)
        assert after == before
        check_populated(after)
        # The URI follows the new address; nothing else changed.
        described = ecr.describe_repositories(repositoryNames=["team/app"])["repositories"][0]
        assert described["repositoryUri"] == f"127.0.0.1:{second.port}/team/app"

        # The restarted server keeps working on the same state.
        ecr.create_repository(repositoryName="team/after-restart")
        with pytest.raises(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName="team/app")
        assert second.stop() == 0


def test_sigkill_keeps_acknowledged_writes(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    with running(data_dir, database_url) as first:
        ecr = make_ecr_client(first.url)
        concurrent_first_registry_writes(first)
        populate(ecr)
        before = snapshot(ecr)
        # The last acknowledged write right before the kill.
        ecr.create_repository(repositoryName="team/last-write")
        first.kill()
        assert first.process is not None and first.process.returncode == -9

    with running(data_dir, database_url) as second:
        ecr = make_ecr_client(second.url)
        after = snapshot(ecr)
        last = [r for r in after["repositories"] if r["repositoryName"] == "team/last-write"]
        assert len(last) == 1
        after["repositories"].remove(last[0])
        assert after == before
        check_populated(after)
        # A key with a name that existed before the crash still clashes.
        with pytest.raises(ecr.exceptions.RepositoryAlreadyExistsException):
            ecr.create_repository(repositoryName="team/last-write")
        assert second.stop() == 0
