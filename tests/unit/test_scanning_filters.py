"""Repository filters: scanning WILDCARD (spec §7.5) and replication PREFIX_MATCH (spec §8)."""

from __future__ import annotations

import pytest

from openecr.services.scanning_filters import prefix_filter_matches, wildcard_filter_matches

# AWS's table from spec §7.5: rows are filters, columns repository names.
AWS_REPOSITORIES = ["prod", "repo-prod", "prod-repo", "repo-prod-repo", "prodrepo"]
AWS_TABLE = {
    "prod": [True, True, True, True, True],
    "*prod": [True, True, False, False, False],
    "prod*": [True, False, True, False, True],
    "*prod*": [True, True, True, True, True],
    "prod*repo": [False, False, True, False, True],
}
AWS_CASES = [
    (filter_, repository, expected)
    for filter_, row in AWS_TABLE.items()
    for repository, expected in zip(AWS_REPOSITORIES, row, strict=True)
]


@pytest.mark.parametrize(
    ("filter_", "repository", "expected"),
    AWS_CASES,
    ids=[f"{f} vs {r}" for f, r, _ in AWS_CASES],
)
def test_wildcard_filter_matches_the_aws_table(
    filter_: str, repository: str, expected: bool
) -> None:
    assert wildcard_filter_matches(filter_, repository) is expected


MORE_WILDCARD_CASES = [
    # Without *, a substring anywhere, including a / boundary.
    ("team/", "org/team/app", True),
    ("o-r", "repo-repo", True),
    ("app", "ap", False),
    ("prod", "PROD", False),
    # With *, anchored at both ends.
    ("*", "anything/at/all", True),
    ("team/*", "team/app", True),
    ("team/*", "org/team/app", False),
    ("*/app", "org/team/app", True),
    ("a*b*c", "abc", True),
    ("a*b*c", "a-x-b-y-c", True),
    ("a*b*c", "a-x-b-y-c-d", False),
    ("a*a", "a", False),
    ("a*a", "aa", True),
    ("**", "x", True),
    # Characters other than * are literal.
    ("a.b*", "axb", False),
    ("a.b*", "a.b-1", True),
    ("a.b", "axb", False),
    ("re*po", "re.*po", True),
]


@pytest.mark.parametrize(
    ("filter_", "repository", "expected"),
    MORE_WILDCARD_CASES,
    ids=[f"{f} vs {r}" for f, r, _ in MORE_WILDCARD_CASES],
)
def test_wildcard_filter_edge_cases(filter_: str, repository: str, expected: bool) -> None:
    assert wildcard_filter_matches(filter_, repository) is expected


PREFIX_CASES = [
    ("prod", "prod", True),
    ("prod", "prod-repo", True),
    ("prod", "prodrepo", True),
    ("prod", "repo-prod", False),
    ("team/", "team/app", True),
    ("team/", "org/team/app", False),
    ("team/app", "team", False),
    ("Prod", "prod", False),
    ("a*", "a-repo", False),  # PREFIX_MATCH has no wildcards
    ("", "anything", True),
]


@pytest.mark.parametrize(
    ("prefix", "repository", "expected"),
    PREFIX_CASES,
    ids=[f"{p!r} vs {r}" for p, r, _ in PREFIX_CASES],
)
def test_prefix_filter(prefix: str, repository: str, expected: bool) -> None:
    assert prefix_filter_matches(prefix, repository) is expected
