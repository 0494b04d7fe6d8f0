"""Lifecycle policies end to end: enforcement by the server's scheduler, ``openecr lifecycle
run``, and StartLifecyclePolicyPreview / GetLifecyclePolicyPreview through boto3.

Images pushed through the API all have "now" as their push time, so the scenarios use
count rules (every tag status, prefix and pattern lists, several priorities) plus a
``sinceImagePushed`` rule that expires nothing; push times in the past come from rows
inserted straight into the metadata database (``seed_images``), which is how the large
(5,000 image) repository is made too.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from ecr_helpers import make_ecr_client, raises_ecr
from harness import TEST_ACCOUNT, ServerProcess
from images import Image, build_image, build_index
from lifecycle_gc_helpers import (
    BACKENDS,
    DAY,
    SeedImage,
    Storage,
    database_for,
    describe_all,
    expected_expirations,
    fake_digest,
    image_digests_in,
    lifecycle_log,
    logged_expiries,
    policy_text,
    preview_pages,
    rule,
    seed_images,
    start_server,
    wait_for,
)
from oci_helpers import ecr_push

FAST_WAITER = {"Delay": 1, "MaxAttempts": 60}


@pytest.fixture(scope="module", params=BACKENDS)
def lifecycle_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server enforcing lifecycle policies every second, logging at info level."""
    base = tmp_path_factory.mktemp(f"lifecycle-{request.param}")
    with database_for(request.param) as url:
        server = start_server(
            Storage(base / "data", url), "--lifecycle-interval", "1", "--log-level", "info"
        )
        yield server
        server.kill()


def small_image(**options: Any) -> Image:
    return build_image(layers=1, layer_size=256, **options)


def push_in_order(ecr: Any, repository: str, items: list[tuple[Image, str | None]]) -> None:
    """Pushes one by one, a little apart, so every image has its own push time."""
    for image, tag in items:
        ecr_push(ecr, repository, image, tag)
        time.sleep(0.01)


def as_seed(details: list[dict[str, Any]]) -> list[SeedImage]:
    return [
        SeedImage(d["imageDigest"], tuple(d.get("imageTags", ())), d["imagePushedAt"].timestamp())
        for d in details
    ]


# --- enforcement by the server ------------------------------------------------------------


