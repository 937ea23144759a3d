"""local_aws training jobs, driven with plain boto3 and botocore's waiters."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import tarfile
import time

import pytest
from botocore.exceptions import ClientError
from local_aws_training_support import (
    BUCKET,
    client,
    local_aws_fixture,  # noqa: F401 - the local_aws fixture
    training_request,
    upload_source,
    wait_for_training,
    wait_until,
)

from dog_breed.ui import view_model

# Prints metrics, records what the training contract gave it, saves a "model".
CONTRACT_SCRIPT = """
import argparse, json, os, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
parser.add_argument("--learning-rate", type=float)
parser.add_argument("--optimizer")
parser.add_argument("--flag")
parser.add_argument("--layers")
args = parser.parse_args()
PREFIXES = ("SM_", "SAGEMAKER_", "MASTER_", "OMP_", "AWS_ENDPOINT", "MY_")
for epoch in range(args.epochs):
    loss = 1.0 / (epoch + 1)
    print(f"[metrics] epoch={epoch} train_loss={loss:.4f} valid_loss={loss + 0.1:.4f}", end=" ")
    print(f"valid_accuracy={0.5 + epoch / 10}")
print("a warning on stderr", file=sys.stderr)
channel = os.environ["SM_CHANNEL_TRAIN"]
files = [os.path.relpath(os.path.join(d, f), channel) for d, _, fs in os.walk(channel) for f in fs]
seen = {
    "argv": sys.argv[1:],
    "files": sorted(files),
    "env": {k: v for k, v in os.environ.items() if k.startswith(PREFIXES)},
    "cwd": os.getcwd(),
}
with open(os.path.join(os.environ["SM_MODEL_DIR"], "model.json"), "w") as f:
    json.dump(seen, f)
with open(os.path.join(os.environ["SM_OUTPUT_DATA_DIR"], "report.txt"), "w") as f:
    f.write("report")
