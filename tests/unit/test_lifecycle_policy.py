"""Lifecycle policy grammar and validation (spec §6.1, §6.2, §6.4)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from openecr.errors import InvalidParameterError
from openecr.services.lifecycle import (
    LifecyclePolicy,
    LifecycleRule,
    RuleAction,
    TagSelection,
    parse_lifecycle_policy,
)

PREFIX = (
    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
    "'Lifecycle policy validation failure: "
)


# A field value meaning "leave this key out of the document".
DROP: Any = object()


def selection(**fields: Any) -> dict[str, Any]:
    """A valid ``tagged``/``imageCountMoreThan`` selection with ``fields`` overriding it."""
    base: dict[str, Any] = {
        "tagStatus": "tagged",
        "tagPrefixList": ["prod"],
        "countType": "imageCountMoreThan",
        "countNumber": 5,
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not DROP}


def rule(priority: Any = 1, sel: Any = None, action: Any = None, **extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "rulePriority": priority,
        "selection": selection() if sel is None else sel,
        "action": {"type": "expire"} if action is None else action,
    }
    document.update(extra)
    return {key: value for key, value in document.items() if value is not DROP}


def policy(*rules: Any) -> str:
    return json.dumps({"rules": list(rules)})


def untagged(priority: int, count_number: int = 1) -> dict[str, Any]:
    return rule(
        priority,
        selection(tagStatus="untagged", tagPrefixList=DROP, countNumber=count_number),
    )


def any_rule(priority: int) -> dict[str, Any]:
    return rule(priority, selection(tagStatus="any", tagPrefixList=DROP))


def tagged_selection(
    prefixes: tuple[str, ...] = (),
    patterns: tuple[str, ...] = (),
    count_type: Any = "imageCountMoreThan",
    count_number: int = 5,
) -> TagSelection:
    return TagSelection(
        tag_status="tagged",
        tag_prefixes=prefixes,
        tag_patterns=patterns,
        count_type=count_type,
        count_unit="days" if count_type == "sinceImagePushed" else None,
        count_number=count_number,
    )


EXPIRE = RuleAction(type="expire")


# --- valid documents ---------------------------------------------------------------------

VALID: list[tuple[str, str, LifecyclePolicy]] = [
    (
        "aws example: untagged older than 14 days",
        json.dumps(
            {
                "rules": [
                    {
                        "rulePriority": 1,
                        "description": "Expire images older than 14 days",
                        "selection": {
                            "tagStatus": "untagged",
                            "countType": "sinceImagePushed",
                            "countUnit": "days",
                            "countNumber": 14,
                        },
                        "action": {"type": "expire"},
                    }
                ]
            }
        ),
        LifecyclePolicy(
            rules=(
                LifecycleRule(
                    priority=1,
                    description="Expire images older than 14 days",
                    selection=TagSelection(
                        tag_status="untagged",
                        tag_prefixes=(),
                        tag_patterns=(),
                        count_type="sinceImagePushed",
                        count_unit="days",
                        count_number=14,
                    ),
                    action=EXPIRE,
                ),
            )
        ),
    ),
    (
        "tag pattern list, no description",
        policy(rule(3, selection(tagPrefixList=DROP, tagPatternList=["prod*", "*-rc*"]))),
        LifecyclePolicy(
            rules=(LifecycleRule(3, None, tagged_selection(patterns=("prod*", "*-rc*")), EXPIRE),)
        ),
    ),
    (
        "rules come back sorted by priority; priorities need not be consecutive",
        policy(
            any_rule(40),
            rule(7, selection(tagPrefixList=["b"])),
            rule(2, selection(tagPrefixList=["a"])),
        ),
        LifecyclePolicy(
            rules=(
                LifecycleRule(2, None, tagged_selection(prefixes=("a",)), EXPIRE),
                LifecycleRule(7, None, tagged_selection(prefixes=("b",)), EXPIRE),
                LifecycleRule(
                    40,
                    None,
                    TagSelection("any", (), (), "imageCountMoreThan", None, 5),
                    EXPIRE,
                ),
            )
        ),
    ),
    (
        "explicit standard storage class is the default",
        policy(rule(1, selection(storageClass="standard"))),
        LifecyclePolicy(rules=(LifecycleRule(1, None, tagged_selection(("prod",)), EXPIRE),)),
    ),
    (
        "four wildcards per pattern are allowed",
        policy(
            rule(1, selection(tagPrefixList=DROP, tagPatternList=["*test*1*2*3", "test*1*2*3*"]))
        ),
        LifecyclePolicy(
            rules=(
                LifecycleRule(
                    1, None, tagged_selection(patterns=("*test*1*2*3", "test*1*2*3*")), EXPIRE
                ),
            )
        ),
    ),
    (
        "untagged and any together (any last)",
        policy(untagged(1), any_rule(2)),
        LifecyclePolicy(
            rules=(
                LifecycleRule(
                    1, None, TagSelection("untagged", (), (), "imageCountMoreThan", None, 1), EXPIRE
                ),
                LifecycleRule(
                    2, None, TagSelection("any", (), (), "imageCountMoreThan", None, 5), EXPIRE
                ),
            )
        ),
    ),
    (
        "same prefixes in a different set are fine",
        policy(
            rule(1, selection(tagPrefixList=["a", "b"])), rule(2, selection(tagPrefixList=["a"]))
        ),
        LifecyclePolicy(
            rules=(
                LifecycleRule(1, None, tagged_selection(("a", "b")), EXPIRE),
                LifecycleRule(2, None, tagged_selection(("a",)), EXPIRE),
            )
        ),
    ),
    (
        "identical pattern lists in two rules are accepted",
        policy(
            rule(1, selection(tagPrefixList=DROP, tagPatternList=["a*"])),
            rule(2, selection(tagPrefixList=DROP, tagPatternList=["a*"])),
        ),
        LifecyclePolicy(
            rules=(
                LifecycleRule(1, None, tagged_selection(patterns=("a*",)), EXPIRE),
                LifecycleRule(2, None, tagged_selection(patterns=("a*",)), EXPIRE),
            )
        ),
    ),
    (
        "largest java int is accepted",
        policy(rule(2**31 - 1, selection(countNumber=2**31 - 1))),
        LifecyclePolicy(
            rules=(
                LifecycleRule(
                    2**31 - 1, None, tagged_selection(("prod",), count_number=2**31 - 1), EXPIRE
                ),
            )
        ),
    ),
    (
        "empty description",
        policy(rule(1, description="")),
        LifecyclePolicy(rules=(LifecycleRule(1, "", tagged_selection(("prod",)), EXPIRE),)),
    ),
    (
        "duplicate json keys keep the last value",
        '{"rules": [{"rulePriority": 9, "rulePriority": 1, "selection": {"tagStatus": "any",'
        ' "countType": "imageCountMoreThan", "countNumber": 2}, "action": {"type": "expire"}}]}',
        LifecyclePolicy(
            rules=(
                LifecycleRule(
                    1, None, TagSelection("any", (), (), "imageCountMoreThan", None, 2), EXPIRE
                ),
            )
        ),
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [(t, e) for _, t, e in VALID], ids=[i for i, _, _ in VALID]
)
def test_valid_policies_parse(text: str, expected: LifecyclePolicy) -> None:
    assert parse_lifecycle_policy(text) == expected


def test_fifty_rules_are_allowed() -> None:
    rules = [rule(n, selection(tagPrefixList=[f"p{n}"])) for n in range(1, 51)]
    parsed = parse_lifecycle_policy(policy(*rules))
    assert [r.priority for r in parsed.rules] == list(range(1, 51))


def test_parsed_policy_is_immutable() -> None:
    parsed = parse_lifecycle_policy(policy(rule()))
    with pytest.raises(AttributeError):
        parsed.rules[0].selection.count_number = 3  # type: ignore[misc]


# --- invalid documents -------------------------------------------------------------------

NOT_A_POLICY = "Could not map policyString into LifecyclePolicy."
ONE_OF = "instance failed to match exactly one schema (matched 0 out of 2)"
TAGGED_NEEDS_LIST = "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED."
ANY_LAST = "Rule for tagStatus=ANY must have the lowest priority per storage class"


def type_error(found: str, allowed: str) -> str:
    return (
        f"instance type ({found}) does not match any allowed primitive type "
        f'(allowed: ["{allowed}"])'
    )


def not_allowed(*keys: str) -> str:
    return "object instance has properties which are not allowed by the schema: (" + (
        json.dumps(list(keys), separators=(",", ":")) + ")"
    )


def missing(*keys: str) -> str:
    return (
        f"object has missing required properties ({json.dumps(list(keys), separators=(',', ':'))})"
    )


def enum_error(value: str, allowed: list[str]) -> str:
    return (
        f"instance value ({json.dumps(value)}) not found in enum "
        f":(possible values: {json.dumps(allowed, separators=(',', ':'))})"
    )


def minimum(found: int) -> str:
    return f"numeric instance is lower than the required minimum (minimum: 1, found: {found})"


NO_ARCHIVE = "this registry has no archive storage class"

INVALID: list[tuple[str, str, str]] = [
    # Not a JSON object.
    ("not json", "{rules: []}", NOT_A_POLICY),
    ("empty text", "", NOT_A_POLICY),
    ("json array", "[]", NOT_A_POLICY),
    ("json string", '"rules"', NOT_A_POLICY),
    ("json null", "null", NOT_A_POLICY),
    ("NaN is not json", '{"rules": NaN}', NOT_A_POLICY),
    ("trailing garbage", policy(rule()) + "}", NOT_A_POLICY),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, NOT_A_POLICY),
    # Top level.
    ("no rules", "{}", missing("rules")),
    (
        "unknown top-level key",
        json.dumps({"rules": [rule()], "version": 1}),
        not_allowed("version"),
    ),
    ("rules not an array", json.dumps({"rules": rule()}), type_error("object", "array")),
    ("rules null", json.dumps({"rules": None}), type_error("null", "array")),
    (
        "rules empty",
        policy(),
        "array is too short: must have at least 1 elements but instance has 0 elements",
    ),
    (
        "51 rules",
        policy(*[rule(n, selection(tagPrefixList=[f"p{n}"])) for n in range(1, 52)]),
        "array is too long: must have at most 50 elements but instance has 51 elements",
    ),
    # Rule object.
    ("rule not an object", policy("rule"), type_error("string", "object")),
    ("rule missing everything", policy({}), missing("action", "rulePriority", "selection")),
    ("rule missing action", policy(rule(action=DROP)), missing("action")),
    ("rule missing selection", policy(rule(sel=DROP)), missing("selection")),
    ("rule missing priority", policy(rule(priority=DROP)), missing("rulePriority")),
    ("unknown rule key", policy(rule(name="x")), not_allowed("name")),
    (
        "misspelt key reported as unknown",
        policy(rule(priority=DROP, rulepriority=1)),
        not_allowed("rulepriority"),
    ),
    ("priority zero", policy(rule(0)), minimum(0)),
    ("priority negative", policy(rule(-3)), minimum(-3)),
    ("priority string", policy(rule("1")), type_error("string", "integer")),
    ("priority float", policy(rule(1.0)), type_error("number", "integer")),
    ("priority boolean", policy(rule(True)), type_error("boolean", "integer")),
    ("priority null", policy(rule(None)), type_error("null", "integer")),
    (
        "priority beyond java int",
        policy(rule(2**31)),
        "numeric instance is greater than the required maximum "
        f"(maximum: {2**31 - 1}, found: {2**31})",
    ),
    ("description not a string", policy(rule(description=3)), type_error("integer", "string")),
    ("description null", policy(rule(description=None)), type_error("null", "string")),
    # Selection object.
    ("selection not an object", policy(rule(sel=["tagged"])), type_error("array", "object")),
    (
        "selection missing tagStatus",
        policy(rule(sel=selection(tagStatus=DROP))),
        missing("tagStatus"),
    ),
    (
        "selection missing countType",
        policy(rule(sel=selection(countType=DROP))),
        missing("countType"),
    ),
    (
        "selection missing countNumber",
        policy(rule(sel=selection(countNumber=DROP))),
        missing("countNumber"),
    ),
    (
        "selection missing several",
        policy(rule(sel={"tagPrefixList": ["a"]})),
        missing("countNumber", "countType", "tagStatus"),
    ),
    ("unknown selection key", policy(rule(sel=selection(tagList=["a"]))), not_allowed("tagList")),
    (
        "several unknown keys are sorted",
        policy(rule(sel=selection(zeta=1, alpha=2))),
        not_allowed("alpha", "zeta"),
    ),
    (
        "tagStatus upper case",
        policy(rule(sel=selection(tagStatus="TAGGED"))),
        enum_error("TAGGED", ["tagged", "untagged", "any"]),
    ),
    (
        "tagStatus unknown",
        policy(rule(sel=selection(tagStatus="all"))),
        enum_error("all", ["tagged", "untagged", "any"]),
    ),
    (
        "tagStatus not a string",
        policy(rule(sel=selection(tagStatus=1))),
        type_error("integer", "string"),
    ),
    ("countType unknown", policy(rule(sel=selection(countType="imageCount"))), ONE_OF),
    (
        "countType not a string",
        policy(rule(sel=selection(countType=None))),
        type_error("null", "string"),
    ),
    (
        "countUnit with imageCountMoreThan",
        policy(rule(sel=selection(countUnit="days"))),
        ONE_OF,
    ),
    (
        "sinceImagePushed without countUnit",
        policy(rule(sel=selection(countType="sinceImagePushed"))),
        ONE_OF,
    ),
    (
        "countUnit not days",
        policy(rule(sel=selection(countType="sinceImagePushed", countUnit="hours"))),
        enum_error("hours", ["days"]),
    ),
    (
        "countUnit upper case",
        policy(rule(sel=selection(countType="sinceImagePushed", countUnit="DAYS"))),
        enum_error("DAYS", ["days"]),
    ),
    (
        "countUnit not a string",
        policy(rule(sel=selection(countType="sinceImagePushed", countUnit=14))),
        type_error("integer", "string"),
    ),
    ("countNumber zero", policy(rule(sel=selection(countNumber=0))), minimum(0)),
    ("countNumber negative", policy(rule(sel=selection(countNumber=-1))), minimum(-1)),
    (
        "countNumber string",
        policy(rule(sel=selection(countNumber="5"))),
        type_error("string", "integer"),
    ),
    (
        "countNumber float",
        policy(rule(sel=selection(countNumber=2.5))),
        type_error("number", "integer"),
    ),
    (
        "countNumber boolean",
        policy(rule(sel=selection(countNumber=True))),
        type_error("boolean", "integer"),
    ),
    (
        "countNumber beyond java int",
        policy(rule(sel=selection(countNumber=2**40))),
        "numeric instance is greater than the required maximum "
        f"(maximum: {2**31 - 1}, found: {2**40})",
    ),
    # Tag lists.
    ("tagged without a list", policy(rule(sel=selection(tagPrefixList=DROP))), TAGGED_NEEDS_LIST),
    (
        "tagged with an empty prefix list",
        policy(rule(sel=selection(tagPrefixList=[]))),
        TAGGED_NEEDS_LIST,
    ),
    (
        "tagged with an empty pattern list",
        policy(rule(sel=selection(tagPrefixList=DROP, tagPatternList=[]))),
        TAGGED_NEEDS_LIST,
    ),
    (
        "both lists in one rule",
        policy(rule(sel=selection(tagPatternList=["a*"]))),
        "Must not specify both tagPrefixList and tagPatternList in the same rule.",
    ),
    (
        "prefix list on untagged",
        policy(rule(sel=selection(tagStatus="untagged"))),
        "Must not specify tagPrefixList when tagStatus=UNTAGGED.",
    ),
    (
        "empty prefix list on untagged",
        policy(rule(sel=selection(tagStatus="untagged", tagPrefixList=[]))),
        "Must not specify tagPrefixList when tagStatus=UNTAGGED.",
    ),
    (
        "pattern list on any",
        policy(rule(sel=selection(tagStatus="any", tagPrefixList=DROP, tagPatternList=["a"]))),
        "Must not specify tagPatternList when tagStatus=ANY.",
    ),
    (
        "prefix list not a list",
        policy(rule(sel=selection(tagPrefixList="prod"))),
        type_error("string", "array"),
    ),
    (
        "prefix entry not a string",
        policy(rule(sel=selection(tagPrefixList=["a", 1]))),
        type_error("integer", "string"),
    ),
    (
        "pattern entry null",
        policy(rule(sel=selection(tagPrefixList=DROP, tagPatternList=[None]))),
        type_error("null", "string"),
    ),
    (
        "empty prefix entry",
        policy(rule(sel=selection(tagPrefixList=["prod", ""]))),
        "tagPrefixList entries must not be empty strings.",
    ),
    (
        "empty pattern entry",
        policy(rule(sel=selection(tagPrefixList=DROP, tagPatternList=[""]))),
        "tagPatternList entries must not be empty strings.",
    ),
    (
        "aws example of too many wildcards",
        policy(rule(sel=selection(tagPrefixList=DROP, tagPatternList=["test*1*2*3*4*5*6"]))),
        'Each tagPatternList entry may contain at most 4 wildcards (*), but "test*1*2*3*4*5*6" '
        "contains 6.",
    ),
    (
        "five wildcards",
        policy(rule(sel=selection(tagPrefixList=DROP, tagPatternList=["ok*", "*a*b*c*d*"]))),
        "Each tagPatternList entry may contain at most 4 wildcards (*), "
        'but "*a*b*c*d*" contains 5.',
    ),
    # Action object.
    ("action not an object", policy(rule(action="expire")), type_error("string", "object")),
    ("action missing type", policy(rule(action={})), missing("type")),
    ("unknown action key", policy(rule(action={"type": "expire", "days": 1})), not_allowed("days")),
    (
        "action type upper case",
        policy(rule(action={"type": "EXPIRE"})),
        enum_error("EXPIRE", ["expire"]),
    ),
    (
        "action type unknown",
        policy(rule(action={"type": "delete"})),
        enum_error("delete", ["expire"]),
    ),
    (
        "action type not a string",
        policy(rule(action={"type": True})),
        type_error("boolean", "string"),
    ),
    (
        "targetStorageClass with expire",
        policy(rule(action={"type": "expire", "targetStorageClass": "archive"})),
        ONE_OF,
    ),
    (
        "targetStorageClass null",
        policy(rule(action={"type": "expire", "targetStorageClass": None})),
        ONE_OF,
    ),
    # Archive extensions are rejected.
    (
        "archive storage class",
        policy(rule(sel=selection(storageClass="archive"))),
        f'Unsupported storageClass (archive): {NO_ARCHIVE}, only "standard" is supported.',
    ),
    (
        "unknown storage class",
        policy(rule(sel=selection(storageClass="glacier"))),
        enum_error("glacier", ["standard", "archive"]),
    ),
    (
        "transition action",
        policy(rule(action={"type": "transition", "targetStorageClass": "archive"})),
        f'Unsupported action type (transition): {NO_ARCHIVE}, only "expire" is supported.',
    ),
    (
        "sinceImagePulled",
        policy(rule(sel=selection(countType="sinceImagePulled", countUnit="days"))),
        f"Unsupported countType (sinceImagePulled): {NO_ARCHIVE}, "
        'only "imageCountMoreThan" and "sinceImagePushed" are supported.',
    ),
    (
        "sinceImageTransitioned",
        policy(rule(sel=selection(countType="sinceImageTransitioned", countUnit="days"))),
        f"Unsupported countType (sinceImageTransitioned): {NO_ARCHIVE}, "
        'only "imageCountMoreThan" and "sinceImagePushed" are supported.',
    ),
    # Constraints across rules.
    (
        "duplicate priority",
        policy(rule(1, selection(tagPrefixList=["a"])), rule(1, selection(tagPrefixList=["b"]))),
        "Rule priorities must be unique, but rulePriority 1 is used by more than one rule.",
    ),
    (
        "two untagged rules",
        policy(untagged(1), untagged(2)),
        "Only one rule can select Untagged images.",
    ),
    ("any rule not last", policy(any_rule(1), rule(2)), ANY_LAST),
    ("any rule in the middle", policy(rule(1), any_rule(5), untagged(9)), ANY_LAST),
    ("two any rules", policy(any_rule(1), any_rule(2)), ANY_LAST),
    (
        "same prefix set twice",
        policy(
            rule(1, selection(tagPrefixList=["prod"])), rule(2, selection(tagPrefixList=["prod"]))
        ),
        'The set of rules must contain a unique set of tag prefixes, but tagPrefixList ["prod"] '
        "is used by more than one rule.",
    ),
    (
        "same prefix set in another order and with repeats",
        policy(
            rule(1, selection(tagPrefixList=["b", "a"])),
            rule(2, selection(tagPrefixList=["a", "b", "a"])),
        ),
        'The set of rules must contain a unique set of tag prefixes, but tagPrefixList ["a","b"] '
        "is used by more than one rule.",
    ),
]


@pytest.mark.parametrize(
    ("text", "detail"), [(t, d) for _, t, d in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_policies_are_rejected(text: str, detail: str) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        parse_lifecycle_policy(text)
    assert caught.value.message == f"{PREFIX}{detail}'"
    assert caught.value.code == "InvalidParameterException"
    assert caught.value.http_status == 400


def test_invalid_case_ids_are_unique() -> None:
    ids = [case_id for case_id, _, _ in INVALID] + [case_id for case_id, _, _ in VALID]
    assert len(ids) == len(set(ids))