def test_enforcement_expires_exactly_what_the_preview_announced(
    lifecycle_server: ServerProcess, repo_name: str
) -> None:
    ecr = make_ecr_client(lifecycle_server.url)
    ecr.create_repository(repositoryName=repo_name)
    amd64 = small_image(with_platform=True)
    arm64 = small_image(architecture="arm64", with_platform=True)
    index = build_index([amd64, arm64])
    images = {
        name: small_image()
        for name in [
            "u1",
            "u2",
            "u3",
            "p1",
            "p2",
            "p3",
            "p4",
            "d1",
            "d2",
            "d3",
            "r1",
            "f1",
            "f2",
            "f3",
        ]
    }
    tags = {
        "p1": "prod-1",
        "p2": "prod-2",
        "p3": "prod-3",
        "p4": "prod-4",
        "d1": "dev-1",
        "d2": "dev-2",
        "d3": "dev-3",
        "r1": "release-2",
        "f1": "feat-1",
        "f2": "feat-2",
        "f3": "feat-3",
    }
    # Oldest first: the index's children (untagged), untagged images, then tagged ones.
    order: list[tuple[Image, str | None]] = [(amd64, None), (arm64, None)]
    order += [(images[name], tags.get(name)) for name in images]
    push_in_order(ecr, repo_name, order)
    ecr.put_image(
        repositoryName=repo_name, imageTag="release-1", imageManifest=images["p4"].manifest.decode()
    )
    ecr_push(ecr, repo_name, index, "multi")  # newest; its children were pushed first
    digest_of = {name: image.digest for name, image in images.items()}
    digest_of |= {"c1": amd64.digest, "c2": arm64.digest, "idx": index.digest}
    name_of = {digest: name for name, digest in digest_of.items()}

    policy = policy_text(
        rule(1, "tagged", "imageCountMoreThan", 2, prefixes=["prod"]),
        rule(2, "tagged", "imageCountMoreThan", 1, patterns=["dev-*"]),
        rule(3, "tagged", "sinceImagePushed", 1, prefixes=["release"]),
        rule(4, "untagged", "imageCountMoreThan", 1),
        rule(5, "any", "imageCountMoreThan", 3),
    )
    # Rule 1 keeps prod-4 (also release-1) and prod-3; rule 2 keeps dev-3; rule 3 expires
    # nothing (all pushed seconds ago) but protects release-2; rule 4 keeps u3, and would
    # take c1/c2 but an index references them; rule 5 keeps multi, feat-3, feat-2, and of
    # the rest only feat-1 is not protected by a higher rule.
    expected = {"p1": 1, "p2": 1, "d1": 2, "d2": 2, "u1": 4, "u2": 4, "f1": 5}
    survivors = {"c1", "c2", "u3", "p3", "p4", "d3", "r1", "f2", "f3", "idx"}
    before = describe_all(ecr, repo_name)
    assert {name_of[d["imageDigest"]] for d in before} == survivors | set(expected)
    # The independent restatement of spec §6.3 agrees (children filtered as referenced).
    oracle = expected_expirations(
        {"rules": json.loads(policy)["rules"]}, as_seed(before), time.time()
    )
    assert {name_of[d]: p for d, p in oracle.items() if name_of[d] not in ("c1", "c2")} == expected

    # The preview of the (not yet saved) policy.
    started = ecr.start_lifecycle_policy_preview(
        repositoryName=repo_name, lifecyclePolicyText=policy
    )
    assert started["status"] == "IN_PROGRESS"
    assert started["lifecyclePolicyText"] == policy
    assert started["repositoryName"] == repo_name
    assert started["registryId"] == TEST_ACCOUNT
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(
        repositoryName=repo_name, WaiterConfig=FAST_WAITER
    )
    pages = preview_pages(ecr, repo_name, page_size=3)
    assert [len(page["previewResults"]) for page in pages] == [3, 3, 1]
    assert all(page["summary"] == {"expiringImageTotalCount": 7} for page in pages)
    assert all(page["status"] == "COMPLETE" for page in pages)
    results = [result for page in pages for result in page["previewResults"]]
    announced = {name_of[r["imageDigest"]]: r["appliedRulePriority"] for r in results}
    assert announced == expected
    pushed = [r["imagePushedAt"] for r in results]
    assert pushed == sorted(pushed), "preview results are not oldest first"
    assert all(r["action"] == {"type": "EXPIRE"} for r in results)
    for r in results:
        assert r.get("imageTags", []) == (
            [tags[name_of[r["imageDigest"]]]] if name_of[r["imageDigest"]] in tags else []
        )
    assert image_digests_in(ecr, repo_name) == {d["imageDigest"] for d in before}, "preview deleted"

    # Now saved: the scheduler (every second) expires exactly those images.
    saved_at = datetime.now(UTC)
    ecr.put_lifecycle_policy(repositoryName=repo_name, lifecyclePolicyText=policy)
    wanted = {digest_of[name] for name in survivors}
    remaining = wait_for(lambda: image_digests_in(ecr, repo_name), wanted.__eq__, timeout=10)
    assert {name_of[d] for d in remaining} == survivors
    got = ecr.get_lifecycle_policy(repositoryName=repo_name)
    assert got["lastEvaluatedAt"] >= saved_at.replace(microsecond=0)
    time.sleep(2.5)  # two more runs: nothing else goes, nothing is logged twice
    assert image_digests_in(ecr, repo_name) == wanted
    lines = [
        line for line in lifecycle_log(lifecycle_server.output()) if line.repository == repo_name
    ]
    assert sorted((name_of[line.digest], line.rule_priority) for line in lines) == sorted(
        expected.items()
    )
    for line in lines:
        name = name_of[line.digest]
        assert line.tags == ((tags[name],) if name in tags else ())
    later = ecr.get_lifecycle_policy(repositoryName=repo_name)["lastEvaluatedAt"]
    assert later > got["lastEvaluatedAt"], "lastEvaluatedAt does not advance with each run"

    # Once the index is gone its children are ordinary old untagged images: rule 4 takes them.
    ecr.batch_delete_image(repositoryName=repo_name, imageIds=[{"imageTag": "multi"}])
    wanted -= {digest_of["idx"], digest_of["c1"], digest_of["c2"]}
    remaining = wait_for(lambda: image_digests_in(ecr, repo_name), wanted.__eq__, timeout=10)
    assert {name_of[d] for d in remaining} == {name_of[d] for d in wanted}
    lines = logged_expiries(lifecycle_server, repo_name, at_least=9)
    assert sorted(name_of[line.digest] for line in lines if line.rule_priority == 4) == [
        "c1",
        "c2",
        "u1",
        "u2",
    ]
    assert len(lines) == 9


