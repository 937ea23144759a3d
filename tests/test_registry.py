"""What the model registry keeps about a model and what the review compares: pure functions."""

from __future__ import annotations

import json

import pytest

from dog_breed import approval, gate, registry

EVALUATION = {  # model_scripts/training_telemetry.evaluation_record's layout
    "split": "test",
    "loss": 0.61,
    "accuracy": 0.7,
    "images": 10,
    "per_class": [
        {"class": "001.Affenpinscher", "correct": 4, "total": 4},
        {"class": "002.Afghan_hound", "correct": 3, "total": 4},
        {"class": "003.Airedale_terrier", "correct": 0, "total": 2},
    ],
}
MODEL = "s3://bucket/artifacts/output/dog-breed-pipeline-train-1234abcd/output/model.tar.gz"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/dog-breed-classifier/{}"


def test_the_report_lives_beside_the_model_and_says_per_breed_accuracy():
    assert registry.report_uri(MODEL) == MODEL.replace("model.tar.gz", "model-quality.json")
    assert registry.output_archive_uri(MODEL) == MODEL.replace("model.tar.gz", "output.tar.gz")
    with pytest.raises(ValueError):
        registry.report_uri("/local/model.tar.gz")
    report = registry.quality_report(EVALUATION, training_job="job", test_data_uri="s3://d/dogImages/test/")
    assert registry.report_metrics(report) == (pytest.approx(0.7), 0.61)
    assert report["dataset"] == {"split": "test", "item_count": 10, "s3_uri": "s3://d/dogImages/test/"}
    assert [(b["class"], b["accuracy"]) for b in report["per_class"]] == [
        ("001.Affenpinscher", 1.0),
        ("002.Afghan_hound", 0.75),
        ("003.Airedale_terrier", 0.0),
    ]
    payload = registry.report_bytes(report)
    assert json.loads(payload) == report
    assert (
        registry.content_digest(payload).startswith("sha256:") and len(registry.content_digest(payload)) == 71
    )


def test_a_report_refuses_an_evaluation_without_sane_per_class_counts():
    with pytest.raises(ValueError, match="no per-class"):
        registry.quality_report({"loss": 1.0, "per_class": []}, training_job="j", test_data_uri="s3://d/t/")
    broken = {**EVALUATION, "per_class": [{"class": "a", "correct": 5, "total": 4}]}
    with pytest.raises(ValueError, match="5 correct of 4"):
        registry.quality_report(broken, training_job="j", test_data_uri="s3://d/t/")


def test_customer_metadata_fits_what_aws_accepts():
    metadata = registry.customer_metadata(
        training_job="t",
        tuning_job="h",
        dag_id="dog_breed_pipeline",
        dag_run_id="manual__2025-01-06T03:00:00+00:00 (retry #2)" + "x" * 300,
        dataset_s3_uri="s3://b/dogImages",
        test_accuracy=0.5,
        test_loss=1.25,
    )
    assert metadata[registry.METADATA_DAG_RUN].startswith("manual__2025-01-06T03:00:00+00:00 _retry _2_")
    assert len(metadata[registry.METADATA_DAG_RUN]) == 256
    assert (metadata[registry.METADATA_TEST_ACCURACY], metadata[registry.METADATA_TEST_LOSS]) == (
        "0.500000",
        "1.250000",
    )


def test_a_version_summary_and_its_number_come_from_describe_model_package():
    described = {
        "ModelPackageArn": ARN.format(7),
        "ModelApprovalStatus": "Approved",
        "CustomerMetadataProperties": {"TrainingJobName": "t", "TestAccuracy": "0.912", "TestLoss": "bad"},
        "ModelMetrics": {"ModelQuality": {"Statistics": {"S3Uri": "s3://b/r.json", "ContentType": "x"}}},
    }
    summary = registry.version_summary(described)
    assert (summary.version, summary.training_job, summary.test_accuracy, summary.test_loss) == (
        7,
        "t",
        0.912,
        None,
    )
    assert registry.statistics_uri(described) == "s3://b/r.json"
    assert registry.statistics_uri({}) is None
    assert registry.package_version("arn:aws:sagemaker:us-east-1:1:model-package/solo") is None


def report(accuracies: dict[str, float]) -> dict:
    return {"per_class": [{"class": name, "accuracy": value} for name, value in accuracies.items()]}


def test_breed_changes_put_the_worst_regression_first():
    champion = report({"a": 0.9, "b": 0.5, "c": 0.8, "gone": 1.0})
    challenger = report({"a": 0.6, "b": 0.7, "c": 0.6, "new": 0.1})
    changes = registry.breed_changes(challenger, champion)
    assert [(c.breed, round(c.change, 3)) for c in changes] == [("a", -0.3), ("c", -0.2), ("b", 0.2)]


def decision(deploy: bool) -> gate.GateDecision:
    return gate.decide(0.8 if deploy else 0.4, 0.7, None)


