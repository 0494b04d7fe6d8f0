"""``openecr lifecycle simulate --policy P --images I [--now T]``, run as a child process.

The images file is what ``aws ecr describe-images`` prints; the output must be what
GetLifecyclePolicyPreview returns. The cross-checks feed a server repository's own
DescribeImages output (from the AWS CLI, and from the raw JSON wire format) to the
simulator and compare with that server's preview of the same policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ecr_helpers import raw_call
from harness import ServerProcess
from lifecycle_gc_helpers import (
    DAY,
    SeedImage,
    Storage,
    fake_digest,
    openecr_cli,
    policy_text,
    rule,
    seed_images,
)

NOW = "2024-03-01T00:00:00Z"
NOW_EPOCH = 1709251200.0  # the same moment


def simulate(
    tmp_path: Path, policy: str, images: Any, *extra: str, raw_images: str | None = None
) -> Any:
    policy_file = tmp_path / "policy.json"
    images_file = tmp_path / "images.json"
    policy_file.write_text(policy)
    images_file.write_text(raw_images if raw_images is not None else json.dumps(images))
    result = openecr_cli(
        "lifecycle", "simulate", "--policy", str(policy_file), "--images", str(images_file), *extra
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def detail(digest: str, pushed: Any, *tags: str) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "registryId": "123456789012",
        "repositoryName": "team/app",
        "imageDigest": digest,
        "imageSizeInBytes": 1234,
        "imagePushedAt": pushed,
        "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json",
    }
    if tags:
        entry["imageTags"] = list(tags)
    return entry


def expire(digest: str, pushed: Any, priority: int, *tags: str) -> dict[str, Any]:
    # Like GetLifecyclePolicyPreview, an untagged result has no imageTags member.
    return {
        "imageDigest": digest,
        **({"imageTags": list(tags)} if tags else {}),
        "imagePushedAt": pushed,
        "action": {"type": "EXPIRE"},
        "appliedRulePriority": priority,
    }


D = [fake_digest(f"simulate-{i}") for i in range(10)]


def test_simulate_prints_the_preview_format_with_epoch_and_iso_times(tmp_path: Path) -> None:
    images = {
        "imageDetails": [
            detail(D[0], "2024-01-01T00:00:00Z"),  # 60 days before NOW
            detail(D[1], 1706745600, "nightly-1"),  # 2024-02-01, 29 days
            detail(D[2], "2024-02-25T12:00:00.250000+00:00", "nightly-2"),  # 4.5 days
            detail(D[3], 1709164800.5),  # 2024-02-29 00:00:00.5, under a day
            detail(D[4], "2023-06-01T00:00:00", "v1.0", "stable"),  # no zone: UTC
            detail(D[5], "2024-02-20T00:00:00-05:00", "v1.1"),  # 9.8 days
            detail(D[6], "1704067200", "nightly-0"),  # numeric string: 2024-01-01
        ]
    }
    policy = policy_text(
        rule(1, "tagged", "sinceImagePushed", 7, patterns=["nightly-*"]),
        rule(2, "untagged", "sinceImagePushed", 14),
        rule(3, "any", "imageCountMoreThan", 4),
    )
    # Rule 1: nightly-0 and nightly-1 are older than 7 days. Rule 2: D0 (D3 is young).
    # Rule 3 keeps the 4 newest (D3, D2, D5, D1) and takes D0, D6, D4; only D4 is free.
    expected = {
        "previewResults": [
            expire(D[4], "2023-06-01T00:00:00", 3, "v1.0", "stable"),
            expire(D[0], "2024-01-01T00:00:00Z", 2),
            expire(D[6], "1704067200", 1, "nightly-0"),
            expire(D[1], 1706745600, 1, "nightly-1"),
        ],
        "summary": {"expiringImageTotalCount": 4},
    }
    assert simulate(tmp_path, policy, images, "--now", NOW) == expected
    assert simulate(tmp_path, policy, images, "--now", str(NOW_EPOCH)) == expected
    # Three days later nightly-2 is old enough as well.
    later = simulate(tmp_path, policy, images, "--now", "2024-03-04T00:00:00+00:00")
    assert [r["imageDigest"] for r in later["previewResults"]] == [D[4], D[0], D[6], D[1], D[2]]
    assert later["summary"] == {"expiringImageTotalCount": 5}


def test_simulate_without_now_uses_the_current_time(tmp_path: Path) -> None:
    now = time.time()
    images = {
        "imageDetails": [
            detail(D[0], now - 3 * DAY),
            detail(D[1], now - 1.5 * DAY),
            detail(D[2], now - 0.5 * DAY),
        ]
    }
    policy = policy_text(rule(1, "untagged", "sinceImagePushed", 1))
    out = simulate(tmp_path, policy, images)
    assert [r["imageDigest"] for r in out["previewResults"]] == [D[0], D[1]]


def test_simulate_of_an_empty_repository(tmp_path: Path) -> None:
    policy = policy_text(rule(1, "any", "imageCountMoreThan", 1))
    assert simulate(tmp_path, policy, {"imageDetails": []}) == {
        "previewResults": [],
        "summary": {"expiringImageTotalCount": 0},
    }


GOOD_POLICY = policy_text(rule(1, "any", "imageCountMoreThan", 1))
GOOD_IMAGES = json.dumps({"imageDetails": [detail(D[0], 1704067200)]})


@pytest.mark.parametrize(
    ("policy", "images", "extra", "mentions"),
    [
        ("{not json", GOOD_IMAGES, [], "Could not map policyString"),
        (policy_text(rule(1, "any", "imageCountMoreThan", 0)), GOOD_IMAGES, [], "minimum: 1"),
        (
            policy_text(
                rule(1, "any", "imageCountMoreThan", 1),
                rule(2, "untagged", "imageCountMoreThan", 1),
            ),
            GOOD_IMAGES,
            [],
            "tagStatus=ANY must have the lowest priority",
        ),
        (json.dumps({"rules": []}), GOOD_IMAGES, [], "policy.json"),
        (None, GOOD_IMAGES, [], "cannot read the policy"),
        (GOOD_POLICY, "[1, 2", [], "cannot read the images file"),
        (GOOD_POLICY, json.dumps([detail(D[0], 1)]), [], "imageDetails"),
        (GOOD_POLICY, json.dumps({"imageDetails": [{"imagePushedAt": 1}]}), [], "imageDigest"),
        (GOOD_POLICY, json.dumps({"imageDetails": [{"imageDigest": D[0]}]}), [], "imagePushedAt"),
        (GOOD_POLICY, json.dumps({"imageDetails": [detail(D[0], "yesterday")]}), [], "yesterday"),
        (GOOD_POLICY, json.dumps({"imageDetails": [detail(D[0], True)]}), [], "timestamp"),
        (GOOD_POLICY, json.dumps({"imageDetails": [detail(D[0], 1, "a", 7)]}), [], "imageTags"),
        (GOOD_POLICY, None, [], "cannot read the images file"),
        (GOOD_POLICY, GOOD_IMAGES, ["--now", "soon"], "--now"),
    ],
    ids=[
        "policy-not-json",
        "policy-count-zero",
        "policy-any-not-last",
        "policy-no-rules",
        "policy-missing-file",
        "images-not-json",
        "images-not-an-object",
        "images-no-digest",
        "images-no-pushed-at",
        "images-bad-time",
        "images-bool-time",
        "images-bad-tags",
        "images-missing-file",
        "bad-now",
    ],
)
def test_bad_input_is_a_one_line_error(
    tmp_path: Path, policy: str | None, images: str | None, extra: list[str], mentions: str
) -> None:
    policy_file = tmp_path / "policy.json"
    images_file = tmp_path / "images.json"
    if policy is not None:
        policy_file.write_text(policy)
    if images is not None:
        images_file.write_text(images)
    result = openecr_cli(
        "lifecycle", "simulate", "--policy", str(policy_file), "--images", str(images_file), *extra
    )
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ") and mentions in lines[0], lines[0]


# --- cross-checks with a server's own preview ---------------------------------------------


def _seeded_repository(server: ServerProcess, ecr: Any, repository: str) -> str:
    """A repository with a history (push times over 60 days) and a policy using it all."""
    ecr.create_repository(repositoryName=repository)
    now = time.time()
    images = []
    for i in range(40):
        tags: tuple[str, ...] = ()
        if i % 4 == 1:
            tags = (f"release-{i}",)
        elif i % 4 == 2:
            tags = (f"pr-{i}", f"sha-{i}")
        pushed = round(now - 60 * DAY + i * 1.5 * DAY + 0.3, 3)  # milliseconds, as pushes
        images.append(SeedImage(fake_digest(f"{repository}-{i}"), tags, pushed))
    seed_images(Storage.of(server), repository, images)
    return policy_text(
        rule(1, "tagged", "imageCountMoreThan", 3, prefixes=["release"]),
        rule(2, "tagged", "sinceImagePushed", 20, patterns=["pr-*", "sha-*"]),
        rule(3, "untagged", "sinceImagePushed", 10),
        rule(4, "any", "imageCountMoreThan", 15),
    )


def _server_preview(ecr: Any, repository: str, policy: str) -> None:
    ecr.start_lifecycle_policy_preview(repositoryName=repository, lifecyclePolicyText=policy)
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(
        repositoryName=repository, WaiterConfig={"Delay": 1, "MaxAttempts": 30}
    )


def test_simulate_equals_the_server_preview_on_aws_cli_output(
    server: ServerProcess,
    ecr: Any,
    repo_name: str,
    aws_cli: Callable[..., Any],
    tmp_path: Path,
) -> None:
    policy = _seeded_repository(server, ecr, repo_name)
    _server_preview(ecr, repo_name, policy)
    described = aws_cli("describe-images", "--repository-name", repo_name)
    assert len(described["imageDetails"]) == 40
    preview = aws_cli("get-lifecycle-policy-preview", "--repository-name", repo_name)
    assert preview["status"] == "COMPLETE"
    simulated = simulate(tmp_path, policy, described)
    assert simulated["summary"] == preview["summary"]
    assert simulated["summary"]["expiringImageTotalCount"] > 10
    assert len(preview["previewResults"]) == simulated["summary"]["expiringImageTotalCount"]
    assert simulated["previewResults"] == preview["previewResults"]


def test_simulate_equals_the_server_preview_on_the_wire_format(
    server: ServerProcess, ecr: Any, repo_name: str, tmp_path: Path
) -> None:
    """The raw JSON 1.1 documents (epoch numbers), compared field by field."""
    policy = _seeded_repository(server, ecr, repo_name)
    _server_preview(ecr, repo_name, policy)
    described = raw_call(
        server.url, "DescribeImages", {"repositoryName": repo_name, "maxResults": 1000}
    ).json()
    preview = raw_call(
        server.url,
        "GetLifecyclePolicyPreview",
        {"repositoryName": repo_name, "maxResults": 100},
    ).json()
    assert "nextToken" not in preview
    simulated = simulate(tmp_path, policy, described)
    assert simulated["summary"] == preview["summary"]
    assert simulated["previewResults"] == preview["previewResults"]


def test_simulate_formats_untagged_results_as_the_service_does(
    server: ServerProcess, ecr: Any, repo_name: str, tmp_path: Path
) -> None:
    ecr.create_repository(repositoryName=repo_name)
    now = round(time.time(), 3)
    seed_images(
        Storage.of(server),
        repo_name,
        [SeedImage(fake_digest(f"{repo_name}-{i}"), (), now - (2 - i) * DAY) for i in range(2)],
    )
    policy = policy_text(rule(1, "untagged", "imageCountMoreThan", 1))
    _server_preview(ecr, repo_name, policy)
    described = raw_call(server.url, "DescribeImages", {"repositoryName": repo_name}).json()
    preview = raw_call(server.url, "GetLifecyclePolicyPreview", {"repositoryName": repo_name})
    simulated = simulate(tmp_path, policy, described)
    assert simulated["previewResults"] == preview.json()["previewResults"]