def test_enforcement_of_since_image_pushed_on_seeded_history(
    lifecycle_server: ServerProcess, repo_name: str
) -> None:
    """Push times in the past (rows seeded in the database): age rules expire for real."""
    ecr = make_ecr_client(lifecycle_server.url)
    ecr.create_repository(repositoryName=repo_name)
    now = time.time()
    seeded = [
        SeedImage(fake_digest(f"{repo_name}-{i}"), tags, now - age * DAY)
        for i, (tags, age) in enumerate(
            [
                ((), 40.5),
                ((), 20.5),
                ((), 0.5),
                (("nightly-1",), 9.5),
                (("nightly-2",), 6.5),
                (("nightly-3",), 1.5),
                (("v1.0",), 300.5),
                (("v1.1", "stable"), 200.5),
            ]
        )
    ]
    seed_images(Storage.of(lifecycle_server), repo_name, seeded)
    policy = {
        "rules": [
            rule(1, "tagged", "sinceImagePushed", 7, patterns=["nightly-*"]),
            rule(2, "untagged", "sinceImagePushed", 14),
            rule(3, "tagged", "sinceImagePushed", 250, prefixes=["v"]),
        ]
    }
    expected = expected_expirations(policy, seeded, time.time())
    digests = [image.digest for image in seeded]
    assert expected == {digests[0]: 2, digests[1]: 2, digests[3]: 1, digests[6]: 3}
    ecr.put_lifecycle_policy(
        repositoryName=repo_name, lifecyclePolicyText=policy_text(*policy["rules"])
    )
    wanted = set(digests) - set(expected)
    remaining = wait_for(lambda: image_digests_in(ecr, repo_name), wanted.__eq__, timeout=10)
    assert remaining == wanted
    lines = logged_expiries(lifecycle_server, repo_name, at_least=len(expected))
    assert {line.digest: line.rule_priority for line in lines} == expected
    assert len(lines) == len(expected)


# --- openecr lifecycle run ----------------------------------------------------------------


