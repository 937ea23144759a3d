"""CloudWatch in local_aws: endpoints publish SageMaker's metrics, alarms are evaluated.

The decision is tested as pure functions (statistics, M out of N, missing data, metric math,
CloudWatch's wording); then through boto3 and the AWS CLI against a server whose simulated
minute lasts a second (time scale 60): what an endpoint's invocations publish, and alarms on it
going from INSUFFICIENT_DATA to ALARM and OK with their reasons.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time

import pytest
from botocore.exceptions import ClientError
from local_aws_hosting_support import BUCKET, MINUTE, SCALE, alarm, client, deploy, invoke, wait_for_state

from local_aws.infra.clock import Clock
from local_aws.protocol.server import LocalAwsServer
from local_aws.services import only
from local_aws.services.cloudwatch.evaluation import (
    ALARM,
    INSUFFICIENT_DATA,
    OK,
    Datapoint,
    Rule,
    Sample,
    decide,
    evaluate_expression,
    parse_expression,
    statistic,
)

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a whole minute


def values(*numbers: float) -> list[Sample]:
    return [Sample.of_value(T0 + i, v) for i, v in enumerate(numbers)]


# -- the decision, pure -----------------------------------------------------------------------
def test_statistics_over_raw_values_and_statistic_sets():
    samples = values(*range(1, 101))
    assert statistic(samples, "Sum") == 5050
    assert statistic(samples, "SampleCount") == 100
    assert statistic(samples, "Average") == 50.5
    assert (statistic(samples, "Minimum"), statistic(samples, "Maximum")) == (1, 100)
    assert statistic(samples, "p99") == 99 and statistic(samples, "p50") == 50  # nearest rank
    assert statistic(samples, "p99.9") == 100
    statistic_set = [Sample(T0, sum=10.0, count=4.0, minimum=1.0, maximum=4.0)]
    assert statistic(statistic_set, "Average") == 2.5
    assert statistic(statistic_set, "p99") is None  # no percentile of a statistic set
    assert statistic([], "Sum") is None


def rule(**overrides) -> Rule:
    settings = {
        "comparison": "GreaterThanThreshold",
        "threshold": 5.0,
        "evaluation_periods": 3,
        "datapoints_to_alarm": 2,
        "treat_missing_data": None,
        "statistic_label": "Sum",
        "period": 60,
    }
    return Rule(**{**settings, **overrides})


def points(*numbers: float | None) -> list[Datapoint]:
    """Newest first, one minute apart."""
    return [Datapoint(T0 - 60 * i, n, 1.0 if n is not None else 0.0) for i, n in enumerate(numbers)]


def test_m_out_of_n_breaching_datapoints_alarm_in_cloudwatchs_words():
    decision = decide(rule(), points(9.0, 1.0, 7.0), OK, T0 + 90)
    assert decision.state == ALARM
    assert decision.reason == (
        "Threshold Crossed: 2 out of the last 3 datapoints "
        "[9.0 (15/01/27 08:00:00), 7.0 (15/01/27 07:58:00)] "
        "were greater than the threshold (5.0) (minimum 2 datapoints for OK -> ALARM transition)."
    )
    data = json.loads(decision.reason_data)
    assert data["recentDatapoints"] == [9.0, 1.0, 7.0] and data["threshold"] == 5.0
    assert data["statistic"] == "Sum" and data["period"] == 60
    assert data["evaluatedDatapoints"][0] == {"timestamp": "2027-01-15T08:00:00.000+0000", "sampleCount": 1.0,
                                              "value": 9.0}  # fmt: skip

    back = decide(rule(), points(1.0, 2.0, 9.0), ALARM, T0 + 90)
    assert back.state == OK
    assert back.reason.startswith("Threshold Crossed: 2 out of the last 3 datapoints [1.0 ")
    assert back.reason.endswith(
        "were not greater than the threshold (5.0) (minimum 1 datapoint for ALARM -> OK transition)."
    )


def test_missing_data_as_each_treatment_says():
    nothing = points(None, None, None)
    assert decide(rule(), nothing, OK, T0).state == INSUFFICIENT_DATA
    assert decide(rule(), nothing, OK, T0).reason == "Insufficient Data: 3 datapoints were unknown."
    assert decide(rule(treat_missing_data="ignore"), nothing, ALARM, T0).state is None  # kept
    assert decide(rule(treat_missing_data="breaching"), nothing, OK, T0).state == ALARM
    not_breaching = decide(rule(treat_missing_data="notBreaching"), nothing, ALARM, T0)
    assert not_breaching.state == OK
    assert not_breaching.reason == (
        "Threshold Crossed: no datapoints were received for 3 periods and "
        "3 missing datapoints were treated as [NonBreaching]."
    )
    # One breaching point of the two needed, the rest missing: nothing says OK, so no change.
    assert decide(rule(), points(9.0, None, None), INSUFFICIENT_DATA, T0).state is None
    assert decide(rule(treat_missing_data="breaching"), points(9.0, None, None), OK, T0).state == ALARM
    assert decide(rule(), points(1.0, None, None), INSUFFICIENT_DATA, T0).state == OK


def test_metric_math_is_arithmetic_over_the_queries_values():
    share = parse_expression("errors / invocations")
    assert evaluate_expression(share, {"errors": 3.0, "invocations": 12.0}) == 0.25
    assert evaluate_expression(share, {"errors": 0.0, "invocations": 0.0}) is None  # no point, as CloudWatch
    assert evaluate_expression(share, {"errors": None, "invocations": 4.0}) is None
    filled = parse_expression("100 * FILL(errors, 0) / invocations")
    assert evaluate_expression(filled, {"errors": None, "invocations": 4.0}) == 0.0
    for unsupported in ("ANOMALY_DETECTION_BAND(m1)", "m1 ** 2", "SELECT AVG(x) FROM y", "'text'"):
        with pytest.raises(ValueError):
            parse_expression(unsupported)


# -- through a server ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    services = only("cloudwatch-alarms", "hosting", "sagemaker-runtime")
    with LocalAwsServer(
        tmp_path_factory.mktemp("cloudwatch"), service_classes=services, clock=Clock(SCALE)
    ) as running:
        yield running


@pytest.fixture(scope="module")
def clients(server):
    names = ("sagemaker", "s3", "sagemaker-runtime", "cloudwatch")
    sm, s3, runtime, cloudwatch = (client(server, name) for name in names)
    s3.create_bucket(Bucket=BUCKET)
    return sm, s3, runtime, cloudwatch


@pytest.fixture(scope="module")
def endpoint(clients):
    """An endpoint that answered 6 good requests, one 400 and one 500 in one simulated minute."""
    sm, s3, runtime, _ = clients
    name, _ = deploy(sm, s3, "metered")
    wait_for_minute_start()
    for _ in range(6):
        invoke(runtime, name, {"x": 1})
    for bad in ({"fail": "bad image"}, {"crash": "boom"}):
        with pytest.raises(ClientError):
            invoke(runtime, name, bad)
    time.sleep(2 * MINUTE)  # the minute closes and is published
    return name


def wait_for_minute_start() -> None:
    """Sleep into the first tenth of a simulated minute, so a burst of requests stays in one."""
    while (time.time() % MINUTE) > MINUTE / 10:
        time.sleep(MINUTE / 50)


def dimensions(endpoint: str) -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": endpoint}, {"Name": "VariantName", "Value": "AllTraffic"}]


def recent(**kwargs):
    now = dt.datetime.now(dt.UTC)
    return {"StartTime": now - dt.timedelta(minutes=5), "EndTime": now + dt.timedelta(seconds=5), **kwargs}


def test_an_endpoints_invocations_are_published_as_sagemaker_publishes_them(clients, endpoint):
    *_, cloudwatch = clients
    listed = cloudwatch.list_metrics(
        Namespace="AWS/SageMaker", Dimensions=[{"Name": "EndpointName", "Value": endpoint}]
    )
    assert {m["MetricName"] for m in listed["Metrics"]} == {
        "Invocations", "Invocation4XXErrors", "Invocation5XXErrors", "ModelLatency", "OverheadLatency",
        "InvocationsPerInstance",
    }  # fmt: skip
    assert all(m["Dimensions"] == dimensions(endpoint) for m in listed["Metrics"])

    def total(metric: str, stat: str = "Sum") -> float:
        # A datapoint per simulated minute: Period 1 s at time scale 60.
        answer = cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker", MetricName=metric, Dimensions=dimensions(endpoint), Period=1,
            Statistics=[stat], **recent(),
        )  # fmt: skip
        return sum(point[stat] for point in answer["Datapoints"])

    assert total("Invocations") == 8
    assert (total("Invocation4XXErrors"), total("Invocation5XXErrors")) == (1, 1)
    assert total("InvocationsPerInstance") == 8  # one instance: 1 per request
    assert total("ModelLatency", "SampleCount") == 8  # the container answered all eight
    latencies = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker", MetricName="ModelLatency", Dimensions=dimensions(endpoint), Period=1,
        Statistics=["Minimum", "Maximum"], **recent(),
    )["Datapoints"]  # fmt: skip
    assert latencies[0]["Unit"] == "Microseconds"
    assert 10 <= min(p["Minimum"] for p in latencies) <= max(p["Maximum"] for p in latencies) < 60e6

    data = cloudwatch.get_metric_data(
        MetricDataQueries=[
            {"Id": "errors", "MetricStat": {"Period": 1, "Stat": "Sum", "Metric": {
                "Namespace": "AWS/SageMaker", "MetricName": "Invocation5XXErrors",
                "Dimensions": dimensions(endpoint)}}},
        ],
        **recent(),
    )["MetricDataResults"]  # fmt: skip
    assert sum(data[0]["Values"]) == 1


def aws_cli(server, *args: str) -> dict:
    executable = shutil.which("aws")
    if executable is None:
        pytest.skip("no AWS CLI on PATH")
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    completed = subprocess.run(
        [executable, "--endpoint-url", server.url, "--output", "json", *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_the_aws_cli_reads_what_the_endpoint_published(server, endpoint):
    now = dt.datetime.now(dt.UTC)
    answer = aws_cli(
        server, "cloudwatch", "get-metric-statistics", "--namespace", "AWS/SageMaker",
        "--metric-name", "Invocations", "--statistics", "Sum", "--period", "1",
        "--dimensions", f"Name=EndpointName,Value={endpoint}", "Name=VariantName,Value=AllTraffic",
        "--start-time", (now - dt.timedelta(minutes=5)).isoformat(), "--end-time", now.isoformat(),
    )  # fmt: skip
    assert sum(point["Sum"] for point in answer["Datapoints"]) == 8


def put_alarm(cloudwatch, name: str, endpoint: str, **settings) -> None:
    cloudwatch.put_metric_alarm(
        AlarmName=name, Namespace="AWS/SageMaker", Dimensions=dimensions(endpoint), Period=60,
        ComparisonOperator="GreaterThanThreshold", **settings,
    )  # fmt: skip


def test_alarms_start_insufficient_data_fire_on_5xx_keep_their_state_on_update_and_recover(clients, server):
    sm, s3, runtime, cloudwatch = clients
    name, _ = deploy(sm, s3, "alarmed")
    settings = {
        "MetricName": "Invocation5XXErrors",
        "Statistic": "Sum",
        "Threshold": 0.0,
        "EvaluationPeriods": 1,
    }
    put_alarm(cloudwatch, "errors", name, **settings)
    created = alarm(cloudwatch, "errors")
    assert (created["StateValue"], created["StateReason"]) == (
        INSUFFICIENT_DATA,
        "Unchecked: Initial alarm creation",
    )

    with pytest.raises(ClientError):
        invoke(runtime, name, {"crash": "every request of this minute fails"})
    fired = wait_for_state(cloudwatch, "errors", ALARM)
    assert fired["StateReason"].startswith("Threshold Crossed: 1 out of the last 1 datapoints [1.0 (")
    assert "was greater than the threshold (0.0)" in fired["StateReason"]
    assert json.loads(fired["StateReasonData"])["recentDatapoints"] == [1.0]

    # PutMetricAlarm on an existing alarm replaces its configuration, not its state.
    put_alarm(cloudwatch, "errors", name, **settings, TreatMissingData="notBreaching")
    updated = alarm(cloudwatch, "errors")
    assert (updated["StateValue"], updated["TreatMissingData"]) == (ALARM, "notBreaching")
    # Minutes without errors (and without traffic: missing, treated as not breaching) bring it back.
    recovered = wait_for_state(cloudwatch, "errors", OK)
    assert (
        "not greater than the threshold" in recovered["StateReason"]
        or "[NonBreaching]" in recovered["StateReason"]
    )

    listed = aws_cli(server, "cloudwatch", "describe-alarms", "--alarm-names", "errors")
    assert listed["MetricAlarms"][0]["StateValue"] == OK


def test_percentile_and_metric_math_alarms(clients):
    sm, s3, runtime, cloudwatch = clients
    name, _ = deploy(sm, s3, "timed")
    put_alarm(cloudwatch, "slow", name, MetricName="ModelLatency", ExtendedStatistic="p99",
              Threshold=150_000.0, EvaluationPeriods=1)  # fmt: skip

    def metric(query_id: str, metric_name: str) -> dict:
        watched = {"Namespace": "AWS/SageMaker", "MetricName": metric_name, "Dimensions": dimensions(name)}
        stat = {"Metric": watched, "Period": 60, "Stat": "Sum"}
        return {"Id": query_id, "MetricStat": stat, "ReturnData": False}

    cloudwatch.put_metric_alarm(
        AlarmName="share-4xx", ComparisonOperator="GreaterThanThreshold", Threshold=0.3, EvaluationPeriods=1,
        Metrics=[metric("errors", "Invocation4XXErrors"), metric("invocations", "Invocations"),
                 {"Id": "share", "Expression": "errors / invocations", "ReturnData": True}],
    )  # fmt: skip
    wait_for_minute_start()
    invoke(runtime, name, {"sleep": 0.3})  # 300 ms: p99 of the minute
    for _ in range(2):
        with pytest.raises(ClientError):
            invoke(runtime, name, {"fail": "bad input"})
    slow = wait_for_state(cloudwatch, "slow", ALARM)
    assert "greater than the threshold (150000.0)" in slow["StateReason"]
    assert json.loads(slow["StateReasonData"])["extendedStatistic"] == "p99"
    share = wait_for_state(cloudwatch, "share-4xx", ALARM)
    assert json.loads(share["StateReasonData"])["recentDatapoints"][0] == pytest.approx(2 / 3)
