"""Lifecycle policy evaluation (spec §6.3), table-driven plus hypothesis properties."""

from __future__ import annotations

import fnmatch
import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openecr.services.lifecycle import (
    Expiration,
    ImageFacts,
    LifecyclePolicy,
    LifecycleRule,
    RuleAction,
    TagSelection,
    TagStatus,
    evaluate_lifecycle_policy,
    parse_lifecycle_policy,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
EXPIRE = RuleAction(type="expire")


def image(name: str, tags: tuple[str, ...] | list[str], age: float | timedelta) -> ImageFacts:
    """An image called ``name`` (its digest), pushed ``age`` days (or exactly ``age``) ago."""
    delta = age if isinstance(age, timedelta) else timedelta(days=age)
    return ImageFacts(digest=name, tags=tuple(tags), pushed_at=NOW - delta)


def keep(count: int, **selection: Any) -> dict[str, Any]:
    """A selection that keeps the ``count`` newest images."""
    return {"countType": "imageCountMoreThan", "countNumber": count, **selection}


def older_than(days: int, **selection: Any) -> dict[str, Any]:
    """A selection of images pushed more than ``days`` days ago."""
    return {"countType": "sinceImagePushed", "countUnit": "days", "countNumber": days, **selection}


def prefixes(*values: str) -> dict[str, Any]:
    return {"tagStatus": "tagged", "tagPrefixList": list(values)}


def patterns(*values: str) -> dict[str, Any]:
    return {"tagStatus": "tagged", "tagPatternList": list(values)}


UNTAGGED: dict[str, Any] = {"tagStatus": "untagged"}
ANY: dict[str, Any] = {"tagStatus": "any"}


def policy_of(*selections: tuple[int, dict[str, Any]]) -> LifecyclePolicy:
    """Parse a policy with one rule per ``(priority, selection)`` pair."""
    rules = [
        {"rulePriority": priority, "selection": sel, "action": {"type": "expire"}}
        for priority, sel in selections
    ]
    return parse_lifecycle_policy(json.dumps({"rules": rules}))


@dataclass(frozen=True)
class Case:
    id: str
    rules: list[tuple[int, dict[str, Any]]]
    images: list[ImageFacts]
    # (digest, rule priority) in the engine's output order: oldest first, then by digest.
    expired: list[tuple[str, int]]


CASES = [
    # --- The worked examples of the AWS user guide ------------------------------------------
    Case(
        "aws example A: an image selected by rule 1 is protected from rule 2",
        [(1, keep(1, **prefixes("prod"))), (2, keep(1, **prefixes("beta")))],
        [
            image("A", ["beta-1", "prod-1"], 10),
            image("B", ["beta-2", "prod-2"], 9),
            image("C", ["beta-3"], 8),
        ],
        [("A", 1)],
    ),
    Case(
        "aws example B: rule 1 expires both older prod images",
        [(1, keep(1, **prefixes("prod"))), (2, keep(1, **prefixes("beta")))],
        [
            image("A", ["beta-1", "prod-1"], 10),
            image("B", ["beta-2", "prod-2"], 9),
            image("C", ["beta-3", "prod-3"], 8),
        ],
        [("A", 1), ("B", 1)],
    ),
    Case(
        "aws example: several prefixes in one rule must all match",
        [(1, older_than(5, **prefixes("alpha", "beta")))],
        [
            image("A", ["alpha-1"], 12),
            image("B", ["beta-1"], 11),
            image("C", ["alpha-2", "beta-2"], 10),
            image("D", ["alpha-3", "beta-3"], 4),
        ],
        [("C", 1)],
    ),
    Case(
        "aws example: several prefixes, count rule keeps the newest match",
        [(1, keep(1, **prefixes("alpha", "beta")))],
        [
            image("A", ["alpha-1", "beta-1"], 12),
            image("B", ["beta-2"], 11),
            image("C", ["alpha-3", "beta-3"], 10),
            image("D", ["alpha-4"], 4),
        ],
        [("A", 1)],
    ),
    Case(
        "aws example: any rule counts protected images but cannot expire them",
        [(1, keep(1, **prefixes("alpha"))), (2, keep(1, **ANY))],
        [
            image("A", ["alpha-1"], 4),
            image("B", [], 3),
            image("C", ["alpha-2"], 2),
            image("D", ["git-hash"], 1),
        ],
        [("A", 1), ("B", 2)],
    ),
    Case(
        "aws example: any rule by age after a tagged count rule",
        [(1, keep(1, **prefixes("alpha"))), (2, older_than(5, **ANY))],
        [
            image("A", ["alpha-1"], 10),
            image("B", [], 8),
            image("C", ["alpha-2"], 7),
            image("D", ["beta-1"], 6),
            image("E", ["beta-2"], 2),
        ],
        [("A", 1), ("B", 2), ("D", 2)],
    ),
    Case(
        "aws example: keep only one untagged image",
        [(1, keep(1, **UNTAGGED))],
        [image("a", [], 3), image("b", ["latest"], 4), image("c", [], 2), image("d", [], 1)],
        [("a", 1), ("c", 1)],
    ),
    Case(
        "aws example: untagged images older than 14 days",
        [(1, older_than(14, **UNTAGGED))],
        [image("a", [], 30), image("b", ["v1"], 30), image("c", [], 14.5), image("d", [], 13.5)],
        [("a", 1), ("c", 1)],
    ),
    # --- Tag status ----------------------------------------------------------------------
    Case(
        "tagged rules never select untagged images",
        [(1, keep(1, **patterns("*")))],
        [image("a", [], 9), image("b", ["x"], 8), image("c", [], 7), image("d", ["y"], 6)],
        [("b", 1)],
    ),
    Case(
        "untagged rules never select tagged images",
        [(1, older_than(1, **UNTAGGED))],
        [image("a", ["x"], 9), image("b", [], 8)],
        [("b", 1)],
    ),
    Case(
        "any selects tagged and untagged alike",
        [(1, keep(2, **ANY))],
        [image("a", ["x"], 4), image("b", [], 3), image("c", ["y"], 2), image("d", [], 1)],
        [("a", 1), ("b", 1)],
    ),
    Case(
        "untagged rule protects untagged images from the any rule",
        [(1, older_than(100, **UNTAGGED)), (2, keep(1, **ANY))],
        [image("a", [], 50), image("b", ["x"], 40), image("c", [], 30), image("d", ["y"], 20)],
        [("b", 2)],
    ),
    # --- Prefix lists ----------------------------------------------------------------------
    Case(
        "a prefix may match any one of the tags",
        [(1, older_than(1, **prefixes("prod")))],
        [image("a", ["dev", "prod-2"], 3), image("b", ["dev"], 3), image("c", ["production"], 2)],
        [("a", 1), ("c", 1)],
    ),
    Case(
        "a prefix is not a substring or a suffix match",
        [(1, older_than(1, **prefixes("prod")))],
        [image("a", ["pre-prod"], 3), image("b", ["Prod"], 3), image("c", ["pro"], 3)],
        [],
    ),
    Case(
        "two prefixes may be satisfied by the same tag",
        [(1, older_than(1, **prefixes("v1", "v1.2")))],
        [image("a", ["v1.2.3"], 3), image("b", ["v1.3"], 3)],
        [("a", 1)],
    ),
    Case(
        "the whole tag is a prefix of itself",
        [(1, older_than(1, **prefixes("latest")))],
        [image("a", ["latest"], 3)],
        [("a", 1)],
    ),
    # --- Pattern lists ---------------------------------------------------------------------
    Case(
        "prod* matches prod, prod1 and production-team1 only",
        [(1, older_than(1, **patterns("prod*")))],
        [
            image("a", ["prod"], 5),
            image("b", ["prod1"], 5),
            image("c", ["production-team1"], 5),
            image("d", ["repo-prod"], 5),
            image("e", ["xprod"], 5),
        ],
        [("a", 1), ("b", 1), ("c", 1)],
    ),
    Case(
        "*prod* matches prod anywhere in the tag",
        [(1, older_than(1, **patterns("*prod*")))],
        [
            image("a", ["repo-production"], 5),
            image("b", ["prod-team"], 5),
            image("c", ["prod"], 5),
            image("d", ["pro-d"], 5),
        ],
        [("a", 1), ("b", 1), ("c", 1)],
    ),
    Case(
        "*prod matches a suffix only",
        [(1, older_than(1, **patterns("*prod")))],
        [image("a", ["repo-prod"], 5), image("b", ["prod"], 5), image("c", ["prod-repo"], 5)],
        [("a", 1), ("b", 1)],
    ),
    Case(
        "a pattern without * matches the exact tag only",
        [(1, older_than(1, **patterns("prod")))],
        [image("a", ["prod"], 5), image("b", ["prod1"], 5), image("c", ["aprod"], 5)],
        [("a", 1)],
    ),
    Case(
        "a*b needs the prefix and the suffix without overlap",
        [(1, older_than(1, **patterns("ab*ba")))],
        [
            image("a", ["aba"], 5),
            image("b", ["abba"], 5),
            image("c", ["ab-x-ba"], 5),
            image("d", ["abx"], 5),
        ],
        [("b", 1), ("c", 1)],
    ),
    Case(
        "four wildcards and regex metacharacters taken literally",
        [(1, older_than(1, **patterns("*test*1*2*3", "v1.*")))],
        [
            image("a", ["my-test-1-2-3", "v1.0"], 5),
            image("b", ["my-test-1-2-3", "v10"], 5),
            image("c", ["test123", "v1."], 5),
            image("d", ["test12", "v1.9"], 5),
        ],
        [("a", 1), ("c", 1)],
    ),
    Case(
        "other characters are literal, including ? [ ] + ( ) and backslash",
        [(1, older_than(1, **patterns("a?b*", "[x]*", "(+)\\*")))],
        [
            image("a", ["a?b-1", "[x]", "(+)\\z"], 5),
            image("b", ["axb-1", "[x]", "(+)\\z"], 5),
            image("c", ["a?b", "x", "(+)\\"], 5),
        ],
        [("a", 1)],
    ),
    Case(
        "every pattern must match some tag, possibly different ones",
        [(1, older_than(1, **patterns("prod*", "*-rc")))],
        [
            image("a", ["prod-1", "x-rc"], 5),
            image("b", ["prod-rc"], 5),
            image("c", ["prod-1"], 5),
            image("d", ["x-rc"], 5),
        ],
        [("a", 1), ("b", 1)],
    ),
    Case(
        "* alone matches every tagged image and ** behaves like *",
        [(1, keep(1, **patterns("**")))],
        [image("a", ["x"], 3), image("b", [], 2), image("c", ["y"], 1)],
        [("a", 1)],
    ),
    # --- Count and age -------------------------------------------------------------------
    Case(
        "count larger than the selection expires nothing",
        [(1, keep(10, **ANY))],
        [image("a", [], 3), image("b", ["x"], 2)],
        [],
    ),
    Case(
        "age is strictly more than countNumber days",
        [(1, older_than(7, **ANY))],
        [
            image("exact", [], timedelta(days=7)),
            image("over", [], timedelta(days=7, microseconds=1)),
            image("under", [], timedelta(days=6, hours=23, minutes=59)),
        ],
        [("over", 1)],
    ),
    Case(
        "an age no datetime can reach expires nothing",
        [(1, older_than(2**31 - 1, **ANY))],
        [image("a", [], 10_000)],
        [],
    ),
    Case(
        "images pushed in the future are never old",
        [(1, older_than(1, **ANY))],
        [image("a", [], -3)],
        [],
    ),
    # --- Priority interplay --------------------------------------------------------------
    Case(
        "a selecting rule that expires nothing still protects its images",
        [(1, older_than(1000, **prefixes("keep"))), (2, keep(2, **ANY))],
        [
            image("k1", ["keep-1"], 1),
            image("k2", ["keep-2"], 2),
            image("x", [], 3),
            image("y", ["other"], 4),
            image("k3", ["keep-3"], 5),
        ],
        [("y", 2), ("x", 2)],
    ),
    Case(
        "rules apply by priority, not by position in the document",
        [(20, keep(1, **prefixes("b"))), (3, keep(1, **prefixes("a")))],
        [
            image("x", ["a-1", "b-1"], 5),
            image("y", ["a-2"], 4),
            image("z", ["b-2"], 3),
        ],
        [("x", 3)],
    ),
    Case(
        "a lower rule expires what the higher rule did not select",
        [(1, older_than(10, **patterns("release-*"))), (2, older_than(3, **patterns("*")))],
        [
            image("r-old", ["release-1"], 20),
            image("r-mid", ["release-2"], 5),
            image("f-old", ["feature"], 20),
            image("f-new", ["feature-2"], 1),
        ],
        [("f-old", 2), ("r-old", 1)],
    ),
    Case(
        "three rules, each tag status",
        [
            (1, keep(1, **prefixes("v"))),
            (2, older_than(2, **UNTAGGED)),
            (3, keep(2, **ANY)),
        ],
        [
            image("v1", ["v1"], 10),
            image("u1", [], 9),
            image("v2", ["v2"], 8),
            image("t1", ["test"], 7),
            image("u2", [], 1),
            image("t2", ["test-2"], 0.5),
        ],
        [("v1", 1), ("u1", 2), ("t1", 3)],
    ),
    # --- Ties and ordering -----------------------------------------------------------------
    Case(
        "equal push times: the larger digest counts as newer and is kept",
        [(1, keep(1, **ANY))],
        [image("sha256:b", [], 1), image("sha256:c", [], 1), image("sha256:a", [], 1)],
        [("sha256:a", 1), ("sha256:b", 1)],
    ),
    Case(
        "equal push times: keep two of four",
        [(1, keep(2, **ANY))],
        [image(d, ["t"], 2) for d in ("d2", "d4", "d1", "d3")],
        [("d1", 1), ("d2", 1)],
    ),
    Case(
        "output is oldest first, then by digest",
        [(1, older_than(1, **ANY))],
        [
            image("m", [], 3),
            image("z", [], 5),
            image("a", [], 3),
            image("q", [], 4),
        ],
        [("z", 1), ("q", 1), ("a", 1), ("m", 1)],
    ),
    Case(
        "an empty repository expires nothing",
        [(1, keep(1, **ANY))],
        [],
        [],
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_evaluation(case: Case) -> None:
    result = evaluate_lifecycle_policy(policy_of(*case.rules), case.images, NOW)
    assert [(e.image.digest, e.rule_priority) for e in result] == case.expired
    by_digest = {facts.digest: facts for facts in case.images}
    assert all(e.image is by_digest[e.image.digest] for e in result)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_input_order_does_not_matter(case: Case) -> None:
    policy = policy_of(*case.rules)
    expected = evaluate_lifecycle_policy(policy, case.images, NOW)
    shuffled = list(case.images)
    random.Random(case.id).shuffle(shuffled)
    assert evaluate_lifecycle_policy(policy, iter(shuffled), NOW) == expected


def test_last_pulled_at_does_not_count() -> None:
    policy = policy_of((1, older_than(5, **ANY)))
    images = [
        ImageFacts("old", (), NOW - timedelta(days=9), last_pulled_at=NOW),
        ImageFacts("new", (), NOW - timedelta(days=1), last_pulled_at=NOW - timedelta(days=90)),
    ]
    assert evaluate_lifecycle_policy(policy, images, NOW) == [Expiration(images[0], 1)]


def test_naive_datetimes_work_when_used_throughout() -> None:
    now = datetime(2026, 1, 1)
    images = [ImageFacts("a", (), now - timedelta(days=3)), ImageFacts("b", (), now)]
    result = evaluate_lifecycle_policy(policy_of((1, older_than(2, **ANY))), images, now)
    assert result == [Expiration(images[0], 1)]


def test_rules_need_not_be_sorted_in_a_hand_built_policy() -> None:
    def rule(priority: int, prefix: str) -> LifecycleRule:
        sel = TagSelection("tagged", (prefix,), (), "imageCountMoreThan", None, 1)
        return LifecycleRule(priority, None, sel, EXPIRE)

    policy = LifecyclePolicy(rules=(rule(9, "b"), rule(2, "a")))
    images = [image("x", ["a", "b"], 3), image("y", ["a"], 2), image("z", ["b"], 1)]
    assert evaluate_lifecycle_policy(policy, images, NOW) == [Expiration(images[0], 2)]


# --- Properties ------------------------------------------------------------------------------

# Tag material without the fnmatch metacharacters ? and [, so fnmatch is a fair oracle.
TAG_WORDS = ["a", "ab", "b", "ba", "prod", "prod-1", "x-rc", "v1.2"]
PATTERN_WORDS = ["*", "a*", "*b", "*a*", "prod*", "*-*", "ab", "v1.*", "a*b*a", "p*-*1"]
PREFIX_WORDS = ["a", "ab", "b", "p", "prod", "x", "v1."]
STATUSES: list[TagStatus] = ["tagged", "untagged", "any"]


@st.composite
def image_sets(draw: st.DrawFn) -> list[ImageFacts]:
    count = draw(st.integers(min_value=0, max_value=30))
    digests = draw(
        st.lists(
            st.text("0123456789abcdef", min_size=1, max_size=3),
            min_size=count,
            max_size=count,
            unique=True,
        )
    )
    images = []
    for digest in digests:
        tags = draw(st.lists(st.sampled_from(TAG_WORDS), max_size=3, unique=True))
        # Hours on a coarse grid so equal push times (ties) are frequent.
        hours = draw(st.integers(min_value=-24, max_value=24 * 40))
        images.append(ImageFacts(f"sha256:{digest}", tuple(tags), NOW - timedelta(hours=hours)))
    return images


@st.composite
def selections(draw: st.DrawFn, tag_status: TagStatus) -> TagSelection:
    prefix_list: tuple[str, ...] = ()
    pattern_list: tuple[str, ...] = ()
    if tag_status == "tagged":
        words = PREFIX_WORDS if draw(st.booleans()) else PATTERN_WORDS
        chosen = tuple(draw(st.lists(st.sampled_from(words), min_size=1, max_size=3)))
        if words is PREFIX_WORDS:
            prefix_list = chosen
        else:
            pattern_list = chosen
    number = draw(st.integers(min_value=1, max_value=12))
    if draw(st.booleans()):
        return TagSelection(
            tag_status, prefix_list, pattern_list, "imageCountMoreThan", None, number
        )
    return TagSelection(
        tag_status, prefix_list, pattern_list, "sinceImagePushed", "days", 3 * number
    )


@st.composite
def policies(draw: st.DrawFn) -> LifecyclePolicy:
    statuses: list[TagStatus] = draw(st.lists(st.just("tagged"), max_size=4))
    if draw(st.booleans()):
        statuses.append("untagged")
    statuses = draw(st.permutations(statuses))
    if draw(st.booleans()) or not statuses:
        statuses.append("any")  # the any rule, when present, has the highest priority
    priorities = sorted(
        draw(
            st.lists(
                st.integers(1, 100), min_size=len(statuses), max_size=len(statuses), unique=True
            )
        )
    )
    rules = [
        LifecycleRule(priority, None, draw(selections(status)), EXPIRE)
        for priority, status in zip(priorities, statuses, strict=True)
    ]
    return LifecyclePolicy(rules=tuple(draw(st.permutations(rules))))


def oracle_selects(selection: TagSelection, facts: ImageFacts) -> bool:
    """The selection rule of spec §6.2, written independently of the engine."""
    if selection.tag_status == "any":
        return True
    if selection.tag_status == "untagged":
        return not facts.tags
    if not facts.tags:
        return False
    if selection.tag_prefixes:
        return all(any(t.startswith(p) for t in facts.tags) for p in selection.tag_prefixes)
    return all(any(fnmatch.fnmatchcase(t, p) for t in facts.tags) for p in selection.tag_patterns)


def oracle(policy: LifecyclePolicy, images: list[ImageFacts]) -> dict[str, int]:
    """The §6.3 pseudo-code, literally (with the documented digest tie-break)."""
    protected: set[str] = set()
    result: dict[str, int] = {}
    for rule in sorted(policy.rules, key=lambda r: r.priority):
        sel = rule.selection
        selected = [i for i in images if oracle_selects(sel, i)]
        if sel.count_type == "imageCountMoreThan":
            newest_first = sorted(selected, key=lambda i: (i.pushed_at, i.digest), reverse=True)
            candidates = newest_first[sel.count_number :]
        else:
            candidates = [
                i for i in selected if NOW - i.pushed_at > timedelta(days=sel.count_number)
            ]
        for facts in candidates:
            if facts.digest not in protected and facts.digest not in result:
                result[facts.digest] = rule.priority
        protected |= {i.digest for i in selected}
    return result


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_epoch_seconds_decide_as_datetimes_do(case: Case) -> None:
    as_seconds = [
        ImageFacts(facts.digest, facts.tags, facts.pushed_at.timestamp())  # type: ignore[union-attr]
        for facts in case.images
    ]
    policy = policy_of(*case.rules)
    result = evaluate_lifecycle_policy(policy, as_seconds, NOW.timestamp())
    assert [(e.image.digest, e.rule_priority) for e in result] == case.expired


@settings(max_examples=400, deadline=None)
@given(policy=policies(), images=image_sets())
def test_engine_agrees_with_the_spec_pseudo_code(
    policy: LifecyclePolicy, images: list[ImageFacts]
) -> None:
    result = evaluate_lifecycle_policy(policy, images, NOW)
    assert {e.image.digest: e.rule_priority for e in result} == oracle(policy, images)


@settings(max_examples=400, deadline=None)
@given(policy=policies(), images=image_sets())
def test_each_image_expires_at_most_once_and_never_under_a_higher_selection(
    policy: LifecyclePolicy, images: list[ImageFacts]
) -> None:
    result = evaluate_lifecycle_policy(policy, images, NOW)
    digests = [e.image.digest for e in result]
    assert len(digests) == len(set(digests))
    for expiration in result:
        rules = {r.priority: r for r in policy.rules}
        assert oracle_selects(rules[expiration.rule_priority].selection, expiration.image)
        for rule in policy.rules:
            if rule.priority < expiration.rule_priority:
                assert not oracle_selects(rule.selection, expiration.image)
    keys = [(e.image.pushed_at, e.image.digest) for e in result]
    assert keys == sorted(keys)


@settings(max_examples=400, deadline=None)
@given(
    images=image_sets(),
    tag_status=st.sampled_from(STATUSES),
    data=st.data(),
)
def test_single_count_rule_expires_exactly_the_oldest_surplus(
    images: list[ImageFacts], tag_status: TagStatus, data: st.DataObject
) -> None:
    sel = data.draw(selections(tag_status))
    sel = TagSelection(
        sel.tag_status,
        sel.tag_prefixes,
        sel.tag_patterns,
        "imageCountMoreThan",
        None,
        sel.count_number,
    )
    policy = LifecyclePolicy(rules=(LifecycleRule(1, None, sel, EXPIRE),))
    result = evaluate_lifecycle_policy(policy, images, NOW)

    selected = [i for i in images if oracle_selects(sel, i)]
    assert len(result) == max(0, len(selected) - sel.count_number)
    expired = {e.image.digest for e in result}
    kept = [i for i in selected if i.digest not in expired]
    assert len(kept) == min(len(selected), sel.count_number)
    if result and kept:
        newest_expired = max((e.image.pushed_at, e.image.digest) for e in result)
        oldest_kept = min((i.pushed_at, i.digest) for i in kept)
        assert newest_expired < oldest_kept
