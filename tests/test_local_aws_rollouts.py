"""Blue/green UpdateEndpoint in local_aws: SageMaker's deployment guardrails.

The traffic plan and the split are pure; then through boto3, against a server at time scale 60
and the torch-free model: a linear rollout is seen step by step in DescribeEndpoint, a model
whose serving is broken is rolled back by its 5XX alarm, RetainDeploymentConfig reuses the last
config, and UpdateEndpoint refuses what SageMaker refuses. (The canary of the real model under
a request loop, with its figures, is tests/test_canary.py.)
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from local_aws_hosting_support import (
    BUCKET,
    MINUTE,
    SCALE,
    client,
    deploy,
    error_of,
    invoke,
    make_config,
    wait_for_state,
    wait_for_status,
)

from local_aws.infra.clock import Clock
from local_aws.protocol.errors import AwsError
from local_aws.protocol.server import LocalAwsServer
from local_aws.services import only
from local_aws.services.sagemaker.hosting.rollouts import TrafficSplit, plan_blue_green
from local_aws.services.sagemaker_runtime.service import FLEET_HEADER


def policy(
    kind: str, wait: int = 120, termination: int = 60, timeout: int | None = 1800, **routing: Any
) -> dict:
    blue_green: dict[str, Any] = {
        "TrafficRoutingConfiguration": {"Type": kind, "WaitIntervalInSeconds": wait, **routing},
        "TerminationWaitInSeconds": termination,
    }
    if timeout is not None:
        blue_green["MaximumExecutionTimeoutInSeconds"] = timeout
    return blue_green


def percent(value: int) -> dict[str, Any]:
    return {"Type": "CAPACITY_PERCENT", "Value": value}


# -- the plan, pure --------------------------------------------------------------------------
def test_a_canary_takes_its_capacity_share_then_everything_then_bakes_before_termination():
    plan = plan_blue_green(policy("CANARY", CanarySize=percent(25)), 4)
    assert [(p.share, p.active, p.seconds) for p in plan.phases] == [(0.25, 1, 120), (1.0, 4, 60)]
    two = plan_blue_green(policy("CANARY", CanarySize=percent(10)), 2)  # rounds down, at least one
    assert two.phases[0].share == 0.5
    by_count = plan_blue_green(policy("CANARY", CanarySize={"Type": "INSTANCE_COUNT", "Value": 2}), 5)
    assert by_count.phases[0].share == 0.4


def test_linear_steps_and_all_at_once():
    linear = plan_blue_green(policy("LINEAR", LinearStepSize=percent(25)), 4)
    assert [p.share for p in linear.phases] == [0.25, 0.5, 0.75, 1.0]
    assert [p.seconds for p in linear.phases] == [120, 120, 120, 60]
    at_once = plan_blue_green(policy("ALL_AT_ONCE"), 1)
    assert [(p.share, p.seconds) for p in at_once.phases] == [(1.0, 120), (1.0, 60)]


@pytest.mark.parametrize(
    ("blue_green", "instances", "message"),
    [
        (policy("CANARY", CanarySize=percent(50)), 1, "at most 50% of the variant's total instance count"),
        (policy("CANARY", CanarySize=percent(60)), 10, "at most 50%"),
        (policy("CANARY", CanarySize={"Type": "INSTANCE_COUNT", "Value": 3}), 4, "at most 50%"),
        (policy("LINEAR", LinearStepSize=percent(5)), 10, "10-50%"),
        (policy("CANARY"), 2, "CANARY traffic routing takes CanarySize"),
        (policy("ALL_AT_ONCE", CanarySize=percent(10)), 2, "neither CanarySize nor LinearStepSize"),
        (policy("CANARY", wait=3600, termination=600, timeout=1200, CanarySize=percent(50)), 2,
         "must be larger than the total waiting time"),
    ],
)  # fmt: skip
def test_what_sagemaker_refuses_is_a_validation_exception(blue_green, instances, message):
    with pytest.raises(AwsError) as refused:
        plan_blue_green(blue_green, instances)
    assert refused.value.code == "ValidationException"
    assert message in refused.value.message


def test_the_split_sends_exactly_the_share_interleaved():
    split = TrafficSplit()
    split.shift(0.25)
    picks = [split.to_green() for _ in range(100)]
    assert sum(picks) == 25 and picks[:8] == [True, False, False, False, True, False, False, False]
    split.shift(1.0)
    assert all(split.to_green() for _ in range(10))
    split.shift(0.0)
    assert not any(split.to_green() for _ in range(10))


# -- through a server ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    services = only("cloudwatch-alarms", "hosting", "sagemaker-runtime")
    with LocalAwsServer(tmp_path_factory.mktemp("rollouts"), service_classes=services,
                        clock=Clock(SCALE)) as running:  # fmt: skip
        yield running


@pytest.fixture(scope="module")
def clients(server):
    sm, s3, runtime, cloudwatch = (
        client(server, n) for n in ("sagemaker", "s3", "sagemaker-runtime", "cloudwatch")
    )
    s3.create_bucket(Bucket=BUCKET)
    return sm, s3, runtime, cloudwatch


def errors_alarm(cloudwatch, endpoint: str) -> str:
    name = f"{endpoint}/rollback/AllTraffic/5xx-errors"
    cloudwatch.put_metric_alarm(
        AlarmName=name, Namespace="AWS/SageMaker", MetricName="Invocation5XXErrors", Statistic="Sum",
        Dimensions=[{"Name": "EndpointName", "Value": endpoint},
                    {"Name": "VariantName", "Value": "AllTraffic"}],
        Period=60, EvaluationPeriods=1, Threshold=0.0, ComparisonOperator="GreaterThanThreshold",
        TreatMissingData="notBreaching",
    )  # fmt: skip
    wait_for_state(cloudwatch, name, "OK")  # no traffic, no errors: not breaching
    return name


def watch(sm, endpoint: str, stop: threading.Event) -> list[dict[str, Any]]:
    """DescribeEndpoint answers until ``stop``, in a thread: (status, green share, phase message)."""
    seen: list[dict[str, Any]] = []

    def poll() -> None:
        while not stop.is_set():
            described = sm.describe_endpoint(EndpointName=endpoint)
            pending = (described.get("PendingDeploymentSummary") or {}).get("ProductionVariants") or [{}]
            status = (pending[0].get("VariantStatus") or [{}])[0]
            seen.append({"status": described["EndpointStatus"], "green": pending[0].get("CurrentWeight"),
                         "phase": status.get("Status"), "message": status.get("StatusMessage")})  # fmt: skip
            time.sleep(MINUTE / 10)

    threading.Thread(target=poll, daemon=True).start()
    return seen


def test_a_linear_rollout_shifts_a_third_at_a_time_with_no_failed_request(clients):
    sm, s3, runtime, cloudwatch = clients
    endpoint, old = deploy(sm, s3, "linear-old", instances=3)
    new = make_config(sm, s3, "linear-new", instances=3)
    rollback = {"Alarms": [{"AlarmName": errors_alarm(cloudwatch, endpoint)}]}
    config = {"BlueGreenUpdatePolicy": policy("LINEAR", LinearStepSize=percent(34)),
              "AutoRollbackConfiguration": rollback}  # fmt: skip
    stop = threading.Event()
    seen = watch(sm, endpoint, stop)
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=new, DeploymentConfig=config)
    labels = []
    try:
        deadline = time.monotonic() + 60
        while sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] != "InService":
            assert time.monotonic() < deadline, "the rollout did not end"
            labels.append(invoke(runtime, endpoint, {})["label"])  # any failure fails the test
    finally:
        stop.set()
    shares = sorted({round(s["green"], 2) for s in seen if s["green"] is not None})
    assert {0.33, 0.67, 1.0} <= set(shares), shares
    assert any(s["message"] and s["message"].startswith("Linear step: 1 of 3") for s in seen)
    described = sm.describe_endpoint(EndpointName=endpoint)
    assert (described["EndpointConfigName"], described.get("FailureReason")) == (new, None)
    assert described["LastDeploymentConfig"] == config
    assert "PendingDeploymentSummary" not in described
    assert labels[0] == "linear-old" and labels[-1] == "linear-new" and old != new


def test_a_model_whose_serving_is_broken_is_rolled_back_by_its_5xx_alarm(clients, server):
    sm, s3, runtime, cloudwatch = clients
    endpoint, old = deploy(sm, s3, "healthy", instances=2)
    alarm_name = errors_alarm(cloudwatch, endpoint)
    broken = make_config(sm, s3, "serves-500", instances=2)
    config = {"BlueGreenUpdatePolicy": policy("CANARY", wait=600, CanarySize=percent(50)),
              "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": alarm_name}]}}  # fmt: skip
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=broken, DeploymentConfig=config)
    failed = answered_by_old = 0
    deadline = time.monotonic() + 60
    while (described := sm.describe_endpoint(EndpointName=endpoint))["EndpointStatus"] != "InService":
        assert time.monotonic() < deadline, "the broken model was not rolled back"
        try:
            response = runtime.invoke_endpoint(
                EndpointName=endpoint, ContentType="application/json", Body=b"{}"
            )
            answered_by_old += response["ResponseMetadata"]["HTTPHeaders"][FLEET_HEADER] == old
        except Exception:
            failed += 1
    assert described["EndpointConfigName"] == old
    assert described["FailureReason"].startswith("Rolled back to the previous endpoint configuration")
    assert alarm_name in described["FailureReason"]
    assert described["LastDeploymentConfig"] == config
    assert failed > 0 and answered_by_old > 0
    hosting = server.app.context.services["hosting"]
    assert len(hosting.instance_pids(endpoint)) == 2  # the new fleet is gone
    assert invoke(runtime, endpoint, {})["label"] == "healthy"
    # The endpoint stays usable: the next update may retain the last deployment config.
    fixed = make_config(sm, s3, "fixed", instances=2)
    # The broken fleet's last errors fall in a period that closes after the rollback, and an alarm
    # judges whole periods: an OK before that period is judged does not mean "no errors" yet.
    time.sleep(2 * MINUTE)
    wait_for_state(cloudwatch, alarm_name, "OK")
    sm.update_endpoint(EndpointName=endpoint, EndpointConfigName=fixed, RetainDeploymentConfig=True)
    pending = sm.describe_endpoint(EndpointName=endpoint)["PendingDeploymentSummary"]
    assert pending["EndpointConfigName"] == fixed and pending["ProductionVariants"][0]["VariantStatus"]
    assert wait_for_status(sm, endpoint, "InService", timeout=60)["EndpointConfigName"] == fixed


def test_update_endpoint_refuses_what_sagemaker_refuses(clients):
    sm, s3, _, cloudwatch = clients
    endpoint, _ = deploy(sm, s3, "strict-rollouts", instances=1)
    single = make_config(sm, s3, "single", instances=1)
    alarms = {"Alarms": [{"AlarmName": errors_alarm(cloudwatch, endpoint)}]}
    ghost = {"Alarms": [{"AlarmName": "ghost"}]}
    cases = [
        ({"BlueGreenUpdatePolicy": policy("CANARY", CanarySize=percent(50)),
          "AutoRollbackConfiguration": alarms}, "at most 50%"),
        ({"BlueGreenUpdatePolicy": policy("ALL_AT_ONCE"), "AutoRollbackConfiguration": ghost},
         "do not exist"),
        ({"RollingUpdatePolicy": {"MaximumBatchSize": percent(50), "WaitIntervalInSeconds": 60}},
         "does not implement rolling deployments"),
    ]  # fmt: skip
    for deployment_config, message in cases:
        refused = error_of(lambda c=deployment_config: sm.update_endpoint(
            EndpointName=endpoint, EndpointConfigName=single, DeploymentConfig=c))  # fmt: skip
        assert refused.response["Error"]["Code"] == "ValidationException"
        assert message in refused.response["Error"]["Message"]
    other_variant = "other-variant"
    sm.create_endpoint_config(
        EndpointConfigName=other_variant,
        ProductionVariants=[{"VariantName": "Blue", "ModelName": single, "InitialInstanceCount": 1,
                             "InstanceType": "ml.m5.large"}],
    )  # fmt: skip
    refused = error_of(lambda: sm.update_endpoint(
        EndpointName=endpoint, EndpointConfigName=other_variant,
        DeploymentConfig={"BlueGreenUpdatePolicy": policy("ALL_AT_ONCE")}))  # fmt: skip
    assert "same variant names" in refused.response["Error"]["Message"]
    assert sm.describe_endpoint(EndpointName=endpoint)["EndpointStatus"] == "InService"  # nothing started