"""


def read_model_tar(s3, uri: str) -> dict[str, bytes]:
    bucket, key = uri[5:].split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}


def test_successful_job_runs_the_entry_point_under_the_training_contract(local_aws):
    sagemaker, s3, logs = (client(local_aws, s) for s in ("sagemaker", "s3", "logs"))
    source = upload_source(local_aws, CONTRACT_SCRIPT, extra={"requirements.txt": "torch\n"})
    hyperparameters = {
        "epochs": "3",
        "learning-rate": "0.01",
        "optimizer": '"adam"',
        "flag": "true",
        "layers": "[1, 2]",
        "sagemaker_container_log_level": "20",
    }
    request = training_request(
        "contract-job",
        source,
        hyperparameters,
        Environment={"MY_SETTING": "on"},
        Tags=[{"Key": "k", "Value": "v"}],
    )
    arn = sagemaker.create_training_job(**request)["TrainingJobArn"]

    description = wait_for_training(sagemaker, "contract-job")

    assert arn == description["TrainingJobArn"]
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert description["SecondaryStatus"] == "Completed"
    assert [t["Status"] for t in description["SecondaryStatusTransitions"]] == [
        "Starting",
        "Downloading",
        "Training",
        "Uploading",
        "Completed",
    ]
    assert all("EndTime" in t and t["StatusMessage"] for t in description["SecondaryStatusTransitions"])
    assert description["CreationTime"] <= description["TrainingStartTime"] <= description["TrainingEndTime"]
    assert description["LastModifiedTime"] >= description["TrainingEndTime"]
    assert description["BillableTimeInSeconds"] == description["TrainingTimeInSeconds"] >= 0
    metrics = {m["MetricName"]: m["Value"] for m in description["FinalMetricDataList"]}
    assert metrics == {
        "train:loss": pytest.approx(1 / 3, abs=1e-4),
        "valid:loss": pytest.approx(1 / 3 + 0.1, abs=1e-4),
        "valid:accuracy": pytest.approx(0.7),
    }
    assert all("Timestamp" in m for m in description["FinalMetricDataList"])

    artifacts = description["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifacts == f"s3://{BUCKET}/output/contract-job/output/model.tar.gz"
    seen = json.loads(read_model_tar(s3, artifacts)["model.json"])
    # The toolkit's mapping.to_cmd_args: sorted keys, JSON-decoded values, sagemaker_* excluded.
    assert seen["argv"] == [
        "--epochs", "3", "--flag", "True", "--layers", "[1, 2]",
        "--learning-rate", "0.01", "--optimizer", "adam",
    ]  # fmt: skip
    assert seen["files"] == ["a/one.txt", "b/two.txt"]
    env = seen["env"]
    assert env["SM_CHANNEL_TRAIN"].endswith("/algo-1/input/data/train")
    assert json.loads(env["SM_CHANNELS"]) == ["train", "valid"]
    assert json.loads(env["SM_HPS"]) == {
        "epochs": 3,
        "flag": True,
        "layers": [1, 2],
        "learning-rate": 0.01,
        "optimizer": "adam",
    }
    assert env["SM_HP_OPTIMIZER"] == "adam" and env["SM_HP_EPOCHS"] == "3"
    assert json.loads(env["SM_HOSTS"]) == ["algo-1"] and env["SM_CURRENT_HOST"] == "algo-1"
    assert (
        env["SM_NUM_GPUS"] == "0"
        and int(env["SM_NUM_CPUS"]) >= 1
        and env["OMP_NUM_THREADS"] == env["SM_NUM_CPUS"]
    )
    assert env["SM_MODEL_DIR"] == env["SAGEMAKER_BASE_DIR"] + "/model"
    assert env["SM_USER_ENTRY_POINT"] == "train.py" and env["SM_MODULE_NAME"] == "train"
    assert json.loads(env["SM_USER_ARGS"]) == seen["argv"]
    assert json.loads(env["SM_TRAINING_ENV"])["job_name"] == "contract-job"
    assert env["AWS_ENDPOINT_URL"] == local_aws.url and env["MY_SETTING"] == "on"
    assert seen["cwd"] == env["SAGEMAKER_BASE_DIR"] + "/code"
    assert read_model_tar(s3, artifacts.replace("model.tar.gz", "output.tar.gz")) == {"report.txt": b"report"}
    assert sagemaker.list_tags(ResourceArn=arn)["Tags"] == [{"Key": "k", "Value": "v"}]

    # The logs, read the way the Airflow provider reads them.
    streams = logs.describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamNamePrefix="contract-job/",
        orderBy="LogStreamName",
    )["logStreams"]
    assert len(streams) == 1 and streams[0]["logStreamName"].startswith("contract-job/algo-1-")
    events = logs.get_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamName=streams[0]["logStreamName"],
        startFromHead=True,
    )["events"]
    messages = [e["message"] for e in events]
    assert any("train_loss=0.3333" in m for m in messages)
    assert "a warning on stderr" in messages
    assert any("requirements.txt" in m and "local environment" in m for m in messages)
    # The runner's own phases, in training_telemetry's format, after the script's lines.
    timings = [m for m in messages if m.startswith("[timing]")]
    assert [t.split()[1] for t in timings] == ["phase=download", "phase=upload"]
    assert messages.index(timings[0]) < messages.index("a warning on stderr") < messages.index(timings[1])
    assert all(re.fullmatch(r"\[timing\] phase=\w+ seconds=\d+\.\d{3}", t) for t in timings)


def test_compression_none_uploads_the_model_and_output_files_uncompressed(local_aws):
    sagemaker, s3 = client(local_aws, "sagemaker"), client(local_aws, "s3")
    script = """
    import os
    model_dir, data_dir = os.environ["SM_MODEL_DIR"], os.environ["SM_OUTPUT_DATA_DIR"]
    os.makedirs(os.path.join(model_dir, "code"))
    open(os.path.join(model_dir, "model.pth"), "wb").write(b"weights")
    open(os.path.join(model_dir, "code", "inference.py"), "w").write("# handler")
    open(os.path.join(data_dir, "report.txt"), "w").write("report")
    """
    request = training_request("uncompressed-job", upload_source(local_aws, script))
    request["OutputDataConfig"]["CompressionType"] = "NONE"
    sagemaker.create_training_job(**request)

    description = wait_for_training(sagemaker, "uncompressed-job")

    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    prefix = "output/uncompressed-job/output/"
    assert description["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{BUCKET}/{prefix}model/"
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    assert sorted(o["Key"][len(prefix) :] for o in listed) == [
        "data/report.txt",
        "model/code/inference.py",
        "model/model.pth",
    ]
    assert s3.get_object(Bucket=BUCKET, Key=f"{prefix}model/model.pth")["Body"].read() == b"weights"


def test_failing_job_reports_the_script_error(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    script = """
    import sys
    print("[metrics] train_loss=2.5")
    print("Traceback (most recent call last):", file=sys.stderr)
    print("ValueError: bad learning rate", file=sys.stderr)
    sys.exit(3)
    """
    sagemaker.create_training_job(**training_request("failing-job", upload_source(local_aws, script)))

    description = wait_for_training(sagemaker, "failing-job")

    assert description["TrainingJobStatus"] == "Failed"
    assert description["SecondaryStatus"] == "Failed"
    reason = description["FailureReason"]
    assert reason.startswith("AlgorithmError: ExecuteUserScriptError:")
    assert "exit code: 3" in reason and "ValueError: bad learning rate" in reason
    assert "ModelArtifacts" not in description
    assert description["FinalMetricDataList"][0]["Value"] == 2.5
    with pytest.raises(ClientError, match="status Failed"):
        sagemaker.stop_training_job(TrainingJobName="failing-job")


def test_missing_entry_point_fails_the_job_with_a_reason(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    source = upload_source(local_aws, "print('hi')", name="other.py")
    sagemaker.create_training_job(**training_request("no-entry-point", source))

    description = wait_for_training(sagemaker, "no-entry-point")

    assert description["TrainingJobStatus"] == "Failed"
    assert 'entry point "train.py" not found' in description["FailureReason"]


SLOW_SCRIPT = """
import os, signal, sys, time
def on_term(*_):
    open(os.path.join(os.environ["SM_MODEL_DIR"], "saved-on-sigterm"), "w").write("yes")
    print("got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
print("[metrics] train_loss=1.0", flush=True)
time.sleep(60)
"""


def test_stop_training_job_sends_sigterm_and_ends_stopped(local_aws):
    sagemaker, s3 = client(local_aws, "sagemaker"), client(local_aws, "s3")
    sagemaker.create_training_job(**training_request("stopped-job", upload_source(local_aws, SLOW_SCRIPT)))
    wait_until(lambda: sagemaker.describe_training_job(TrainingJobName="stopped-job")["FinalMetricDataList"])

    sagemaker.stop_training_job(TrainingJobName="stopped-job")
    assert sagemaker.describe_training_job(TrainingJobName="stopped-job")["TrainingJobStatus"] in (
        "Stopping",
        "Stopped",
    )
    started = time.monotonic()
    description = wait_for_training(sagemaker, "stopped-job")

    assert time.monotonic() - started < 10
    assert description["TrainingJobStatus"] == "Stopped"
    assert description["SecondaryStatus"] == "Stopped"
    assert "Stopping" in [t["Status"] for t in description["SecondaryStatusTransitions"]]
    # The model saved in the SIGTERM grace period is kept, as SageMaker does.
    assert "saved-on-sigterm" in read_model_tar(s3, description["ModelArtifacts"]["S3ModelArtifacts"])


def test_max_runtime_stops_the_job(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    script = "import time\nprint('[metrics] train_loss=1.0', flush=True)\ntime.sleep(60)\n"
    sagemaker.create_training_job(
        **training_request("timeout-job", upload_source(local_aws, script), max_runtime=2)
    )

    description = wait_for_training(sagemaker, "timeout-job", timeout=30)

    assert description["TrainingJobStatus"] == "Stopped"
    assert description["SecondaryStatus"] == "MaxRuntimeExceeded"
    assert description["TrainingTimeInSeconds"] < 20


def test_two_instances_train_together(local_aws):
    sagemaker, s3 = client(local_aws, "sagemaker"), client(local_aws, "s3")
    # Each host meets the other at MASTER_ADDR:MASTER_PORT, as torch.distributed's rendezvous would.
    script = """
    import json, os, socket, time
    hosts = json.loads(os.environ["SM_HOSTS"])
    rank = hosts.index(os.environ["SM_CURRENT_HOST"])
    address = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
    if rank == 0:
        server = socket.create_server(address)
        server.settimeout(30)
        peer, _ = server.accept()
        message = peer.recv(100).decode()
    else:
        for _ in range(300):
            try:
                peer = socket.create_connection(address)
                break
            except OSError:
                time.sleep(0.1)
        peer.sendall(f"hello from {os.environ['SM_CURRENT_HOST']}".encode())
        message = ""
    print(f"[metrics] train_loss={rank + 1}")
    with open(os.path.join(os.environ["SM_MODEL_DIR"], "rank.json"), "w") as f:
        files = sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"]))
        json.dump({"rank": rank, "hosts": hosts, "message": message, "files": files}, f)
    """
    sagemaker.create_training_job(
        **training_request("two-hosts", upload_source(local_aws, script), instance_count=2)
    )

    description = wait_for_training(sagemaker, "two-hosts")

    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert description["BillableTimeInSeconds"] == 2 * description["TrainingTimeInSeconds"]
    model = json.loads(read_model_tar(s3, description["ModelArtifacts"]["S3ModelArtifacts"])["rank.json"])
    assert model == {
        "rank": 0,
        "hosts": ["algo-1", "algo-2"],
        "message": "hello from algo-2",
        "files": ["a", "b"],
    }
    streams = client(local_aws, "logs").describe_log_streams(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="two-hosts/"
    )["logStreams"]
    assert sorted(s["logStreamName"].rsplit("-", 1)[0] for s in streams) == [
        "two-hosts/algo-1",
        "two-hosts/algo-2",
    ]


def test_one_failing_host_fails_the_job_and_stops_the_others(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    script = """
    import os, sys, time
    if os.environ["SM_CURRENT_HOST"] == "algo-2":
        print("algo-2 crashed", file=sys.stderr)
        sys.exit(1)
    time.sleep(60)
    """
    sagemaker.create_training_job(
        **training_request("one-fails", upload_source(local_aws, script), instance_count=2)
    )
    started = time.monotonic()

    description = wait_for_training(sagemaker, "one-fails")

    assert time.monotonic() - started < 20
    assert description["TrainingJobStatus"] == "Failed"
    assert "algo-2 crashed" in description["FailureReason"]


def test_debugger_rules_are_evaluated_from_metrics_or_honestly_not_at_all(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    script = """
    for train, valid in [(1.0, 1.0), (0.8, 0.9), (0.6, 1.1)]:
        print(f"[metrics] train_loss={train} valid_loss={valid}")
    """
    rules = [
        {
            "RuleConfigurationName": name,
            "RuleEvaluatorImage": "rule-image",
            "RuleParameters": {"rule_to_invoke": name},
        }
        for name in ("LossNotDecreasing", "Overfit", "VanishingGradient")
    ]
    request = training_request(
        "debugged-job",
        upload_source(local_aws, script),
        DebugHookConfig={"S3OutputPath": f"s3://{BUCKET}/debug"},
        DebugRuleConfigurations=rules,
    )
    sagemaker.create_training_job(**request)
    in_progress = sagemaker.describe_training_job(TrainingJobName="debugged-job")
    assert {s["RuleEvaluationStatus"] for s in in_progress["DebugRuleEvaluationStatuses"]} <= {
        "InProgress",
        "NoIssuesFound",
        "IssuesFound",
        "Stopped",
    }

    description = wait_for_training(sagemaker, "debugged-job")

    statuses = {s["RuleConfigurationName"]: s for s in description["DebugRuleEvaluationStatuses"]}
    assert statuses["LossNotDecreasing"]["RuleEvaluationStatus"] == "NoIssuesFound"
    assert statuses["Overfit"]["RuleEvaluationStatus"] == "IssuesFound"
    assert statuses["VanishingGradient"]["RuleEvaluationStatus"] == "Stopped"
    assert "does not evaluate" in statuses["VanishingGradient"]["StatusDetails"]
    assert description["DebugHookConfig"] == {"S3OutputPath": f"s3://{BUCKET}/debug"}
    assert "ProfilingStatus" not in description


# Busy for four "epochs" on every host, metrics from algo-1 only (as train.py's main rank),
# a few MB written to disk, phase lines, then idle long enough for an incremental upload.
PROFILED_SCRIPT = """
import os, time
host = os.environ["SM_CURRENT_HOST"]
for epoch in range(1, 5):
    began = time.time()
    while time.time() - began < 0.3:
        pass
    if host == "algo-1":
        print(f"[metrics] epoch={epoch} train_loss={1 / epoch:.4f} valid_loss=0.5", flush=True)
with open("written.bin", "wb") as file:
    file.write(os.urandom(4_000_000))
    file.flush()
    os.fsync(file.fileno())
os.remove("written.bin")
print("[timing] phase=start seconds=0.100")
print("[timing] phase=data seconds=0.050")
print("[timing] phase=train seconds=1.200", flush=True)
time.sleep(2.5)
"""
SYSTEM_FILE = re.compile(
    r"^profiler/(?P<job>[^/]+)/profiler-output/system/incremental/(?P<hour>\d{10})/"
    r"(?P<minute>\d{10})\.(?P<host>algo-\d+)\.json$"
)


def profiler_rule(name: str, **parameters: str) -> dict:
    return {
        "RuleConfigurationName": name,
        "RuleEvaluatorImage": "rule-image",
        "RuleParameters": {"rule_to_invoke": "ProfilerReport", **parameters},
    }


def profiler_statuses(sagemaker, name: str) -> dict[str, dict]:
    """The profiler rules' statuses once none is InProgress (they end after the job, as on AWS)."""

    def described() -> dict:
        return sagemaker.describe_training_job(TrainingJobName=name)

    wait_until(
        lambda: all(
            s["RuleEvaluationStatus"] != "InProgress" for s in described()["ProfilerRuleEvaluationStatuses"]
        ),
        timeout=120,
    )
    return {s["RuleConfigurationName"]: s for s in described()["ProfilerRuleEvaluationStatuses"]}


def test_a_profiled_job_writes_its_system_metrics_where_debugger_does_and_a_profiler_report(local_aws):
    sagemaker, s3 = client(local_aws, "sagemaker"), client(local_aws, "s3")
    local_aws.app.context.services["training"].profiler_upload_seconds = 0.5
    rules = [
        profiler_rule("ProfilerReport"),
        profiler_rule("ProfilerReport-strict", MaxInitializationTime_threshold="0"),
        profiler_rule("ProfilerReport-typo", StepOutlier_sigma="2"),
        {
            "RuleConfigurationName": "init-time",
            "RuleEvaluatorImage": "rule-image",
            "RuleParameters": {"rule_to_invoke": "MaxInitializationTime", "threshold": "0"},
        },
    ]
    request = training_request(
        "profiled-job",
        upload_source(local_aws, PROFILED_SCRIPT),
        instance_count=2,
        ProfilerConfig={"S3OutputPath": f"s3://{BUCKET}/profiler/", "ProfilingIntervalInMilliseconds": 100},
        ProfilerRuleConfigurations=rules,
    )
    sagemaker.create_training_job(**request)
    created = sagemaker.describe_training_job(TrainingJobName="profiled-job")
    assert {s["RuleEvaluationStatus"] for s in created["ProfilerRuleEvaluationStatuses"]} == {"InProgress"}

    def uploaded_while_training() -> bool:
        listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="profiler/profiled-job/profiler-output/system/")
        status = sagemaker.describe_training_job(TrainingJobName="profiled-job")["TrainingJobStatus"]
        assert listed.get("KeyCount", 0) == 0 or status == "InProgress", "nothing was uploaded before the end"
        return listed.get("KeyCount", 0) > 0

    wait_until(uploaded_while_training, timeout=60, interval=0.2)
    description = wait_for_training(sagemaker, "profiled-job")
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    assert description["ProfilingStatus"] == "Enabled"
    statuses = profiler_statuses(sagemaker, "profiled-job")

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="profiler/profiled-job/")["Contents"]]
    system_files = [SYSTEM_FILE.match(key) for key in keys if "/system/incremental/" in key]
    assert system_files and all(system_files), keys
    assert "profiler/profiled-job/profiler-output/system/training_job_end.ts" in keys
    records = []
    for found in system_files:
        minute = int(found["minute"])
        assert minute % 60 == 0
        assert found["hour"] == dt.datetime.fromtimestamp(minute, dt.UTC).strftime("%Y%m%d%H")
        body = s3.get_object(Bucket=BUCKET, Key=found.group(0))["Body"].read().decode()
        for line in body.splitlines():
            record = json.loads(line)
            assert set(record) == {"Name", "Type", "Timestamp", "Value", "Dimension", "NodeId"}
            assert record["NodeId"] == found["host"]
            assert minute <= record["Timestamp"] < minute + 60
            records.append(record)
    cores = {f"cpu{n}" for n in range(os.cpu_count())}
    cpu = [r for r in records if r["Type"] == "cpu"]
    assert {r["Name"] for r in cpu} == cores and {r["Dimension"] for r in cpu} == {"CPUUtilization"}
    assert {r["NodeId"] for r in records} == {"algo-1", "algo-2"}
    assert all(0 <= r["Value"] <= 100 for r in cpu) and max(r["Value"] for r in cpu) > 0
    assert {(r["Type"], r["Name"]) for r in records if r["Type"] != "cpu"} == {
        ("memory", "MemoryUsedPercent"),
        ("i/o", "ReadThroughputInBytesPerSecond"),
        ("i/o", "WriteThroughputInBytesPerSecond"),
    }
    written = [r["Value"] for r in records if r["Name"] == "WriteThroughputInBytesPerSecond"]
    assert max(written) > 0

    report = statuses["ProfilerReport"]
    assert report["RuleEvaluationStatus"] == "NoIssuesFound", report
    assert "Not enough data for" in report["StatusDetails"] and "Not applicable" in report["StatusDetails"]
    strict = statuses["ProfilerReport-strict"]
    assert strict["RuleEvaluationStatus"] == "IssuesFound"
    assert strict["StatusDetails"].startswith("Issues: MaxInitializationTime: Initialization")
    assert statuses["init-time"]["RuleEvaluationStatus"] == "IssuesFound"
    assert statuses["ProfilerReport-typo"]["RuleEvaluationStatus"] == "Error"
    assert "StepOutlier has no parameter 'sigma'" in statuses["ProfilerReport-typo"]["StatusDetails"]

    output = "profiler/profiled-job/rule-output/ProfilerReport/profiler-output"
    html_object = s3.get_object(Bucket=BUCKET, Key=f"{output}/profiler-report.html")
    assert html_object["ContentType"].startswith("text/html")
    html = html_object["Body"].read().decode()
    for chart in ("cpu-algo-1", "cpu-algo-2", "memory", "disk-io", "epoch-durations", "phases"):
        assert f'id="{chart}" class="plotly-graph-div"' in html, chart
    assert "CPU utilization over time, algo-2" in html and "<script src=" not in html
    assert len(re.findall(r'<tr data-rule="\w+">', html)) == 11
    for rule in ("CPUBottleneck", "StepOutlier", "BatchSize", "OverallSystemUsage", "Dataloader"):
        rule_json = json.loads(
            s3.get_object(Bucket=BUCKET, Key=f"{output}/profiler-reports/{rule}.json")["Body"].read()
        )
        assert set(rule_json) == {"RuleTriggered", "Violations", "Details", "Datapoints", "RuleParameters"}
    usage = json.loads(
        s3.get_object(Bucket=BUCKET, Key=f"{output}/profiler-reports/OverallSystemUsage.json")["Body"].read()
    )
    assert set(usage["Details"]["CPU"]) == {"algo-1", "algo-2"}
    # the model page looks for the report exactly there
    assert (
        view_model.profiler_report_location(description)[0] == f"s3://{BUCKET}/{output}/profiler-report.html"
    )
    assert {k for k in keys if k.endswith("profiler-report.html")} == {
        f"profiler/profiled-job/rule-output/{name}/profiler-output/profiler-report.html"
        for name in ("ProfilerReport", "ProfilerReport-strict")
    }