def test_lifecycle_run_command_dry_run_then_for_real(
    server: ServerProcess, ecr: Any, repo_name: str
) -> None:
    """``openecr lifecycle run`` against the storage of a running server (whose own
    schedule is hourly, so only the command acts)."""
    storage = Storage.of(server)
    ecr.create_repository(repositoryName=repo_name)
    items = [(small_image(), None) for _ in range(3)]
    items += [(small_image(), f"app-{i}") for i in range(3)]
    push_in_order(ecr, repo_name, items)
    digests = [image.digest for image, _ in items]
    policy = policy_text(
        rule(1, "untagged", "imageCountMoreThan", 1),
        rule(2, "tagged", "imageCountMoreThan", 1, patterns=["app-*"]),
        rule(3, "any", "sinceImagePushed", 30),
    )
    ecr.put_lifecycle_policy(repositoryName=repo_name, lifecyclePolicyText=policy)
    expected = [
        {
            "repositoryName": repo_name,
            "imageDigest": digests[i],
            "imageTags": [] if tag is None else [tag],
            "appliedRulePriority": priority,
        }
        for i, tag, priority in [(0, None, 1), (1, None, 1), (3, "app-0", 2), (4, "app-1", 2)]
    ]

    dry = storage.cli_json("lifecycle", "run", "--repository", repo_name, "--dry-run")
    assert dry == {
        "dryRun": True,
        "repositoriesEvaluated": 1,
        "expiredImages": expected,
        "failures": [],
    }
    assert image_digests_in(ecr, repo_name) == set(digests), "the dry run deleted images"
    assert "lastEvaluatedAt" not in ecr.get_lifecycle_policy(repositoryName=repo_name)

    real = storage.cli_json("lifecycle", "run", "--repository", repo_name)
    assert real == {
        "dryRun": False,
        "repositoriesEvaluated": 1,
        "expiredImages": expected,
        "failures": [],
    }
    assert image_digests_in(ecr, repo_name) == {digests[2], digests[5]}
    assert "lastEvaluatedAt" in ecr.get_lifecycle_policy(repositoryName=repo_name)
    again = storage.cli_json("lifecycle", "run", "--repository", repo_name)
    assert again["expiredImages"] == [] and again["repositoriesEvaluated"] == 1


def test_lifecycle_run_command_on_a_repository_without_policy(
    server: ServerProcess, ecr: Any, repo_name: str
) -> None:
    ecr.create_repository(repositoryName=repo_name)
    ecr_push(ecr, repo_name, small_image())
    report = Storage.of(server).cli_json("lifecycle", "run", "--repository", repo_name)
    assert report == {
        "dryRun": False,
        "repositoriesEvaluated": 0,
        "expiredImages": [],
        "failures": [],
    }
    assert len(image_digests_in(ecr, repo_name)) == 1


# --- previews -----------------------------------------------------------------------------


