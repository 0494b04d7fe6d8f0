"""Parse and validate ECR lifecycle policy documents (spec §6.1, §6.2, §6.4).

``parse_lifecycle_policy`` turns the ``lifecyclePolicyText`` of PutLifecyclePolicy /
StartLifecyclePolicyPreview into an immutable :class:`LifecyclePolicy`, or raises
:class:`~openecr.errors.InvalidParameterError` with AWS's message shape::

    Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint:
    'Lifecycle policy validation failure: <detail>'

Detail texts. Where the spec (§6.4) knows the text AWS (or moto) answers with, that exact
text is used. AWS validates the document with a JSON-schema validator, so the remaining
structural failures use that validator's phrasing as well (``instance type (string) does
not match any allowed primitive type (allowed: ["integer"])``, ``array is too long: ...``,
``numeric instance is greater than the required maximum ...``). Cross-rule constraints whose
AWS text is unknown get a plain sentence in the style of the known ones (for example
``Rule priorities must be unique, but rulePriority 3 is used by more than one rule.``).
``countUnit`` given with ``imageCountMoreThan`` or missing with ``sinceImagePushed`` is
answered with the schema's ``instance failed to match exactly one schema (matched 0 out of
2)``, which §6.4 lists as AWS's answer for a countType/countUnit/action combination that is
not allowed.

Decisions where AWS is silent or where the spec leaves a choice:

* Archive extensions (†, spec §6.1). This registry has no archive storage class (none of
  the 41 operations can archive or restore an image), and the evaluation engine answers
  with expirations only. So ``storageClass: "standard"`` -- the explicit form of the
  default -- is accepted and changes nothing, while ``storageClass: "archive"``, the
  ``transition`` action and the ``sinceImagePulled`` / ``sinceImageTransitioned`` count
  types are rejected with a detail that says the archive storage class is unsupported. A
  policy that could never act on anything here is refused rather than stored silently.
  Consequently the "per storage class" constraints are global.
* A tag list counts as *given* when its key is present. ``tagged`` with only an empty list
  fails with the "Must specify tagPrefixList or tagPatternList" text; an empty list on an
  ``untagged``/``any`` rule is still a list where none is allowed. Empty strings inside a
  list are rejected (an empty prefix would silently select every tagged image).
* Uniqueness of "the set of tag prefixes" compares ``tagPrefixList`` values as sets
  (order and repetition ignored) across all rules. Pattern lists are not compared; AWS
  documents the constraint for prefixes only.
* An ``any`` rule selects untagged images too, but it does not count against "only one
  rule can select untagged images": AWS documents and accepts the common
  ``untagged`` + ``any`` pair.
* ``rulePriority`` and ``countNumber`` are JSON integers (booleans and ``1.0`` are not) from
  1 to 2,147,483,647 (AWS models them as Java ints).
* JSON that Python would accept but JSON does not (``NaN``, ``Infinity``) is not JSON.
  Duplicate object keys keep the last value, as AWS's parser does.
* The 100..30,720 character limit of ``lifecyclePolicyText`` belongs to wire validation.
* The parsed rules are returned sorted by ``rulePriority``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal, NoReturn, TypeVar

from openecr.errors import InvalidParameterError

__all__ = [
    "MAX_RULES",
    "MAX_WILDCARDS_PER_PATTERN",
    "ActionType",
    "CountType",
    "CountUnit",
    "LifecyclePolicy",
    "LifecycleRule",
    "RuleAction",
    "TagSelection",
    "TagStatus",
    "parse_lifecycle_policy",
]

TagStatus = Literal["tagged", "untagged", "any"]
CountType = Literal["imageCountMoreThan", "sinceImagePushed"]
CountUnit = Literal["days"]
ActionType = Literal["expire"]

MAX_RULES: Final = 50
MAX_WILDCARDS_PER_PATTERN: Final = 4
_MAX_JAVA_INT: Final = 2**31 - 1

_MESSAGE_PREFIX: Final = (
    "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
    "'Lifecycle policy validation failure: "
)
_NOT_A_POLICY: Final = "Could not map policyString into LifecyclePolicy."
_ONE_OF_MISMATCH: Final = "instance failed to match exactly one schema (matched 0 out of 2)"
_TAGGED_NEEDS_LIST: Final = "Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED."
_ONE_UNTAGGED_RULE: Final = "Only one rule can select Untagged images."
_ANY_RULE_LAST: Final = "Rule for tagStatus=ANY must have the lowest priority per storage class"
_NO_ARCHIVE: Final = "this registry has no archive storage class"

_TAG_STATUSES: Final[tuple[TagStatus, ...]] = ("tagged", "untagged", "any")
_COUNT_TYPES: Final[tuple[CountType, ...]] = ("imageCountMoreThan", "sinceImagePushed")
_ARCHIVE_COUNT_TYPES: Final = ("sinceImagePulled", "sinceImageTransitioned")
_STORAGE_CLASSES: Final = ("standard", "archive")
_COUNT_UNITS: Final[tuple[CountUnit, ...]] = ("days",)
_ACTION_TYPES: Final[tuple[ActionType, ...]] = ("expire",)

_EnumT = TypeVar("_EnumT", bound=str)

_POLICY_KEYS: Final = frozenset({"rules"})
_RULE_REQUIRED: Final = ("action", "rulePriority", "selection")
_RULE_KEYS: Final = frozenset({"rulePriority", "description", "selection", "action"})
_SELECTION_REQUIRED: Final = ("countNumber", "countType", "tagStatus")
_SELECTION_KEYS: Final = frozenset(
    {
        "tagStatus",
        "tagPrefixList",
        "tagPatternList",
        "storageClass",
        "countType",
        "countUnit",
        "countNumber",
    }
)
_ACTION_REQUIRED: Final = ("type",)
_ACTION_KEYS: Final = frozenset({"type", "targetStorageClass"})


@dataclass(frozen=True, slots=True)
class TagSelection:
    """Which images a rule looks at, and which of those it may expire.

    ``tag_prefixes`` / ``tag_patterns`` are empty unless ``tag_status`` is ``"tagged"``, in
    which case exactly one of them is non-empty. ``count_unit`` is ``"days"`` exactly when
    ``count_type`` is ``"sinceImagePushed"``.
    """

    tag_status: TagStatus
    tag_prefixes: tuple[str, ...]
    tag_patterns: tuple[str, ...]
    count_type: CountType
    count_unit: CountUnit | None
    count_number: int


@dataclass(frozen=True, slots=True)
class RuleAction:
    """What a rule does to the images it picks: always ``"expire"`` here."""

    type: ActionType


@dataclass(frozen=True, slots=True)
class LifecycleRule:
    """One rule of a lifecycle policy; a lower ``priority`` is applied first."""

    priority: int
    description: str | None
    selection: TagSelection
    action: RuleAction


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    """A validated lifecycle policy; ``rules`` are sorted by ascending priority."""

    rules: tuple[LifecycleRule, ...]


def parse_lifecycle_policy(text: str) -> LifecyclePolicy:
    """Parse and validate a lifecycle policy document.

    Raises :class:`~openecr.errors.InvalidParameterError` describing the first problem found.
    """
    document = _load_json(text)
    if not isinstance(document, dict):
        _fail(_NOT_A_POLICY)
    _check_keys(document, required=("rules",), allowed=_POLICY_KEYS)
    raw_rules = _expect_array(document["rules"])
    if not raw_rules:
        _fail("array is too short: must have at least 1 elements but instance has 0 elements")
    if len(raw_rules) > MAX_RULES:
        _fail(
            f"array is too long: must have at most {MAX_RULES} elements "
            f"but instance has {len(raw_rules)} elements"
        )
    rules = [_parse_rule(raw) for raw in raw_rules]
    _check_rule_set(rules)
    return LifecyclePolicy(rules=tuple(sorted(rules, key=lambda rule: rule.priority)))


def _parse_rule(raw: object) -> LifecycleRule:
    rule = _expect_object(raw)
    _check_keys(rule, required=_RULE_REQUIRED, allowed=_RULE_KEYS)
    priority = _expect_int(rule["rulePriority"])
    description = None
    if "description" in rule:
        description = _expect_string(rule["description"])
    selection = _parse_selection(rule["selection"])
    action = _parse_action(rule["action"])
    return LifecycleRule(
        priority=priority, description=description, selection=selection, action=action
    )


def _parse_selection(raw: object) -> TagSelection:
    selection = _expect_object(raw)
    _check_keys(selection, required=_SELECTION_REQUIRED, allowed=_SELECTION_KEYS)

    tag_status = _expect_enum(selection["tagStatus"], _TAG_STATUSES)

    if "storageClass" in selection:
        storage_class = _expect_enum(selection["storageClass"], _STORAGE_CLASSES)
        if storage_class != "standard":
            _fail(
                f"Unsupported storageClass ({storage_class}): {_NO_ARCHIVE}, "
                'only "standard" is supported.'
            )

    count_type = _parse_count_type(selection["countType"])
    count_unit: CountUnit | None = None
    if "countUnit" in selection:
        count_unit = _expect_enum(selection["countUnit"], _COUNT_UNITS)
    # The schema is a oneOf of {imageCountMoreThan, no countUnit} and
    # {sinceImagePushed, countUnit "days"}; any other mix matches neither branch.
    if (count_type == "imageCountMoreThan") != (count_unit is None):
        _fail(_ONE_OF_MISMATCH)
    count_number = _expect_int(selection["countNumber"])

    prefixes = _parse_tag_list(selection, "tagPrefixList")
    patterns = _parse_tag_list(selection, "tagPatternList")
    if tag_status == "tagged":
        if prefixes is not None and patterns is not None:
            _fail("Must not specify both tagPrefixList and tagPatternList in the same rule.")
        if not prefixes and not patterns:
            _fail(_TAGGED_NEEDS_LIST)
    else:
        for name, given in (("tagPrefixList", prefixes), ("tagPatternList", patterns)):
            if given is not None:
                _fail(f"Must not specify {name} when tagStatus={tag_status.upper()}.")
    for pattern in patterns or ():
        wildcards = pattern.count("*")
        if wildcards > MAX_WILDCARDS_PER_PATTERN:
            _fail(
                f"Each tagPatternList entry may contain at most {MAX_WILDCARDS_PER_PATTERN} "
                f"wildcards (*), but {json.dumps(pattern)} contains {wildcards}."
            )

    return TagSelection(
        tag_status=tag_status,
        tag_prefixes=prefixes or (),
        tag_patterns=patterns or (),
        count_type=count_type,
        count_unit=count_unit,
        count_number=count_number,
    )


def _parse_count_type(raw: object) -> CountType:
    value = _expect_string(raw)
    if value in _ARCHIVE_COUNT_TYPES:
        _fail(
            f"Unsupported countType ({value}): {_NO_ARCHIVE}, "
            'only "imageCountMoreThan" and "sinceImagePushed" are supported.'
        )
    for count_type in _COUNT_TYPES:
        if value == count_type:
            return count_type
    # An unknown countType matches neither branch of the schema's oneOf (spec §6.4).
    _fail(_ONE_OF_MISMATCH)


def _parse_tag_list(selection: dict[str, Any], key: str) -> tuple[str, ...] | None:
    if key not in selection:
        return None
    entries = tuple(_expect_string(entry) for entry in _expect_array(selection[key]))
    if any(not entry for entry in entries):
        _fail(f"{key} entries must not be empty strings.")
    return entries


def _parse_action(raw: object) -> RuleAction:
    action = _expect_object(raw)
    _check_keys(action, required=_ACTION_REQUIRED, allowed=_ACTION_KEYS)
    action_type = _expect_string(action["type"])
    if action_type == "transition":
        _fail(f'Unsupported action type (transition): {_NO_ARCHIVE}, only "expire" is supported.')
    expire = _expect_enum(action_type, _ACTION_TYPES)
    if "targetStorageClass" in action:
        # Only the transition branch of the action schema allows a target storage class.
        _fail(_ONE_OF_MISMATCH)
    return RuleAction(type=expire)


def _check_rule_set(rules: list[LifecycleRule]) -> None:
    seen_priorities: set[int] = set()
    for rule in rules:
        if rule.priority in seen_priorities:
            _fail(
                f"Rule priorities must be unique, but rulePriority {rule.priority} "
                "is used by more than one rule."
            )
        seen_priorities.add(rule.priority)

    if sum(rule.selection.tag_status == "untagged" for rule in rules) > 1:
        _fail(_ONE_UNTAGGED_RULE)

    highest = max(seen_priorities)
    if any(r.selection.tag_status == "any" and r.priority != highest for r in rules):
        _fail(_ANY_RULE_LAST)

    seen_prefix_sets: set[frozenset[str]] = set()
    for rule in rules:
        if not rule.selection.tag_prefixes:
            continue
        prefix_set = frozenset(rule.selection.tag_prefixes)
        if prefix_set in seen_prefix_sets:
            _fail(
                "The set of rules must contain a unique set of tag prefixes, but tagPrefixList "
                f"{_json_list(sorted(prefix_set))} is used by more than one rule."
            )
        seen_prefix_sets.add(prefix_set)


# --- JSON-schema style checks ------------------------------------------------------------


def _fail(detail: str) -> NoReturn:
    raise InvalidParameterError(f"{_MESSAGE_PREFIX}{detail}'")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _load_json(text: str) -> object:
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        # ValueError covers malformed JSON and integers too long to convert.
        _fail(_NOT_A_POLICY)


def _json_list(items: list[str]) -> str:
    return json.dumps(items, separators=(",", ":"))


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_mismatch(value: object, expected: str) -> NoReturn:
    _fail(
        f"instance type ({_json_type(value)}) does not match any allowed primitive type "
        f'(allowed: ["{expected}"])'
    )


def _check_keys(obj: dict[str, Any], *, required: tuple[str, ...], allowed: frozenset[str]) -> None:
    # Unknown keys first: a misspelt required key then reports the misspelling itself.
    unknown = sorted(key for key in obj if key not in allowed)
    if unknown:
        _fail(
            "object instance has properties which are not allowed by the schema: "
            f"({_json_list(unknown)})"
        )
    missing = sorted(key for key in required if key not in obj)
    if missing:
        _fail(f"object has missing required properties ({_json_list(missing)})")


def _expect_object(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        _type_mismatch(value, "object")
    return value


def _expect_array(value: object) -> list[Any]:
    if not isinstance(value, list):
        _type_mismatch(value, "array")
    return value


def _expect_string(value: object) -> str:
    if not isinstance(value, str):
        _type_mismatch(value, "string")
    return value


def _expect_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _type_mismatch(value, "integer")
    if value < 1:
        _fail(f"numeric instance is lower than the required minimum (minimum: 1, found: {value})")
    if value > _MAX_JAVA_INT:
        _fail(
            "numeric instance is greater than the required maximum "
            f"(maximum: {_MAX_JAVA_INT}, found: {value})"
        )
    return value


def _expect_enum(value: object, allowed: tuple[_EnumT, ...]) -> _EnumT:
    text = _expect_string(value)
    for candidate in allowed:
        if text == candidate:
            return candidate
    _fail(
        f"instance value ({json.dumps(text)}) not found in enum "
        f":(possible values: {_json_list(list(allowed))})"
    )
