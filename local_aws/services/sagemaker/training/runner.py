"""Everything one training job does, in order, in its own thread.

The input channels and the ``sagemaker_submit_directory`` come down from S3 into a
directory laid out like a container's ``/opt/ml`` (one per instance), the entry point
runs as a process group per instance under the toolkit's contract, its output goes line
by line to CloudWatch Logs (and a local copy) and is scraped with the job's
MetricDefinitions, and the model directory is tarred to
``<S3OutputPath>/<job>/output/model.tar.gz`` (or, with ``CompressionType: NONE``, uploaded
file by file under ``.../output/model/``). A stop or MaxRuntimeInSeconds sends SIGTERM,
then SIGKILL after the grace period; the model saved meanwhile is still uploaded.

Every channel's objects come down in one bounded pool, all channels at once. The log ends
with the runner's own ``[timing]`` lines, ``download`` and ``upload``, beside train.py's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import sys
import tarfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from local_aws.infra.archives import extract_tar, tar_directory
from local_aws.infra.ports import free_port
from local_aws.infra.processes import ProcessGroup, stop_all
from local_aws.infra.s3 import split_s3_uri, upload_directory, upload_file
from local_aws.protocol.errors import AwsError
from local_aws.services.base import Context, now
from local_aws.services.sagemaker.training import debugger_rules
from local_aws.services.sagemaker.training.job import JobFailed, JobInterrupted, TrainingJob
from local_aws.services.sagemaker.training.profiler import TrainingProfiler
from local_aws.services.sagemaker.training.telemetry import format_timing
from local_aws.services.sagemaker.training.toolkit import (
    TOOLKIT_PREFIX,
    HostLayout,
    container_environment,
    decode_hyperparameters,
    input_data_config,
    resource_config,
    to_cmd_args,
)
from local_aws.services.sagemaker.training.transfers import S3Object, channel_objects, download_objects

if TYPE_CHECKING:
    from local_aws.services.sagemaker.training.service import TrainingService

log = logging.getLogger("local_aws.training")

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
FAILURE_REASON_LIMIT = 1024  # DescribeTrainingJob's FailureReason max length
STDERR_TAIL_LINES = 10
POLL_SECONDS = 0.1
# model.tar.gz stores rather than deflates: float weights barely compress. Measured on the demo's
# ResNet50 artifact (model.pth + int8 ONNX, 118 MB): zlib level 1, 6 and 9 all save 7-8 % for
# 5.6-6.9 s of CPU (Huffman-only: 2.2 s), storing takes 0.3 s, and the 9 MB saved take ~0.2 s to
# upload here. Still a gzip stream, as CreateModel and the inference containers expect.
MODEL_ARCHIVE_COMPRESSLEVEL = 0


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
        profiler = TrainingProfiler(self.service, job, self.job_dir, self.processes)
        try:
            self._prepare()
            self._check_interrupt()
            job.transition("Downloading", "Downloading input data")
            self._download_inputs()
            self._check_interrupt()
            job.transition("Training", "Training image download completed. Training in progress.")
            profiler.start()
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
            profiler.stop()  # the profiler rules end after the job, as their processing jobs do on AWS
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
        """Every channel and the checkpoints listed first (an empty channel fails the job before
        anything is fetched), then fetched in one pool; replicated channels are fetched once and
        hard-linked into the other hosts' directories."""
        with self.job.lock:
            self.job.training_start_time = now()
        started = time.perf_counter()
        downloads: list[tuple[S3Object, Path]] = []
        replicated: list[str] = []
        counts: dict[str, int] = {}
        for channel in self.job.request.get("InputDataConfig", []):
            name = channel["ChannelName"]
            source = channel["DataSource"]["S3DataSource"]
            objects = self._list(source, f"channel {name}")
            if not objects:
                raise JobFailed(f'ClientError: No S3 objects found under S3 URL "{source["S3Uri"]}" ({name})')
            counts[name] = len(objects)
            if source.get("S3DataDistributionType") == "ShardedByS3Key":
                shards = sorted(objects)
                for index, layout in enumerate(self.layouts):
                    directory = layout.channel_dir(name)
                    directory.mkdir(parents=True, exist_ok=True)  # a host's shard may be empty
                    downloads += [(item, directory) for item in shards[index :: len(self.layouts)]]
            else:
                downloads += [(item, self.layouts[0].channel_dir(name)) for item in objects]
                replicated.append(name)
        checkpoint_uri = self._checkpoint_uri()
        checkpoints = self._list({"S3Uri": checkpoint_uri}, "checkpoints") if checkpoint_uri else []
        for layout in self.layouts:  # each host's own copy: scripts rewrite checkpoint files in place
            downloads += [(item, self.checkpoint_dir(layout)) for item in checkpoints]
        try:
            download_objects(self.s3, downloads, cancelled=self.job.stop_requested)
        except (ClientError, BotoCoreError, OSError) as error:
            raise JobFailed(f"ClientError: Data download failed: {error}") from error
        self._check_interrupt()
        for name in replicated:
            for layout in self.layouts[1:]:
                first = self.layouts[0].channel_dir(name)
                shutil.copytree(first, layout.channel_dir(name), copy_function=os.link, dirs_exist_ok=True)
        for name, count in counts.items():
            self._toolkit_log(f"Downloaded {count} objects for channel {name}")
        if checkpoints:
            self._toolkit_log(f"Restored {len(checkpoints)} checkpoint files from {checkpoint_uri}")
        self._download_source()
        self._toolkit_log(format_timing("download", time.perf_counter() - started))

    def _list(self, source: dict[str, Any], what: str) -> list[S3Object]:
        try:
            return channel_objects(self.s3, source)
        except Exception as error:
            raise JobFailed(f"ClientError: Data download failed: {what}: {error}") from error

    def _checkpoint_uri(self) -> str | None:
        config = self.job.request.get("CheckpointConfig")
        return config["S3Uri"].rstrip("/") + "/" if config else None

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
        """Checkpoints, then the model and output data: tar.gz files, or (CompressionType NONE)
        the files themselves under ``output/model/`` and ``output/data/``."""
        self._terminate_processes()
        started = time.perf_counter()
        self._upload_checkpoints()
        master = self.layouts[0]
        prefix = self._output_prefix()
        uncompressed = self.job.request["OutputDataConfig"].get("CompressionType") == "NONE"
        if uncompressed:
            upload_directory(self.s3, master.model_dir, f"{prefix}/model/")
            artifacts = f"{prefix}/model/"
        else:
            artifacts = f"{prefix}/model.tar.gz"
            self._upload_archive(master.model_dir, artifacts, MODEL_ARCHIVE_COMPRESSLEVEL)
        if any(master.output_data_dir.iterdir()):
            if uncompressed:
                upload_directory(self.s3, master.output_data_dir, f"{prefix}/data/")
            else:
                self._upload_archive(master.output_data_dir, f"{prefix}/output.tar.gz")
        with self.job.lock:
            self.job.model_artifacts = artifacts
        self._toolkit_log(format_timing("upload", time.perf_counter() - started))

    def _upload_archive(self, directory: Path, uri: str, compresslevel: int = 9) -> None:
        archive = tar_directory(directory, self.job_dir / uri.rsplit("/", 1)[-1], compresslevel)
        try:
            upload_file(self.s3, archive, *split_s3_uri(uri))
        finally:
            archive.unlink(missing_ok=True)

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
