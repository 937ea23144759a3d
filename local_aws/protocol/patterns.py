"""The models' ``pattern`` constraints are Java regular expressions; match them in Python.

Python's ``re`` lacks Unicode classes (``\\p{L}``, ``\\p{Print}``, ``\\p{ASCII}``...), which the
SageMaker and Lambda models use; the ``regex`` module (already installed with moto) has them.
Two constructs it lacks too are translated: ``\\z`` (end of input, ``\\Z`` in Python) and the
UTF-16 surrogate range Java writes for "any supplementary character". A pattern that still
does not compile is skipped with a warning, never a crash: its other constraints still apply.
AWS matches the whole value (Java's ``matches``), so does :func:`matches`.
"""

from __future__ import annotations

import functools
import logging

import regex

log = logging.getLogger("local_aws.protocol")

_JAVA_TO_PYTHON = (
    (r"\uD800\uDC00-\uDBFF\uDFFF", r"\U00010000-\U0010FFFF"),
    (r"\z", r"\Z"),
)


def translate(pattern: str) -> str:
    for java, python in _JAVA_TO_PYTHON:
        pattern = pattern.replace(java, python)
    return pattern


@functools.cache
def compiled(pattern: str) -> regex.Pattern[str] | None:
    try:
        return regex.compile(translate(pattern))
    except regex.error as error:
        log.warning("not checking the model pattern %r: Python cannot compile it (%s)", pattern, error)
        return None


def matches(pattern: str, value: str) -> bool:
    """Does ``value`` as a whole satisfy the model's ``pattern``? (True when it cannot be checked.)"""
    expression = compiled(pattern)
    return expression is None or expression.fullmatch(value) is not None
