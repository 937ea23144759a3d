"""SageMaker training jobs, really executed on this machine.

Each job runs in a background thread: the input channels and the
``sagemaker_submit_directory`` come down from S3 into a directory laid out like a
container's ``/opt/ml`` (one per instance), the entry point runs as a process under
the sagemaker-training toolkit's contract (``SM_*`` environment, hyperparameters
as ``--key value`` flags), its output goes line by line to CloudWatch Logs and is
scraped with the job's ``MetricDefinitions``, and the model directory is tarred to
``<S3OutputPath>/<job>/output/model.tar.gz``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
import sys
import tarfile
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_aws.infra.archives import extract_tar, tar_directory
from local_aws.infra.ports import free_port
from local_aws.infra.processes import ProcessGroup, stop_all
from local_aws.infra.s3 import split_s3_uri, upload_directory
from local_aws.protocol.api import operation
from local_aws.protocol.errors import AwsError, validation_error
from local_aws.services.base import Context, Service, now
from local_aws.services.sagemaker.api import SAGEMAKER, not_found, s3_location
from local_aws.services.sagemaker.listing import list_page
from local_aws.services.sagemaker.training import debugger_rules

log = logging.getLogger("local_aws.training")

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Stopped"})
DEFAULT_MAX_RUNTIME_SECONDS = 86400
MAX_LOCAL_INSTANCES = 8  # processes on one machine; more would only thrash
FAILURE_REASON_LIMIT = 1024  # DescribeTrainingJob's FailureReason max length
STDERR_TAIL_LINES = 10
POLL_SECONDS = 0.1
# sagemaker_* hyperparameters configure the toolkit and never reach the script as flags.
TOOLKIT_PREFIX = "sagemaker_"


# ---------------------------------------------------------------------------------------
# The sagemaker-training toolkit's contract (mapping.to_cmd_args, Environment.to_env_vars)
# ---------------------------------------------------------------------------------------
def decode_hyperparameters(hyperparameters: dict[str, str]) -> dict[str, Any]:
    """Values are JSON-encoded strings; anything that is not JSON stays the raw string."""
    decoded: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        try:
            decoded[key] = json.loads(value)
        except (TypeError, ValueError):
            decoded[key] = value
    return decoded


def _toolkit_str(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin1")
    return str(value)


def to_cmd_args(hyperparameters: dict[str, Any]) -> list[str]:
    """Sorted ``--key value`` pairs (``-k`` for one-letter keys); dicts become ``k=v,k2=v2``."""
    args: list[str] = []
    for key in sorted(hyperparameters):
        name = _toolkit_str(key)
        args.append(f"--{name}" if len(name) > 1 else f"-{name}")
        value = hyperparameters[key]
        if hasattr(value, "items"):
            args.append(",".join(f"{k}={v}" for k, v in sorted(value.items())))
        else:
            args.append(_toolkit_str(value))
    return args


def to_env_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class HostLayout:
    """One instance's ``/opt/ml``."""

    host: str
    base_dir: Path

    @property
    def code_dir(self) -> Path:
        return self.base_dir / "code"

    @property
    def model_dir(self) -> Path:
        return self.base_dir / "model"

    @property
    def input_dir(self) -> Path:
        return self.base_dir / "input"

    @property
    def input_config_dir(self) -> Path:
        return self.base_dir / "input" / "config"

    @property
    def output_dir(self) -> Path:
        return self.base_dir / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.base_dir / "output" / "data"

    @property
    def checkpoint_dir(self) -> Path:
        return self.base_dir / "checkpoints"

    def channel_dir(self, channel: str) -> Path:
        return self.base_dir / "input" / "data" / channel

    def create(self) -> None:
        for directory in (
            self.code_dir,
            self.model_dir,
            self.input_config_dir,
            self.output_data_dir,
            self.output_dir / "intermediate",
            self.checkpoint_dir,
            self.input_dir / "data",
        ):
            directory.mkdir(parents=True, exist_ok=True)


def resource_config(host: str, hosts: list[str], instance_type: str) -> dict[str, Any]:
    return {
        "current_host": host,
        "current_instance_type": instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": hosts,
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": instance_type, "hosts": hosts}
        ],
        "network_interface_name": "lo",  # the hosts are processes on this machine's loopback
    }


