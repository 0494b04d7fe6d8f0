"""Structural validation of repository and registry policies (spec §2.3).

SetRepositoryPolicy and PutRegistryPolicy accept an IAM resource-based policy document.
These checks decide whether the text is one; they do not evaluate it.

A valid document is a JSON object with

* ``Version`` (required): ``"2012-10-17"`` or ``"2008-10-17"``;
* ``Statement`` (required): one statement object or a non-empty list of them;
* ``Id`` (optional): a string.

Each statement has

* ``Effect`` (required): ``"Allow"`` or ``"Deny"``;
* exactly one of ``Principal`` / ``NotPrincipal``: ``"*"`` or a non-empty object whose keys
  are among ``AWS``, ``Service``, ``Federated``, ``CanonicalUser`` and whose values are a
  non-empty string or a non-empty list of non-empty strings;
* exactly one of ``Action`` / ``NotAction``: a string or a non-empty list of strings, each
  ``"*"`` or ``ecr:<Name>`` (prefix case-insensitive; ``<Name>`` letters and digits, with the
  IAM wildcards ``*`` and ``?``). Action names are not checked against a list of ECR
  operations, so ``ecr:*`` and future operations are accepted;
* optionally ``Sid`` (string; duplicates across statements are accepted, as AWS does),
  ``Condition`` (object of condition operators, each an object mapping condition keys to a
  string, number or boolean, or a list of them), and at most one of ``Resource`` /
  ``NotResource`` (a non-empty string or a non-empty list of them; AWS does not require a
  resource in a repository policy, the repository being the resource).

Any other top-level or statement key is an error, as is anything that is not JSON
(including ``NaN``/``Infinity``). Element names and ``Effect`` values are case-sensitive.

Registry policies. AWS has two registry-policy scopes: V1 enforces only
``ecr:ReplicateImage``, ``ecr:BatchImportUpstreamImage`` and ``ecr:CreateRepository``; V2,
now the default, enforces any ``ecr:`` action. V1 restricts what is *enforced*, not what is
*accepted*, and the scope is switched by an operation outside our 41 (PutAccountSetting), so
this registry is always in V2: a registry policy may name any ``ecr:`` action and is checked
exactly like a repository policy; only the error message differs. (moto's restriction to
``ecr:CreateRepository`` / ``ecr:ReplicateImage`` is not copied.)

The reason a document is rejected is not part of AWS's message; it is attached as the
``__cause__`` of the raised error, for logs and tests.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, NoReturn

from openecr.errors import InvalidParameterError

__all__ = ["PolicyDocumentProblem", "validate_registry_policy", "validate_repository_policy"]

_REPOSITORY_POLICY_MESSAGE: Final = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: "
    "'Invalid repository policy provided'"
)
_REGISTRY_POLICY_MESSAGE: Final = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: "
    "'Invalid registry policy provided'"
)

_VERSIONS: Final = frozenset({"2012-10-17", "2008-10-17"})
_EFFECTS: Final = frozenset({"Allow", "Deny"})
_PRINCIPAL_TYPES: Final = frozenset({"AWS", "Service", "Federated", "CanonicalUser"})
_DOCUMENT_KEYS: Final = frozenset({"Version", "Id", "Statement"})
_STATEMENT_KEYS: Final = frozenset(
    {
        "Sid",
        "Effect",
        "Principal",
        "NotPrincipal",
        "Action",
        "NotAction",
        "Resource",
        "NotResource",
        "Condition",
    }
)
_ACTION: Final = re.compile(r"\*|ecr:[A-Za-z0-9*?]+", re.IGNORECASE)


class PolicyDocumentProblem(ValueError):
    """Why a policy document was rejected (the ``__cause__`` of the raised error)."""


def validate_repository_policy(text: str) -> None:
    """Check that ``text`` is a valid repository policy (SetRepositoryPolicy).

    Raises :class:`~openecr.errors.InvalidParameterError` with AWS's message otherwise.
    """
    try:
        _check_document(text)
    except PolicyDocumentProblem as problem:
        raise InvalidParameterError(_REPOSITORY_POLICY_MESSAGE) from problem


def validate_registry_policy(text: str) -> None:
    """Check that ``text`` is a valid registry policy (PutRegistryPolicy).

    Raises :class:`~openecr.errors.InvalidParameterError` with AWS's message otherwise.
    """
    try:
        _check_document(text)
    except PolicyDocumentProblem as problem:
        raise InvalidParameterError(_REGISTRY_POLICY_MESSAGE) from problem


def _problem(reason: str) -> NoReturn:
    raise PolicyDocumentProblem(reason)


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _check_document(text: str) -> None:
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        _problem("not JSON")
    if not isinstance(document, dict):
        _problem("the policy is not a JSON object")
    _check_keys(document, _DOCUMENT_KEYS, "policy")
    if not _is_one_of(document.get("Version"), _VERSIONS):
        _problem("Version must be 2012-10-17 or 2008-10-17")
    if "Id" in document and not isinstance(document["Id"], str):
        _problem("Id must be a string")
    if "Statement" not in document:
        _problem("Statement is missing")
    statements = document["Statement"]
    if isinstance(statements, dict):
        statements = [statements]
    if not isinstance(statements, list) or not statements:
        _problem("Statement must be an object or a non-empty list of objects")
    for statement in statements:
        _check_statement(statement)


def _check_statement(statement: object) -> None:
    if not isinstance(statement, dict):
        _problem("a statement is not an object")
    _check_keys(statement, _STATEMENT_KEYS, "statement")
    if "Sid" in statement and not isinstance(statement["Sid"], str):
        _problem("Sid must be a string")
    if not _is_one_of(statement.get("Effect"), _EFFECTS):
        _problem("Effect must be Allow or Deny")

    principal = _exactly_one(statement, "Principal", "NotPrincipal")
    _check_principal(principal)

    actions = _string_list(_exactly_one(statement, "Action", "NotAction"), "Action")
    for action in actions:
        if _ACTION.fullmatch(action) is None:
            _problem(f"action {action!r} is neither '*' nor an ecr: action")

    if "Resource" in statement and "NotResource" in statement:
        _problem("Resource and NotResource are mutually exclusive")
    for key in ("Resource", "NotResource"):
        if key in statement:
            _string_list(statement[key], key)

    if "Condition" in statement:
        _check_condition(statement["Condition"])


def _check_keys(obj: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(key for key in obj if key not in allowed)
    if unknown:
        _problem(f"unknown {where} element(s) {unknown}")


def _exactly_one(statement: dict[str, Any], key: str, negated: str) -> object:
    if key in statement and negated in statement:
        _problem(f"{key} and {negated} are mutually exclusive")
    if key in statement:
        return statement[key]
    if negated in statement:
        return statement[negated]
    _problem(f"a statement needs {key} or {negated}")


def _check_principal(principal: object) -> None:
    if principal == "*":
        return
    if not isinstance(principal, dict) or not principal:
        _problem("Principal must be '*' or a non-empty object")
    for principal_type, value in principal.items():
        if principal_type not in _PRINCIPAL_TYPES:
            _problem(f"unknown principal type {principal_type!r}")
        _string_list(value, f"Principal {principal_type}")


def _string_list(value: object, what: str) -> list[str]:
    """``value`` as a list of strings: a non-empty string, or a non-empty list of them."""
    values = value if isinstance(value, list) else [value]
    if not values:
        _problem(f"{what} must not be an empty list")
    strings: list[str] = []
    for item in values:
        if not isinstance(item, str) or not item:
            _problem(f"{what} must be a non-empty string or a list of them")
        strings.append(item)
    return strings


def _check_condition(condition: object) -> None:
    if not isinstance(condition, dict):
        _problem("Condition must be an object")
    for operator, clauses in condition.items():
        if not isinstance(clauses, dict):
            _problem(f"condition operator {operator!r} must map to an object")
        for key, expected in clauses.items():
            values = expected if isinstance(expected, list) else [expected]
            if not all(_is_condition_value(item) for item in values):
                _problem(f"condition key {key!r} needs a scalar value or a list of them")


def _is_one_of(value: object, allowed: frozenset[str]) -> bool:
    return isinstance(value, str) and value in allowed


def _is_condition_value(value: object) -> bool:
    return isinstance(value, str | int | float)
