"""A retraining's blue/green canary on the real model, under a bounded request loop, measured.

One endpoint of the tiny trained model on 2 instances, local_aws at time scale 60 (a simulated
minute is a second), the DAG's own operators reaching it through an Airflow connection as the
DAG does: ``rollback_alarms`` puts the endpoint's rollback alarms, ``deploy_endpoint`` updates
it with the DeploymentConfig ``prepare_endpoint_update`` would build (CANARY 50%: one of the
two new instances, 600 s of baking, 300 s of final baking, simulated).

Each new model is a model-registry version, Approved as the quality gate approves it, and
``deploy_endpoint`` is given its ARN as the DAG gives it the review's.

* A good model: no request fails, the endpoint ends on the new config, and during the canary's
  bake the new fleet answers the canary's share of the requests; its version stays Approved.
* A model whose ``inference.py`` has a fault injected (every request a 500): the 5XX alarm
  fires, SageMaker-style auto-rollback puts all traffic back on the old fleet; every failed
  request carries the injected fault's message (so the canary answered it); the endpoint ends
  InService on the old config and the DAG's task fails with the reason, so the tasks after it
  (champion tags, the smoke test) never run against the broken model; its registry version is
  Rejected with a description that says it was rolled back and why.

Figures go to the test output and ``record_property``.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import airflow_fixtures  # noqa: F401  (AIRFLOW_HOME before Airflow)
import pytest
from bad_input_corpus import good_jpeg
from local_aws_hosting_support import MINUTE, SCALE
from served_model import BUCKET, IMAGE, REGION, ServedModel, create_endpoint_config, serve_model

from local_aws.infra.clock import Clock
from local_aws.services.sagemaker_runtime.service import FLEET_HEADER

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CONN_ID = "canary_local_aws"
GROUP = "canary-dog-breed-classifier"
GATE_APPROVAL = "Approved by the quality gate: test accuracy above the threshold and the live model"
INSTANCES = 2
ROLLOUT = {
    "rollout_traffic_routing": "CANARY",
    "rollout_canary_percent": 50,
    "rollout_wait_interval_s": 600,  # 10 s at time scale 60
    "rollout_termination_wait_s": 300,
    "rollout_max_execution_s": 3600,
}
LOOP_SECONDS, LOOP_REQUESTS = 120.0, 5000  # the request loop's bounds
INJECTED_FAULT = "injected fault: this model's serving is broken"


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_model_dir) -> ServedModel:
    served = serve_model(
        tmp_path_factory.mktemp("canary"), trained_model_dir, instances=INSTANCES, with_lambda=False,
        clock=Clock(SCALE),
    )  # fmt: skip
    yield served
    served.server.stop()


@pytest.fixture(scope="module")
def connection(served):
    """An Airflow connection to the served stack, as the DAG's aws_default points at local_aws."""
    extra = {"endpoint_url": served.url, "region_name": REGION}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            f"AIRFLOW_CONN_{CONN_ID.upper()}",
            json.dumps({"conn_type": "aws", "login": "x", "password": "x", "extra": extra}),
        )
        yield CONN_ID


@pytest.fixture(scope="module")
def alarms(served, connection) -> list[str]:
    from dog_breed.operators.rollback_alarms import EndpointRollbackAlarmsOperator

    operator = EndpointRollbackAlarmsOperator(
        task_id="rollback_alarms", endpoint_name=served.endpoint_name, aws_conn_id=connection
    )
    names = operator.execute({})
    assert names == operator.execute({})  # a rerun puts the same alarms
    return names


def registered_version(connection: str, endpoint_config: str) -> str:
    """A registry version of the model ``endpoint_config`` serves (create_endpoint_config put its
    model.tar.gz under the config's name), Approved as the gate approves; returns its ARN."""
    from dog_breed import specs
    from dog_breed.hooks import PipelineSageMakerHook
    from dog_breed.params import PipelineSettings

    hook = PipelineSageMakerHook(aws_conn_id=connection)
    hook.create_model_package_group(GROUP, "The canary tests' models.")
    specification = specs.inference_specification(
        PipelineSettings(),
        inference_image_uri=IMAGE,
        model_data_url=f"s3://{BUCKET}/{endpoint_config}/model.tar.gz",
    )
    arn = hook.conn.create_model_package(
        ModelPackageGroupName=GROUP,
        InferenceSpecification=specification,
        ModelApprovalStatus="PendingManualApproval",
    )["ModelPackageArn"]
    hook.set_approval(arn, "Approved", GATE_APPROVAL)
    return arn


