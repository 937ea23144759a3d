"""Champion/challenger gate: a pure decision and tag round trips (the task: test_operators_registry)."""

from __future__ import annotations

import pytest

from dog_breed import gate


@pytest.mark.parametrize(
    ("challenger", "threshold", "champion", "deploy"),
    [
        (0.80, 0.70, None, True),
        (0.60, 0.70, None, False),
        (0.80, 0.70, 0.85, False),
        (0.85, 0.70, 0.85, True),  # equal: a rerun after its own deploy passes
        (0.90, 0.70, 0.85, True),
        (0.70, 0.70, 0.10, True),
    ],
)
def test_decide(challenger, threshold, champion, deploy):
    decision = gate.decide(challenger, threshold, champion)
    assert decision.deploy is deploy
    assert f"{challenger:.4f}" in decision.reason


@pytest.mark.parametrize(
    ("challenger", "champion", "tolerance", "deploy"),
    [
        (0.82, 0.85, 0.05, True),  # within the tolerance
        (0.79, 0.85, 0.05, False),  # beyond it
        (0.82, 0.85, 0.0, False),  # no tolerance: strictly not worse
    ],
)
def test_decide_with_tolerance_for_the_champion(challenger, champion, tolerance, deploy):
    decision = gate.decide(challenger, 0.5, champion, tolerance=tolerance)
    assert decision.deploy is deploy
    if not deploy:
        assert f"{champion:.4f}" in decision.reason


def test_final_metric_reads_test_accuracy_or_says_what_is_missing():
    job = {"TrainingJobName": "j", "FinalMetricDataList": [{"MetricName": "test:accuracy", "Value": 0.5}]}
    assert gate.final_metric(job) == 0.5
    with pytest.raises(ValueError, match="test:accuracy"):
        gate.final_metric({"TrainingJobName": "j", "FinalMetricDataList": []})


def test_champion_accuracy_from_tags():
    tags = gate.champion_tags(
        test_accuracy=0.8123456, model_name="m", training_job="t", dag_run="r", model_package_arn="arn"
    )
    assert gate.champion_accuracy(tags) == pytest.approx(0.812346)
    assert tags[gate.TAG_MODEL_PACKAGE_ARN] == "arn" and gate.TAG_MODEL_PACKAGE_ARN in gate.CHAMPION_TAG_KEYS
    assert gate.champion_accuracy({}) is None
    assert gate.champion_accuracy({gate.TAG_TEST_ACCURACY: "n/a"}) is None
