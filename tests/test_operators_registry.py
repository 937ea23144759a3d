"""Registration, the gate's approval, the review and the deploy guard, against local_aws's registry.

moto's registry would not do here: it overwrites an existing group (the provider's hook expects
AWS's "already exists" error), replaces customer metadata on update and cannot create a model
from a package. The tasks and operators run as the workers run them, through the
``aws_default`` connection pointed at an in-process local_aws.
"""

from __future__ import annotations

import io
import json
import tarfile
from types import SimpleNamespace
from typing import Any

import airflow_fixtures  # noqa: F401  (AIRFLOW_HOME before Airflow)
import pytest

from dog_breed import approval, gate, registry, specs, tasks
from dog_breed.operators.approval import ModelVersionApprovalOperator
from dog_breed.operators.sagemaker_rerun import (
    IdempotentSageMakerModelOperator,
    IdempotentSageMakerRegisterModelVersionOperator,
)
from dog_breed.params import PipelineSettings
from local_aws.devtools.sandbox import client
from local_aws.protocol.server import LocalAwsServer
from local_aws.services import only

BUCKET = "dog-breed-pipeline"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.6-cpu-py312"
IMAGES = {"inference": IMAGE}
BREEDS = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]
COMMON = {"aws_conn_id": "aws_default", "region_name": "us-east-1"}


@pytest.fixture(scope="module")
def local_aws(tmp_path_factory):
    services = only("sagemaker-tags", "model-registry", "hosting")
    with LocalAwsServer(tmp_path_factory.mktemp("registry_ops"), service_classes=services) as server:
        client("s3", server.url).create_bucket(Bucket=BUCKET)
        yield server


@pytest.fixture
def aws(local_aws, monkeypatch, tmp_path):
    connection = {"conn_type": "aws", "login": "x", "password": "x",
                  "extra": {"endpoint_url": local_aws.url, "region_name": "us-east-1"}}  # fmt: skip
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
    return SimpleNamespace(
        sm=client("sagemaker", local_aws.url), s3=client("s3", local_aws.url), url=local_aws.url
    )


_runs = iter(range(1, 1000))


def params(**values: Any) -> dict[str, Any]:
    """A run's Params: its own group and endpoint, so tests do not meet each other's versions."""
    number = next(_runs)
    return {
        "model_package_group": f"group-{number}",
        "endpoint_name": f"endpoint-{number}",
        "accuracy_threshold": 0.5,
        "dataset_s3_uri": f"s3://{BUCKET}/dogImages",
        "artifacts_s3_uri": f"s3://{BUCKET}/artifacts",
        **values,
    }


def trained(aws, job: str, correct: list[int], total: int = 4, loss: float = 0.7) -> dict[str, Any]:
    """What the train task returns for a finished job, with its output.tar.gz in S3 (evaluation.json)."""
    prefix = f"artifacts/output/{job}/output"
    evaluation = {
        "split": "test",
        "loss": loss,
        "per_class": [
            {"class": b, "correct": c, "total": total} for b, c in zip(BREEDS, correct, strict=True)
        ],
    }
    aws.s3.put_object(
        Bucket=BUCKET, Key=f"{prefix}/output.tar.gz", Body=tar_gz({"evaluation.json": evaluation})
    )
    aws.s3.put_object(Bucket=BUCKET, Key=f"{prefix}/model.tar.gz", Body=b"weights")
    accuracy = sum(correct) / (total * len(BREEDS))
    return {
        "Training": {
            "TrainingJobName": job,
            "ModelArtifacts": {"S3ModelArtifacts": f"s3://{BUCKET}/{prefix}/model.tar.gz"},
            "FinalMetricDataList": [
                {"MetricName": "test:accuracy", "Value": accuracy},
                {"MetricName": "test:loss", "Value": loss},
            ],
        }
    }


