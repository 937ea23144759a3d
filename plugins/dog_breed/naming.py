"""Rerun-stable SageMaker names inside AWS limits.

A name is ``<prefix>-<kind>-<hash>``: the hash comes from the run (or from the
resource it derives from), so a retried or cleared task computes the same name
and finds its own resource, while two runs never collide. When a job under that
name failed, ``attempt_names`` yields ``<name>-2``, ``<name>-3``... in a fixed
order, so the resumable operators walk the same chain on every retry.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

TUNING_JOB_MAX_LEN = 32
NAME_MAX_LEN = 63
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
MAX_ATTEMPTS = 9
_ATTEMPT_SUFFIX_LEN = len(f"-{MAX_ATTEMPTS}")
_HASH_LEN = 8


def stable_hash(text: str, length: int = _HASH_LEN) -> str:
    """Short, deterministic hex digest (not for security, for uniqueness)."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def sanitize(text: str) -> str:
    """Letters, digits and single dashes, no dash at either end."""
    cleaned = re.sub(r"[^a-zA-Z0-9]+", "-", text).strip("-")
    return cleaned or "x"


def build_name(prefix: str, kind: str, key: str, max_len: int = NAME_MAX_LEN) -> str:
    """``<prefix>-<kind>-<hash(key)>`` within ``max_len`` minus room for an attempt suffix."""
    tail = f"-{sanitize(kind)}-{stable_hash(key)}"
    room = max_len - _ATTEMPT_SUFFIX_LEN - len(tail)
    if room < 1:
        raise ValueError(f"kind {kind!r} leaves no room for a prefix within {max_len} characters")
    head = sanitize(prefix)[:room].rstrip("-") or "x"
    return f"{head}{tail}"


def attempt_names(base: str, max_len: int = NAME_MAX_LEN) -> Iterator[str]:
    """``base``, then ``base-2`` .. ``base-9``: where a retry looks when earlier jobs failed."""
    if len(base) + _ATTEMPT_SUFFIX_LEN > max_len:
        raise ValueError(f"{base!r} leaves no room for an attempt suffix within {max_len}")
    yield base
    for attempt in range(2, MAX_ATTEMPTS + 1):
        yield f"{base}-{attempt}"


@dataclass(frozen=True)
class RunNames:
    """Names of one DAG run's SageMaker jobs."""

    tuning_job: str
    training_job: str

    @classmethod
    def for_run(cls, dag_id: str, run_id: str) -> RunNames:
        key = f"{dag_id}/{run_id}"
        return cls(
            tuning_job=build_name("dogbreed", "hpo", key, TUNING_JOB_MAX_LEN),
            training_job=build_name(dag_id, "train", key),
        )


@dataclass(frozen=True)
class ModelNames:
    """Names of what is deployed from one training job (content-addressed by the job)."""

    model: str
    endpoint_config: str

    @classmethod
    def for_training_job(cls, dag_id: str, training_job_name: str, endpoint_instance_type: str) -> ModelNames:
        return cls(
            model=build_name(dag_id, "model", training_job_name),
            endpoint_config=build_name(dag_id, "epc", f"{training_job_name}/{endpoint_instance_type}"),
        )


def scaling_policy_name(endpoint_name: str, variant_name: str) -> str:
    return f"{endpoint_name}-{variant_name}-invocations-target"


def rollback_alarm_prefix(endpoint_name: str) -> str:
    """Every rollback alarm of an endpoint starts so (endpoint names have no "/", so no other
    endpoint's alarms do): the IAM policy scopes the worker's CloudWatch alarm calls to it."""
    return f"{endpoint_name}/rollback/"


def rollback_alarm_name(endpoint_name: str, variant_name: str, kind: str) -> str:
    """``<endpoint>/rollback/<variant>/<kind>``: one alarm per endpoint, variant and kind, so a
    rerun puts (PutMetricAlarm is an upsert) the same alarm again."""
    return f"{rollback_alarm_prefix(endpoint_name)}{variant_name}/{kind}"


def lambda_role_name(function_name: str) -> str:
    """IAM role names allow 64 characters."""
    return f"{function_name}-lambda-role"[:64]


class JobAction:
    CREATE = "create"
    REUSE = "reuse"
    WAIT = "wait"


RUNNING_STATES = frozenset({"InProgress", "Stopping"})
DONE_STATES = frozenset({"Completed"})


def resolve_job_name(base: str, status_of, max_len: int = NAME_MAX_LEN) -> tuple[str, str]:
    """Where a (re)run of a job task should go, walking ``attempt_names(base)``.

    ``status_of(name)`` returns the job's status or None when no such job exists.
    A Completed job is reused, a running one is waited for, a Failed or Stopped one
    is passed over for the next name, and the first free name is created.
    """
    for name in attempt_names(base, max_len):
        status = status_of(name)
        if status is None:
            return name, JobAction.CREATE
        if status in DONE_STATES:
            return name, JobAction.REUSE
        if status in RUNNING_STATES:
            return name, JobAction.WAIT
    raise RuntimeError(f"{base}: all {MAX_ATTEMPTS} attempts failed or were stopped; not starting another")