def test_preview_pages_filters_and_summarises_the_whole_preview(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    items = [(small_image(), None if i % 3 == 0 else f"build-{i}") for i in range(12)]
    push_in_order(ecr, repo_name, items)
    policy = policy_text(
        rule(1, "untagged", "imageCountMoreThan", 1),
        rule(2, "any", "imageCountMoreThan", 4),
    )
    oracle = expected_expirations(
        json.loads(policy), as_seed(describe_all(ecr, repo_name)), time.time()
    )
    # Untagged: 0, 3, 6, 9 (rule 1 keeps 9). The 4 newest are 11, 10, 9, 8, so rule 2 takes
    # the tagged 7, 5, 4, 2, 1.
    assert len(oracle) == 8
    ecr.start_lifecycle_policy_preview(repositoryName=repo_name, lifecyclePolicyText=policy)
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(
        repositoryName=repo_name, WaiterConfig=FAST_WAITER
    )
    pages = preview_pages(ecr, repo_name, page_size=2)
    assert [len(p["previewResults"]) for p in pages] == [2, 2, 2, 2]
    assert all(p["summary"]["expiringImageTotalCount"] == 8 for p in pages)
    assert all(p["lifecyclePolicyText"] == policy for p in pages)
    results = [r for p in pages for r in p["previewResults"]]
    assert {r["imageDigest"]: r["appliedRulePriority"] for r in results} == oracle

    # The filters narrow the page, never the summary.
    untagged = ecr.get_lifecycle_policy_preview(
        repositoryName=repo_name, filter={"tagStatus": "UNTAGGED"}
    )
    assert {r["imageDigest"] for r in untagged["previewResults"]} == {
        d for d, p in oracle.items() if p == 1
    }
    assert untagged["summary"]["expiringImageTotalCount"] == 8
    tagged = ecr.get_lifecycle_policy_preview(
        repositoryName=repo_name, filter={"tagStatus": "TAGGED"}, maxResults=100
    )
    assert all(r.get("imageTags") for r in tagged["previewResults"])
    assert len(tagged["previewResults"]) == 5
    one = ecr.get_lifecycle_policy_preview(
        repositoryName=repo_name, imageIds=[{"imageDigest": results[0]["imageDigest"]}]
    )
    assert [r["imageDigest"] for r in one["previewResults"]] == [results[0]["imageDigest"]]
    assert len(image_digests_in(ecr, repo_name)) == 12


def test_preview_without_text_uses_the_saved_policy(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    push_in_order(ecr, repo_name, [(small_image(), f"t{i}") for i in range(4)])
    with raises_ecr("LifecyclePolicyNotFoundException"):
        ecr.start_lifecycle_policy_preview(repositoryName=repo_name)
    saved = policy_text(rule(1, "tagged", "imageCountMoreThan", 3, prefixes=["t"]))
    ecr.put_lifecycle_policy(repositoryName=repo_name, lifecyclePolicyText=saved)
    started = ecr.start_lifecycle_policy_preview(repositoryName=repo_name)
    assert started["lifecyclePolicyText"] == saved
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(
        repositoryName=repo_name, WaiterConfig=FAST_WAITER
    )
    preview = ecr.get_lifecycle_policy_preview(repositoryName=repo_name)
    assert preview["lifecyclePolicyText"] == saved
    assert [r["imageTags"] for r in preview["previewResults"]] == [["t0"]]
    # A text given to the preview wins over the saved one and is not saved by it.
    other = policy_text(rule(1, "tagged", "imageCountMoreThan", 1, prefixes=["t"]))
    ecr.start_lifecycle_policy_preview(repositoryName=repo_name, lifecyclePolicyText=other)
    ecr.get_waiter("lifecycle_policy_preview_complete").wait(
        repositoryName=repo_name, WaiterConfig=FAST_WAITER
    )
    preview = ecr.get_lifecycle_policy_preview(repositoryName=repo_name)
    assert preview["summary"]["expiringImageTotalCount"] == 3
    assert ecr.get_lifecycle_policy(repositoryName=repo_name)["lifecyclePolicyText"] == saved


def test_preview_errors(ecr: Any, repo_name: str) -> None:
    ecr.create_repository(repositoryName=repo_name)
    with raises_ecr("LifecyclePolicyPreviewNotFoundException"):
        ecr.get_lifecycle_policy_preview(repositoryName=repo_name)
    with raises_ecr("RepositoryNotFoundException"):
        ecr.start_lifecycle_policy_preview(
            repositoryName=repo_name + "-missing",
            lifecyclePolicyText=policy_text(rule(1, "any", "imageCountMoreThan", 1)),
        )
    with raises_ecr("InvalidParameterException"):
        ecr.start_lifecycle_policy_preview(
            repositoryName=repo_name,
            lifecyclePolicyText=policy_text(rule(1, "any", "imageCountMoreThan", 0)),
        )
    # An invalid text starts nothing.
    with raises_ecr("LifecyclePolicyPreviewNotFoundException"):
        ecr.get_lifecycle_policy_preview(repositoryName=repo_name)


def test_preview_of_5000_images_in_progress_then_complete(
    server: ServerProcess, ecr: Any, repo_name: str
) -> None:
    """5,000 seeded images spread over 100 days: age and count rules, a second start
    while the first runs, and the whole preview paged through."""
    ecr.create_repository(repositoryName=repo_name)
    now = time.time()
    seeded = [
        SeedImage(
            fake_digest(f"{repo_name}-{i}"),
            (f"rel-{i}",) if i % 5 == 0 else ((f"ci-{i}",) if i % 5 == 1 else ()),
            now - 100 * DAY + i * (100 * DAY / 5000),
        )
        for i in range(5000)
    ]
    seed_images(Storage.of(server), repo_name, seeded)
    policy_rules = [
        rule(1, "tagged", "imageCountMoreThan", 100, prefixes=["rel"]),
        rule(2, "untagged", "sinceImagePushed", 30),
        rule(3, "tagged", "sinceImagePushed", 60, patterns=["ci-*"]),
        rule(4, "any", "imageCountMoreThan", 2500),
    ]
    policy = policy_text(*policy_rules)
    expected = expected_expirations({"rules": policy_rules}, seeded, time.time())

    # Two starts at the same moment: one wins, the other finds it in progress (unless,
    # on a loaded machine, the first preview finished before the second start arrived:
    # then both start, one after the other; a few attempts catch the exception).
    def start(outcomes: list[str], barrier: threading.Barrier) -> None:
        client = make_ecr_client(server.url)
        barrier.wait()
        try:
            outcomes.append(
                client.start_lifecycle_policy_preview(
                    repositoryName=repo_name, lifecyclePolicyText=policy
                )["status"]
            )
        except client.exceptions.LifecyclePolicyPreviewInProgressException:
            outcomes.append("InProgressException")

    attempts = []
    for _ in range(5):
        outcomes: list[str] = []
        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=start, args=(outcomes, barrier)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        attempts.append(sorted(outcomes))
        assert "IN_PROGRESS" in outcomes, outcomes
        ecr.get_waiter("lifecycle_policy_preview_complete").wait(
            repositoryName=repo_name, WaiterConfig=FAST_WAITER
        )
        if "InProgressException" in outcomes:
            break
    assert ["IN_PROGRESS", "InProgressException"] in attempts, attempts
    pages = preview_pages(ecr, repo_name, page_size=100)
    results = [r for p in pages for r in p["previewResults"]]
    assert all(p["summary"]["expiringImageTotalCount"] == len(expected) for p in pages)
    assert len(pages) == -(-len(expected) // 100)
    assert {r["imageDigest"]: r["appliedRulePriority"] for r in results} == expected
    pushed = [r["imagePushedAt"] for r in results]
    assert pushed == sorted(pushed)
    assert len(image_digests_in(ecr, repo_name)) == 5000


def test_enforcement_spares_an_image_tagged_while_the_run_is_under_way(
    server: ServerProcess, ecr: Any, repo_name: str
) -> None:
    """A long run (hundreds of expirations, deleted oldest first) and, while it deletes
    the oldest ones, a client tags the newest candidate. Tagged, the image no longer
    matches the only rule (untagged); it must survive."""
    ecr.create_repository(repositoryName=repo_name)
    now = time.time()
    seed_images(
        Storage.of(server),
        repo_name,
        [
            SeedImage(fake_digest(f"{repo_name}-{i}"), (), round(now - DAY + i, 3))
            for i in range(300)
        ],
    )
    promoted, newest = small_image(), small_image()
    push_in_order(ecr, repo_name, [(promoted, None), (newest, None)])
    ecr.put_lifecycle_policy(
        repositoryName=repo_name,
        lifecyclePolicyText=policy_text(rule(1, "untagged", "imageCountMoreThan", 1)),
    )
    run = Storage.of(server).popen("lifecycle", "run", "--repository", repo_name)
    try:
        count = wait_for(
            lambda: len(image_digests_in(ecr, repo_name)), lambda n: n < 302, timeout=30
        )
        assert count < 302, "the run did not start deleting"
        assert promoted.digest in image_digests_in(ecr, repo_name), "the run was too fast"
        ecr.put_image(
            repositoryName=repo_name, imageManifest=promoted.manifest.decode(), imageTag="keep"
        )
    finally:
        _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    remaining = image_digests_in(ecr, repo_name)
    assert promoted.digest in remaining, "the image tagged during the run was expired"
    assert remaining == {promoted.digest, newest.digest}
