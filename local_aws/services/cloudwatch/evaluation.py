"""How CloudWatch decides a metric alarm's state, as pure functions (no moto, no clock).

An alarm looks at its last ``EvaluationPeriods`` periods. Each period's datapoint is the
alarm's statistic over the samples stamped inside it: ``SampleCount``, ``Sum``, ``Average``,
``Minimum``, ``Maximum``, or an extended statistic ``pNN`` / ``pNN.N`` (nearest-rank
percentile over raw values; a period holding statistic sets has no percentile). A period
without samples is missing. ``TreatMissingData`` turns missing periods into breaching
(``breaching``), not breaching (``notBreaching``) or leaves them out (``missing``, ``ignore``).
Then, with M = ``DatapointsToAlarm`` (default: ``EvaluationPeriods``):

* at least M breaching datapoints: ``ALARM``;
* every period missing: ``INSUFFICIENT_DATA`` for ``missing``, no change for ``ignore``;
* no datapoint within the threshold (fewer than M breaching, the rest missing): no change;
* otherwise ``OK``.

The state reasons and their JSON data are worded as CloudWatch words them.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

OK, ALARM, INSUFFICIENT_DATA = "OK", "ALARM", "INSUFFICIENT_DATA"
STANDARD_STATISTICS = ("SampleCount", "Sum", "Average", "Minimum", "Maximum")
PERCENTILE = re.compile(r"^p(\d{1,2}(\.\d{1,2})?|100)$")
COMPARISONS: dict[str, tuple[Callable[[float, float], bool], str]] = {
    "GreaterThanThreshold": (operator.gt, "greater than"),
    "GreaterThanOrEqualToThreshold": (operator.ge, "greater than or equal to"),
    "LessThanThreshold": (operator.lt, "less than"),
    "LessThanOrEqualToThreshold": (operator.le, "less than or equal to"),
}
MISSING_TREATMENTS = ("missing", "ignore", "breaching", "notBreaching")


@dataclass(frozen=True)
class Sample:
    """One PutMetricData value (``values`` holds it) or statistic set (``values`` None)."""

    timestamp: float  # epoch seconds
    sum: float
    count: float
    minimum: float
    maximum: float
    values: tuple[float, ...] | None = None

    @classmethod
    def of_value(cls, timestamp: float, value: float) -> Sample:
        return cls(timestamp, value, 1.0, value, value, (value,))


def statistic(samples: Sequence[Sample], name: str) -> float | None:
    """``name`` over ``samples``; None when there are none (or no raw values for a percentile)."""
    if not samples:
        return None
    count = sum(s.count for s in samples)
    if name == "SampleCount":
        return count
    if name == "Sum":
        return sum(s.sum for s in samples)
    if name == "Average":
        return sum(s.sum for s in samples) / count if count else None
    if name == "Minimum":
        return min(s.minimum for s in samples)
    if name == "Maximum":
        return max(s.maximum for s in samples)
    found = PERCENTILE.match(name)
    if found is None:
        raise ValueError(f"unsupported statistic {name!r}")
    if any(s.values is None for s in samples):
        return None
    values = sorted(v for s in samples for v in s.values or ())
    rank = max(1, math.ceil(float(found.group(1)) / 100 * len(values)))
    return values[rank - 1]


def supported_statistic(name: str | None) -> bool:
    return bool(name) and (name in STANDARD_STATISTICS or PERCENTILE.match(name or "") is not None)


# -- metric math -------------------------------------------------------------------------------
_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def parse_expression(expression: str) -> ast.Expression:
    """A metric-math expression of the arithmetic we evaluate: ids, numbers, + - * /, unary -,
    parentheses and ``FILL(x, value)``; ValueError for anything else."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as error:
        raise ValueError(f"cannot parse {expression!r}: {error.msg}") from error
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not (isinstance(node.func, ast.Name) and node.func.id == "FILL" and len(node.args) == 2):
                raise ValueError(f"unsupported function in {expression!r}")
        elif (
            not isinstance(
                node,
                ast.Expression | ast.BinOp | ast.UnaryOp | ast.USub | ast.Constant | ast.Name | ast.Load,
            )
            and type(node) not in _OPERATORS
        ):
            raise ValueError(f"unsupported metric math in {expression!r}: {type(node).__name__}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, int | float):
            raise ValueError(f"unsupported constant in {expression!r}")
    return tree


def evaluate_expression(tree: ast.Expression, values: Mapping[str, float | None]) -> float | None:
    """The expression's value for one timestamp; None (no datapoint) when an operand is missing
    or a division is by zero, as metric math drops such points."""

    def value(node: ast.AST) -> float | None:
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in values:
                raise ValueError(f"metric math refers to unknown id {node.id!r}")
            return values[node.id]
        if isinstance(node, ast.UnaryOp):
            inner = value(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.Call):  # FILL(x, value)
            inner = value(node.args[0])
            return value(node.args[1]) if inner is None else inner
        assert isinstance(node, ast.BinOp)
        left, right = value(node.left), value(node.right)
        if left is None or right is None or (isinstance(node.op, ast.Div) and right == 0):
            return None
        return _OPERATORS[type(node.op)](left, right)

    return value(tree.body)


# -- the decision ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Datapoint:
    start: float  # the period's start, epoch seconds
    value: float | None  # None: missing
    sample_count: float = 0.0


@dataclass(frozen=True)
class Rule:
    """What an alarm compares: the parts of PutMetricAlarm the decision needs."""

    comparison: str
    threshold: float
    evaluation_periods: int
    datapoints_to_alarm: int | None
    treat_missing_data: str | None
    statistic_label: str  # "Sum", "p99", or the returned metric-math id
    period: int
    extended: bool = False

    @property
    def needed(self) -> int:
        return self.datapoints_to_alarm or self.evaluation_periods

    @property
    def missing(self) -> str:
        return self.treat_missing_data or "missing"


@dataclass(frozen=True)
class Decision:
    state: str | None  # None: keep the current state (TreatMissingData ignore, nothing seen)
    reason: str = ""
    reason_data: str = ""
    datapoints: list[Datapoint] = field(default_factory=list)


def decide(rule: Rule, datapoints: Sequence[Datapoint], current: str, queried: float) -> Decision:
    """The alarm's state from its datapoints (newest first, ``rule.evaluation_periods`` of them)."""
    compare, words = COMPARISONS[rule.comparison]
    present = [d for d in datapoints if d.value is not None]
    missing = len(datapoints) - len(present)
    breaching = [d for d in present if compare(d.value, rule.threshold)]  # type: ignore[arg-type]
    fine = [d for d in present if not compare(d.value, rule.threshold)]  # type: ignore[arg-type]
    data = _reason_data(rule, datapoints, queried)
    threshold, total = _number(rule.threshold), len(datapoints)
    as_breaching = missing if rule.missing == "breaching" else 0
    as_fine = missing if rule.missing == "notBreaching" else 0
    if len(breaching) + as_breaching >= rule.needed:
        count = len(breaching) + as_breaching
        minimum = f"{rule.needed} {_plural('datapoint', rule.needed)}"
        clause = f"{_verb(count)} {words} the threshold ({threshold})"
        clause += f" (minimum {minimum} for {current} -> ALARM transition)."
        reason = _crossed(count, total, breaching, as_breaching, "Breaching", clause)
        return Decision(ALARM, reason, data, list(datapoints))
    if not present and rule.missing in ("missing", "ignore"):
        if rule.missing == "ignore":
            return Decision(None)
        reason = f"Insufficient Data: {total} {_plural('datapoint', total)} {_verb(total)} unknown."
        return Decision(INSUFFICIENT_DATA, reason, data, list(datapoints))
    if not fine and not as_fine:  # too few breaching to alarm, none to say OK: missing ones don't count
        return Decision(None)
    count = len(fine) + as_fine
    clause = f"{_verb(count)} not {words} the threshold ({threshold})"
    clause += f" (minimum 1 datapoint for {current} -> OK transition)."
    reason = _crossed(count, total, fine, as_fine, "NonBreaching", clause)
    return Decision(OK, reason, data, list(datapoints))


def _crossed(
    count: int, total: int, shown: Sequence[Datapoint], treated: int, treated_as: str, clause: str
) -> str:
    if not shown and treated:
        return (
            f"Threshold Crossed: no datapoints were received for {total} {_plural('period', total)} and "
            f"{treated} missing {_plural('datapoint', treated)} {_verb(treated)} treated as [{treated_as}]."
        )
    points = ", ".join(f"{_number(d.value)} ({_reason_time(d.start)})" for d in shown)  # type: ignore[arg-type]
    return f"Threshold Crossed: {count} out of the last {total} datapoints [{points}] {clause}"


def _reason_data(rule: Rule, datapoints: Sequence[Datapoint], queried: float) -> str:
    present = [d for d in datapoints if d.value is not None]
    starts = [d.start for d in datapoints]
    data: dict[str, object] = {
        "version": "1.0",
        "queryDate": _iso(queried),
        "startDate": _iso(min(starts)) if starts else _iso(queried),
        ("extendedStatistic" if rule.extended else "statistic"): rule.statistic_label,
        "period": rule.period,
        "recentDatapoints": [d.value for d in present],
        "threshold": rule.threshold,
        "evaluatedDatapoints": [
            {"timestamp": _iso(d.start), "sampleCount": d.sample_count, "value": d.value} for d in present
        ],
    }
    return json.dumps(data)


def _number(value: float) -> str:
    return repr(float(value))


def _verb(count: int) -> str:
    return "was" if count == 1 else "were"


def _plural(word: str, count: int) -> str:
    return word if count == 1 else f"{word}s"


def _reason_time(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%d/%m/%y %H:%M:%S")


def _iso(epoch: float) -> str:
    moment = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"
