"""Names: within SageMaker limits, valid pattern, stable on rerun, unique per run."""

from __future__ import annotations

import random
import string

import pytest

from dog_breed.naming import (
    NAME_MAX_LEN,
    NAME_PATTERN,
    TUNING_JOB_MAX_LEN,
    JobAction,
    ModelNames,
    RunNames,
    attempt_names,
    resolve_job_name,
)

RUN_IDS = [
    "manual__2025-01-06T03:00:00+00:00",
    "scheduled__2025-01-06T03:00:00+00:00",
    "asset_triggered__2025-01-07T10:11:12.123456+00:00",
    "x",
    "a" * 250,
    "weird run id with spaces / slashes & ünïcödé",
]


def _random_ids(count: int = 300) -> list[str]:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "_-:+./ "
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 250))) for _ in range(count)] + RUN_IDS


@pytest.mark.parametrize("dag_id", ["dog_breed_pipeline", "d", "a_very_long_dag_id_" * 10])
def test_run_names_fit_limits_and_pattern_with_room_for_attempts(dag_id):
    for run_id in _random_ids():
        names = RunNames.for_run(dag_id, run_id)
        for name in attempt_names(names.tuning_job, TUNING_JOB_MAX_LEN):
            assert len(name) <= TUNING_JOB_MAX_LEN and NAME_PATTERN.match(name), name
        for name in attempt_names(names.training_job):
            assert len(name) <= NAME_MAX_LEN and NAME_PATTERN.match(name), name
        model = ModelNames.for_training_job(dag_id, names.training_job + "-9", "ml.m5.large")
        for name in (model.model, model.endpoint_config):
            assert len(name) <= NAME_MAX_LEN and NAME_PATTERN.match(name), name


def test_names_are_stable_across_reruns_and_unique_across_runs():
    ids = sorted(set(_random_ids()))
    first = [RunNames.for_run("dog_breed_pipeline", run_id) for run_id in ids]
    again = [RunNames.for_run("dog_breed_pipeline", run_id) for run_id in ids]
    assert first == again
    assert len({n.tuning_job for n in first}) == len(ids)
    assert len({n.training_job for n in first}) == len(ids)


def test_model_names_follow_the_training_job_and_instance_type():
    a = ModelNames.for_training_job("dog_breed_pipeline", "job-a", "ml.m5.large")
    assert a == ModelNames.for_training_job("dog_breed_pipeline", "job-a", "ml.m5.large")
    b = ModelNames.for_training_job("dog_breed_pipeline", "job-b", "ml.m5.large")
    c = ModelNames.for_training_job("dog_breed_pipeline", "job-a", "ml.c5.xlarge")
    assert a.model != b.model and a.endpoint_config != b.endpoint_config
    assert a.model == c.model and a.endpoint_config != c.endpoint_config


def _resolver(statuses: dict[str, str]):
    return lambda name: statuses.get(name)


def test_resolve_job_name_creates_reuses_waits_and_skips_failed():
    assert resolve_job_name("job", _resolver({})) == ("job", JobAction.CREATE)
    assert resolve_job_name("job", _resolver({"job": "Completed"})) == ("job", JobAction.REUSE)
    assert resolve_job_name("job", _resolver({"job": "InProgress"})) == ("job", JobAction.WAIT)
    assert resolve_job_name("job", _resolver({"job": "Stopping"})) == ("job", JobAction.WAIT)
    assert resolve_job_name("job", _resolver({"job": "Failed"})) == ("job-2", JobAction.CREATE)
    assert resolve_job_name(
        "job", _resolver({"job": "Failed", "job-2": "Stopped", "job-3": "Completed"})
    ) == (
        "job-3",
        JobAction.REUSE,
    )


def test_resolve_job_name_gives_up_after_the_last_attempt():
    all_failed = {name: "Failed" for name in attempt_names("job")}
    with pytest.raises(RuntimeError, match="attempts"):
        resolve_job_name("job", _resolver(all_failed))