def test_profiler_rules_that_have_nothing_to_evaluate_end_in_error_with_the_reason(local_aws):
    sagemaker, s3 = client(local_aws, "sagemaker"), client(local_aws, "s3")
    source = upload_source(local_aws, "import time; time.sleep(0.5)")
    sagemaker.create_training_job(
        **training_request(
            "profiling-off",
            source,
            ProfilerConfig={"DisableProfiler": True},
            ProfilerRuleConfigurations=[profiler_rule("ProfilerReport")],
        )
    )
    sagemaker.create_training_job(
        **training_request(
            "no-profiler", source, ProfilerRuleConfigurations=[profiler_rule("ProfilerReport")]
        )
    )

    disabled = profiler_statuses(sagemaker, "profiling-off")["ProfilerReport"]
    missing = profiler_statuses(sagemaker, "no-profiler")["ProfilerReport"]

    assert sagemaker.describe_training_job(TrainingJobName="profiling-off")["ProfilingStatus"] == "Disabled"
    assert (
        disabled["RuleEvaluationStatus"] == "Error" and "DisableProfiler is set" in disabled["StatusDetails"]
    )
    assert missing["RuleEvaluationStatus"] == "Error" and "no ProfilerConfig" in missing["StatusDetails"]
    for job in ("profiling-off", "no-profiler"):
        assert s3.list_objects_v2(Bucket=BUCKET, Prefix=f"profiler/{job}/").get("KeyCount", 0) == 0


