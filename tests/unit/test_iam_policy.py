"""Repository and registry policy validation (spec §2.3)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from openecr.errors import InvalidParameterError
from openecr.services.iam_policy import (
    PolicyDocumentProblem,
    validate_registry_policy,
    validate_repository_policy,
)

REPOSITORY_MESSAGE = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: "
    "'Invalid repository policy provided'"
)
REGISTRY_MESSAGE = (
    "Invalid parameter at 'PolicyText' failed to satisfy constraint: "
    "'Invalid registry policy provided'"
)

VALIDATORS: list[tuple[Callable[[str], None], str]] = [
    (validate_repository_policy, REPOSITORY_MESSAGE),
    (validate_registry_policy, REGISTRY_MESSAGE),
]
VALIDATOR_IDS = ["repository", "registry"]

# A field value meaning "leave this key out".
DROP: Any = object()


def statement(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Sid": "AllowPull",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
        "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not DROP}


def document(*statements: Any, **fields: Any) -> str:
    base: dict[str, Any] = {"Version": "2012-10-17", "Statement": list(statements or [statement()])}
    base.update(fields)
    return json.dumps({key: value for key, value in base.items() if value is not DROP})


VALID: list[tuple[str, str]] = [
    ("aws pull example", document()),
    ("version 2008-10-17", document(Version="2008-10-17")),
    ("single statement object", document(Statement=statement())),
    ("policy id", document(Id="my-policy")),
    ("everyone", document(statement(Principal="*"))),
    ("aws principal star", document(statement(Principal={"AWS": "*"}))),
    (
        "aws principal list",
        document(statement(Principal={"AWS": ["arn:aws:iam::1:root", "222222222222"]})),
    ),
    ("service principal", document(statement(Principal={"Service": "codebuild.amazonaws.com"}))),
    ("federated principal", document(statement(Principal={"Federated": "cognito-identity.com"}))),
    ("canonical user principal", document(statement(Principal={"CanonicalUser": "79a59df9"}))),
    (
        "several principal types",
        document(statement(Principal={"AWS": "111111111111", "Service": ["a.amazonaws.com"]})),
    ),
    (
        "not principal",
        document(statement(Effect="Deny", Principal=DROP, NotPrincipal={"AWS": "111111111111"})),
    ),
    ("deny", document(statement(Effect="Deny"))),
    ("action star", document(statement(Action="*"))),
    ("ecr star", document(statement(Action="ecr:*"))),
    ("single action string", document(statement(Action="ecr:BatchGetImage"))),
    ("ecr prefix is case-insensitive", document(statement(Action=["ECR:BatchGetImage", "Ecr:x"]))),
    ("action wildcards", document(statement(Action=["ecr:Batch*", "ecr:Get?ownload*"]))),
    ("unknown ecr action names are not checked", document(statement(Action="ecr:FutureThing"))),
    ("not action", document(statement(Action=DROP, NotAction="ecr:DeleteRepository"))),
    ("resource string", document(statement(Resource="*"))),
    (
        "resource list",
        document(statement(Resource=["arn:aws:ecr:us-east-1:111111111111:repository/*"])),
    ),
    ("not resource", document(statement(NotResource="arn:aws:ecr:*:*:repository/secret"))),
    (
        "conditions",
        document(
            statement(
                Condition={
                    "StringEquals": {"aws:PrincipalOrgID": ["o-abc", "o-def"]},
                    "Bool": {"aws:SecureTransport": True},
                    "NumericLessThan": {"s3:max-keys": 10},
                    "DateGreaterThan": {"aws:CurrentTime": "2026-01-01T00:00:00Z"},
                }
            )
        ),
    ),
    ("empty condition block", document(statement(Condition={}))),
    ("no sid", document(statement(Sid=DROP))),
    ("duplicate sids", document(statement(), statement())),
    (
        "aws replication registry policy example",
        document(
            statement(
                Sid="ReplicationAccessCrossAccount",
                Principal={"AWS": "arn:aws:iam::111111111111:root"},
                Action=["ecr:CreateRepository", "ecr:ReplicateImage"],
                Resource=["arn:aws:ecr:us-west-2:222222222222:repository/*"],
            )
        ),
    ),
    (
        "scope V2: any ecr action in any policy",
        document(statement(Action=["ecr:BatchImportUpstreamImage", "ecr:PutImage"])),
    ),
    ("whitespace around the document", "\n  " + document() + "\n"),
]


@pytest.mark.parametrize("validate", [v for v, _ in VALIDATORS], ids=VALIDATOR_IDS)
@pytest.mark.parametrize("text", [t for _, t in VALID], ids=[i for i, _ in VALID])
def test_valid_policies_pass(validate: Callable[[str], None], text: str) -> None:
    validate(text)


# (id, text, a fragment of the internal reason, to prove the intended check fired)
INVALID: list[tuple[str, str, str]] = [
    ("not json", "{Version: 1}", "not JSON"),
    ("empty", "", "not JSON"),
    ("NaN", '{"Version": NaN}', "not JSON"),
    ("array", "[]", "not a JSON object"),
    ("string", '"policy"', "not a JSON object"),
    ("null", "null", "not a JSON object"),
    ("unknown top-level key", document(Foo=1), "unknown policy element"),
    ("lower-case element name", document(Version=DROP, version="2012-10-17"), "unknown policy"),
    ("missing version", document(Version=DROP), "Version"),
    ("unknown version", document(Version="2012-10-18"), "Version"),
    ("version as number", document(Version=2012), "Version"),
    ("version as list", document(Version=["2012-10-17"]), "Version"),
    ("id not a string", document(Id=5), "Id"),
    ("missing statement", document(Statement=DROP), "Statement is missing"),
    ("empty statement list", document(Statement=[]), "Statement must be"),
    ("statement string", document(Statement="allow"), "Statement must be"),
    ("statement null", document(Statement=None), "Statement must be"),
    ("statement entry not an object", document(Statement=[statement(), 1]), "not an object"),
    ("unknown statement key", document(statement(Principals="*")), "unknown statement element"),
    ("sid not a string", document(statement(Sid=1)), "Sid"),
    ("missing effect", document(statement(Effect=DROP)), "Effect"),
    ("lower-case effect", document(statement(Effect="allow")), "Effect"),
    ("effect list", document(statement(Effect=["Allow"])), "Effect"),
    ("missing principal", document(statement(Principal=DROP)), "needs Principal or NotPrincipal"),
    (
        "principal and not principal",
        document(statement(NotPrincipal={"AWS": "1"})),
        "mutually exclusive",
    ),
    ("principal arn string", document(statement(Principal="arn:aws:iam::1:root")), "Principal"),
    ("principal empty object", document(statement(Principal={})), "Principal"),
    ("principal null", document(statement(Principal=None)), "Principal"),
    ("unknown principal type", document(statement(Principal={"User": "bob"})), "principal type"),
    ("principal empty list", document(statement(Principal={"AWS": []})), "empty list"),
    ("principal number", document(statement(Principal={"AWS": [123456789012]})), "Principal AWS"),
    ("principal empty string", document(statement(Principal={"AWS": ""})), "Principal AWS"),
    ("principal object value", document(statement(Principal={"AWS": {"a": "b"}})), "Principal"),
    ("missing action", document(statement(Action=DROP)), "needs Action or NotAction"),
    (
        "action and not action",
        document(statement(NotAction="ecr:PutImage")),
        "mutually exclusive",
    ),
    ("empty action list", document(statement(Action=[])), "empty list"),
    ("action number", document(statement(Action=5)), "Action"),
    ("action list with number", document(statement(Action=["ecr:PutImage", 5])), "Action"),
    ("other service action", document(statement(Action="s3:GetObject")), "ecr: action"),
    ("iam star", document(statement(Action="iam:*")), "ecr: action"),
    ("star colon star", document(statement(Action="*:*")), "ecr: action"),
    ("ecr without a name", document(statement(Action="ecr:")), "ecr: action"),
    ("ecr without a colon", document(statement(Action="ecrPutImage")), "ecr: action"),
    ("space in action name", document(statement(Action="ecr:Put Image")), "ecr: action"),
    ("empty resource list", document(statement(Resource=[])), "empty list"),
    ("resource number", document(statement(Resource=5)), "Resource"),
    (
        "resource and not resource",
        document(statement(Resource="*", NotResource="*")),
        "mutually exclusive",
    ),
    ("condition string", document(statement(Condition="x")), "Condition"),
    ("condition operator string", document(statement(Condition={"StringEquals": "x"})), "operator"),
    (
        "condition value object",
        document(statement(Condition={"StringEquals": {"k": {"a": "b"}}})),
        "condition key",
    ),
    (
        "condition value null",
        document(statement(Condition={"StringEquals": {"k": None}})),
        "condition key",
    ),
    ("deep nesting", "[" * 100_000 + "]" * 100_000, "not JSON"),
]


@pytest.mark.parametrize(("validate", "message"), VALIDATORS, ids=VALIDATOR_IDS)
@pytest.mark.parametrize(
    ("text", "reason"), [(t, r) for _, t, r in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_policies_are_rejected(
    validate: Callable[[str], None], message: str, text: str, reason: str
) -> None:
    with pytest.raises(InvalidParameterError) as caught:
        validate(text)
    assert caught.value.message == message
    assert caught.value.code == "InvalidParameterException"
    assert isinstance(caught.value.__cause__, PolicyDocumentProblem)
    assert reason in str(caught.value.__cause__)


def test_case_ids_are_unique() -> None:
    ids = [i for i, _ in VALID] + [i for i, _, _ in INVALID]
    assert len(ids) == len(set(ids))
