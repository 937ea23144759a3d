"""Faults: a failing smoke test rolls the endpoint back without a failed request (waiting
in the worker, or deferred to a trigger that holds no worker slot), and a local_aws restart
under a waiting task ends the wait with a clear error instead of a hang. The Lambda deploy's
deferred wait for provisioned concurrency runs its trigger against the same stack.

The operators reach local_aws the way the DAG does: through an Airflow connection whose
``endpoint_url`` extra points at it. (The injected training failure needs a whole DAG run
and lives in tests/test_e2e_pipeline.py, which already pays for one.)
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field

import airflow_fixtures  # noqa: F401  (AIRFLOW_HOME before Airflow)
import pytest
from bad_input_corpus import good_jpeg
from served_model import FAST_WAIT, REGION, ServedModel, client, create_endpoint_config, serve_model

from local_aws.devtools.sandbox import LocalAwsProcess, upload_directory
from local_aws.infra.ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

DATASET_URI = "s3://reliability-data/dogImages"
SWAP_LOOP_SECONDS = 30.0
CONN_ID = "served_local_aws"
# One attempt per call and a long read, as served_model's own clients.
BOTOCORE_CONFIG = {"read_timeout": 90, "retries": {"total_max_attempts": 1}}


@pytest.fixture(scope="module")
def served(tmp_path_factory, trained_model_dir, sample_dataset_dir) -> ServedModel:
    served = serve_model(tmp_path_factory.mktemp("faults"), trained_model_dir)
    upload_directory(served.url, sample_dataset_dir, DATASET_URI)
    yield served
    served.server.stop()


@pytest.fixture
def connection(served, monkeypatch) -> str:
    """An Airflow connection to the served stack, as the DAG's aws_default points at local_aws."""
    extra = {"endpoint_url": served.url, "region_name": REGION}
    conn = {"conn_type": "aws", "login": "local", "password": "local", "extra": extra}
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
    return CONN_ID


def serve_a_challenger(served: ServedModel) -> str:
    """Put a new endpoint config live behind the Lambda's ``live`` alias; returns the one before."""
    sagemaker, lam = served.client("sagemaker"), served.client("lambda")
    previous = sagemaker.describe_endpoint(EndpointName=served.endpoint_name)["EndpointConfigName"]
    challenger = create_endpoint_config(served.url, served.model_dir, "challenger")
    sagemaker.update_endpoint(EndpointName=served.endpoint_name, EndpointConfigName=challenger)
    sagemaker.get_waiter("endpoint_in_service").wait(
        EndpointName=served.endpoint_name, WaiterConfig=FAST_WAIT
    )
    version = lam.publish_version(FunctionName=served.function_name)["Version"]
    aliases = {alias["Name"] for alias in lam.list_aliases(FunctionName=served.function_name)["Aliases"]}
    if "live" not in aliases:
        lam.create_alias(FunctionName=served.function_name, Name="live", FunctionVersion=version)
    return previous


def smoke_test_that_fails(served: ServedModel, conn_id: str, previous: str, **overrides):
    from dog_breed.operators.smoke_test import EndpointSmokeTestOperator

    return EndpointSmokeTestOperator(
        task_id="smoke_test",
        function_name=served.function_name,
        dataset_s3_uri=DATASET_URI,
        endpoint_name=served.endpoint_name,
        image_count=2,
        min_top1_accuracy=1.01,  # an expectation no model meets: the smoke test must fail
        rollback_endpoint_config=previous,
        waiter_delay=1,
        waiter_max_attempts=120,
        aws_conn_id=conn_id,
        botocore_config=BOTOCORE_CONFIG,
        **overrides,
    )


async def first_event(trigger) -> dict:
    async for event in trigger.run():
        return event.payload
    raise AssertionError(f"{trigger!r} ended without an event")


@dataclass
class RequestLoop:
    """Good requests to the endpoint, one after another, until stopped or for at most 30 s."""

    served: ServedModel
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        runtime = self.served.client("sagemaker-runtime", read_timeout=60)
        body = good_jpeg(seed=11)
        deadline = time.monotonic() + SWAP_LOOP_SECONDS
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                runtime.invoke_endpoint(
                    EndpointName=self.served.endpoint_name, ContentType="image/jpeg", Body=body
                )["Body"].read()
                self.ok += 1
            except Exception as error:  # any failure during the swap is the finding
                self.failures.append(f"{type(error).__name__}: {error}")


def test_failing_smoke_test_rolls_back_with_the_endpoint_in_service(served, connection):
    from dog_breed.operators.smoke_test import SmokeTestFailed

    sagemaker = served.client("sagemaker")
    previous = serve_a_challenger(served)
    operator = smoke_test_that_fails(served, connection, previous, deferrable=False)
    loop = RequestLoop(served)
    thread = threading.Thread(target=loop.run, name="swap-loop")
    thread.start()
    try:
        with pytest.raises(SmokeTestFailed, match="accuracy"):
            operator.execute({})
    finally:
        loop.stop.set()
        thread.join(SWAP_LOOP_SECONDS + 70)
    assert not thread.is_alive(), "the request loop hung"

    print(f"\nrequests during smoke test + rollback: {loop.ok} ok, {len(loop.failures)} failed")
    endpoint = sagemaker.describe_endpoint(EndpointName=served.endpoint_name)
    assert endpoint["EndpointConfigName"] == previous
    assert endpoint["EndpointStatus"] == "InService"
    assert loop.failures == [], f"{len(loop.failures)} requests failed during the swap: {loop.failures[:3]}"
    assert loop.ok > 0, "no request went through during the rollback"