@pytest.mark.parametrize(
    ("mode", "deploy", "status"),
    [
        ("auto", True, "Approved"),
        ("auto", False, "Rejected"),
        ("manual", True, None),
        ("manual", False, None),  # the gate only advises the reviewer
        ("gate-then-manual", True, None),
        ("gate-then-manual", False, "Rejected"),
    ],
)
def test_the_approval_mode_says_whether_the_gate_or_a_person_decides(mode, deploy, status):
    assert approval.gate_verdict(mode, decision(deploy)) == status
    assert approval.person_decides(mode) is (mode != "auto")


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="unknown approval mode"):
        approval.gate_verdict("sometimes", decision(True))


def test_descriptions_say_who_decided_and_why():
    assert approval.gate_description("Approved", "ok") == "Approved by the quality gate: ok"
    assert approval.review_status("Approve") == "Approved" and approval.review_status("Reject") == "Rejected"
    with pytest.raises(ValueError):
        approval.review_status("Maybe")
    assert approval.review_description("Rejected", "admin", " worse on terriers ") == (
        "Rejected by admin in Airflow: worse on terriers"
    )
    assert (
        approval.review_description("Approved", None, "")
        == "Approved by an unknown user in Airflow (no comment)"
    )
    assert len(approval.review_description("Approved", "admin", "x" * 5000)) == 1024
    assert "timed out" in approval.timeout_description(0.5) and "0.5 h" in approval.timeout_description(0.5)


def summary(version: int, accuracy: float, job: str) -> registry.VersionSummary:
    return registry.VersionSummary(
        package_arn=ARN.format(version), version=version, approval_status="Approved" if version == 1 else
        "PendingManualApproval", approval_description=None, training_job=job, tuning_job=f"hpo-{job}",
        dag_run=f"run-{job}", dataset="s3://b/dogImages", test_accuracy=accuracy, test_loss=0.5,
    )  # fmt: skip


def test_the_review_shows_both_versions_the_gate_and_the_regressions_worst_first():
    champion_report = report({f"{n:03d}.Breed": 0.9 for n in range(20)})
    challenger_report = report({f"{n:03d}.Breed": 0.9 - n / 100 for n in range(20)})
    comparison = approval.comparison(
        group="dog-breed-classifier",
        endpoint="dog-breed-classifier",
        mode="manual",
        decision=gate.decide(0.85, 0.7, 0.88),
        challenger=summary(2, 0.85, "new-job"),
        champion=summary(1, 0.88, "old-job"),
        challenger_report=challenger_report,
        champion_report=champion_report,
    )
    body = approval.review_body(comparison)
    assert "| test accuracy | 0.8500 | 0.8800 |" in body
    assert "| training job | `new-job` | `old-job` |" in body
    assert "| data | `s3://b/dogImages` | `s3://b/dogImages` |" in body
    assert "would not deploy" in body and "below the live model's 0.8800" in body
    assert "19 of 20 breeds got worse" in body
    rows = [line for line in body.splitlines() if line.startswith("| 0")]
    assert rows[0].startswith("| 019.Breed | 0.900 | 0.710 | -0.190 |"), "the worst regression first"
    assert len(rows) == approval.REGRESSIONS_SHOWN and "… and 4 more." in body
    assert (
        approval.review_subject(comparison)
        == "Deploy dog-breed-classifier version 2 to dog-breed-classifier?"
    )


def test_the_first_model_has_nothing_to_compare_with():
    comparison = approval.comparison(
        group="g", endpoint="e", mode="manual", decision=gate.decide(0.8, 0.7, None),
        challenger=summary(1, 0.8, "job"), champion=None, challenger_report=report({"a": 1.0}),
        champion_report=None,
    )  # fmt: skip
    body = approval.review_body(comparison)
    assert "Nothing is live yet" in body and "| test accuracy | 0.8000 | — |" in body


def test_a_live_model_from_before_the_registry_is_compared_by_its_accuracy_tag_only():
    comparison = approval.comparison(
        group="g", endpoint="e", mode="manual", decision=gate.decide(0.8, 0.7, 0.75),
        challenger=summary(1, 0.8, "job"), champion=None, challenger_report=report({"a": 1.0}),
        champion_report=None,
    )  # fmt: skip
    body = approval.review_body(comparison)
    assert "| test accuracy | 0.8000 | 0.7500 |" in body and "no registry package" in body


def test_a_rollbacks_description_says_by_whom_and_why_keeps_the_earlier_decision_and_fits():
    said = registry.rollback_description("dogs", "the smoke test", " 2 problem(s) ", "Approved by ada")
    assert (
        said
        == "Rejected: rolled back from endpoint dogs by the smoke test: 2 problem(s) (was: Approved by ada)"
    )
    assert registry.rollback_description("dogs", "SageMaker", "alarm", None).endswith("by SageMaker: alarm")
    long = registry.rollback_description("dogs", "SageMaker", "x" * 2000, "Approved by the quality gate")
    assert len(long) == 1024 and long.endswith("…")  # ApprovalDescription allows 1024 characters