def tar_gz(files: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def run_of(job: str) -> SimpleNamespace:
    return SimpleNamespace(dag_id="dog_breed_pipeline", run_id=f"manual__{job}")


def register(aws, run_params: dict, job: str, correct: list[int]) -> tuple[dict, dict]:
    """model_package_request + register_model, as the DAG chains them: (training, registered)."""
    training = trained(aws, job, correct)
    tuning = {"Tuning": {"HyperParameterTuningJobName": f"hpo-{job}"}}
    request = tasks.model_package_request(training, tuning, IMAGES, params=run_params, dag_run=run_of(job))
    operator = IdempotentSageMakerRegisterModelVersionOperator(
        task_id="register_model",
        package_group_name=run_params["model_package_group"],
        package_group_desc=registry.GROUP_DESCRIPTION,
        image_uri=request["image_uri"],
        model_url=request["model_url"],
        package_desc=request["description"],
        extras=request["extras"],
        **COMMON,
    )
    return training, operator.execute({})


def versions(aws, group: str) -> list[tuple[int, str]]:
    summaries = aws.sm.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
    return [(s["ModelPackageVersion"], s["ModelApprovalStatus"]) for s in summaries]


def test_a_trained_model_is_registered_once_with_its_report_metrics_and_provenance(aws):
    run = params()
    training, registered = register(aws, run, "job-a", [4, 3, 1])
    package = registered["ModelPackage"]
    assert package["ModelPackageArn"].endswith(f":model-package/{run['model_package_group']}/1")
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    group = aws.sm.describe_model_package_group(ModelPackageGroupName=run["model_package_group"])
    assert group["ModelPackageGroupDescription"] == registry.GROUP_DESCRIPTION  # not the package's
    metadata = package["CustomerMetadataProperties"]
    assert metadata["TrainingJobName"] == "job-a" and metadata["TuningJobName"] == "hpo-job-a"
    assert (metadata["DagId"], metadata["DagRunId"]) == ("dog_breed_pipeline", "manual__job-a")
    assert metadata["DatasetS3Uri"] == run["dataset_s3_uri"] and metadata["TestAccuracy"] == "0.666667"
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["Image"] == IMAGE
    assert container["ModelDataUrl"] == training["Training"]["ModelArtifacts"]["S3ModelArtifacts"]
    assert container["Environment"] == specs.serving_environment(PipelineSettings.from_params(run))
    statistics = package["ModelMetrics"]["ModelQuality"]["Statistics"]
    body = aws.s3.get_object(Bucket=BUCKET, Key="artifacts/output/job-a/output/model-quality.json")[
        "Body"
    ].read()
    assert statistics["S3Uri"] == f"s3://{BUCKET}/artifacts/output/job-a/output/model-quality.json"
    assert statistics["ContentDigest"] == registry.content_digest(body), "the digest is of the bytes in S3"
    report = json.loads(body)
    assert [(b["class"], b["accuracy"]) for b in report["per_class"]] == list(
        zip(BREEDS, [1.0, 0.75, 0.25], strict=True)
    )

    _, again = register(aws, run, "job-a", [4, 3, 1])  # a retried or cleared task
    assert again["ModelPackage"]["ModelPackageArn"] == package["ModelPackageArn"]
    register(aws, run, "job-b", [4, 4, 4])  # the next run's model
    assert versions(aws, run["model_package_group"]) == [
        (1, "PendingManualApproval"),
        (2, "PendingManualApproval"),
    ]


def test_a_model_without_its_evaluation_is_not_registered(aws):
    training = trained(aws, "job-old", [1, 1, 1])
    aws.s3.put_object(
        Bucket=BUCKET, Key="artifacts/output/job-old/output/output.tar.gz", Body=tar_gz({"x.json": {}})
    )
    with pytest.raises(ValueError, match=r"left no evaluation\.json"):
        tasks.model_package_request(
            training,
            {"Tuning": {"HyperParameterTuningJobName": "h"}},
            IMAGES,
            params=params(),
            dag_run=run_of("x"),
        )


def test_in_auto_mode_the_gate_approves_or_rejects_with_its_reason(aws):
    from airflow.sdk.exceptions import AirflowSkipException

    run = params(approval="auto", accuracy_threshold=0.6)
    good_training, good = register(aws, run, "job-good", [4, 3, 2])
    decision = tasks.quality_gate(good_training, good, params=run)
    assert (decision["deploy"], decision["status"], decision["mode"]) == (True, "Approved", "auto")
    described = aws.sm.describe_model_package(ModelPackageName=decision["package_arn"])
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"].startswith("Approved by the quality gate: test accuracy 0.7500")

    bad_training, bad = register(aws, run, "job-bad", [1, 1, 1])
    with pytest.raises(AirflowSkipException, match="Rejected"):
        tasks.quality_gate(bad_training, bad, params=run)
    described = aws.sm.describe_model_package(ModelPackageName=bad["ModelPackage"]["ModelPackageArn"])
    assert described["ModelApprovalStatus"] == "Rejected"
    assert "below the threshold 0.6000" in described["ApprovalDescription"]
    # A rerun keeps what was decided, even if the threshold changed since.
    assert (
        tasks.quality_gate(good_training, good, params={**run, "accuracy_threshold": 0.99})["status"]
        == "Approved"
    )


def serve(aws, run: dict, package_arn: str) -> None:
    """A live endpoint tagged with the version it serves (as tag_endpoint leaves it)."""
    name = run["endpoint_name"]
    aws.sm.create_model(ModelName=name, ExecutionRoleArn=PipelineSettings().sagemaker_role_arn,
                        PrimaryContainer={"Image": IMAGE})  # fmt: skip
    variant = {
        "VariantName": "AllTraffic",
        "ModelName": name,
        "InitialInstanceCount": 1,
        "InstanceType": "ml.m5.large",
    }
    aws.sm.create_endpoint_config(EndpointConfigName=name, ProductionVariants=[variant])
    arn = aws.sm.create_endpoint(EndpointName=name, EndpointConfigName=name)["EndpointArn"]
    aws.sm.add_tags(ResourceArn=arn, Tags=specs.tags({gate.TAG_MODEL_PACKAGE_ARN: package_arn}))


def test_the_champion_is_the_version_behind_the_live_endpoint(aws):
    run = params(approval="manual")
    _, champion = register(aws, run, "job-champion", [4, 4, 2])
    serve(aws, run, champion["ModelPackage"]["ModelPackageArn"])
    training, challenger = register(aws, run, "job-challenger", [4, 2, 3])

    decision = tasks.quality_gate(training, challenger, params=run)
    assert decision["champion_accuracy"] == pytest.approx(10 / 12, abs=1e-6)
    assert (decision["deploy"], decision["status"]) == (False, "PendingManualApproval"), "manual: advice only"
    comparison = decision["comparison"]
    assert comparison["champion"]["training_job"] == "job-champion"
    assert comparison["challenger"]["training_job"] == "job-challenger"
    assert [(b["breed"], b["champion"], b["challenger"]) for b in comparison["breeds"]] == [
        ("002.Afghan_hound", 1.0, 0.5),
        ("001.Affenpinscher", 1.0, 1.0),
        ("003.Airedale_terrier", 0.5, 0.75),
    ]
    assert versions(aws, run["model_package_group"]) == [
        (1, "PendingManualApproval"),
        (2, "PendingManualApproval"),
    ]


def test_gate_then_manual_rejects_losers_and_leaves_winners_to_a_person(aws, monkeypatch):
    from airflow.providers.standard.operators import hitl
    from airflow.sdk.exceptions import AirflowSkipException, TaskAwaitingInput

    asked = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **request: asked.append(request))
    run = params(approval="gate-then-manual", accuracy_threshold=0.6)
    loser_training, loser = register(aws, run, "job-loser", [1, 2, 1])
    with pytest.raises(AirflowSkipException):
        tasks.quality_gate(loser_training, loser, params=run)
    loser_arn = loser["ModelPackage"]["ModelPackageArn"]
    with pytest.raises(AirflowSkipException, match="Rejected by the quality gate"):
        # were the review reached anyway (a cleared task), the registry's verdict stands
        review({"package_arn": loser_arn, "mode": "gate-then-manual"}).execute({})
    assert asked == [], "nobody is asked about a clear loser"

    winner_training, winner = register(aws, run, "job-winner", [4, 4, 3])
    decision = tasks.quality_gate(winner_training, winner, params=run)
    assert decision["status"] == "PendingManualApproval"
    with pytest.raises(TaskAwaitingInput):  # the winner waits for a person
        review(decision).execute({"task_instance": SimpleNamespace(id="ti-winner")})
    assert [request["subject"] for request in asked] == [
        f"Deploy {run['model_package_group']} version 2 to {run['endpoint_name']}?"
    ]
    assert versions(aws, run["model_package_group"]) == [(1, "Rejected"), (2, "PendingManualApproval")]


