"""A request against its operation's input shape, in AWS's words.

Every constraint the model states is checked before a handler runs: required members,
types, string and list/map lengths, numeric ranges, patterns and enums. Violations read as
AWS's front end writes them, paths in lowerCamelCase with dots (list elements as
``name.1.member``)::

    1 validation error detected: Value '0' at 'timeout' failed to satisfy constraint:
    Member must have value greater than or equal to 1
    2 validation errors detected: Value null at 'roleArn' failed to satisfy constraint:
    Member must not be null; Value 'x_y' at 'trainingJobName' failed to satisfy constraint: ...

Services keep only the rules the model cannot express, and word them with
:func:`constraint_error` where AWS uses this same format.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from botocore.model import Shape

from local_aws.protocol import patterns
from local_aws.protocol.errors import AwsError


class _Missing:
    def __repr__(self) -> str:
        return "null"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class Violation:
    path: str  # lowerCamelCase, dotted: 'productionVariants.1.member.variantName'
    value: Any  # MISSING when absent
    constraint: str  # 'Member must not be null'

    def __str__(self) -> str:
        shown = "null" if self.value is MISSING else f"'{render(self.value)}'"
        return f"Value {shown} at '{self.path}' failed to satisfy constraint: {self.constraint}"


def validation_message(violations: list[Violation]) -> str:
    count = len(violations)
    noun = "error" if count == 1 else "errors"
    return f"{count} validation {noun} detected: " + "; ".join(map(str, violations))


def require_valid(shape: Shape | None, params: dict[str, Any], code: str = "ValidationException") -> None:
    """Raise the API's validation error if ``params`` violate ``shape``."""
    violations = validate(shape, params)
    if violations:
        raise AwsError(code, validation_message(violations))


def constraint_error(value: Any, path: str, constraint: str, code: str = "ValidationException") -> AwsError:
    """One violation of a rule the service checks itself, worded as the model's are."""
    return AwsError(code, validation_message([Violation(path, value, constraint)]))


def validate(shape: Shape | None, params: dict[str, Any]) -> list[Violation]:
    """Every violation of ``shape`` by ``params`` (the parsed request), in member order."""
    if shape is None:
        return []
    return list(_check(shape, params, ""))


def render(value: Any) -> str:
    """A value the way AWS's (Java) front end prints it in a message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return f"java.nio.HeapByteBuffer[pos=0 lim={len(value)} cap={len(value)}]"
    if isinstance(value, list):
        return "[" + ", ".join(render(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}={render(item)}" for key, item in value.items()) + "}"
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return str(value)


def _member_path(parent: str, name: str) -> str:
    camel = name[:1].lower() + name[1:]
    return f"{parent}.{camel}" if parent else camel


# The Python types each model type accepts, and how AWS would name the expectation.
_TYPES: dict[str, tuple[tuple[type, ...], str]] = {
    "structure": ((dict,), "a structure"),
    "list": ((list,), "a list"),
    "map": ((dict,), "a map"),
    "string": ((str,), "a string"),
    "integer": ((int,), "an integer"),
    "long": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "double": ((int, float), "a number"),
    "boolean": ((bool,), "a boolean"),
    "timestamp": ((dt.datetime,), "a timestamp"),
    "blob": ((bytes,), "binary data"),
}


def _check(shape: Shape, value: Any, path: str) -> Iterator[Violation]:
    if shape.metadata.get("document"):
        return  # free-form JSON
    accepted, expectation = _TYPES.get(shape.type_name, ((object,), "a value"))
    numeric = shape.type_name in ("integer", "long", "float", "double")
    if not isinstance(value, accepted) or (isinstance(value, bool) and shape.type_name != "boolean"):
        yield Violation(path, value, f"Member must be {expectation}")
        return
    if shape.type_name == "structure":
        yield from _check_structure(shape, value, path)
    elif shape.type_name in ("list", "map", "string", "blob"):
        yield from _check_length(shape, value, path)
        if shape.type_name == "list":
            for index, item in enumerate(value, start=1):
                yield from _check(shape.member, item, f"{path}.{index}.member")
        elif shape.type_name == "map":
            yield from _check_map(shape, value, path)
        elif shape.type_name == "string":
            yield from _check_string(shape, value, path)
    elif numeric:
        yield from _check_range(shape, value, path)


def _check_structure(shape: Any, value: dict[str, Any], path: str) -> Iterator[Violation]:
    required = set(shape.required_members)
    for name, member in shape.members.items():
        item = value.get(name)
        member_path = _member_path(path, name)
        if item is None:
            if name in required:
                yield Violation(member_path, MISSING, "Member must not be null")
            continue
        yield from _check(member, item, member_path)


def _check_length(shape: Shape, value: Any, path: str) -> Iterator[Violation]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and len(value) < low:
        yield Violation(path, value, f"Member must have length greater than or equal to {low}")
    if high is not None and len(value) > high:
        yield Violation(path, value, f"Member must have length less than or equal to {high}")


def _check_string(shape: Shape, value: str, path: str) -> Iterator[Violation]:
    pattern = shape.metadata.get("pattern")
    if pattern is not None and not patterns.matches(pattern, value):
        yield Violation(path, value, f"Member must satisfy regular expression pattern: {pattern}")
    allowed = shape.metadata.get("enum")
    if allowed and value not in allowed:
        yield Violation(path, value, f"Member must satisfy enum value set: [{', '.join(allowed)}]")


def _check_range(shape: Shape, value: float, path: str) -> Iterator[Violation]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and value < low:
        yield Violation(path, value, f"Member must have value greater than or equal to {_number(low)}")
    if high is not None and value > high:
        yield Violation(path, value, f"Member must have value less than or equal to {_number(high)}")


def _check_map(shape: Any, value: dict[Any, Any], path: str) -> Iterator[Violation]:
    # AWS sums up a map's entries: "Map keys must satisfy constraint: [...]".
    key_problems: dict[str, None] = {}  # ordered sets
    value_problems: dict[str, None] = {}
    for key, item in value.items():
        key_problems.update(dict.fromkeys(v.constraint for v in _check(shape.key, key, path)))
        if shape.value.type_name in ("structure", "list", "map"):
            yield from _check(shape.value, item, f"{path}.{key}")
        else:
            value_problems.update(dict.fromkeys(v.constraint for v in _check(shape.value, item, path)))
    if key_problems:
        yield Violation(path, value, f"Map keys must satisfy constraint: [{', '.join(key_problems)}]")
    if value_problems:
        yield Violation(path, value, f"Map value must satisfy constraint: [{', '.join(value_problems)}]")


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)