def broken_model_dir(model_dir, target):
    """A copy of the model whose code/inference.py answers every request with a 500."""
    shutil.copytree(model_dir, target)
    handler = target / "code" / "inference.py"
    fault = f"def predict_fn(data, model):\n    raise RuntimeError({INJECTED_FAULT!r})\n"
    handler.write_text(handler.read_text() + "\n\n# Injected by tests/test_canary.py.\n" + fault)
    return target


@dataclass
class Traffic:
    """Good requests to the endpoint, one after another, within LOOP_SECONDS and LOOP_REQUESTS,
    each recorded with when it was sent and which endpoint config's fleet answered it."""

    served: ServedModel
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        runtime = self.served.client("sagemaker-runtime", read_timeout=60)
        body = good_jpeg(seed=5)
        deadline = time.monotonic() + LOOP_SECONDS
        while (
            not self.stop.is_set()
            and time.monotonic() < deadline
            and len(self.answers) + len(self.failures) < LOOP_REQUESTS
        ):
            sent = time.time()
            try:
                response = runtime.invoke_endpoint(
                    EndpointName=self.served.endpoint_name, ContentType="image/jpeg", Body=body
                )
                response["Body"].read()
                self.answers.append((sent, response["ResponseMetadata"]["HTTPHeaders"][FLEET_HEADER]))
            except Exception as error:  # every failure is a finding
                self.failures.append(
                    (sent, getattr(error, "response", {}).get("OriginalMessage") or repr(error))
                )