def review(decision: dict, hours: float = 24) -> ModelVersionApprovalOperator:
    return ModelVersionApprovalOperator(
        task_id="review", gate=decision, approval_timeout_hours=hours, **COMMON
    )


def test_the_review_asks_a_person_with_both_models_side_by_side(aws, monkeypatch):
    from airflow.providers.standard.operators import hitl
    from airflow.sdk.exceptions import TaskAwaitingInput

    run = params(approval="manual")
    training, registered = register(aws, run, "job-review", [4, 3, 3])
    decision = tasks.quality_gate(training, registered, params=run)
    asked = {}
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **request: asked.update(request))
    context = {"task_instance": SimpleNamespace(id="ti-1")}
    operator = review(decision, hours=1.5)
    with pytest.raises(TaskAwaitingInput) as parked:  # Airflow 3.3: no trigger, no worker slot
        operator.execute(context)
    assert parked.value.method_name == "execute_complete" and parked.value.timeout.total_seconds() == 5400
    assert asked["options"] == [approval.APPROVE, approval.REJECT] and asked["defaults"] is None
    assert asked["subject"] == f"Deploy {run['model_package_group']} version 1 to {run['endpoint_name']}?"
    assert "| training job | `job-review` | — |" in asked["body"]
    assert set(asked["params"]) == {approval.COMMENT_PARAM}, (
        "the form asks for a comment, not the DAG's Params"
    )