def test_a_deferred_rollback_waits_in_the_trigger_and_ends_in_service(served, connection):
    """The hour-long wait of a rollback runs in the triggerer: the task defers right after
    UpdateEndpoint, the provider's SageMakerTrigger polls the endpoint back to InService, and
    the resumed task puts the champion tags back and fails with the smoke test's reason."""
    from airflow.sdk.exceptions import TaskDeferred

    from dog_breed.operators.smoke_test import SmokeTestFailed

    sagemaker = served.client("sagemaker")
    previous = serve_a_challenger(served)
    operator = smoke_test_that_fails(served, connection, previous, deferrable=True)
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    event = asyncio.run(asyncio.wait_for(first_event(deferred.value.trigger), timeout=240))
    assert event["status"] == "success", event
    resumed = getattr(operator, deferred.value.method_name)
    with pytest.raises(SmokeTestFailed, match="accuracy"):
        resumed({}, event, **deferred.value.kwargs)
    endpoint = sagemaker.describe_endpoint(EndpointName=served.endpoint_name)
    assert (endpoint["EndpointConfigName"], endpoint["EndpointStatus"]) == (previous, "InService")


def test_a_deferred_lambda_deploy_waits_for_provisioned_concurrency_in_the_trigger(served, connection):
    """Against local_aws (which allocates provisioned concurrency for real, IN_PROGRESS then
    READY), the trigger's async waiter from waiters/lambda.json sees READY."""
    from airflow.sdk.exceptions import TaskDeferred

    from dog_breed.operators.lambda_deploy import LambdaDeployFunctionOperator

    operator = LambdaDeployFunctionOperator(
        task_id="deploy_lambda",
        function_name=f"deferred-{uuid.uuid4().hex[:6]}",
        endpoint_name=served.endpoint_name,
        provisioned_concurrency=1,
        waiter_delay=1,
        waiter_max_attempts=120,
        deferrable=True,
        aws_conn_id=connection,
        botocore_config=BOTOCORE_CONFIG,
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    event = asyncio.run(asyncio.wait_for(first_event(deferred.value.trigger), timeout=240))
    assert event == {"status": "success", "qualifier": "live"}
    result = getattr(operator, deferred.value.method_name)({}, event, **deferred.value.kwargs)
    assert result["ProvisionedConcurrency"] == 1 and result["Alias"] == "live"
    config = served.client("lambda").get_provisioned_concurrency_config(
        FunctionName=result["FunctionName"], Qualifier="live"
    )
    assert config["Status"] == "READY"


# ------------------------------------------------------------------------ restart under a wait
SLOW_TRAINING = textwrap.dedent(
    """
    import time
    print("training slowly", flush=True)
    time.sleep(300)
    """
)


def start_slow_training_job(url: str) -> str:
    import io
    import tarfile

    s3 = client(url, "s3")
    s3.create_bucket(Bucket="restart-test")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        data = SLOW_TRAINING.encode()
        info = tarfile.TarInfo("train.py")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket="restart-test", Key="code/sourcedir.tar.gz", Body=buffer.getvalue())
    s3.put_object(Bucket="restart-test", Key="data/train/a.txt", Body=b"x")
    name = f"restart-{uuid.uuid4().hex[:8]}"
    client(url, "sagemaker").create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311",
            "TrainingInputMode": "File",
        },
        RoleArn="arn:aws:iam::123456789012:role/DogBreedSageMakerExecution",
        HyperParameters={
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": '"s3://restart-test/code/sourcedir.tar.gz"',
        },
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": "s3://restart-test/data/train",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        OutputDataConfig={"S3OutputPath": "s3://restart-test/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 5},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )
    return name


def test_local_aws_restart_under_a_waiting_task_ends_the_wait_clearly(tmp_path, monkeypatch):
    """The provider's SageMakerHook waits on a training job; local_aws dies and comes back on
    the same port without the job (state is in memory). The wait must end, with an error
    naming the job, well before its own ingestion limit."""
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    port = free_port()
    aws = LocalAwsProcess(tmp_path / "first", port=port).start()
    try:
        job = start_slow_training_job(aws.url)
        sagemaker = client(aws.url, "sagemaker", attempts=3)
        hook = SageMakerHook(aws_conn_id=None)
        monkeypatch.setattr(SageMakerHook, "conn", property(lambda self: sagemaker))
        outcome: dict[str, object] = {}

        def wait() -> None:
            started = time.monotonic()
            try:
                outcome["result"] = hook.check_status(
                    job, "TrainingJobStatus", hook.describe_training_job, 1, max_ingestion_time=240
                )
            except Exception as error:
                outcome["error"] = error
            outcome["seconds"] = time.monotonic() - started

        waiter = threading.Thread(target=wait, name="waiting-task")
        waiter.start()
        time.sleep(3)
        assert waiter.is_alive(), f"the wait ended before the restart: {outcome}"
        aws.stop()
        time.sleep(2)  # the waiting task polls a dead port for a while
        aws = LocalAwsProcess(tmp_path / "second", port=port).start()
        waiter.join(120)
    finally:
        aws.stop()
    assert not waiter.is_alive(), "the waiting task hung after local_aws restarted"
    assert "result" not in outcome, f"the wait reported success for a job that no longer exists: {outcome}"
    error = outcome["error"]
    assert isinstance(error, BaseException)
    # The provider's hook re-raises a ClientError as "AWS request failed, check logs for more
    # info"; the error it replaced (the exception's context) is the one that names the job.
    reasons = " / ".join(f"{type(e).__name__}: {e}" for e in (error, error.__context__) if e is not None)
    print(f"\nthe wait ended after {outcome['seconds']:.1f} s: {reasons}")
    assert job in reasons or "Could not find" in reasons or "connect" in reasons.lower(), reasons
    assert outcome["seconds"] < 120, outcome