def test_checkpoints_are_restored_before_and_saved_after(local_aws):
    sagemaker, s3 = client(local_aws, "sagemaker"), client(local_aws, "s3")
    s3.put_object(Bucket=BUCKET, Key="checkpoints/job/last.txt", Body=b"epoch=4")
    script = """
    import os
    directory = os.path.join(os.environ["SAGEMAKER_BASE_DIR"], "checkpoints")
    previous = open(os.path.join(directory, "last.txt")).read()
    open(os.path.join(directory, "last.txt"), "w").write(previous + ",epoch=5")
    """
    request = training_request(
        "checkpointed",
        upload_source(local_aws, script),
        CheckpointConfig={"S3Uri": f"s3://{BUCKET}/checkpoints/job"},
    )
    sagemaker.create_training_job(**request)

    description = wait_for_training(sagemaker, "checkpointed")

    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    saved = s3.get_object(Bucket=BUCKET, Key="checkpoints/job/last.txt")["Body"].read()
    assert saved == b"epoch=4,epoch=5"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"TrainingJobName": "bad_name"}, "regular expression"),
        ({"TrainingJobName": "x" * 64}, "length less than or equal to 63"),
        ({"HyperParameters": {"epochs": "3"}}, "sagemaker_program"),
        (
            {"ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 0, "VolumeSizeInGB": 5}},
            "InstanceCount",
        ),
        ({"AlgorithmSpecification": {"TrainingInputMode": "Pipe"}}, "input modes"),
        (
            {"ProfilerConfig": {"ProfilingIntervalInMilliseconds": 500}},
            "ProfilerConfig.S3OutputPath is required",
        ),
        (
            {"ProfilerConfig": {"S3OutputPath": "s3://sm-test/p", "ProfilingIntervalInMilliseconds": 300}},
            "must be one of 100, 200, 500, 1000, 5000, 60000, not 300",
        ),
    ],
)
def test_bad_requests_are_validation_errors(local_aws, change, message):
    sagemaker = client(local_aws, "sagemaker")
    request = {**training_request("valid-name", "s3://sm-test/code/x.tar.gz"), **change}

    with pytest.raises(ClientError) as raised:
        sagemaker.create_training_job(**request)

    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert message in raised.value.response["Error"]["Message"]