def input_data_config(channels: list[dict[str, Any]], default_mode: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for channel in channels:
        s3 = channel.get("DataSource", {}).get("S3DataSource", {})
        config[channel["ChannelName"]] = {
            "TrainingInputMode": channel.get("InputMode", default_mode),
            "S3DistributionType": s3.get("S3DataDistributionType", "FullyReplicated"),
            "RecordWrapperType": channel.get("RecordWrapperType", "None"),
            **({"ContentType": channel["ContentType"]} if "ContentType" in channel else {}),
        }
    return config


def container_environment(
    job_name: str,
    layout: HostLayout,
    hosts: list[str],
    hyperparameters: dict[str, str],
    channels: list[dict[str, Any]],
    instance_type: str,
    region: str,
    num_cpus: int,
) -> dict[str, str]:
    """The environment the toolkit gives a script-mode entry point (Environment.to_env_vars)."""
    decoded = decode_hyperparameters(hyperparameters)
    user_hps = {k: v for k, v in decoded.items() if not k.startswith(TOOLKIT_PREFIX)}
    framework_params = {k: v for k, v in decoded.items() if k.startswith(TOOLKIT_PREFIX)}
    program = str(decoded.get("sagemaker_program", ""))
    channel_dirs = {c["ChannelName"]: str(layout.channel_dir(c["ChannelName"])) for c in channels}
    resources = resource_config(layout.host, hosts, instance_type)
    data_config = input_data_config(channels, "File")
    module_name = program[:-3] if program.endswith(".py") else program
    env: dict[str, Any] = {
        "hosts": hosts,
        "network_interface_name": resources["network_interface_name"],
        "hps": user_hps,
        "user_entry_point": program,
        "framework_params": {
            k: v
            for k, v in framework_params.items()
            if k
            not in {
                "sagemaker_program",
                "sagemaker_submit_directory",
                "sagemaker_region",
                "sagemaker_container_log_level",
                "sagemaker_job_name",
            }
        },
        "resource_config": resources,
        "input_data_config": data_config,
        "output_data_dir": str(layout.output_data_dir),
        "channels": sorted(channel_dirs),
        "current_host": layout.host,
        "current_instance_type": instance_type,
        "current_instance_group": "homogeneousCluster",
        "current_instance_group_hosts": hosts,
        "instance_groups": ["homogeneousCluster"],
        "is_hetero": False,
        "module_name": module_name,
        "log_level": decoded.get("sagemaker_container_log_level", logging.INFO),
        "input_dir": str(layout.input_dir),
        "input_config_dir": str(layout.input_config_dir),
        "output_dir": str(layout.output_dir),
        "output_intermediate_dir": str(layout.output_dir / "intermediate"),
        "num_cpus": num_cpus,
        "num_gpus": 0,
        "model_dir": str(layout.model_dir),
        "module_dir": str(decoded.get("sagemaker_submit_directory", layout.code_dir)),
        "user_args": to_cmd_args(user_hps),
    }
    env["training_env"] = {
        **{k: v for k, v in env.items() if k not in {"hps", "framework_params", "user_args", "channels"}},
        "hyperparameters": user_hps,
        "additional_framework_parameters": env["framework_params"],
        "channel_input_dirs": channel_dirs,
        "job_name": job_name,
        "master_hostname": hosts[0],
        "is_master": layout.host == hosts[0],
    }
    for name, path in channel_dirs.items():
        env[f"channel_{name}"] = path
    for key, value in user_hps.items():
        env[f"hp_{key}"] = value
    variables = {f"SM_{key.upper()}": to_env_value(value) for key, value in env.items()}
    variables.update(
        {
            "SAGEMAKER_BASE_DIR": str(layout.base_dir),
            "TRAINING_JOB_NAME": job_name,
            "SAGEMAKER_JOB_NAME": job_name,
            "SAGEMAKER_REGION": str(decoded.get("sagemaker_region", region)),
            "SAGEMAKER_PROGRAM": program,
            "CURRENT_HOST": layout.host,
        }
    )
    return variables


# ---------------------------------------------------------------------------------------
# Metrics and logs
# ---------------------------------------------------------------------------------------
class MetricScraper:
    """Applies MetricDefinitions regexes to log lines and keeps each metric's history."""

    def __init__(self, definitions: list[dict[str, str]]):
        self._patterns = [(d["Name"], re.compile(d["Regex"])) for d in definitions]
        self._history: dict[str, list[tuple[dt.datetime, float]]] = {}
        self._lock = threading.Lock()

    def scrape(self, line: str, timestamp: dt.datetime) -> None:
        for name, pattern in self._patterns:
            match = pattern.search(line)
            if not match:
                continue
            try:
                value = float(match.group(1) if pattern.groups else match.group(0))
            except ValueError:
                continue
            with self._lock:
                self._history.setdefault(name, []).append((timestamp, value))

    def history(self) -> dict[str, list[tuple[dt.datetime, float]]]:
        with self._lock:
            return {name: list(points) for name, points in self._history.items()}

    def final_metrics(self) -> list[dict[str, Any]]:
        """FinalMetricDataList: the last value of every metric seen so far."""
        return [
            {"MetricName": name, "Value": points[-1][1], "Timestamp": points[-1][0]}
            for name, points in sorted(self.history().items())
        ]


class HostLog:
    """One instance's log: its CloudWatch stream (through the shared shipper) and a local copy."""

    def __init__(self, context: Context, stream_name: str, file_path: Path):
        self._logs = context.logs
        self.stream_name = stream_name
        self._file = file_path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self._logs.open_stream(LOG_GROUP, stream_name)

    def write(self, message: str) -> None:
        with self._lock:
            if self._file.closed:
                return
            self._logs.put(LOG_GROUP, self.stream_name, message)
            self._file.write(message + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


# ---------------------------------------------------------------------------------------
# The job and its state
# ---------------------------------------------------------------------------------------
class JobInterrupted(Exception):
    """The job was asked to stop (StopTrainingJob) or ran out of MaxRuntimeInSeconds."""


class JobFailed(Exception):
    """The job failed for a reason the user should see in FailureReason."""


@dataclass
class TrainingJob:
    name: str
    arn: str
    request: dict[str, Any]
    tuning_job_arn: str | None
    scraper: MetricScraper
    creation_time: dt.datetime = field(default_factory=now)
    status: str = "InProgress"
    secondary_status: str = "Starting"
    transitions: list[dict[str, Any]] = field(default_factory=list)
    failure_reason: str | None = None
    training_start_time: dt.datetime | None = None
    training_end_time: dt.datetime | None = None
    last_modified_time: dt.datetime = field(default_factory=now)
    model_artifacts: str | None = None
    rule_statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stop_requested: threading.Event = field(default_factory=threading.Event)
    interruption: str | None = None  # "Stopped" or "MaxRuntimeExceeded"
    lock: threading.RLock = field(default_factory=threading.RLock)

    def transition(self, secondary: str, message: str, status: str | None = None) -> None:
        with self.lock:
            stamp = now()
            if self.transitions and "EndTime" not in self.transitions[-1]:
                self.transitions[-1]["EndTime"] = stamp
            entry: dict[str, Any] = {"Status": secondary, "StartTime": stamp, "StatusMessage": message}
            if status in TERMINAL_STATUSES:
                entry["EndTime"] = stamp
            self.transitions.append(entry)
            self.secondary_status = secondary
            if status is not None:
                self.status = status
            self.last_modified_time = stamp

    @property
    def instance_count(self) -> int:
        return int(self.request["ResourceConfig"]["InstanceCount"])

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def describe(self) -> dict[str, Any]:
        with self.lock:
            request = self.request
            response: dict[str, Any] = {
                "TrainingJobName": self.name,
                "TrainingJobArn": self.arn,
                "TrainingJobStatus": self.status,
                "SecondaryStatus": self.secondary_status,
                "HyperParameters": request.get("HyperParameters", {}),
                "AlgorithmSpecification": request["AlgorithmSpecification"],
                "RoleArn": request["RoleArn"],
                "OutputDataConfig": request["OutputDataConfig"],
                "ResourceConfig": request["ResourceConfig"],
                "StoppingCondition": request["StoppingCondition"],
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "SecondaryStatusTransitions": [dict(t) for t in self.transitions],
                "FinalMetricDataList": self.scraper.final_metrics(),
                "EnableNetworkIsolation": request.get("EnableNetworkIsolation", False),
                "EnableInterContainerTrafficEncryption": request.get(
                    "EnableInterContainerTrafficEncryption", False
                ),
                "EnableManagedSpotTraining": request.get("EnableManagedSpotTraining", False),
            }
            optional = {
                "TuningJobArn": self.tuning_job_arn,
                "FailureReason": self.failure_reason,
                "InputDataConfig": request.get("InputDataConfig"),
                "VpcConfig": request.get("VpcConfig"),
                "CheckpointConfig": request.get("CheckpointConfig"),
                "DebugHookConfig": request.get("DebugHookConfig"),
                "DebugRuleConfigurations": request.get("DebugRuleConfigurations"),
                "ProfilerConfig": request.get("ProfilerConfig"),
                "ProfilerRuleConfigurations": request.get("ProfilerRuleConfigurations"),
                "TensorBoardOutputConfig": request.get("TensorBoardOutputConfig"),
                "ExperimentConfig": request.get("ExperimentConfig"),
                "Environment": request.get("Environment"),
                "RetryStrategy": request.get("RetryStrategy"),
                "TrainingStartTime": self.training_start_time,
                "TrainingEndTime": self.training_end_time,
                "DebugRuleEvaluationStatuses": self.rule_statuses.get("DebugRuleConfigurations"),
                "ProfilerRuleEvaluationStatuses": self.rule_statuses.get("ProfilerRuleConfigurations"),
            }
            response.update({k: v for k, v in optional.items() if v})
            if self.model_artifacts:
                response["ModelArtifacts"] = {"S3ModelArtifacts": self.model_artifacts}
            if "ProfilerConfig" in request:
                disabled = request["ProfilerConfig"].get("DisableProfiler", False)
                response["ProfilingStatus"] = "Disabled" if disabled else "Enabled"
            if self.training_start_time and self.training_end_time:
                seconds = int((self.training_end_time - self.training_start_time).total_seconds())
                response["TrainingTimeInSeconds"] = seconds
                response["BillableTimeInSeconds"] = seconds * self.instance_count
            return response

    def summary(self) -> dict[str, Any]:
        with self.lock:
            summary: dict[str, Any] = {
                "TrainingJobName": self.name,
                "TrainingJobArn": self.arn,
                "CreationTime": self.creation_time,
                "LastModifiedTime": self.last_modified_time,
                "TrainingJobStatus": self.status,
                "SecondaryStatus": self.secondary_status,
            }
            if self.training_end_time:
                summary["TrainingEndTime"] = self.training_end_time
            return summary


# ---------------------------------------------------------------------------------------
# Request validation
# ---------------------------------------------------------------------------------------
def checked_training_request(request: dict[str, Any]) -> dict[str, Any]:
    """The rules beyond the model's (which the protocol layer checked) that local_aws runs by;
    returns the request with SageMaker's defaults filled in."""
    for needed in ("AlgorithmSpecification", "ResourceConfig"):  # optional in the model, not here
        if not request.get(needed):
            raise validation_error(f"{needed} is required.")
    s3_location(request["OutputDataConfig"]["S3OutputPath"])
    algorithm = request["AlgorithmSpecification"]
    resources = request["ResourceConfig"]
    if not resources.get("InstanceType"):
        raise validation_error("ResourceConfig.InstanceType is required (local_aws has no instance groups).")
    count = resources.get("InstanceCount", 1)
    if count < 1:
        raise validation_error("ResourceConfig.InstanceCount must be at least 1.")
    if count > MAX_LOCAL_INSTANCES:
        raise AwsError(
            "ResourceLimitExceeded",
            f"local_aws runs at most {MAX_LOCAL_INSTANCES} instances per training job on one machine.",
        )
    for definition in algorithm.get("MetricDefinitions", []):
        try:
            re.compile(definition["Regex"])
        except re.error as error:
            raise validation_error(f"Invalid regex for metric {definition['Name']!r}: {error}") from error
    _check_channels(request.get("InputDataConfig", []), algorithm["TrainingInputMode"])
    decoded = decode_hyperparameters(request.get("HyperParameters", {}))
    for key in ("sagemaker_program", "sagemaker_submit_directory"):
        if not decoded.get(key):
            raise validation_error(
                f"local_aws runs script-mode training only: HyperParameters must include {key} "
                "(it cannot run a training image's own entry point)."
            )
    s3_location(str(decoded["sagemaker_submit_directory"]))
    stopping = dict(request.get("StoppingCondition") or {})
    stopping.setdefault("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME_SECONDS)
    if request.get("EnableManagedSpotTraining"):
        max_wait = stopping.get("MaxWaitTimeInSeconds")
        if max_wait is None or max_wait < stopping["MaxRuntimeInSeconds"]:
            raise validation_error(
                "Managed spot training needs StoppingCondition.MaxWaitTimeInSeconds >= MaxRuntimeInSeconds."
            )
    resources = {"VolumeSizeInGB": 30, **resources, "InstanceCount": count}
    return {**request, "StoppingCondition": stopping, "ResourceConfig": resources}


def _check_channels(channels: list[dict[str, Any]], default_mode: str) -> None:
    names: set[str] = set()
    for channel in channels:
        name = channel["ChannelName"]
        if name in names:
            raise validation_error(f"Channel names must be unique: {name!r} appears twice.")
        names.add(name)
        mode = channel.get("InputMode", default_mode)
        if mode not in ("File", "FastFile"):
            raise validation_error(f"local_aws supports File and FastFile input modes, not {mode} ({name}).")
        source = channel["DataSource"]
        if "S3DataSource" not in source:
            raise validation_error(f"local_aws supports S3DataSource channels only ({name}).")
        s3 = source["S3DataSource"]
        if s3["S3DataType"] not in ("S3Prefix", "ManifestFile"):
            raise validation_error(f"local_aws does not support S3DataType {s3['S3DataType']} ({name}).")
        s3_location(s3["S3Uri"])


# ---------------------------------------------------------------------------------------
# S3 transfers
# ---------------------------------------------------------------------------------------
def channel_objects(s3: Any, source: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(bucket, key, path relative to the channel dir) for every object a channel holds."""
    bucket, prefix = split_s3_uri(source["S3Uri"])
    if source.get("S3DataType", "S3Prefix") == "ManifestFile":
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=prefix)["Body"].read())
        base_bucket, base_key = split_s3_uri(manifest[0]["prefix"])
        return [(base_bucket, base_key + rel, rel) for rel in manifest[1:]]
    objects: list[tuple[str, str, str]] = []
    directory = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue  # "folder" placeholder objects
            if key == prefix:
                relative = key.rsplit("/", 1)[-1]
            elif prefix.endswith("/") or key[len(prefix)] == "/":
                relative = key[len(prefix) :].lstrip("/")
            else:  # a sibling that shares the prefix text, e.g. train2/ for prefix train
                relative = key[len(directory) :]
            objects.append((bucket, key, relative))
    return objects


def download_objects(s3: Any, objects: Iterable[tuple[str, str, str]], target: Path) -> int:
    def fetch(item: tuple[str, str, str]) -> None:
        bucket, key, relative = item
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, key, str(path))

    items = list(objects)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(fetch, items))
    return len(items)


# ---------------------------------------------------------------------------------------
# Running one job
# ---------------------------------------------------------------------------------------
@dataclass
class HostProcess:
    host: str
    group: ProcessGroup
    log: HostLog
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=STDERR_TAIL_LINES))


class JobRunner:
    """Everything one training job does, in order, in its own thread."""

    def __init__(self, service: TrainingService, job: TrainingJob):
        self.service = service
        self.context = service.context
        self.job = job
        self.job_dir = service.root / job.name
        self.hosts = [f"algo-{i + 1}" for i in range(job.instance_count)]
        self.layouts = [HostLayout(host, self.job_dir / host) for host in self.hosts]
        self.s3 = self.context.client("s3")
        self.host_logs: list[HostLog] = []
        self.processes: list[HostProcess] = []

    # -- the whole life of the job ---------------------------------------------------------
    def run(self) -> None:
        job = self.job
        try:
            self._prepare()
            self._check_interrupt()
            job.transition("Downloading", "Downloading input data")
            self._download_inputs()
            self._check_interrupt()
            job.transition("Training", "Training image download completed. Training in progress.")
            self._train()
            job.transition("Uploading", "Uploading generated training model")
            self._upload_outputs()
            self._finish("Completed", "Completed", "Training job completed")
        except JobInterrupted:
            self._upload_outputs_best_effort()
            if job.interruption == "MaxRuntimeExceeded":
                limit = job.request["StoppingCondition"]["MaxRuntimeInSeconds"]
                self._finish(
                    "Stopped",
                    "MaxRuntimeExceeded",
                    f"Training job stopped because it exceeded MaxRuntimeInSeconds ({limit} s)",
                )
            else:
                self._finish("Stopped", "Stopped", "Training job stopped")
        except JobFailed as error:
            self._fail(str(error))
        except AwsError as error:
            self._fail(f"ClientError: {error.message}")
        except Exception as error:  # never lose a job: an internal error still ends it, with the reason
            log.exception("training job %s failed inside local_aws", job.name)
            self._fail(f"InternalServerError: local_aws: {type(error).__name__}: {error}")
        finally:
            self._terminate_processes()
            for host_log in self.host_logs:
                host_log.close()
            self._save_description()

    def _prepare(self) -> None:
        self.job.transition("Starting", "Preparing the instances for training")
        self.job_dir.mkdir(parents=True, exist_ok=True)
        (self.job_dir / "logs").mkdir(exist_ok=True)
        started = int(time.time())
        for layout in self.layouts:
            layout.create()
            stream_name = f"{self.job.name}/{layout.host}-{started}"
            self.host_logs.append(
                HostLog(self.context, stream_name, self.job_dir / "logs" / f"{layout.host}.log")
            )
            self._write_config_files(layout)

    def _write_config_files(self, layout: HostLayout) -> None:
        request = self.job.request
        instance_type = request["ResourceConfig"]["InstanceType"]
        files = {
            "hyperparameters.json": request.get("HyperParameters", {}),
            "resourceconfig.json": resource_config(layout.host, self.hosts, instance_type),
            "inputdataconfig.json": input_data_config(
                request.get("InputDataConfig", []), request["AlgorithmSpecification"]["TrainingInputMode"]
            ),
        }
        for name, content in files.items():
            (layout.input_config_dir / name).write_text(json.dumps(content, indent=2))

    def _check_interrupt(self) -> None:
        if self.job.stop_requested.is_set():
            raise JobInterrupted

    # -- downloading -----------------------------------------------------------------------
    def _download_inputs(self) -> None:
        with self.job.lock:
            self.job.training_start_time = now()
        for channel in self.job.request.get("InputDataConfig", []):
            self._download_channel(channel)
            self._check_interrupt()
        self._download_checkpoints()
        self._download_source()

    def _download_channel(self, channel: dict[str, Any]) -> None:
        name = channel["ChannelName"]
        source = channel["DataSource"]["S3DataSource"]
        try:
            objects = channel_objects(self.s3, source)
        except Exception as error:
            raise JobFailed(f"ClientError: Data download failed: channel {name}: {error}") from error
        if not objects:
            raise JobFailed(f'ClientError: No S3 objects found under S3 URL "{source["S3Uri"]}" ({name})')
        sharded = source.get("S3DataDistributionType") == "ShardedByS3Key"
        first = self.layouts[0].channel_dir(name)
        for index, layout in enumerate(self.layouts):
            target = layout.channel_dir(name)
            if sharded:
                download_objects(self.s3, sorted(objects)[index :: len(self.layouts)], target)
            elif index == 0:
                download_objects(self.s3, objects, target)
            else:  # fully replicated: the other hosts share algo-1's files
                shutil.copytree(first, target, copy_function=os.link, dirs_exist_ok=True)
        self._toolkit_log(f"Downloaded {len(objects)} objects for channel {name}")

    def _download_checkpoints(self) -> None:
        config = self.job.request.get("CheckpointConfig")
        if not config:
            return
        uri = config["S3Uri"].rstrip("/") + "/"
        objects = channel_objects(self.s3, {"S3Uri": uri, "S3DataType": "S3Prefix"})
        for layout in self.layouts:
            download_objects(self.s3, objects, self.checkpoint_dir(layout))
        if objects:
            self._toolkit_log(f"Restored {len(objects)} checkpoint files from {uri}")

    def checkpoint_dir(self, layout: HostLayout) -> Path:
        """CheckpointConfig.LocalPath, mapped from the container's /opt/ml into this host's dir."""
        local = (self.job.request.get("CheckpointConfig") or {}).get("LocalPath", "/opt/ml/checkpoints")
        relative = local.removeprefix("/opt/ml").strip("/") or "checkpoints"
        return layout.base_dir / relative

    def _download_source(self) -> None:
        decoded = decode_hyperparameters(self.job.request.get("HyperParameters", {}))
        bucket, key = split_s3_uri(str(decoded["sagemaker_submit_directory"]))
        try:
            archive = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as error:
            raise JobFailed(
                f"ClientError: could not download sagemaker_submit_directory s3://{bucket}/{key}: {error}"
            ) from error
        for layout in self.layouts:
            try:
                extract_tar(archive, layout.code_dir)
            except (tarfile.TarError, OSError) as error:
                raise JobFailed(
                    f"ClientError: sagemaker_submit_directory is not a tar.gz: {error}"
                ) from error
        program = str(decoded["sagemaker_program"])
        if not (self.layouts[0].code_dir / program).is_file():
            raise JobFailed(
                f'AlgorithmError: ExecuteUserScriptError: entry point "{program}" not found in '
                "sagemaker_submit_directory"
            )

    # -- training --------------------------------------------------------------------------
    def _train(self) -> None:
        master_port = free_port()
        threads = self.service.fair_thread_count()
        for layout, host_log in zip(self.layouts, self.host_logs, strict=True):
            self.processes.append(self._launch(layout, host_log, master_port, threads))
        self._wait_for_processes()

    def _launch(self, layout: HostLayout, host_log: HostLog, master_port: int, threads: int) -> HostProcess:
        request = self.job.request
        hyperparameters = request.get("HyperParameters", {})
        decoded = decode_hyperparameters(hyperparameters)
        program = str(decoded["sagemaker_program"])
        user_hps = {k: v for k, v in decoded.items() if not k.startswith(TOOLKIT_PREFIX)}
        interpreter = [sys.executable] if program.endswith(".py") else ["/bin/sh"]
        command = [*interpreter, program, *to_cmd_args(user_hps)]
        env = self._process_environment(layout, master_port, threads)
        if (layout.code_dir / "requirements.txt").exists():
            host_log.write(
                "local_aws: requirements.txt found; using the local environment instead of pip install"
            )
        host_log.write(f"Invoking script with the following command:\n\n{' '.join(command)}\n")
        tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

        def on_stdout(line: str) -> None:
            host_log.write(line)
            self.job.scraper.scrape(line, now())

        def on_stderr(line: str) -> None:
            on_stdout(line)
            tail.append(line)

        # Its own process group, so a stop reaches data-loader workers too.
        group = ProcessGroup(
            command, name=f"{self.job.name}-{layout.host}", env=env, cwd=layout.code_dir,
            stdout=on_stdout, stderr=on_stderr,
        ).start()  # fmt: skip
        return HostProcess(layout.host, group, host_log, tail)

    def _process_environment(self, layout: HostLayout, master_port: int, threads: int) -> dict[str, str]:
        request = self.job.request
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SM_", "SAGEMAKER_"))}
        env.update(
            {
                "OMP_NUM_THREADS": str(threads),
                "MKL_NUM_THREADS": str(threads),
                "GLOO_SOCKET_IFNAME": "lo",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(
            container_environment(
                self.job.name,
                layout,
                self.hosts,
                request.get("HyperParameters", {}),
                request.get("InputDataConfig", []),
                request["ResourceConfig"]["InstanceType"],
                self.context.region,
                threads,
            )
        )
        env["MASTER_ADDR"] = "127.0.0.1"
        env["MASTER_PORT"] = str(master_port)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(layout.code_dir), env.get("PYTHONPATH")]))
        env.update(self.context.worker_environment())
        env.update(request.get("Environment") or {})
        return env

    def _wait_for_processes(self) -> None:
        deadline = time.monotonic() + self.job.request["StoppingCondition"]["MaxRuntimeInSeconds"]
        while True:
            if self.job.stop_requested.is_set():
                raise JobInterrupted
            if time.monotonic() >= deadline:
                self.service.interrupt(self.job, "MaxRuntimeExceeded")
                raise JobInterrupted
            failed = next((p for p in self.processes if p.group.returncode not in (None, 0)), None)
            if failed is not None:
                failed.group.join_output()
                raise JobFailed(self._failure_reason(failed))
            if all(p.group.returncode == 0 for p in self.processes):
                for process in self.processes:
                    process.group.join_output()
                return
            time.sleep(POLL_SECONDS)

    def _failure_reason(self, failed: HostProcess) -> str:
        custom = self.layouts[self.hosts.index(failed.host)].output_dir / "failure"
        if custom.is_file() and custom.read_text().strip():
            return custom.read_text().strip()[:FAILURE_REASON_LIMIT]
        code = failed.group.returncode
        tail = "\n".join(failed.stderr_tail)
        command = " ".join(failed.group.command)
        reason = (
            f"AlgorithmError: ExecuteUserScriptError:\nExitCode {code}\n"
            f'ErrorMessage "{tail}"\nCommand "{command}", exit code: {code}'
        )
        if len(reason) <= FAILURE_REASON_LIMIT:
            return reason
        # Keep the end of stderr (where the exception is) within AWS's limit.
        room = FAILURE_REASON_LIMIT - (len(reason) - len(tail)) - 3
        return reason.replace(tail, "..." + tail[-max(room, 0) :])

    def _terminate_processes(self) -> None:
        # Also reaps data-loader workers left in a group after a clean exit.
        stop_all([p.group for p in self.processes], self.service.stop_grace_seconds)

    # -- uploading -------------------------------------------------------------------------
    def _output_prefix(self) -> str:
        base = self.job.request["OutputDataConfig"]["S3OutputPath"].rstrip("/")
        return f"{base}/{self.job.name}/output"

    def _upload_outputs(self) -> None:
        self._terminate_processes()
        self._upload_checkpoints()
        master = self.layouts[0]
        prefix = self._output_prefix()
        if self.job.request["OutputDataConfig"].get("CompressionType") == "NONE":
            upload_directory(self.s3, master.model_dir, f"{prefix}/model/")
            artifacts = f"{prefix}/model/"
        else:
            bucket, key = split_s3_uri(f"{prefix}/model.tar.gz")
            self.s3.put_object(Bucket=bucket, Key=key, Body=tar_directory(master.model_dir))
            artifacts = f"{prefix}/model.tar.gz"
        if any(master.output_data_dir.iterdir()):
            bucket, key = split_s3_uri(f"{prefix}/output.tar.gz")
            self.s3.put_object(Bucket=bucket, Key=key, Body=tar_directory(master.output_data_dir))
        with self.job.lock:
            self.job.model_artifacts = artifacts

    def _upload_checkpoints(self) -> None:
        config = self.job.request.get("CheckpointConfig")
        if not config:
            return
        for layout in self.layouts:
            directory = self.checkpoint_dir(layout)
            if directory.is_dir():
                upload_directory(self.s3, directory, config["S3Uri"])

    def _upload_outputs_best_effort(self) -> None:
        """A stopped job still gets its model and checkpoints saved, as SageMaker does."""
        try:
            self._upload_outputs()
        except Exception:
            log.exception("uploading outputs of stopped job %s", self.job.name)

    # -- ending ----------------------------------------------------------------------------
    def _finish(self, status: str, secondary: str, message: str) -> None:
        job = self.job
        self.context.logs.flush()  # whoever sees the job finished finds all of its logs
        with job.lock:
            job.training_end_time = now()
            job.training_start_time = job.training_start_time or job.training_end_time
            job.rule_statuses = debugger_rules.final_statuses(job.request, job.scraper.history(), job.arn)
            job.transition(secondary, message, status=status)

    def _fail(self, reason: str) -> None:
        with self.job.lock:
            self.job.failure_reason = reason[:FAILURE_REASON_LIMIT]
        self._toolkit_log(f"local_aws: training job failed: {reason}")
        with contextlib.suppress(Exception):
            self._upload_checkpoints()  # checkpoints sync continuously on AWS, so failures keep them
        self._finish("Failed", "Failed", "Training job failed")

    def _toolkit_log(self, message: str) -> None:
        if self.host_logs:
            self.host_logs[0].write(message)

    def _save_description(self) -> None:
        with contextlib.suppress(Exception):
            (self.job_dir / "description.json").write_text(
                json.dumps(self.job.describe(), default=str, indent=2)
            )


# ---------------------------------------------------------------------------------------
# The service
# ---------------------------------------------------------------------------------------
def list_jobs(request: dict[str, Any], jobs: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """List* paging over training or tuning jobs (both have name, status and their times)."""
    return list_page(
        request,
        jobs,
        name=lambda job: job.name,
        status=lambda job: job.status,
        times={
            "CreationTime": lambda job: job.creation_time,
            "LastModifiedTime": lambda job: job.last_modified_time,
        },
        sort_keys={
            "Name": lambda job: job.name,
            "CreationTime": lambda job: job.creation_time,
            "Status": lambda job: job.status,
        },
    )


class TrainingService(Service):
    """CreateTrainingJob, DescribeTrainingJob, ListTrainingJobs, StopTrainingJob."""

    api = SAGEMAKER
    stop_grace_seconds = 10.0  # AWS allows 120 s between SIGTERM and SIGKILL; locally less is enough

    def __init__(self, context: Context):
        super().__init__(context)
        self.root = context.state_dir / "training"
        self.root.mkdir(parents=True, exist_ok=True)
        self.jobs: dict[str, TrainingJob] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- operations ----------------------------------------------------------------------
    @operation("CreateTrainingJob")
    def create_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"TrainingJobArn": self.start_job(request).arn}

    @operation("DescribeTrainingJob")
    def describe_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        return self.job(request["TrainingJobName"]).describe()

    @operation("ListTrainingJobs")
    def list_training_jobs(self, request: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            jobs = list(self.jobs.values())
        page, token = list_jobs(request, jobs)
        return {"TrainingJobSummaries": [job.summary() for job in page], **token}

    @operation("StopTrainingJob")
    def stop_training_job(self, request: dict[str, Any]) -> dict[str, Any]:
        job = self.job(request["TrainingJobName"])
        with job.lock:
            if job.status != "InProgress":
                raise validation_error(
                    f"The request was rejected because the training job is in status {job.status}."
                )
            self.interrupt(job, "Stopped")
        return {}

    # -- for the tuning service and the runner ------------------------------------------
    def start_job(self, request: dict[str, Any], tuning_job_arn: str | None = None) -> TrainingJob:
        request = checked_training_request(request)
        name = request["TrainingJobName"]
        definitions = request["AlgorithmSpecification"].get("MetricDefinitions", [])
        job = TrainingJob(
            name=name,
            arn=self.context.arn("sagemaker", f"training-job/{name.lower()}"),
            request=request,
            tuning_job_arn=tuning_job_arn,
            scraper=MetricScraper(definitions),
        )
        with self._lock:
            if self._closed:
                raise AwsError("ServiceUnavailable", "local_aws is shutting down", status=503)
            if name in self.jobs:
                raise AwsError(
                    "ResourceInUse",
                    f"Training job names must be unique within an AWS account and region, and a training "
                    f"job with this name already exists ({self.jobs[name].arn})",
                )
            self.jobs[name] = job
        job.rule_statuses = debugger_rules.initial_statuses(request, job.arn)
        self.context.tags.add(job.arn, request.get("Tags"))
        thread = threading.Thread(target=JobRunner(self, job).run, name=f"training-{name}", daemon=True)
        self._threads[name] = thread
        thread.start()
        return job

    def job(self, name: str) -> TrainingJob:
        with self._lock:
            job = self.jobs.get(name)
        if job is None:
            raise not_found("training job", name)
        return job

    def interrupt(self, job: TrainingJob, reason: str) -> None:
        with job.lock:
            if job.is_terminal or job.stop_requested.is_set():
                return
            job.interruption = reason
            if reason == "Stopped":
                job.transition("Stopping", "Stopping the training job", status="Stopping")
            job.stop_requested.set()

    def fair_thread_count(self) -> int:
        """This machine's cores shared among the processes of every unfinished job (one per instance)."""
        with self._lock:
            processes = sum(job.instance_count for job in self.jobs.values() if not job.is_terminal)
        return max(1, (os.cpu_count() or 1) // max(1, processes))

    def shutdown(self) -> None:
        with self._lock:
            self._closed = True
            jobs = [job for job in self.jobs.values() if not job.is_terminal]
            threads = list(self._threads.values())
        for job in jobs:
            self.interrupt(job, "Stopped")
        for thread in threads:
            thread.join(timeout=self.stop_grace_seconds + 10)
