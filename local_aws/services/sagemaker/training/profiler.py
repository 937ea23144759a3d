"""What a training job's ProfilerConfig and profiler rules ask for, from the first sample to the report.

``start()`` (when the instances begin training) starts the :class:`.SystemMonitor`, unless the
request has no ProfilerConfig or sets ``DisableProfiler``. ``stop()`` (once the instances have
stopped) sends the last metrics and the end-of-job marker to S3, then gives every profiler rule
local_aws evaluates its final status; until then they are ``InProgress``, though the job may
already be Completed, as on AWS, where a rule's processing job ends after the training job.

The ProfilerReport rule writes where SageMaker's does, under the rule's ``S3OutputPath`` or else
``<ProfilerConfig.S3OutputPath>/<job>/rule-output``, then ``<RuleConfigurationName>/profiler-output/``:
``profiler-report.html`` and one ``profiler-reports/<Rule>.json`` per rule it runs. Its status is
``IssuesFound`` if any of its rules triggered, else ``NoIssuesFound``; ``Error`` with the reason
when there is nothing to evaluate (profiling off, no samples, metrics not uploaded) or a
parameter is wrong. A single profiler rule (``rule_to_invoke: CPUBottleneck``...) gets the
status of its own finding.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from local_aws.infra.s3 import split_s3_uri
from local_aws.services.base import now
from local_aws.services.sagemaker.training import debugger_rules, profiler_report, profiler_rules, telemetry
from local_aws.services.sagemaker.training.job import TrainingJob
from local_aws.services.sagemaker.training.system_monitor import INCREMENTAL_DIR, Instance, SystemMonitor

if TYPE_CHECKING:
    from local_aws.services.sagemaker.training.service import TrainingService

log = logging.getLogger("local_aws.training.profiler")

DEFAULT_INTERVAL_MS = 500
STATUS_DETAILS_LIMIT = 1024  # ProfilerRuleEvaluationStatus.StatusDetails max length
KIND = "ProfilerRuleConfigurations"
REPORT_FILE = "profiler-report.html"
RULE_REPORTS_DIR = "profiler-reports"


class NothingToEvaluate(Exception):
    """The rules cannot run: the reason is their Error status."""


def profiler_output_uri(profiler_config: Mapping[str, Any], job_name: str) -> str:
    """``<ProfilerConfig.S3OutputPath>/<job>/profiler-output``: the trial smdebug reads."""
    return f"{str(profiler_config['S3OutputPath']).rstrip('/')}/{job_name}/profiler-output"


def rule_output_uri(
    configuration: Mapping[str, Any], profiler_config: Mapping[str, Any], job_name: str
) -> str:
    """``<rule S3OutputPath or <ProfilerConfig.S3OutputPath>/<job>/rule-output>/<name>/profiler-output``."""
    base = configuration.get("S3OutputPath") or (
        f"{str(profiler_config['S3OutputPath']).rstrip('/')}/{job_name}/rule-output"
    )
    return f"{str(base).rstrip('/')}/{configuration['RuleConfigurationName']}/profiler-output"


class TrainingProfiler:
    """The system monitor of one job, and its profiler rules once the job's instances have stopped."""

    def __init__(
        self, service: TrainingService, job: TrainingJob, job_dir: Path, instances: Sequence[Instance]
    ):
        self.context = service.context
        self.upload_seconds = service.profiler_upload_seconds
        self.job = job
        self.job_dir = job_dir
        self.instances = instances
        self.config: Mapping[str, Any] = job.request.get("ProfilerConfig") or {}
        self.directory = job_dir / "profiler-output"
        self.monitor: SystemMonitor | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.config) and not self.config.get("DisableProfiler", False)

    @property
    def interval_ms(self) -> int:
        return int(self.config.get("ProfilingIntervalInMilliseconds") or DEFAULT_INTERVAL_MS)

    def start(self) -> None:
        if not self.enabled:
            return
        self.monitor = SystemMonitor(
            s3=self.context.client("s3"),
            destination=profiler_output_uri(self.config, self.job.name),
            directory=self.directory,
            instances=self.instances,
            interval_seconds=self.interval_ms / 1000,
            upload_seconds=self.upload_seconds,
        ).start()

    def stop(self) -> None:
        """Last upload, end marker, then the profiler rules' final statuses (and the report)."""
        configurations = [
            c for c in self.job.request.get(KIND) or [] if debugger_rules.evaluated_on_the_profile(c)
        ]
        try:
            self._stop_monitor()
            data = self._profile() if configurations else None
        except NothingToEvaluate as reason:
            for configuration in configurations:
                self._set_status(configuration, "Error", str(reason))
            return
        for configuration in configurations:
            assert data is not None
            try:
                self._evaluate(configuration, data)
            except profiler_rules.RuleParameterError as error:
                self._set_status(configuration, "Error", f"ClientError: {error}")
            except ClientError as error:
                self._set_status(
                    configuration, "Error", f"ClientError: the rule's output could not be written: {error}"
                )
            except Exception as error:  # a bug in local_aws: the rule still ends, saying so
                log.exception(
                    "profiler rule %s of %s failed", configuration["RuleConfigurationName"], self.job.name
                )
                self._set_status(
                    configuration, "Error", f"InternalFailure: local_aws: {type(error).__name__}: {error}"
                )

    def _stop_monitor(self) -> None:
        if not self.config:
            raise NothingToEvaluate(
                "The training job has no ProfilerConfig: no system metrics were collected."
            )
        if not self.enabled:
            raise NothingToEvaluate(
                "ProfilerConfig.DisableProfiler is set: no system metrics were collected."
            )
        if self.monitor is None:
            raise NothingToEvaluate("The training job ended before its instances started training.")
        try:
            self.monitor.stop()
        except Exception as error:
            log.warning("uploading the system metrics of %s failed", self.job.name, exc_info=True)
            raise NothingToEvaluate(
                f"ClientError: the system metrics could not be written to "
                f"{profiler_output_uri(self.config, self.job.name)}: {error}"
            ) from error

    def _profile(self) -> profiler_rules.ProfileData:
        lines = (
            line
            for path in sorted((self.directory / INCREMENTAL_DIR).rglob("*.json"))
            for line in path.read_text(encoding="utf-8").splitlines()
        )
        hosts = profiler_rules.parse_system_metrics(lines)
        if not any(metrics.datapoints for metrics in hosts.values()):
            raise NothingToEvaluate(
                f"No system metrics were sampled: the instances ran for less than the profiling "
                f"interval ({self.interval_ms} ms)."
            )
        loss = debugger_rules.metric_points(self.job.scraper.history(), debugger_rules.TRAIN_LOSS)
        phases = {}
        for log_file in sorted((self.job_dir / "logs").glob("*.log")):
            found = telemetry.phase_seconds(log_file.read_text(encoding="utf-8", errors="replace"))
            if found:
                phases[log_file.stem] = found
        timeline = profiler_rules.JobTimeline.build(
            [when.timestamp() for when, _ in loss[1]] if loss else [],
            phases,
            self.monitor.instance_started if self.monitor else {},
        )
        return profiler_rules.ProfileData(hosts, timeline)

    def _evaluate(self, configuration: dict[str, Any], data: profiler_rules.ProfileData) -> None:
        name = debugger_rules.rule_name(configuration)
        parameters = dict(configuration.get("RuleParameters") or {})
        if name != profiler_rules.PROFILER_REPORT:
            parameters = {k: v for k, v in parameters.items() if k not in profiler_rules.REPORT_KEYS}
            finding = profiler_rules.evaluate(name, data, parameters)
            status = "IssuesFound" if finding.triggered else "NoIssuesFound"
            self._set_status(configuration, status, f"{name}: {finding.summary}")
            return
        findings = profiler_rules.evaluate_report(data, parameters)
        status, details = profiler_rules.report_summary(findings)
        prefix = rule_output_uri(configuration, self.config, self.job.name)
        context = profiler_report.ReportContext(
            training_job=self.job.name,
            instance_type=self.job.request["ResourceConfig"]["InstanceType"],
            instance_count=self.job.instance_count,
            interval_ms=self.interval_ms,
            status=status,
            status_details=details,
            system_metrics_uri=profiler_output_uri(self.config, self.job.name) + "/system/",
            generated=dt.datetime.now(dt.UTC),
        )
        s3 = self.context.client("s3")
        for finding in findings:
            report = json.dumps(finding.report())
            self._put(s3, f"{prefix}/{RULE_REPORTS_DIR}/{finding.rule}.json", report, "application/json")
        html = profiler_report.render(context, data, findings)
        self._put(s3, f"{prefix}/{REPORT_FILE}", html, "text/html; charset=utf-8")
        self._set_status(configuration, status, details)

    @staticmethod
    def _put(s3: Any, uri: str, body: str, content_type: str) -> None:
        bucket, key = split_s3_uri(uri)
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType=content_type)

    def _set_status(self, configuration: Mapping[str, Any], status: str, details: str) -> None:
        if len(details) > STATUS_DETAILS_LIMIT:
            details = details[: STATUS_DETAILS_LIMIT - 3] + "..."
        entry = debugger_rules.rule_status(self.job.arn, dict(configuration), status, details)
        with self.job.lock:
            statuses = self.job.rule_statuses.setdefault(KIND, [])
            names = [s["RuleConfigurationName"] for s in statuses]
            if entry["RuleConfigurationName"] in names:
                statuses[names.index(entry["RuleConfigurationName"])] = entry
            else:
                statuses.append(entry)
            self.job.last_modified_time = max(self.job.last_modified_time, now())