def test_duplicate_name_is_resource_in_use_and_unknown_job_is_not_found(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    request = training_request("dup-job", upload_source(local_aws, "print('ok')"))
    sagemaker.create_training_job(**request)

    with pytest.raises(ClientError) as duplicate:
        sagemaker.create_training_job(**request)
    with pytest.raises(ClientError) as unknown:
        sagemaker.describe_training_job(TrainingJobName="no-such-job")

    assert duplicate.value.response["Error"]["Code"] == "ResourceInUse"
    assert unknown.value.response["Error"]["Code"] == "ValidationException"
    assert "Could not find" in unknown.value.response["Error"]["Message"]
    wait_for_training(sagemaker, "dup-job")


def test_list_training_jobs_filters_sorts_and_pages(local_aws):
    sagemaker = client(local_aws, "sagemaker")
    ok, bad = upload_source(local_aws, "print('ok')"), upload_source(local_aws, "raise SystemExit(1)")
    for name, source in (("list-a", ok), ("list-b", bad), ("list-c", ok), ("other", ok)):
        sagemaker.create_training_job(**training_request(name, source))
    for name in ("list-a", "list-b", "list-c", "other"):
        wait_for_training(sagemaker, name)

    named = sagemaker.list_training_jobs(NameContains="list-", SortBy="Name", SortOrder="Ascending")
    completed = sagemaker.list_training_jobs(NameContains="list-", StatusEquals="Completed")
    first_page = sagemaker.list_training_jobs(MaxResults=3, SortBy="CreationTime", SortOrder="Descending")
    second_page = sagemaker.list_training_jobs(MaxResults=3, NextToken=first_page["NextToken"])

    assert [s["TrainingJobName"] for s in named["TrainingJobSummaries"]] == ["list-a", "list-b", "list-c"]
    assert {s["TrainingJobName"] for s in completed["TrainingJobSummaries"]} == {"list-a", "list-c"}
    assert [s["TrainingJobName"] for s in first_page["TrainingJobSummaries"]] == ["other", "list-c", "list-b"]
    assert [s["TrainingJobName"] for s in second_page["TrainingJobSummaries"]] == ["list-a"]
    assert "NextToken" not in second_page


@pytest.mark.slow
def test_real_train_py_trains_data_parallel_on_two_instances(local_aws, tmp_path):
    """model_scripts/train.py, tiny: two processes meet through torch.distributed (gloo) and train."""
    from pathlib import Path

    import sample_data

    from dog_breed.metrics import METRIC_DEFINITIONS

    sagemaker, s3 = client(local_aws, "sagemaker"), client(local_aws, "s3")
    dataset = sample_data.generate(tmp_path / "dogs", classes=2, per_class_train=4, size=32, per_class_eval=2)
    for path in sorted(p for p in dataset.rglob("*") if p.is_file()):
        s3.upload_file(str(path), BUCKET, f"dogs/{path.relative_to(dataset).as_posix()}")
    scripts = Path(sample_data.__file__).parent
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for script in sorted(scripts.glob("*.py")):
            archive.add(script, arcname=script.name)
    s3.put_object(Bucket=BUCKET, Key="code/real/sourcedir.tar.gz", Body=buffer.getvalue())
    hyperparameters = {
        "epochs": "1",
        "batch-size": "4",
        "image-size": "32",
        "pretrained": "false",
        "export-onnx": "false",
        "workers": "0",
    }
    request = training_request(
        "real-ddp", f"s3://{BUCKET}/code/real/sourcedir.tar.gz", hyperparameters, instance_count=2
    )
    request["AlgorithmSpecification"]["MetricDefinitions"] = METRIC_DEFINITIONS
    request["InputDataConfig"] = [
        {
            "ChannelName": channel,
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/dogs/{channel}/"}
            },
        }
        for channel in ("train", "valid", "test")
    ]
    sagemaker.create_training_job(**request)

    description = wait_for_training(sagemaker, "real-ddp", timeout=600)

    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    metrics = {m["MetricName"] for m in description["FinalMetricDataList"]}
    assert {"train:loss", "valid:accuracy", "test:accuracy"} <= metrics
    assert "model.pth" in read_model_tar(s3, description["ModelArtifacts"]["S3ModelArtifacts"])