@dataclass
class Phases:
    """DescribeEndpoint sampled every tenth of a simulated minute: (time, status, green's weight,
    its phase status)."""

    served: ServedModel
    samples: list[tuple[float, str, float | None, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        sagemaker = self.served.client("sagemaker")
        while not self.stop.is_set():
            described = sagemaker.describe_endpoint(EndpointName=self.served.endpoint_name)
            pending = (described.get("PendingDeploymentSummary") or {}).get("ProductionVariants") or [{}]
            phase = (pending[0].get("VariantStatus") or [{}])[0].get("Status")
            self.samples.append(
                (time.time(), described["EndpointStatus"], pending[0].get("CurrentWeight"), phase)
            )
            time.sleep(MINUTE / 10)

    def canary_bake(self) -> tuple[float, float]:
        """(start, end) of the samples that saw the canary baking: half the weight on the new fleet."""
        baking = [t for t, _, weight, phase in self.samples if phase == "Baking" and weight == 0.5]
        assert baking, f"the canary's bake was never seen: {self.samples[:5]}..."
        return min(baking), max(baking)


def roll_out(served: ServedModel, connection: str, alarms: list[str], new_config: str, package: str):
    """The DAG's deploy_endpoint, as a retraining run configures it (rolling out the registry
    version ``package``), with traffic and a watcher running; returns (the operator's outcome,
    traffic, phases)."""
    from dog_breed import specs
    from dog_breed.operators.sagemaker_rerun import IdempotentSageMakerEndpointOperator
    from dog_breed.params import PipelineSettings

    settings = PipelineSettings.from_params({"endpoint_name": served.endpoint_name, **ROLLOUT})
    deployment, why = specs.deployment_config(settings, INSTANCES, alarms)
    assert why.startswith("CANARY")
    operator = IdempotentSageMakerEndpointOperator(
        task_id="deploy_endpoint",
        config={"EndpointName": served.endpoint_name, "EndpointConfigName": new_config, "Tags": []},
        operation="create",
        deployment_config=deployment,
        model_package_arn=package,
        check_interval=1,
        max_ingestion_time=600,
        deferrable=False,
        aws_conn_id=connection,
    )
    traffic, phases = Traffic(served), Phases(served)
    threads = [threading.Thread(target=traffic.run), threading.Thread(target=phases.run)]
    for thread in threads:
        thread.start()
    try:
        outcome: Any = operator.execute({})
    except Exception as error:
        outcome = error
    finally:
        time.sleep(MINUTE)  # a little traffic after the end
        traffic.stop.set()
        phases.stop.set()
        for thread in threads:
            thread.join(LOOP_SECONDS + 70)
    assert not any(t.is_alive() for t in threads), "the request loop hung"
    return outcome, traffic, phases


def test_a_good_models_canary_takes_its_share_and_ends_on_the_new_config(
    served, connection, alarms, record_property
):
    old = served.client("sagemaker").describe_endpoint(EndpointName=served.endpoint_name)[
        "EndpointConfigName"
    ]
    new = create_endpoint_config(served.url, served.model_dir, "retrained", INSTANCES)
    package = registered_version(connection, new)
    outcome, traffic, phases = roll_out(served, connection, alarms, new, package)

    assert not isinstance(outcome, Exception), outcome
    assert outcome["Endpoint"]["EndpointConfigName"] == new
    start, end = phases.canary_bake()
    during = [fleet for sent, fleet in traffic.answers if start <= sent <= end]
    share = sum(fleet == new for fleet in during) / len(during)
    print(
        f"\ngood canary: {len(traffic.answers)} ok / {len(traffic.failures)} failed requests; during the "
        f"canary's bake ({end - start:.1f} s) {len(during)} requests, {share:.1%} answered by the new fleet "
        "(canary 50%)"
    )
    record_property("good_canary_requests", len(traffic.answers) + len(traffic.failures))
    record_property("good_canary_failed_requests", len(traffic.failures))
    record_property("good_canary_bake_requests", len(during))
    record_property("good_canary_new_fleet_share", round(share, 4))
    assert traffic.failures == [], traffic.failures[:3]
    assert len(during) >= 20, "too few requests in the bake to measure a share"
    assert abs(share - 0.5) <= 0.05
    assert {fleet for _, fleet in traffic.answers} == {old, new}
    assert traffic.answers[-1][1] == new
    described = served.client("sagemaker").describe_endpoint(EndpointName=served.endpoint_name)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", new)
    assert described["LastDeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": a} for a in alarms
    ]
    version = served.client("sagemaker").describe_model_package(ModelPackageName=package)
    assert (version["ModelApprovalStatus"], version["ApprovalDescription"]) == ("Approved", GATE_APPROVAL)


def test_a_broken_models_canary_is_rolled_back_by_the_5xx_alarm_and_fails_the_task(
    served, connection, alarms, tmp_path, record_property
):
    from dog_breed.operators.sagemaker_rerun import EndpointRolledBack

    sagemaker = served.client("sagemaker")
    good = sagemaker.describe_endpoint(EndpointName=served.endpoint_name)["EndpointConfigName"]
    broken_dir = broken_model_dir(served.model_dir, tmp_path / "broken")
    broken = create_endpoint_config(served.url, broken_dir, "broken", INSTANCES)
    package = registered_version(connection, broken)
    outcome, traffic, phases = roll_out(served, connection, alarms, broken, package)

    assert isinstance(outcome, EndpointRolledBack), outcome
    errors_alarm = next(a for a in alarms if a.endswith("/5xx-errors"))
    assert errors_alarm in str(outcome) and "rolled the update back" in str(outcome)
    assert f"{package} is now Rejected" in str(outcome)
    version = sagemaker.describe_model_package(ModelPackageName=package)
    assert version["ModelApprovalStatus"] == "Rejected"  # not the next run's candidate
    said = version["ApprovalDescription"]
    assert said.startswith(
        f"Rejected: rolled back from endpoint {served.endpoint_name} by SageMaker's auto-rollback"
    )
    assert errors_alarm in said and said.endswith(f"(was: {GATE_APPROVAL})")
    assert traffic.failures, "no request reached the broken canary"
    assert all(INJECTED_FAULT in message for _, message in traffic.failures), traffic.failures[:3]
    assert {fleet for _, fleet in traffic.answers} == {good}  # the old fleet answered every other one
    first_error = min(sent for sent, _ in traffic.failures)
    rolled_back = min(
        t
        for t, status, weight, _ in phases.samples
        if t > first_error and (status != "Updating" or weight == 0)
    )
    print(
        f"\nbroken canary: {len(traffic.failures)} failed requests (all answered by the canary), "
        f"{len(traffic.answers)} answered by the old fleet; {rolled_back - first_error:.2f} s "
        f"({(rolled_back - first_error) / MINUTE:.1f} simulated minutes) from the first error to the rollback"
    )
    record_property("broken_canary_failed_requests", len(traffic.failures))
    record_property("broken_canary_old_fleet_requests", len(traffic.answers))
    record_property("broken_canary_seconds_first_error_to_rollback", round(rolled_back - first_error, 3))
    assert max(sent for sent, _ in traffic.failures) <= rolled_back + MINUTE  # none once the rollback began
    described = sagemaker.describe_endpoint(EndpointName=served.endpoint_name)
    assert (described["EndpointStatus"], described["EndpointConfigName"]) == ("InService", good)
    assert errors_alarm in described["FailureReason"]
    assert len(served.model_server_pids()) == INSTANCES  # the broken fleet is stopped


def test_in_the_dag_nothing_after_deploy_endpoint_runs_when_it_fails():
    """What makes a rollback stop the run: champion tags, autoscaling, the Lambda and the smoke test
    all come after deploy_endpoint and need it to succeed."""
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(Path(__file__).resolve().parents[1] / "dags")).dags["dog_breed_pipeline"]
    after = dag.task_dict["deploy_endpoint"].get_flat_relative_ids(upstream=False)
    assert {"tag_endpoint", "autoscale", "deploy_lambda", "smoke_test"} <= after
    assert all(dag.task_dict[task_id].trigger_rule == "all_success" for task_id in after)