def answer(option: str, comment: str = "") -> dict[str, Any]:
    """The event the Core API's response hands execute_complete (HITLDetail.as_resume_event_payload)."""
    from airflow.sdk.timezone import utcnow

    return {
        "chosen_options": [option],
        "params_input": {approval.COMMENT_PARAM: comment},
        "responded_at": utcnow(),
        "responded_by_user": {"id": "admin", "name": "admin"},
        "timedout": False,
    }


@pytest.mark.parametrize(
    ("event", "status", "description"),
    [
        (
            answer("Approve", "better on terriers"),
            "Approved",
            "Approved by admin in Airflow: better on terriers",
        ),
        (answer("Reject", "worse on hounds"), "Rejected", "Rejected by admin in Airflow: worse on hounds"),
        (  # what the scheduler's timeout sweep sends when nobody answered and no defaults are set
            {
                "error": "The Human-in-the-loop response timeout has passed without a response.",
                "error_type": "timeout",
            },
            "Rejected",
            "Rejected: timed out, nobody answered the review within 2 h",
        ),
    ],
)
def test_the_answer_becomes_the_versions_status_and_description(aws, event, status, description):
    run = params(approval="manual")
    training, registered = register(aws, run, f"job-{status.lower()}-{len(description)}", [4, 3, 3])
    decision = tasks.quality_gate(training, registered, params=run)
    outcome = review(decision, hours=2).execute_complete({}, event)
    assert (outcome["status"], outcome["description"]) == (status, description)
    described = aws.sm.describe_model_package(ModelPackageName=decision["package_arn"])
    assert (described["ModelApprovalStatus"], described["ApprovalDescription"]) == (status, description)


