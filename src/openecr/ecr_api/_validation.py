"""Strict decoding of ECR API request bodies.

boto3 checks little before sending (required members, types, ``min``), so the server enforces
the model's constraints itself: lengths, value ranges, patterns, enum values and list sizes.
Requests are checked against the shape catalog (``openecr.models.SHAPES``) and then converted
with ``msgspec.convert`` into the operation's request struct.

Errors follow AWS's JSON services:

* the body is not JSON, or a member has the wrong JSON type: ``SerializationError``
  (deserialization happens before validation, so such an error wins over any constraint
  violation in the same body);
* a constraint is violated: ``InvalidParameterError`` naming the first violation in member
  order, as ``Invalid parameter at '<path>' failed to satisfy constraint: '<detail>'`` with
  ``<path>`` the wire path (``imageIds.1.member.imageDigest``).

JSON ``null`` means "absent"; unknown members are ignored. The per-shape checks are closures
compiled once at import, so a request pays no reflection over the catalog.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from typing import Any, Final

import msgspec

from openecr.errors import InvalidParameterError, SerializationError, UnknownOperationError
from openecr.models import OPERATIONS, REQUEST_TYPES, SHAPES, Shape

__all__ = ["decode_request"]

_Check = Callable[[Any], Any]
"""Checks one decoded JSON value; returns it, or its replacement (blob bytes, integral int)."""

_INT32: Final = (-(2**31), 2**31 - 1)
_INT64: Final = (-(2**63), 2**63 - 1)

# Model patterns whose backtracking explodes on short hostile input (ScanningRepositoryFilterValue
# takes seconds on 24 characters), mapped to forms that match exactly the same strings in linear
# time thanks to possessive quantifiers (Python 3.11+). Error messages still quote the model's
# pattern. tests/unit/test_validation.py checks the equivalence exhaustively on short strings.
_LINEAR_EQUIVALENTS: Final[dict[str, str]] = {
    r"^[a-z0-9*](?:[._\-/a-z0-9*]?[a-z0-9*]+)*$": r"^[a-z0-9*](?:[._\-/a-z0-9*]?[a-z0-9*]++)*+$",
}

_NOT_NULL: Final = "Member must not be null"
_TOKENS: Final[dict[type, str]] = {
    str: "STRING_VALUE",
    int: "NUMBER_VALUE",
    float: "NUMBER_VALUE",
    bool: "BOOLEAN_VALUE",
    bytes: "BLOB_VALUE",
    type(None): "NULL_VALUE",
}
_TARGET_NAMES: Final[dict[str, str]] = {
    "string": "String",
    "integer": "Integer",
    "long": "Long",
    "boolean": "Boolean",
    "double": "Double",
    "float": "Float",
    "timestamp": "Timestamp",
    "blob": "Blob",
    "structure": "Structure",
    "list": "List",
    "map": "Map",
}


class _Violation(Exception):
    """A constraint violation; containers add their path parts while it propagates out."""

    __slots__ = ("detail", "parts")

    def __init__(self, detail: str, *parts: str) -> None:
        super().__init__(detail)
        self.detail = detail
        # Innermost first; reversed and joined with "." when reported.
        self.parts: list[str] = list(parts)


def _mismatch(value: Any, target: str) -> SerializationError:
    """The SerializationError for a JSON value of the wrong type."""
    kind = type(value)
    if kind is dict:
        return SerializationError("Start of structure or map found where not expected.")
    if kind is list:
        return SerializationError("Start of list found where not expected.")
    token = _TOKENS.get(kind, "VALUE")
    article = "an" if target[0] in "AEIOU" else "a"
    return SerializationError(f"{token} can not be converted to {article} {target}")


def _length_messages(shape: Shape) -> tuple[int, int, str, str]:
    low = -1 if shape.min is None else shape.min
    high = -1 if shape.max is None else shape.max
    return (
        low,
        high,
        f"Member must have length greater than or equal to {low}",
        f"Member must have length less than or equal to {high}",
    )


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def _regex(pattern: str) -> re.Pattern[str]:
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        compiled = re.compile(_LINEAR_EQUIVALENTS.get(pattern, pattern))
        _REGEX_CACHE[pattern] = compiled
    return compiled


class _Compiler:
    """Turns catalog shapes into check closures, once per shape.

    With ``constraints=False`` the checks only verify JSON types (and decode blobs); the
    decoder runs that variant after a constraint violation, to let a type error elsewhere in
    the body take precedence as it does on AWS.
    """

    def __init__(self, shapes: dict[str, Shape], *, constraints: bool) -> None:
        self._shapes = shapes
        self._constraints = constraints
        self._built: dict[str, _Check] = {}
        self._building: set[str] = set()

    def check(self, name: str) -> _Check:
        built = self._built.get(name)
        if built is not None:
            return built
        if name in self._building:
            # A recursive shape: look the finished check up at call time.
            table = self._built
            return lambda value: table[name](value)
        self._building.add(name)
        shape = self._shapes[name]
        builder: Callable[[Shape], _Check] | None = getattr(self, f"_{shape.type}", None)
        if builder is None:
            raise ValueError(f"shape {name}: unsupported type {shape.type!r}")
        built = builder(shape)
        self._building.discard(name)
        self._built[name] = built
        return built

    # -- scalars ---------------------------------------------------------------------------

    def _string(self, shape: Shape) -> _Check:
        if not self._constraints or (
            shape.min is None and shape.max is None and shape.pattern is None and not shape.enum
        ):
            return _check_plain_string
        low, high, too_short, too_long = _length_messages(shape)
        regex = None if shape.pattern is None else _regex(shape.pattern)
        bad_pattern = f"must satisfy regular expression '{shape.pattern}'"
        allowed = frozenset(shape.enum)
        bad_enum = f"Member must satisfy enum value set: [{', '.join(shape.enum)}]"

        def check_string(value: Any) -> Any:
            if type(value) is not str:
                raise _mismatch(value, "String")
            size = len(value)
            if size < low:
                raise _Violation(too_short)
            if high >= 0 and size > high:
                raise _Violation(too_long)
            if regex is not None and regex.fullmatch(value) is None:
                raise _Violation(bad_pattern)
            if allowed and value not in allowed:
                raise _Violation(bad_enum)
            return value

        return check_string

    def _integer(self, shape: Shape) -> _Check:
        return self._whole_number(shape, "Integer", _INT32)

    def _long(self, shape: Shape) -> _Check:
        return self._whole_number(shape, "Long", _INT64)

    def _whole_number(self, shape: Shape, target: str, limits: tuple[int, int]) -> _Check:
        lowest, highest = limits
        low = lowest if shape.min is None or not self._constraints else shape.min
        high = highest if shape.max is None or not self._constraints else shape.max
        too_small = f"Member must have value greater than or equal to {low}"
        too_large = f"Member must have value less than or equal to {high}"
        article = "an" if target[0] in "AEIOU" else "a"
        overflow = f"NUMBER_VALUE can not be converted to {article} {target}"

        def check_whole_number(value: Any) -> Any:
            if type(value) is not int:
                # JSON numbers such as 5.0 are integral; the struct field wants an int.
                if type(value) is float and value.is_integer():
                    value = int(value)
                else:
                    raise _mismatch(value, target)
            if value < low or value > high:
                if value < lowest or value > highest:
                    raise SerializationError(overflow)
                raise _Violation(too_small if value < low else too_large)
            return value

        return check_whole_number

    def _double(self, shape: Shape) -> _Check:
        return self._real_number(shape, "Double")

    def _float(self, shape: Shape) -> _Check:
        return self._real_number(shape, "Float")

    def _timestamp(self, shape: Shape) -> _Check:
        # Epoch seconds; the JSON protocol always sends numbers.
        return self._real_number(shape, "Timestamp")

    def _real_number(self, shape: Shape, target: str) -> _Check:
        constrained = self._constraints and (shape.min is not None or shape.max is not None)
        low = float("-inf") if shape.min is None else shape.min
        high = float("inf") if shape.max is None else shape.max
        too_small = f"Member must have value greater than or equal to {shape.min}"
        too_large = f"Member must have value less than or equal to {shape.max}"
        lowest, highest = _INT64
        overflow = f"NUMBER_VALUE can not be converted to a {target}"

        def check_real_number(value: Any) -> Any:
            kind = type(value)
            if kind is int:
                if value < lowest or value > highest:
                    raise SerializationError(overflow)
            elif kind is not float:
                raise _mismatch(value, target)
            if constrained:
                if value < low:
                    raise _Violation(too_small)
                if value > high:
                    raise _Violation(too_large)
            return value

        return check_real_number

    def _boolean(self, shape: Shape) -> _Check:
        return _check_boolean

    def _blob(self, shape: Shape) -> _Check:
        if self._constraints:
            low, high, too_short, too_long = _length_messages(shape)
        else:
            low, high, too_short, too_long = -1, -1, "", ""

        def check_blob(value: Any) -> Any:
            kind = type(value)
            if kind is str:
                try:
                    value = binascii.a2b_base64(value, strict_mode=True)
                except (binascii.Error, ValueError) as exc:
                    raise SerializationError(
                        f"Failed to decode STRING_VALUE as base64: {exc}"
                    ) from None
            elif kind is not bytes:  # bytes: decoded by an earlier pass over the same body
                raise _mismatch(value, "Blob")
            size = len(value)
            if size < low:
                raise _Violation(too_short)
            if high >= 0 and size > high:
                raise _Violation(too_long)
            return value

        return check_blob

    # -- containers ------------------------------------------------------------------------

    def _structure(self, shape: Shape) -> _Check:
        required = set(shape.required) if self._constraints else set()
        members = tuple(
            (member.wire, self.check(member.target), member.wire in required)
            for member in shape.members
        )

        def check_structure(value: Any) -> Any:
            if type(value) is not dict:
                raise _mismatch(value, "Structure")
            for wire, check, is_required in members:
                item = value.get(wire)
                if item is None:
                    if is_required:
                        raise _Violation(_NOT_NULL, wire)
                    continue
                try:
                    result = check(item)
                except _Violation as violation:
                    violation.parts.append(wire)
                    raise
                if result is not item:
                    value[wire] = result
            return value

        return check_structure

    def _list(self, shape: Shape) -> _Check:
        assert shape.member is not None
        check_item = self.check(shape.member)
        constraints = self._constraints
        if constraints:
            low, high, too_short, too_long = _length_messages(shape)
        else:
            low, high, too_short, too_long = -1, -1, "", ""

        def check_list(value: Any) -> Any:
            if type(value) is not list:
                raise _mismatch(value, "List")
            size = len(value)
            if size < low:
                raise _Violation(too_short)
            if high >= 0 and size > high:
                raise _Violation(too_long)
            for index, item in enumerate(value):
                if item is None:
                    if constraints:
                        raise _Violation(_NOT_NULL, "member", str(index + 1))
                    continue
                try:
                    result = check_item(item)
                except _Violation as violation:
                    violation.parts += ("member", str(index + 1))
                    raise
                if result is not item:
                    value[index] = result
            return value

        return check_list

    def _map(self, shape: Shape) -> _Check:
        assert shape.key is not None and shape.value is not None
        check_key = self.check(shape.key)
        check_value = self.check(shape.value)
        constraints = self._constraints
        if constraints:
            low, high, too_short, too_long = _length_messages(shape)
        else:
            low, high, too_short, too_long = -1, -1, "", ""

        def check_map(value: Any) -> Any:
            if type(value) is not dict:
                raise _mismatch(value, "Map")
            size = len(value)
            if size < low:
                raise _Violation(too_short)
            if high >= 0 and size > high:
                raise _Violation(too_long)
            for key, item in value.items():
                try:
                    check_key(key)
                    if item is None:
                        if constraints:
                            raise _Violation(_NOT_NULL)
                        continue
                    result = check_value(item)
                except _Violation as violation:
                    violation.parts.append(key)
                    raise
                if result is not item:
                    value[key] = result  # replacing a value while iterating is allowed
            return value

        return check_map


def _check_plain_string(value: Any) -> Any:
    if type(value) is not str:
        raise _mismatch(value, "String")
    return value


def _check_boolean(value: Any) -> Any:
    if value is True or value is False:
        return value
    raise _mismatch(value, "Boolean")


def _compile_decoders() -> dict[str, tuple[_Check, _Check, type[msgspec.Struct]]]:
    strict = _Compiler(SHAPES, constraints=True)
    types_only = _Compiler(SHAPES, constraints=False)
    return {
        name: (strict.check(op.input), types_only.check(op.input), REQUEST_TYPES[name])
        for name, op in OPERATIONS.items()
    }


_DECODERS: Final = _compile_decoders()
_json_decode: Final = msgspec.json.Decoder().decode


def decode_request(operation: str, body: bytes) -> msgspec.Struct:
    """Parse and validate the JSON body of an ECR request; return the request struct.

    ``operation`` is the operation name (``"CreateRepository"``); the result is an instance
    of ``openecr.models.REQUEST_TYPES[operation]``. An empty body counts as ``{}``.

    Raises ``SerializationError`` for malformed JSON or a value of the wrong JSON type,
    ``InvalidParameterError`` for the first constraint violation in member order, and
    ``UnknownOperationError`` for a name that is not one of the 41 operations.
    """
    decoder = _DECODERS.get(operation)
    if decoder is None:
        raise UnknownOperationError(f"Unknown operation: {operation}")
    check, check_types, struct_type = decoder
    if not body:
        data: Any = {}
    else:
        try:
            data = _json_decode(body)
        except (msgspec.DecodeError, RecursionError) as exc:
            raise SerializationError(f"Malformed request body: {exc}") from None
    try:
        check(data)
    except _Violation as violation:
        check_types(data)  # a type error anywhere in the body wins, as on AWS
        path = ".".join(reversed(violation.parts))
        raise InvalidParameterError(
            f"Invalid parameter at '{path}' failed to satisfy constraint: '{violation.detail}'"
        ) from None
    try:
        return msgspec.convert(data, struct_type)
    except msgspec.ValidationError as exc:  # not expected after the checks above
        raise SerializationError(str(exc)) from None
