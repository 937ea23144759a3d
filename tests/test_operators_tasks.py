"""The DAG's Python task bodies (dog_breed.tasks) for the dataset and the source package, on moto S3."""

from __future__ import annotations

import airflow_fixtures
import boto3
import pytest
from moto import mock_aws

from dog_breed import packaging, tasks
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