def test_a_retry_takes_the_answer_its_earlier_try_got_instead_of_asking_again(aws, monkeypatch):
    """Airflow 3.3 retries a review answered while it parked (the executor's late report reads as
    "state changed externally"); the answer is in the task instance's HITL detail."""
    from airflow.providers.standard.operators import hitl
    from airflow.sdk.api.datamodels._generated import HITLDetailResponse, HITLUser
    from airflow.sdk.execution_time import hitl as sdk_hitl
    from airflow.sdk.timezone import utcnow

    run = params(approval="manual")
    training, registered = register(aws, run, "job-retried-review", [4, 3, 3])
    decision = tasks.quality_gate(training, registered, params=run)
    asked: list[dict] = []
    monkeypatch.setattr(hitl, "upsert_hitl_detail", lambda **request: asked.append(request))
    details = {
        "ti-answered": HITLDetailResponse(
            response_received=True, responded_by_user=HITLUser(id="admin", name="admin"),
            responded_at=utcnow(), chosen_options=["Reject"], params_input={approval.COMMENT_PARAM: "no"},
        ),
    }  # fmt: skip

    def detail_of(ti_id):
        if ti_id not in details:
            raise RuntimeError("404: no Human-in-the-loop detail")
        return details[ti_id]

    monkeypatch.setattr(sdk_hitl, "get_hitl_detail_content_detail", detail_of)
    retried = {"task_instance": SimpleNamespace(id="ti-answered", try_number=2)}
    outcome = review(decision).execute(retried)
    assert (outcome["status"], outcome["description"]) == ("Rejected", "Rejected by admin in Airflow: no")
    assert not asked, "asked again, which would have overwritten the answer"
    described = aws.sm.describe_model_package(ModelPackageName=decision["package_arn"])
    assert described["ModelApprovalStatus"] == "Rejected"


def test_a_decided_version_is_not_reviewed_again(aws):
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    run = params(approval="manual")
    training, registered = register(aws, run, "job-decided", [4, 3, 3])
    decision = tasks.quality_gate(training, registered, params=run)
    aws.sm.update_model_package(ModelPackageArn=decision["package_arn"], ModelApprovalStatus="Approved",
                                ApprovalDescription="Approved by admin in Airflow: ok")  # fmt: skip
    assert review(decision).execute({})["status"] == "Approved"
    aws.sm.update_model_package(ModelPackageArn=decision["package_arn"], ModelApprovalStatus="Rejected")
    with pytest.raises(AirflowSkipException, match="Rejected"):
        review(decision).execute({})
    aws.sm.update_model_package(
        ModelPackageArn=decision["package_arn"], ModelApprovalStatus="PendingManualApproval"
    )
    with pytest.raises(AirflowFailException, match="the quality gate decides"):
        review({**decision, "mode": "auto"}).execute({})


def test_only_an_approved_version_becomes_a_model(aws):
    from airflow.sdk.exceptions import AirflowFailException

    run = params(approval="manual")
    _, registered = register(aws, run, "job-deploy", [4, 3, 3])
    arn = registered["ModelPackage"]["ModelPackageArn"]
    settings = PipelineSettings.from_params(run)
    config = specs.model_request(settings, model_name="model-job-deploy", model_package_arn=arn, run_tags={})

    for status in ("PendingManualApproval", "Rejected"):
        aws.sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus=status, ApprovalDescription="no")
        with pytest.raises(AirflowFailException, match=f"is {status}: no; only Approved ones deploy"):
            IdempotentSageMakerModelOperator(task_id="create_model", config=dict(config), **COMMON).execute(
                {}
            )
        assert "model-job-deploy" not in {m["ModelName"] for m in aws.sm.list_models()["Models"]}
    aws.sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Approved")
    created = IdempotentSageMakerModelOperator(task_id="create_model", config=dict(config), **COMMON).execute(
        {}
    )
    assert created["Model"]["PrimaryContainer"]["ModelPackageName"] == arn
    # Rejected after the model exists: a rerun of create_model still refuses to hand it on.
    aws.sm.update_model_package(ModelPackageArn=arn, ModelApprovalStatus="Rejected")
    with pytest.raises(AirflowFailException):
        IdempotentSageMakerModelOperator(task_id="create_model", config=dict(config), **COMMON).execute({})
