"""The DAG's Python task bodies (dog_breed.tasks) on moto: the dataset and the source package
in S3, the rollback bookkeeping and champion tags in SageMaker, autoscaling deregistration."""

from __future__ import annotations

import airflow_fixtures
import boto3
import pytest
from moto import mock_aws

from dog_breed import gate, packaging, specs, tasks
from dog_breed.dataset import DatasetError

REGION = airflow_fixtures.REGION
CLASSES = ["001.Affenpinscher", "002.Afghan_hound"]


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket="data")
        yield client


def put_dataset(s3, splits=("train", "valid", "test"), classes=CLASSES):
    for split in splits:
        for folder in classes:
            s3.put_object(Bucket="data", Key=f"dogImages/{split}/{folder}/a.jpg", Body=b"x")


def test_check_dataset_counts_a_good_layout(s3):
    put_dataset(s3)
    s3.put_object(Bucket="data", Key="dogImages/README.txt", Body=b"ignored")
    summary = tasks.check_dataset(params={"dataset_s3_uri": "s3://data/dogImages/"})
    assert summary["num_classes"] == 2 and summary["classes"] == CLASSES
    assert summary["images_per_split"] == {"train": 2, "valid": 2, "test": 2}


def test_check_dataset_names_every_problem(s3):
    put_dataset(s3, splits=("train", "valid"))
    s3.put_object(Bucket="data", Key="dogImages/valid/003.Airedale_terrier/a.jpg", Body=b"x")
    with pytest.raises(DatasetError) as error:
        tasks.check_dataset(params={"dataset_s3_uri": "s3://data/dogImages"})
    assert "test/" in str(error.value) and "003.Airedale_terrier" in str(error.value)


def test_package_source_is_content_addressed_and_uploads_once(s3, tmp_path, monkeypatch):
    (tmp_path / "train.py").write_text("print('train')\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"junk")
    monkeypatch.setenv(packaging.MODEL_SCRIPTS_ENV, str(tmp_path))
    params = {"artifacts_s3_uri": "s3://data/artifacts"}
    first = tasks.package_source(params=params)
    second = tasks.package_source(params=params)
    assert first["uploaded"] is True and second["uploaded"] is False
    assert first["s3_uri"] == second["s3_uri"]
    assert first["s3_uri"].startswith("s3://data/artifacts/code/") and first["s3_uri"].endswith(
        "/sourcedir.tar.gz"
    )
    (tmp_path / "train.py").write_text("print('changed')\n")
    assert tasks.package_source(params=params)["s3_uri"] != first["s3_uri"]


def test_tarball_is_deterministic_and_skips_caches(tmp_path):
    import io
    import tarfile

    (tmp_path / "inference.py").write_text("x = 1\n")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"junk")
    first = packaging.build_tarball(tmp_path)
    (tmp_path / "inference.py").touch()
    assert packaging.build_tarball(tmp_path) == first
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        assert tar.getnames() == ["inference.py"]


@pytest.fixture
def sagemaker():
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        client.create_model(
            ModelName="m",
            ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
            PrimaryContainer={"Image": "i"},
        )
        yield client


def endpoint_config(
    sagemaker, name: str, instance_type: str, tags: dict[str, str] | None = None, instances: int = 1
) -> str:
    variant = {"VariantName": "AllTraffic", "ModelName": "m", "InitialInstanceCount": instances}
    return sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{**variant, "InstanceType": instance_type}],
        Tags=specs.tags(tags or {}),
    )["EndpointConfigArn"]


ALARMS = ["ep/rollback/AllTraffic/5xx-errors", "ep/rollback/AllTraffic/model-latency-p99"]


def described(sagemaker, name: str) -> dict:
    """The create_endpoint_config task's XCom: the provider serializes DescribeEndpointConfig."""
    return {"EndpointConfig": sagemaker.describe_endpoint_config(EndpointConfigName=name)}


def test_prepare_endpoint_update_records_the_rollback_target_and_frees_the_variant(sagemaker):
    """An instance type change deregisters autoscaling (UpdateEndpoint refuses it otherwise);
    the config live before is kept as a tag on the new one, so a rerun still knows it."""
    endpoint_config(sagemaker, "old", "ml.m5.large")
    new_arn = endpoint_config(sagemaker, "new", "ml.m5.xlarge")
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="old")
    autoscaling = boto3.client("application-autoscaling", region_name=REGION)
    autoscaling.register_scalable_target(
        **specs.register_target_request(specs.variant_resource_id("ep"), 1, 2)
    )
    params = {"endpoint_name": "ep", "endpoint_instance_type": "ml.m5.xlarge"}
    new = described(sagemaker, "new")
    assert new["EndpointConfig"]["EndpointConfigArn"] == new_arn

    prepared = tasks.prepare_endpoint_update(new, ALARMS, params=params)
    assert (prepared["previous_endpoint_config"], prepared["deregistered_autoscaling"]) == ("old", True)
    assert autoscaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    # After the update (moto cannot UpdateEndpoint: an endpoint already on "new" stands for it).
    sagemaker.create_endpoint(EndpointName="ep-updated", EndpointConfigName="new")
    rerun = tasks.prepare_endpoint_update(new, ALARMS, params={**params, "endpoint_name": "ep-updated"})
    assert (rerun["previous_endpoint_config"], rerun["deregistered_autoscaling"]) == ("old", False)
    assert tasks.prepare_endpoint_update(new, ALARMS, params={**params, "endpoint_name": "first"}) == {
        "previous_endpoint_config": None,
        "deregistered_autoscaling": False,
        "deployment_config": None,  # CreateEndpoint: the first deployment has no traffic to shift
    }


@pytest.mark.parametrize(("instances", "routing"), [(1, "ALL_AT_ONCE"), (2, "CANARY")])
def test_an_update_rolls_out_blue_green_as_a_canary_when_there_are_instances_for_one(
    sagemaker, caplog, instances, routing
):
    endpoint_config(sagemaker, "old", "ml.m5.large")
    endpoint_config(sagemaker, "new", "ml.m5.large", instances=instances)
    sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="old")
    caplog.set_level("INFO", logger="dog_breed.tasks")
    new = described(sagemaker, "new")
    prepared = tasks.prepare_endpoint_update(new, ALARMS, params={"endpoint_name": "ep"})
    deployment = prepared["deployment_config"]
    assert deployment["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]["Type"] == routing
    assert deployment["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": name} for name in ALARMS]}
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"as {routing}" in logged
    if instances == 1:  # the choice is logged with its reason
        assert "ALL_AT_ONCE, not CANARY" in logged and "at most half" in logged


def test_tag_endpoint_makes_the_endpoint_carry_its_configs_champion_tags(sagemaker):
    champion = gate.champion_tags(
        test_accuracy=0.91, model_name="m", training_job="t", dag_run="r", model_package_arn="arn:p"
    )
    endpoint_config(sagemaker, "c", "ml.m5.large", {**champion, "project": "dog-breed-pipeline"})
    arn = sagemaker.create_endpoint(EndpointName="ep", EndpointConfigName="c")["EndpointArn"]
    deployed = {"Endpoint": {"EndpointName": "ep", "EndpointConfigName": "c"}}
    assert tasks.tag_endpoint(deployed, params={"endpoint_name": "ep"}) == champion
    assert specs.tags_as_dict(sagemaker.list_tags(ResourceArn=arn)["Tags"]) == champion
